"""`DecodeConfig`: the options of one decoding run, validated once, recorded with the result."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

RULES = ("random", "confidence", "top_prob", "margin", "entropy", "stochastic")
POSITION_SCORES = ("top_prob", "margin", "entropy")


@dataclass(frozen=True)
class DecodeConfig:
    """How a response is decoded.

    Attributes:
        rule: one of ``RULES`` (see `dllm_mcmc.decoding.rules`).
        temperature: token temperature ``τ > 0``; tokens are drawn from ``p_j(v)^(1/τ)``.
        block_length: semi-autoregressive block size (``None``: one block, the whole response).
        tokens_per_step: positions committed per forward pass (the last step of a block may
            commit fewer).
        position_temperature: softmax temperature of the ``stochastic`` rule's position choice.
        position_score: the score the ``stochastic`` rule samples from.
        suppress_eos: never propose the denoiser's ``eos_id`` (the proposal renormalises;
            ``log_p`` still records the model's own probability).

    Example:
        >>> DecodeConfig(rule="entropy", temperature=0.5).schedule(4)
        [(0, 4, 1), (0, 4, 1), (0, 4, 1), (0, 4, 1)]
    """

    rule: str = "random"
    temperature: float = 1.0
    block_length: int | None = None
    tokens_per_step: int = 1
    position_temperature: float = 1.0
    position_score: str = "top_prob"
    suppress_eos: bool = False

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule={self.rule!r} is unknown; choose one of {', '.join(RULES)}")
        _check_positive_float("temperature", self.temperature)
        _check_positive_float("position_temperature", self.position_temperature)
        if self.position_score not in POSITION_SCORES:
            raise ValueError(
                f"position_score={self.position_score!r} is unknown; choose one of "
                f"{', '.join(POSITION_SCORES)}"
            )
        _check_positive_int("tokens_per_step", self.tokens_per_step)
        if self.block_length is not None:
            _check_positive_int("block_length", self.block_length)

    @property
    def exact_density(self) -> bool:
        """Whether the recorded ``log_q`` is the exact density of the decoded trajectory."""
        return self.rule != "confidence"

    def schedule(self, gen_length: int) -> list[tuple[int, int, int]]:
        """One ``(block_start, block_end, tokens_committed)`` per forward pass."""
        _check_positive_int("gen_length", gen_length)
        block = gen_length if self.block_length is None else self.block_length
        if gen_length % block:
            raise ValueError(
                f"gen_length={gen_length} is not a multiple of block_length={block}"
            )
        steps = []
        for start in range(0, gen_length, block):
            for committed in range(0, block, self.tokens_per_step):
                steps.append((start, start + block, min(self.tokens_per_step, block - committed)))
        return steps

    def as_dict(self) -> dict:
        return asdict(self)


def _check_positive_float(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
