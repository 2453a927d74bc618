"""``particles``: one SMC system per prompt whose ``n`` particles are the ``n`` samples (an evaluation sampler,
`dllm_mcmc.mcmc.registry`).

One system of ``n`` particles per prompt (all in one batch; `dllm_mcmc.decoding.smc.smc_decode` towards
``p^(1/T)`` with the method's rule as the order law), then a final systematic resampling of the particles'
weights, so the ``n`` samples cost what ``n`` plain decodes cost. They are **not independent** (resampled
particles share ancestors): Pass@1 and Pass@n are those of the particle set, and the unbiased pass@k estimator
for ``1 < k < n`` gives the pass rate of ``k`` particles picked at random from it, not of an SMC run with ``k``
particles. The `dllm_mcmc.mcmc.smc.SMC` kernel (``sampler = "smc"``) gives independent draws instead, each
costing a run of ``num_particles``.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser, Rule
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> request = DrawRequest(toy, [torch.tensor([], dtype=torch.long)], 4, samples=8, seed=0, rule=Rule(),
    ...                       temperature=0.5, target_temperature=0.5, options=ParticlesOptions())
    >>> draw = draw_particles(request)
    >>> draw.tokens.shape, draw.nfe, draw.forward_rows
    (torch.Size([8, 4]), 4, 32)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm_mcmc._checks import one_of
from dllm_mcmc.decoding.canvas import generator_for
from dllm_mcmc.decoding.config import Rule
from dllm_mcmc.decoding.smc import (
    POSITION_PROPOSALS,
    RESAMPLERS,
    check_ess_threshold,
    check_position_proposal,
    smc_decode,
    systematic_resample,
)
from dllm_mcmc.mcmc.particle_runs import check_tempering
from dllm_mcmc.mcmc.spec import Cost, Draw, DrawRequest, SamplerSpec, UnitShape


@dataclass(frozen=True)
class ParticlesOptions:
    """``ess_threshold`` (resample when ``ESS < ess_threshold · n``), ``position_proposal`` (``"rule"`` or
    ``"tempered_mass"``, the fully adapted SMC of `dllm_mcmc.decoding.smc`), ``resampling`` (a scheme of
    `dllm_mcmc.decoding.smc.resampling`, e.g. ``"chopthin"``) and ``tempering`` (``"fixed"`` or ``"ramp"``,
    `dllm_mcmc.decoding.smc.tempering`)."""

    ess_threshold: float = 0.5
    position_proposal: str = "rule"
    resampling: str = "systematic"
    tempering: str = "fixed"

    def __post_init__(self) -> None:
        check_ess_threshold(self.ess_threshold)
        one_of("position_proposal", self.position_proposal, POSITION_PROPOSALS)  # with the rule: SamplerSpec.check
        one_of("resampling", self.resampling, RESAMPLERS)
        check_tempering(self.position_proposal, self.tempering)


def check_particles(options: ParticlesOptions, rule: Rule, temperature: float, target_temperature: float) -> None:
    """What the particles sampler needs of the method: a rule with an exact order law and one token per step,
    and for ``tempered_mass`` the random-order target at ``τ = T``."""
    check_position_proposal(options.position_proposal, rule.name, temperature, target_temperature)
    if rule.name == "confidence" or rule.tokens_per_step != 1:
        raise ValueError(f"the particles sampler needs a rule with an exact order law and one token per step (not "
                         f"'confidence'), got rule={rule.name!r} with tokens_per_step={rule.tokens_per_step}")


def draw_particles(request: DrawRequest) -> Draw:
    """One SMC system of ``n`` particles per prompt, then a final systematic resampling to equal weights;
    returns the ``[count·n, L]`` particles (prompt-major)."""
    generator = torch.Generator().manual_seed(request.seed)
    count = len(request.prompts)
    options = request.options
    out = smc_decode(request.denoiser, request.prompts[0] if count == 1 else request.prompts, request.gen_length,
                     rule=request.rule, temperature=request.temperature,
                     target_temperature=float(request.target_temperature), num_particles=request.samples,
                     ess_threshold=float(options.ess_threshold), generator=generator,
                     max_rows=request.max_rows, num_runs=count,
                     position_proposal=options.position_proposal, resampling=options.resampling,
                     tempering=options.tempering)
    ancestors = systematic_resample(out.log_weight, generator_for(generator, out.log_weight.device))  # [R, N]
    runs = torch.arange(count, device=ancestors.device)[:, None]
    return Draw(out.tokens[runs, ancestors].reshape(count * request.samples, -1), out.nfe, out.forward_rows)


def particles_cost(options: ParticlesOptions, unit: UnitShape) -> Cost:
    """``s`` steps, ``n·s`` rows: the ``n`` particles are the samples."""
    return Cost(unit.steps, unit.samples * unit.steps)


PARTICLES = SamplerSpec("particles", ParticlesOptions, particles_cost, independent=False, draw=draw_particles,
                        check=check_particles,
                        summary="one SMC system per problem whose particles are the samples (not independent)")
