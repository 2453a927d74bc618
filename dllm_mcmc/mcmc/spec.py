"""`SamplerSpec`: what a sampler *is*, said once (its options, its cost formula, whether its draws are
independent, and how the evaluation uses it), and the small records the registry's functions exchange
(`UnitShape`, `Cost`, `DrawRequest`, `Draw`). The registry of every sampler is `dllm_mcmc.mcmc.registry`.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class NoOptions:
    ...     pass
    >>> spec = SamplerSpec("echo", NoOptions, lambda options, unit: Cost(unit.steps, unit.samples * unit.steps),
    ...                    independent=True, draw=lambda request: None)
    >>> spec.parse_options({"block_length": 4}), spec.cost(NoOptions(), UnitShape(8, 8, 2, 0))
    (NoOptions(), Cost(nfe=8, rows=16, scorings=0, scored=0))
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from dllm_mcmc.decoding.config import RULE_OPTIONS, Rule
from dllm_mcmc.denoisers.base import Denoiser

TARGET_OPTIONS = ("likelihood", "elbo_samples", "max_rows")
"""Options of every kernel sampler that belong to its `dllm_mcmc.target.TemperedTarget` (the likelihood, its
ELBO samples and the largest batch of one forward call)."""

BATCH_OPTIONS = ("max_rows",)
"""Options of every batch sampler beside its own (the largest batch of one forward call)."""


class UnitShape(NamedTuple):
    """What a cost formula needs of one unit: ``steps`` decoding steps per response, the response length,
    ``samples`` kept per unit and the method's ``warmup``."""

    steps: int
    gen_length: int
    samples: int
    warmup: int


class Cost(NamedTuple):
    """One unit's cost: ``nfe`` sequential forward calls, ``rows`` forward rows; ``scorings`` likelihood calls
    and ``scored`` sequences scored by them (what a likelihood other than ``order`` adds; see `unit_cost`)."""

    nfe: int
    rows: int
    scorings: int = 0
    scored: int = 0


@dataclass(frozen=True)
class DrawRequest:
    """What a batch sampler's ``draw`` gets: ``samples`` responses to each of ``prompts`` (prompt-major rows
    ``u·n .. (u + 1)·n − 1``), reproducible from ``seed``. ``answer_of``: per prompt, a function of a response's
    ids ``[L]`` giving its extracted answer (``majority`` only; ``None`` elsewhere)."""

    denoiser: Denoiser
    prompts: list[torch.Tensor]
    gen_length: int
    samples: int
    seed: int
    rule: Rule
    temperature: float
    target_temperature: float
    options: Any
    max_rows: Any = "auto"
    answer_of: Sequence[Callable[[torch.Tensor], str | None] | None] | None = None


