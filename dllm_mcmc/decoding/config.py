"""`Rule`: the decoding rule as one options object (which position is committed next: the order law),
and `DecodeConfig`: a rule plus the token temperature, the options of one decoding run, validated
once, recorded with the result.

The same `Rule` object is passed to `decode`, `TemperedTarget`, `sample` and the evaluation methods,
so the rule options (`RULE_OPTIONS`) are spelled once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dllm_mcmc._checks import one_of, positive_float, positive_int

RULES = ("random", "confidence", "top_prob", "margin", "entropy", "stochastic", "egi", "wedlm")
POSITION_SCORES = ("top_prob", "margin", "entropy")


RULE_OPTIONS = ("block_length", "tokens_per_step", "position_temperature", "position_score", "distance_penalty",
                "window")

# WeDLM's engine defaults (``SamplingParams.wedlm_pos_penalty_factor`` and ``Config.wedlm_window_size``
# in Tencent/WeDLM), so that ``rule="wedlm"`` alone is their decoder's position rule.
DEFAULT_DISTANCE_PENALTY = 0.02
DEFAULT_WINDOW = 16


def _nonnegative_float(name: str, value: object) -> float:
    """``float(value)`` if it is a finite real number ``>= 0`` (not a bool), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Rule:
    """A decoding rule: how the next position(s) are chosen. No token temperature here: that is ``τ``,
    given to the decoder beside the rule.

    Attributes:
        name: one of ``RULES`` (see `dllm_mcmc.decoding.rules`).
        block_length: semi-autoregressive block size (``None``: one block, the whole response).
        tokens_per_step: positions committed per forward pass.
        position_temperature: softmax temperature of the ``stochastic`` rule's position choice.
        position_score: the score the ``stochastic`` rule samples from.
        distance_penalty: ``λ >= 0`` of the ``wedlm`` rule, the entropy added per position of distance
            from the leftmost position still to be chosen.
        window: ``W``, the ``wedlm`` rule's window: it chooses among the first ``W`` positions from the
            leftmost one still to be chosen (within the current block).

    Example:
        >>> Rule("entropy", block_length=4)  # doctest: +NORMALIZE_WHITESPACE
        Rule(name='entropy', block_length=4, tokens_per_step=1, position_temperature=1.0, position_score='top_prob',
             distance_penalty=0.02, window=16)
        >>> Rule.of("random") == Rule()
        True
        >>> Rule("wedlm", window=0)
        Traceback (most recent call last):
            ...
        ValueError: window must be a positive integer, got 0
    """

    name: str = "random"
    block_length: int | None = None
    tokens_per_step: int = 1
    position_temperature: float = 1.0
    position_score: str = "top_prob"
    distance_penalty: float = DEFAULT_DISTANCE_PENALTY
    window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        one_of("rule", self.name, RULES)
        positive_float("position_temperature", self.position_temperature)
        one_of("position_score", self.position_score, POSITION_SCORES)
        positive_int("tokens_per_step", self.tokens_per_step)
        if self.block_length is not None:
            positive_int("block_length", self.block_length)
        _nonnegative_float("distance_penalty", self.distance_penalty)
        positive_int("window", self.window)

    @classmethod
    def of(cls, rule: str | Rule, **options) -> Rule:
        """``rule`` as a `Rule`: a name with ``options`` (the fields above), or a `Rule` as it is."""
        if isinstance(rule, Rule):
            if options:
                raise ValueError(f"{', '.join(sorted(options))}: give these inside the Rule object, not beside it")
            return rule
        if not isinstance(rule, str):
            raise ValueError(f"rule must be a rule name or a Rule, got {rule!r}")
        unknown = sorted(set(options) - set(RULE_OPTIONS))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not options of a rule ({', '.join(RULE_OPTIONS)})")
        return cls(rule, **options)

    def config(self, temperature: float = 1.0, suppress_eos: bool = False) -> DecodeConfig:
        """The `DecodeConfig` of decoding with this rule at token temperature ``temperature``."""
        return DecodeConfig(rule=self.name, temperature=temperature, suppress_eos=suppress_eos,
                            **{name: getattr(self, name) for name in RULE_OPTIONS})

    def as_dict(self) -> dict:
        return asdict(self)


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
        distance_penalty, window: the ``wedlm`` rule's ``λ`` and ``W`` (see `Rule`).
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
    distance_penalty: float = DEFAULT_DISTANCE_PENALTY
    window: int = DEFAULT_WINDOW
    suppress_eos: bool = False

    def __post_init__(self) -> None:
        positive_float("temperature", self.temperature)
        Rule(self.rule, **{name: getattr(self, name) for name in RULE_OPTIONS})  # validates the rule's fields

    @property
    def rule_options(self) -> Rule:
        """The `Rule` part of this config (everything but the token temperature and EOS handling)."""
        return Rule(self.rule, **{name: getattr(self, name) for name in RULE_OPTIONS})

    @property
    def exact_density(self) -> bool:
        """Whether the recorded ``log_q`` is the exact density of the decoded trajectory."""
        return self.rule != "confidence"

    def schedule(self, gen_length: int) -> list[tuple[int, int, int]]:
        """One ``(block_start, block_end, tokens_committed)`` per forward pass."""
        positive_int("gen_length", gen_length)
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
