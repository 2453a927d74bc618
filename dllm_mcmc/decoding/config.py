"""`Rule`: the decoding rule as one options object (which position is committed next: the order law),
and `DecodeConfig`: a `Rule` plus the token temperature and EOS handling, the options of one decoding
run, validated once, recorded with the result.

The same `Rule` object is passed to `decode`, `TemperedTarget`, `sample` and the evaluation methods,
so the rule options (`RULE_OPTIONS`) are spelled once.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

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
        return DecodeConfig(self, temperature=temperature, suppress_eos=suppress_eos)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DecodeConfig:
    """How a response is decoded: a `Rule` (the order law), the token temperature and EOS handling.

    Attributes:
        rule: the position rule and its options (`Rule`: name, blocks, tokens per step, ...).
        temperature: token temperature ``τ > 0``; tokens are drawn from ``p_j(v)^(1/τ)``.
        suppress_eos: never propose the denoiser's ``eos_id`` (the proposal renormalises;
            ``log_p`` still records the model's own probability).

    Example:
        >>> config = Rule("entropy", block_length=2).config(temperature=0.5)
        >>> config == DecodeConfig(Rule("entropy", block_length=2), temperature=0.5)
        True
        >>> config.schedule(4)
        [(0, 2, 1), (0, 2, 1), (2, 4, 1), (2, 4, 1)]
        >>> config.as_dict()  # doctest: +NORMALIZE_WHITESPACE
        {'rule': 'entropy', 'temperature': 0.5, 'block_length': 2, 'tokens_per_step': 1,
         'position_temperature': 1.0, 'position_score': 'top_prob', 'distance_penalty': 0.02, 'window': 16,
         'suppress_eos': False}
    """

    rule: Rule = field(default_factory=Rule)
    temperature: float = 1.0
    suppress_eos: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.rule, Rule):
            raise ValueError(f"rule must be a Rule (Rule.of(name, **options)), got {self.rule!r}")
        positive_float("temperature", self.temperature)

    @property
    def exact_density(self) -> bool:
        """Whether the recorded ``log_q`` is the exact density of the decoded trajectory."""
        return self.rule.name != "confidence"

    def schedule(self, gen_length: int) -> list[tuple[int, int, int]]:
        """One ``(block_start, block_end, tokens_committed)`` per forward pass."""
        positive_int("gen_length", gen_length)
        block = gen_length if self.rule.block_length is None else self.rule.block_length
        if gen_length % block:
            raise ValueError(
                f"gen_length={gen_length} is not a multiple of block_length={block}"
            )
        step = self.rule.tokens_per_step
        steps = []
        for start in range(0, gen_length, block):
            for committed in range(0, block, step):
                steps.append((start, start + block, min(step, block - committed)))
        return steps

    def as_dict(self) -> dict:
        """The options flat, as `decode` takes them as keywords (``rule``: the rule's name), in the order
        records have always carried them."""
        rule = self.rule.as_dict()
        return {"rule": rule.pop("name"), "temperature": self.temperature, **rule, "suppress_eos": self.suppress_eos}
