"""Shared Metropolis–Hastings arithmetic and the records kernels keep per chain.

Every kernel of dllm-mcmc works on C chains at once (a batch dimension), and states carry their
cached log target and log proposal density, so a step never recomputes them (BlackJAX style).
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from ..target import TemperedTarget


class ChainState(NamedTuple):
    """The current state of C chains.

    ``tokens``/``order``: ``[C, L]``; ``log_target``: ``[C]`` unnormalised ``log π``;
    ``log_proposal``: ``[C]`` ``log q`` of the state under the independent proposal.
    """

    tokens: torch.Tensor
    order: torch.Tensor
    log_target: torch.Tensor
    log_proposal: torch.Tensor

    @property
    def log_weight(self) -> torch.Tensor:
        """Importance weight ``log π − log q`` (what the independent MH ratio compares)."""
        return self.log_target - self.log_proposal


class StepInfo(NamedTuple):
    """What one MH step did, per chain (``[C]`` each)."""

    accept_prob: torch.Tensor
    accepted: torch.Tensor
    proposed_log_weight: torch.Tensor


def mh_accept(
    log_ratio: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept with probability ``min(1, exp(log_ratio))``, decided in log space.

    A NaN ratio (both states of probability zero) is refused with an error: it means the
    chain sits on a state outside the target's support and nothing sensible can follow.
    Returns ``(accept_prob [C], accepted [C] bool)``.
    """
    if torch.isnan(log_ratio).any():
        raise ValueError("MH log ratio is NaN: the current and proposed states both have zero target mass")
    accept_prob = log_ratio.clamp(max=0.0).exp()
    log_uniform = torch.rand(log_ratio.shape, generator=generator, device=log_ratio.device, dtype=torch.float64).log()
    return accept_prob, log_uniform < log_ratio.double()


def select(accepted: torch.Tensor, proposed: ChainState, current: ChainState) -> ChainState:
    """Per chain, the proposed state where ``accepted`` and the current one elsewhere."""
    return ChainState(
        *(
            torch.where(accepted.reshape(-1, *([1] * (new.dim() - 1))), new, old)
            for new, old in zip(proposed, current)
        )
    )


def independent_log_ratio(current_log_weight: torch.Tensor, proposed_log_weight: torch.Tensor) -> torch.Tensor:
    """``w(y) − w(x)`` of independent MH, with a current state of weight ``-inf`` accepting any
    proposal of finite weight (ratio 0) instead of producing ``inf − inf``."""
    log_ratio = proposed_log_weight - current_log_weight
    return torch.where(
        torch.isneginf(current_log_weight) & torch.isfinite(proposed_log_weight),
        torch.zeros_like(log_ratio),
        log_ratio,
    )


def independent_mh_step(
    current: ChainState, proposed: ChainState, generator: torch.Generator
) -> tuple[ChainState, StepInfo]:
    """One independent MH step (Tierney 1994): accept ``y`` over ``x`` with probability

        min(1, [π(y) q(x)] / [π(x) q(y)]) = min(1, exp(w(y) − w(x))),  w = log π − log q.

    A current state of weight ``-inf`` accepts any proposal of finite weight.
    """
    accept_prob, accepted = mh_accept(independent_log_ratio(current.log_weight, proposed.log_weight), generator)
    return select(accepted, proposed, current), StepInfo(accept_prob, accepted, proposed.log_weight)


class TargetKernel(MCMCKernel):
    """Plumbing shared by the kernels over a `TemperedTarget` (not an algorithm itself).

    Validates ``target``, ``num_chains`` and ``proposal_temperature``, derives the proposal decoder
    from the target's order law (``self.proposal``), and keeps the kernel's generator, the running
    acceptance for `logging` / `diagnostics`, and the cost read from the target's meter.
    Subclasses call `_start` from ``setup`` and `_count_acceptance` once per step.
    """

    name = "kernel"

    def __init__(self, target: TemperedTarget, proposal_temperature: float, num_chains: int, seed: int) -> None:
        if not isinstance(target, TemperedTarget):
            raise ValueError(f"target must be a TemperedTarget, got {type(target).__name__}")
        check_positive_int("num_chains", num_chains)
        try:  # validates proposal_temperature (named "temperature" in DecodeConfig)
            self.proposal = replace(target.order_law, temperature=proposal_temperature)
        except ValueError as error:
            raise ValueError(f"proposal_temperature: {error}") from None
        self.target = target
        self.num_chains = num_chains
        self.seed = seed
        self.transforms = {}  # Pyro's MCMC looks for kernel.model unless this exists
        self.info: dict[str, torch.Tensor] | None = None

    def _start(self, warmup_steps: int) -> None:
        """Seed the generator, reset the meter and the acceptance counters."""
        self.warmup_steps = warmup_steps
        device = self.target.prompt.device
        self.generator = torch.Generator(device=device).manual_seed(self.seed)
        self.target.denoiser.reset()
        self._steps = 0
        self._acceptance_sum = torch.zeros(self.num_chains, device=device)
        self.info = None

    def _count_acceptance(self, acceptance: torch.Tensor) -> None:
        self._steps += 1
        self._acceptance_sum += acceptance.float()

    def logging(self) -> dict[str, str]:
        rate = float(self._acceptance_sum.mean() / max(self._steps, 1))
        return {"acc. rate": f"{rate:.3f}"}

    def diagnostics(self) -> dict:
        """Picklable summary: acceptance per chain and the cost so far."""
        return {
            "acceptance_rate": (self._acceptance_sum / max(self._steps, 1)).tolist(),
            "steps": self._steps,
            "nfe": self.target.denoiser.calls,
            "forward_rows": self.target.denoiser.rows,
        }

    @property
    def cost(self) -> tuple[int, int]:
        """``(sequential forward calls, forward rows)`` since ``setup``."""
        return self.target.denoiser.calls, self.target.denoiser.rows


def check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
