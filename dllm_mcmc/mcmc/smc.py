"""`SMC`: `dllm_mcmc.decoding.smc.smc_decode` as a kernel for `sample` (independent draws).

Every `sample` call runs one SMC system of ``N`` particles per chain (all chains in one batch of ``C · N``
rows) and returns, per chain, one particle drawn ``∝`` its final weight (sampling-importance-resampling
from the particle approximation). Draws are independent but only **approximately** from ``π_T``: the
bias of the weighted particle law is ``O(1/N)``; `dllm_mcmc.mcmc.particle_gibbs.ParticleGibbs`, its sibling
over the same parts (`dllm_mcmc.mcmc.particle_runs`), is the exact kernel built on conditional SMC. `sample`
returns the draws (``tokens``, ``order``) and the scalar sites ``log_target``, ``log_likelihood``, ``length``
(see `dllm_mcmc.mcmc.kernel`). After each `sample`, ``info`` holds float tensors ``[C]``: ``log_target`` and
``log_likelihood`` of the draw, ``ess`` (the normalised ESS of the final weights, ``ESS / N``),
``log_normalizer`` (``log Ẑ``), ``nfe`` and ``forward_rows`` (rows divided by ``C``).

Example:
    >>> from dllm_mcmc import ExactDenoiser, sample
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> result = sample(toy, None, 4, kernel="smc", target_temperature=0.5, proposal_temperature=0.5,
    ...                 num_chains=2, num_samples=3, progress=False, num_particles=8)
    >>> result.tokens.shape, result.config["warmup"]
    (torch.Size([2, 3, 4]), 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm_mcmc._checks import one_of, positive_int
from dllm_mcmc.decoding.smc import (
    POSITION_PROPOSALS,
    RESAMPLERS,
    SMCResult,
    check_ess_threshold,
    effective_sample_size,
)
from dllm_mcmc.denoisers.batching import MaxRows
from dllm_mcmc.mcmc.kernel import TargetKernel
from dllm_mcmc.mcmc.particle_runs import (
    check_particle_method,
    check_particle_options,
    check_tempering,
    cost_info,
    particle_rows,
    pick_particle,
    run_particles,
)
from dllm_mcmc.mcmc.spec import Cost, SamplerSpec, UnitShape
from dllm_mcmc.target import TemperedTarget


class SMC(TargetKernel):
    """Independent SMC draws: ``num_particles`` ``N`` per chain and draw; ``proposal_temperature`` (``None``: the
    target's ``T``), ``ess_threshold``, ``max_rows`` and ``position_proposal`` as for `ParticleGibbs`;
    ``resampling`` the scheme of `dllm_mcmc.decoding.smc.resampling` (``"systematic"``, ``"stratified"``,
    ``"multinomial"``, ``"residual"`` or ``"chopthin"``); ``tempering`` the schedule of the target exponent over
    the steps (``"fixed"`` or ``"ramp"``, `dllm_mcmc.decoding.smc.tempering`). Needs the ``order`` likelihood."""

    name = "smc"
    needs_warmup = False  # every draw is a fresh SMC run

    def __init__(self, target: TemperedTarget, *, proposal_temperature: float | None = None, num_particles: int = 16,
                 num_chains: int = 1, seed: int = 0, ess_threshold: float = 0.5, max_rows: MaxRows = None,
                 position_proposal: str = "rule", resampling: str = "systematic", tempering: str = "fixed") -> None:
        tau = target.target_temperature if proposal_temperature is None else proposal_temperature
        super().__init__(target, proposal_temperature=tau, num_chains=num_chains, seed=seed)
        SMCOptions(num_particles, ess_threshold, position_proposal, resampling, tempering)  # the ranges, checked once
        self.ess_threshold = check_particle_options(self.name, target, tau, ess_threshold, position_proposal)
        self.resampling = resampling
        self.tempering = tempering
        self.position_proposal = position_proposal
        self.num_particles = num_particles
        self.max_rows = max_rows
        self._rows = particle_rows(target, max_rows)
        self._state: dict[str, torch.Tensor] | None = None
        self._ready = False

    def setup(self, warmup_steps: int = 0, *args, **kwargs) -> None:
        self.start(warmup_steps)
        self._state = None
        self._ready = True

    @property
    def initial_params(self) -> dict[str, torch.Tensor]:
        """One particle per chain of an SMC run, made when first read (Pyro's `MCMC` reads it;
        `dllm_mcmc.sample` does not, so its draws cost one SMC run each)."""
        if not self._ready:
            raise RuntimeError("call setup() before reading initial_params")
        if self._state is None:
            self._state, _ = pick_particle(self, self._run())
        return self._state

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        """Accepted for Pyro's API (draws never depend on the current state); the state is scored by a
        replay (``L`` forward calls) for its scalar sites."""
        log_target, log_likelihood = self.target.score(self.replay(params["tokens"], params["order"]))
        self._state = self.sites(params["tokens"], params["order"], log_target, log_likelihood)

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``C`` new independent draws by one batched SMC run (``params`` is not read)."""
        if not self._ready:
            raise RuntimeError("call setup() before sample()")
        meter = self.target.denoiser
        nfe_before, rows_before = meter.nfe, meter.forward_rows
        out = self._run()
        self._state, picked = pick_particle(self, out)
        ess = (effective_sample_size(out.log_weight) / self.num_particles).float()
        self.track("ess", ess)
        self.info = {
            "log_target": self._state["log_target"],
            "log_likelihood": self._state["log_likelihood"],
            "ess": ess,
            "log_normalizer": out.log_normalizer.float(),
            **cost_info(self, nfe_before, rows_before, picked.device),
        }
        return self._state

    def cleanup(self) -> None:
        pass

    def _run(self) -> SMCResult:
        return run_particles(self, None, num_particles=self.num_particles, ess_threshold=self.ess_threshold,
                             max_rows=self._rows, position_proposal=self.position_proposal,
                             resampling=self.resampling, tempering=self.tempering)


@dataclass(frozen=True)
class SMCOptions:
    """The options of ``smc``: ``num_particles`` ``N`` per draw, ``ess_threshold``, ``position_proposal``,
    ``resampling``, ``tempering``."""

    num_particles: int = 16
    ess_threshold: float = 0.5
    position_proposal: str = "rule"
    resampling: str = "systematic"
    tempering: str = "fixed"

    def __post_init__(self) -> None:
        positive_int("num_particles", self.num_particles)
        check_ess_threshold(self.ess_threshold)
        one_of("position_proposal", self.position_proposal, POSITION_PROPOSALS)  # with the rule: SamplerSpec.check
        one_of("resampling", self.resampling, RESAMPLERS)
        check_tempering(self.position_proposal, self.tempering)


def smc_cost(options: SMCOptions, unit: UnitShape) -> Cost:
    """One SMC run of ``N`` particles per sample (independent draws, no warm-up): ``s`` steps and ``n·N·s``
    rows."""
    return Cost(unit.steps, unit.samples * options.num_particles * unit.steps)


SMC_SPEC = SamplerSpec("smc", SMCOptions, smc_cost, independent=True, kernel=SMC, check=check_particle_method,
                       summary="independent SMC draws: one particle of a run of N per sample")
