"""Registry entries of the particle kernels ``pgibbs`` and ``smc`` (`dllm_mcmc.mcmc.registry`)."""

from __future__ import annotations

from dataclasses import dataclass

from dllm_mcmc.decoding.config import Rule
from dllm_mcmc.decoding.smc import check_position_proposal
from dllm_mcmc.mcmc.particle_gibbs import ParticleGibbs
from dllm_mcmc.mcmc.smc import SMC
from dllm_mcmc.mcmc.spec import Cost, SamplerSpec, UnitShape


def _check_threshold(threshold: object) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise ValueError(f"ess_threshold must lie in [0, 1], got {threshold!r}")


@dataclass(frozen=True)
class ParticleGibbsOptions:
    """The options of ``pgibbs``: ``num_particles`` ``N ≥ 2``, ``ess_threshold``, ``position_proposal``."""

    num_particles: int = 4
    ess_threshold: float = 0.5
    position_proposal: str = "rule"

    def __post_init__(self) -> None:
        if isinstance(self.num_particles, bool) or not isinstance(self.num_particles, int) or self.num_particles < 2:
            raise ValueError(f"num_particles must be an integer >= 2 (particle Gibbs), got {self.num_particles!r}")
        _check_threshold(self.ess_threshold)
        check_position_proposal(self.position_proposal, "random", 1.0, 1.0)


@dataclass(frozen=True)
class SMCOptions:
    """The options of ``smc``: ``num_particles`` ``N`` per draw, ``ess_threshold``, ``position_proposal``."""

    num_particles: int = 16
    ess_threshold: float = 0.5
    position_proposal: str = "rule"

    def __post_init__(self) -> None:
        if isinstance(self.num_particles, bool) or not isinstance(self.num_particles, int) or self.num_particles < 1:
            raise ValueError(f"num_particles must be a positive integer, got {self.num_particles!r}")
        _check_threshold(self.ess_threshold)
        check_position_proposal(self.position_proposal, "random", 1.0, 1.0)


def check_particle_kernel(options: ParticleGibbsOptions | SMCOptions, rule: Rule, temperature: float,
                          target_temperature: float) -> None:
    check_position_proposal(options.position_proposal, rule.name, temperature, target_temperature)
    if rule.tokens_per_step != 1:
        raise ValueError(f"a particle kernel needs a rule with tokens_per_step=1, got {rule.tokens_per_step}")


def pgibbs_cost(options: ParticleGibbsOptions, unit: UnitShape) -> Cost:
    """An SMC run at ``setup`` and ``w + 1`` conditional-SMC steps of ``s`` steps and ``N`` rows per chain:
    ``(w + 2)·s`` steps and ``n·N·(w + 2)·s`` rows."""
    runs = unit.warmup + 2
    return Cost(runs * unit.steps, unit.samples * options.num_particles * runs * unit.steps)


def smc_cost(options: SMCOptions, unit: UnitShape) -> Cost:
    """One SMC run of ``N`` particles per sample (independent draws, no warm-up): ``s`` steps and ``n·N·s``
    rows."""
    return Cost(unit.steps, unit.samples * options.num_particles * unit.steps)


PGIBBS_SPEC = SamplerSpec("pgibbs", ParticleGibbsOptions, pgibbs_cost, independent=False, kernel=ParticleGibbs,
                          check=check_particle_kernel,
                          summary="particle Gibbs: conditional SMC moves around a reference path")
SMC_SPEC = SamplerSpec("smc", SMCOptions, smc_cost, independent=True, kernel=SMC, check=check_particle_kernel,
                       required=(), summary="independent SMC draws: one particle of a run of N per sample")