class Draw(NamedTuple):
    """A batch sampler's result: ``tokens [count·n, L]`` (prompt-major) and the call's cost."""

    tokens: torch.Tensor
    nfe: int
    forward_rows: int


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler, described once.

    Attributes:
        name: the name in ``sample(kernel=...)``, eval configs (``sampler = ...``), ``--plan`` and lm-eval.
        options: a frozen dataclass of the sampler's own options (every field with a default; ranges checked
            in ``__post_init__``). The rule's options and `TARGET_OPTIONS` / `BATCH_OPTIONS` come beside them.
        cost: ``cost(options, UnitShape) -> Cost``: the exact forward calls and rows of one unit.
        independent: whether its draws are independent: for a kernel, a chain's successive draws (``stepwise``,
            ``smc``: yes; ``imh``, ``power``, ``pgibbs``: no, a Markov chain); for a batch sampler, the ``n``
            samples of a unit (``particles``: no, they share ancestors). See `independent_samples`.
        kernel: a `TargetKernel` class, built as ``kernel(target, proposal_temperature=, num_chains=, seed=,
            **options)`` (a kernel sampler); or ``None``.
        draw: ``draw(DrawRequest) -> Draw`` (a batch sampler); or ``None``.
        tempered: whether it targets ``p^(1/T)`` (reads ``target_temperature``).
        needs_answers: whether ``draw`` reads ``DrawRequest.answer_of`` (majority voting).
        summary: one line for listings and docs.
        required: options a config must give explicitly (no default is taken for them there).
        check: ``check(options, rule, temperature, target_temperature)``, the checks that need the method's
            rule and temperatures beside the options (``ValueError``); ``None``: none.
    """

    name: str
    options: type
    cost: Callable[[Any, UnitShape], Cost]
    independent: bool
    kernel: type | None = None
    draw: Callable[[DrawRequest], Draw] | None = None
    tempered: bool = True
    needs_answers: bool = False
    summary: str = ""
    required: tuple[str, ...] = ()
    check: Callable[[Any, Rule, float, float], None] | None = None

    def __post_init__(self) -> None:
        if (self.kernel is None) == (self.draw is None):
            raise ValueError(f"sampler {self.name!r}: give exactly one of kernel= (a TargetKernel class) and draw= "
                             f"(a batch draw function)")
        if not dataclasses.is_dataclass(self.options):
            raise ValueError(f"sampler {self.name!r}: options must be a dataclass, got {self.options!r}")

    @property
    def is_kernel(self) -> bool:
        return self.kernel is not None

    @property
    def independent_samples(self) -> bool:
        """Whether an evaluation's ``n`` samples of a unit are independent (unbiased pass@k assumes so): always
        for a kernel (``n`` chains, one kept state each), the ``independent`` flag for a batch sampler."""
        return self.is_kernel or self.independent

    @property
    def uses_warmup(self) -> bool:
        """Whether an evaluation's ``warmup`` matters: a kernel whose chains need one."""
        return self.kernel is not None and getattr(self.kernel, "needs_warmup", True)

    @property
    def own_options(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options))

    @property
    def shared_options(self) -> tuple[str, ...]:
        """Options every sampler of this kind takes beside its own (the target's, or the batch's)."""
        return TARGET_OPTIONS if self.is_kernel else BATCH_OPTIONS

    def option_names(self) -> tuple[str, ...]:
        """Every option key a method of this sampler may hold: the rule's, the shared ones, its own."""
        return tuple(dict.fromkeys((*RULE_OPTIONS, *self.shared_options, *self.own_options)))

    def parse_options(self, options: Mapping[str, Any], also: Sequence[str] | None = None) -> Any:
        """The options dataclass of ``options``: its own keys are parsed, the keys of ``also`` (default: the
        rule's and the shared ones, `option_names`) are accepted and skipped. ``ValueError`` for an unknown key,
        naming the closest valid one, and for a bad value (from the dataclass's checks)."""
        known = tuple(dict.fromkeys((*self.own_options, *(self.option_names() if also is None else also))))
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"{key} is not an option of sampler {self.name!r}{hint}; its options: "
                                 f"{', '.join(known) or 'none'}")
        missing = [key for key in self.required if key not in options]
        if missing:
            raise ValueError(f"sampler {self.name!r} needs {', '.join(missing)} (no default is taken for "
                             f"{'it' if len(missing) == 1 else 'them'} in a method)")
        own = {key: value for key, value in options.items() if key in self.own_options}
        try:
            return self.options(**own)
        except TypeError as error:  # a dataclass refuses a wrong call with TypeError: say it as a bad value
            raise ValueError(f"sampler {self.name!r}: {error}") from None


def unit_cost(spec: SamplerSpec, options: Any, shape: UnitShape, likelihood: str = "order",
              elbo_samples: int = 16) -> tuple[int, int]:
    """``(nfe, rows)`` of one unit: the sampler's `Cost` plus what a likelihood other than ``order`` adds
    (``left_to_right``: ``gen_length`` rows per scored sequence; ``elbo``: ``elbo_samples``), one call per
    scoring."""
    cost = spec.cost(options, shape)
    if likelihood == "left_to_right":
        return cost.nfe + cost.scorings, cost.rows + cost.scored * shape.gen_length
    if likelihood == "elbo":
        return cost.nfe + cost.scorings, cost.rows + cost.scored * elbo_samples
    return cost.nfe, cost.rows


RENAMED = {
    "smc": ("num_particles",
            "in an evaluation, sampler 'smc' used to mean one SMC system per problem whose particles are the "
            "samples: that sampler is now named 'particles' (sampler = \"particles\"). 'smc' is now the SMC "
            "kernel, each sample an independent draw from its own run of num_particles particles: to mean it, "
            "give num_particles"),
}
"""Evaluation sampler names whose meaning changed: ``{name: (marker option, message)}``. A method that uses
the name without the option that marks its new meaning is refused with the message (`check_renamed`)."""


def check_renamed(sampler: str, options: Mapping[str, Any]) -> None:
    """Refuse a method that uses a renamed sampler in its old meaning (see `RENAMED`).

    >>> check_renamed("smc", {"ess_threshold": 0.5})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: in an evaluation, sampler 'smc' used to mean ... now named 'particles' ...
    >>> check_renamed("smc", {"num_particles": 8})
    """
    if sampler in RENAMED and RENAMED[sampler][0] not in options:
        raise ValueError(RENAMED[sampler][1])
