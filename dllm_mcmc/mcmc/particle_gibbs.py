"""`ParticleGibbs`: particle Gibbs (Andrieu, Doucet & Holenstein 2010, JRSS B 72(3)) over the tempered target.

Each chain holds a reference path ``(σ, x)``. One `sample` step runs conditional SMC
(`dllm_mcmc.decoding.smc.smc_decode` with ``reference``, composed in `dllm_mcmc.decoding.smc.conditional`):
``N`` particles decoded by the target's rule at token temperature ``τ``, slot 0 forced along the reference,
incremental weights ``log w_t = log p_i(v) / T − log q_i(v)``, conditional resampling keeping slot 0's
ancestor. The new
state is particle ``k`` drawn ``∝`` the final weights. The move leaves ``π_T(σ, x) ∝ u(σ | x) p(x | σ)^(1/T)``
invariant for every ``N ≥ 2`` (it is a Gibbs step on the extended target of Andrieu et al., Theorem 5);
``N`` only changes how fast the chain mixes. C chains run as one batch of ``C · N`` rows.

`sample` returns the new state (``tokens``, ``order``) and the scalar sites ``log_target``,
``log_likelihood``, ``length`` (see `dllm_mcmc.mcmc.kernel`). After each `sample`, ``info`` holds float
tensors ``[C]``: ``log_target`` (``log u(σ | x) + log p(x | σ) / T`` of the new state), ``log_likelihood``
(``log p(x | σ)``), ``leave_prob`` (``1 − W^0``, the probability that a particle other than the reference
slot is picked: not an MH acceptance probability), ``left_reference`` (1 if one was), ``nfe`` and
``forward_rows`` (rows divided by ``C``).

Example:
    >>> from dllm_mcmc import ExactDenoiser, TemperedTarget
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> kernel = ParticleGibbs(TemperedTarget(toy, None, 4, target_temperature=0.5), num_chains=2)
    >>> kernel.setup(warmup_steps=0)
    >>> params = kernel.sample(kernel.initial_params)
    >>> params["tokens"].shape, kernel.info["nfe"].tolist()
    (torch.Size([2, 4]), [4.0, 4.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm_mcmc._checks import one_of
from dllm_mcmc.decoding.smc import POSITION_PROPOSALS, SMCResult, check_ess_threshold
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


class ParticleGibbs(TargetKernel):
    """Particle Gibbs with ``num_particles`` particles per chain (``≥ 2``); ``proposal_temperature``
    (``None``: the target's ``T``) is the token temperature ``τ`` of the SMC proposal; ``ess_threshold``
    the adaptive resampling threshold; ``max_rows`` (``None``: the target's) caps one forward call;
    ``position_proposal="tempered_mass"`` runs the fully adapted SMC (random order, ``τ = T``; see
    `dllm_mcmc.decoding.smc`); ``tempering`` the schedule of the target exponent (``"fixed"`` or ``"ramp"``: the
    conditional SMC then targets the ramped intermediate laws and still ends at ``π_T``, so the move stays exact).
    Resampling is conditional multinomial (slot 0 keeps its ancestor).
    Needs the ``order`` likelihood (the SMC weights are the chain rule along the decoding order). A sibling of
    `dllm_mcmc.mcmc.smc.SMC` over `dllm_mcmc.mcmc.particle_runs`."""

    name = "pgibbs"

    def __init__(self, target: TemperedTarget, *, proposal_temperature: float | None = None, num_particles: int = 4,
                 num_chains: int = 1, seed: int = 0, ess_threshold: float = 0.5, max_rows: MaxRows = None,
                 position_proposal: str = "rule", tempering: str = "fixed") -> None:
        tau = target.target_temperature if proposal_temperature is None else proposal_temperature
        super().__init__(target, proposal_temperature=tau, num_chains=num_chains, seed=seed)
        ParticleGibbsOptions(num_particles, ess_threshold, position_proposal, tempering)  # the ranges, checked once
        self.tempering = tempering
        self.ess_threshold = check_particle_options(self.name, target, tau, ess_threshold, position_proposal)
        self.position_proposal = position_proposal
        self.num_particles = num_particles
        self.max_rows = max_rows
        self._rows = particle_rows(target, max_rows)
        self._state: dict[str, torch.Tensor] | None = None

    def setup(self, warmup_steps: int = 0, *args, **kwargs) -> None:
        self.start(warmup_steps)
        self._state, _ = pick_particle(self, self._run(None))  # the chains start at one particle of a plain SMC run

    @property
    def initial_params(self) -> dict[str, torch.Tensor]:
        if self._state is None:
            raise RuntimeError("call setup() before reading initial_params")
        return self._state

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        """Start the chains at given ``tokens`` and ``order`` ``[C, L]`` (the first references), scored by a
        replay (``L`` forward calls) for their scalar sites."""
        log_target, log_likelihood = self.target.score(self.replay(params["tokens"], params["order"]))
        self._state = self.sites(params["tokens"], params["order"], log_target, log_likelihood)

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One conditional-SMC step per chain from the kernel's current reference (``params`` is not read)."""
        if self._state is None:
            raise RuntimeError("call setup() before sample()")
        meter = self.target.denoiser
        nfe_before, rows_before = meter.nfe, meter.forward_rows
        out = self._run((self._state["tokens"], self._state["order"]))
        self._state, picked = pick_particle(self, out)
        weights = out.normalised_weights()
        left = (picked != 0).float()
        self.track("left_reference", left)
        self.info = {
            "log_target": self._state["log_target"],
            "log_likelihood": self._state["log_likelihood"],
            "leave_prob": (1 - weights[:, 0]).float(),
            "left_reference": left,
            **cost_info(self, nfe_before, rows_before, picked.device),
        }
        return self._state

    def cleanup(self) -> None:
        pass

    def _run(self, reference: tuple[torch.Tensor, torch.Tensor] | None) -> SMCResult:
        return run_particles(self, reference, num_particles=self.num_particles, ess_threshold=self.ess_threshold,
                             max_rows=self._rows, position_proposal=self.position_proposal, tempering=self.tempering)


@dataclass(frozen=True)
class ParticleGibbsOptions:
    """The options of ``pgibbs``: ``num_particles`` ``N ≥ 2``, ``ess_threshold``, ``position_proposal``,
    ``tempering`` (its resampling is conditional multinomial: slot 0 keeps its ancestor)."""

    num_particles: int = 4
    ess_threshold: float = 0.5
    position_proposal: str = "rule"
    tempering: str = "fixed"

    def __post_init__(self) -> None:
        if isinstance(self.num_particles, bool) or not isinstance(self.num_particles, int) or self.num_particles < 2:
            raise ValueError(f"num_particles must be an integer >= 2 (particle Gibbs), got {self.num_particles!r}")
        check_ess_threshold(self.ess_threshold)
        one_of("position_proposal", self.position_proposal, POSITION_PROPOSALS)  # with the rule: SamplerSpec.check
        check_tempering(self.position_proposal, self.tempering)


def pgibbs_cost(options: ParticleGibbsOptions, unit: UnitShape) -> Cost:
    """An SMC run at ``setup`` and ``w + 1`` conditional-SMC steps of ``s`` steps and ``N`` rows per chain:
    ``(w + 2)·s`` steps and ``n·N·(w + 2)·s`` rows."""
    runs = unit.warmup + 2
    return Cost(runs * unit.steps, unit.samples * options.num_particles * runs * unit.steps)


PGIBBS_SPEC = SamplerSpec("pgibbs", ParticleGibbsOptions, pgibbs_cost, independent=False, kernel=ParticleGibbs,
                          check=check_particle_method,
                          summary="particle Gibbs: conditional SMC moves around a reference path")
