"""Tempering: the schedule of the target exponent ``β_t = 1/T_t`` over the decoding steps ``t = 1..S``.

SMC may reach ``π_T`` through any sequence of intermediate targets whose last one is ``π_T`` (Del Moral, Doucet &
Jasra 2006, JRSS B 68(3)). After step ``t`` a particle holds the path ``(σ_{1:t}, x_{σ_{1:t}})`` and the
intermediate target is

    π_t(σ_{1:t}, x) ∝ Π_{s≤t} u(σ_s | state_s) · (Π_{s≤t} p_s(x_{σ_s}))^{β_t},

so with the proposal ``u(i) q_i(v)`` (the rule's position, ``q_i ∝ p_i^(1/τ)``) the incremental weight of
committing ``v`` at ``i`` is

    log w_t = (β_t − β_{t−1}) · log p(x_{σ_{1:t−1}}) + β_t · log p_i(v) − log q_i(v),

``log p(x_{σ_{1:t−1}})`` the chain rule of the path committed before step ``t`` (zero at ``t = 1``, so ``β_0``
does not matter). Every schedule ends at ``β_S = 1/T``, so the final target is exactly ``π_T`` and the
normalising-constant estimate stays unbiased for ``Z_T``; only the intermediate targets, hence the variance of
the weights and when resampling happens, change.

- `Fixed` (``"fixed"``, the default): ``β_t = 1/T`` at every step; the path term vanishes and
  ``log w_t = log p_i(v) / T − log q_i(v)``.
- `Ramp` (``"ramp"``): ``β_t = 1 + (1/T − 1) · min(t, k) / k``, from the model (``β_0 = 1``) to ``1/T`` over
  the first ``k`` steps (all of them by default), then ``1/T``: the exponent bridge of Power-SMC (Azizi et al.
  2026, arXiv 2602.10273), which spreads the sharpening over the path instead of weighting the first tokens
  at the full power at once.

A schedule gives the temperatures ``T_t = 1/β_t`` (exactly ``T`` where ``β_t = 1/T``, so the fixed schedule
computes today's ``log p / T`` bit for bit).

Example:
    >>> Ramp(steps=2).temperatures(4, 0.5)
    [0.6666666666666666, 0.5, 0.5, 0.5]
    >>> tempering_of("fixed").temperatures(3, 0.5)
    [0.5, 0.5, 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from dllm_mcmc._checks import positive_int


@runtime_checkable
class Tempering(Protocol):
    """A schedule: ``temperatures(num_steps, target_temperature)`` gives ``[T_1, ..., T_S]`` with
    ``T_S = target_temperature``."""

    name: str

    def temperatures(self, num_steps: int, target_temperature: float) -> list[float]: ...


@dataclass(frozen=True)
class Fixed:
    """``β_t = 1/T`` at every step (the target exponent from the first token on)."""

    name = "fixed"

    def temperatures(self, num_steps: int, target_temperature: float) -> list[float]:
        return [float(target_temperature)] * num_steps


@dataclass(frozen=True)
class Ramp:
    """``β_t = 1 + (1/T − 1) · min(t, k) / k`` with ``k = steps`` (``None``: every step; a ``k`` beyond the
    number of steps ``S`` counts as ``S``, so ``β_S = 1/T`` always)."""

    steps: int | None = None
    name = "ramp"

    def __post_init__(self) -> None:
        if self.steps is not None:
            positive_int("steps", self.steps)

    def temperatures(self, num_steps: int, target_temperature: float) -> list[float]:
        k = num_steps if self.steps is None else min(self.steps, num_steps)
        beta = 1.0 / float(target_temperature)
        return [1.0 / (1.0 + (beta - 1.0) * t / k) if t < k else float(target_temperature)
                for t in range(1, num_steps + 1)]


TEMPERING: dict[str, Tempering] = {"fixed": Fixed(), "ramp": Ramp()}
"""The schedules by name (the option ``tempering=`` of `dllm_mcmc.decoding.smc.smc_decode` also takes a
`Tempering` object, e.g. ``Ramp(steps=8)``)."""


def tempering_of(tempering: str | Tempering) -> Tempering:
    """The schedule named ``tempering`` (see `TEMPERING`), or ``tempering`` itself if it is a schedule."""
    if isinstance(tempering, str):
        if tempering not in TEMPERING:
            raise ValueError(f"tempering={tempering!r} is unknown; choose one of {', '.join(TEMPERING)} "
                             "(or pass a Tempering object such as Ramp(steps=8))")
        return TEMPERING[tempering]
    if not isinstance(tempering, Tempering):
        raise ValueError(f"tempering must be a name or a Tempering schedule, got {tempering!r}")
    return tempering


def incremental_log_weight(log_p_path: torch.Tensor, log_p_v: torch.Tensor, log_q_v: torch.Tensor,
                           temperature: float, previous_temperature: float) -> torch.Tensor:
    """``log w_t = (β_t − β_{t−1}) · log p(path before t) + β_t · log p_i(v) − log q_i(v)`` with
    ``β = 1/temperature``, all ``[..]`` per row. The path term is left out (not multiplied by zero) when the
    exponent does not change, so a fixed schedule computes ``log p_i(v) / T − log q_i(v)`` exactly."""
    increment = log_p_v / temperature - log_q_v
    if temperature != previous_temperature:
        increment = increment + (1.0 / temperature - 1.0 / previous_temperature) * log_p_path
    return increment
