"""`TargetKernel`: the plumbing every kernel over a `TemperedTarget` shares (Pyro's lifecycle,
the generator, acceptance counters, cost), and `KernelProtocol`, what `sample` asks of any kernel.

Every kernel of dllm-mcmc works on C chains at once (a batch dimension). The MH arithmetic lives in
`dllm_mcmc.mh`, the per-chain records in `dllm_mcmc.mcmc.states`.
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol, runtime_checkable

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from dllm_mcmc._checks import positive_float, positive_int
from dllm_mcmc.target import TemperedTarget


class ColdProposalWarning(UserWarning):
    """A proposal at a token temperature τ below the target temperature T."""


def warn_if_colder(proposal_temperature: float, target_temperature: float) -> None:
    """Warn when the proposal is colder than the target (τ < T). A proposal at τ = T is the default: for
    prefix proposals it minimises the variance of the importance weights (Power-SMC, arXiv 2602.10273),
    while a colder one puts almost no mass where the target still has some, so an independent sampler can
    stay stuck there (on a toy at T = 2, τ = 0.5 the smallest q/π was 1.5e-7)."""
    if proposal_temperature < target_temperature:
        warnings.warn(f"proposal_temperature τ={proposal_temperature:g} is colder than the target temperature "
                      f"T={target_temperature:g}: the proposal rarely reaches the target's tails and the "
                      f"chains may not mix; τ = T (the default) is the safe choice",
                      ColdProposalWarning, stacklevel=3)


@runtime_checkable
class KernelProtocol(Protocol):
    """What `dllm_mcmc.sample` needs of a kernel object: Pyro's lifecycle (``setup``,
    ``initial_params``, ``sample``, ``cleanup``, ``logging``), ``num_chains``, a per-chain ``info``
    dict of float tensors ``[C]`` after every ``sample``, and ``cost`` = ``(nfe, forward_rows)``.
    Optional: ``name`` (for records) and ``needs_warmup`` (``False`` for kernels whose draws are
    independent: `sample` then runs no warm-up, does not read ``initial_params`` and passes ``{}`` to the
    first ``sample``, so such a kernel spends nothing on an initial state it would not use)."""

    num_chains: int
    info: dict[str, torch.Tensor] | None

    def setup(self, warmup_steps: int, *args: Any, **kwargs: Any) -> None: ...

    @property
    def initial_params(self) -> dict[str, torch.Tensor]: ...

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def cleanup(self) -> None: ...

    def logging(self) -> dict[str, str]: ...

    @property
    def cost(self) -> tuple[int, int]: ...


class TargetKernel(MCMCKernel):
    """Plumbing shared by the kernels over a `TemperedTarget` (not an algorithm itself).

    Validates ``target``, ``num_chains`` (a multiple of the target's number of prompts: with a list of
    prompts, chain ``c`` samples prompt ``c mod C``) and ``proposal_temperature``, derives the proposal decoder
    from the target's order law (``self.proposal``), and keeps the kernel's generator, the running
    acceptance for `logging` / `diagnostics`, and the cost read from the target's meter.
    Subclasses call `_start` from ``setup`` and `_count_acceptance` once per step.
    """

    name = "kernel"

    def __init__(self, target: TemperedTarget, *, proposal_temperature: float | None, num_chains: int,
                 seed: int) -> None:
        if not isinstance(target, TemperedTarget):
            raise ValueError(f"target must be a TemperedTarget, got {type(target).__name__}")
        positive_int("num_chains", num_chains)
        if proposal_temperature is None:
            proposal_temperature = target.target_temperature
        positive_float("proposal_temperature", proposal_temperature)
        warn_if_colder(proposal_temperature, target.target_temperature)
        if num_chains % target.num_prompts:
            raise ValueError(f"num_chains={num_chains} is not a multiple of the target's {target.num_prompts} "
                             f"prompts (chain c samples prompt c mod {target.num_prompts})")
        self.proposal = target.rule.config(temperature=proposal_temperature)  # the proposal decoder
        self.target = target
        self.num_chains = num_chains
        self.seed = seed
        self.transforms: dict[str, Any] = {}  # Pyro's MCMC looks for kernel.model unless this exists
        self.info: dict[str, torch.Tensor] | None = None

    def _start(self, warmup_steps: int) -> None:
        """Seed the generator, reset the meter and the acceptance counters."""
        self.warmup_steps = warmup_steps
        device = self.target.device
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
            "nfe": self.target.denoiser.nfe,
            "forward_rows": self.target.denoiser.forward_rows,
        }

    @property
    def cost(self) -> tuple[int, int]:
        """``(nfe, forward_rows)``: sequential forward calls and rows pushed through the model since ``setup``."""
        return self.target.denoiser.nfe, self.target.denoiser.forward_rows
