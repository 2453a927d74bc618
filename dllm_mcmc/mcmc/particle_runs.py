"""What the two particle kernels share (`dllm_mcmc.mcmc.smc.SMC`, `dllm_mcmc.mcmc.particle_gibbs.ParticleGibbs`):
their checks of the target and options, one batched SMC run of ``N`` particles per chain
(`dllm_mcmc.decoding.smc.smc_decode`, conditional when given the chains' references), and the pick of one
particle per chain ``∝`` its final weight. They are siblings over these functions, neither a subclass of the
other."""

from __future__ import annotations

import torch

from dllm_mcmc._checks import one_of
from dllm_mcmc.decoding.config import Rule
from dllm_mcmc.decoding.smc import TEMPERING, SMCResult, check_ess_threshold, check_position_proposal, smc_decode
from dllm_mcmc.denoisers.batching import MaxRows, resolve_max_rows
from dllm_mcmc.mcmc.kernel import TargetKernel
from dllm_mcmc.mh import gumbel_max
from dllm_mcmc.target import TemperedTarget


def check_particle_options(name: str, target: TemperedTarget, proposal_temperature: float, ess_threshold: object,
                          position_proposal: str) -> float:
    """Refuse a target without the ``order`` likelihood (the SMC weights are the chain rule along the decoding
    order) or with more than one token per step, a bad ``ess_threshold`` or ``position_proposal``; returns
    ``float(ess_threshold)``."""
    if target.likelihood != "order":
        raise ValueError(f"{name}: needs the 'order' likelihood, got {target.likelihood!r}")
    if target.rule.tokens_per_step != 1:
        raise ValueError(f"{name}: needs a rule with tokens_per_step=1")
    threshold = check_ess_threshold(ess_threshold)
    check_position_proposal(position_proposal, target.rule.name, proposal_temperature, target.target_temperature)
    return threshold


def check_particle_method(options: object, rule: Rule, temperature: float, target_temperature: float) -> None:
    """The registry's check of a particle sampler's method (`dllm_mcmc.mcmc.spec.SamplerSpec.check`): its
    ``position_proposal`` against the rule and temperatures, and one token per step."""
    check_position_proposal(getattr(options, "position_proposal", "rule"), rule.name, temperature, target_temperature)
    if rule.tokens_per_step != 1:
        raise ValueError(f"a particle sampler needs a rule with tokens_per_step=1, got {rule.tokens_per_step}")


def check_tempering(position_proposal: str, tempering: str) -> None:
    """A tempering schedule's name (`dllm_mcmc.decoding.smc.TEMPERING`), and ``"fixed"`` with the fully adapted
    proposal (which proposes the target's one-step conditional at ``1/T``)."""
    one_of("tempering", tempering, TEMPERING)
    if position_proposal == "tempered_mass" and tempering != "fixed":
        raise ValueError("position_proposal='tempered_mass' proposes the target's one-step conditional at 1/T: "
                         "it needs tempering='fixed'")


def particle_rows(target: TemperedTarget, max_rows: MaxRows) -> int | None:
    """The largest forward batch of the kernel's SMC runs (``None``: the target's)."""
    if max_rows is None:
        return target.max_rows
    return resolve_max_rows(target.denoiser, max_rows, target.prompt_length + target.gen_length)


def run_particles(kernel: TargetKernel, reference: tuple[torch.Tensor, torch.Tensor] | None, *, num_particles: int,
                  ess_threshold: float, max_rows: int | None, position_proposal: str,
                  resampling: str = "systematic", tempering: str = "fixed") -> SMCResult:
    """One SMC system of ``num_particles`` per chain, all chains in one batch, towards the kernel's target at the
    kernel's proposal temperature, drawn from ``kernel.generator``; conditional on ``reference`` (``[C, L]``
    tokens and order) when given; ``resampling`` and ``tempering`` as in `dllm_mcmc.decoding.smc.smc_decode`."""
    target = kernel.target
    return smc_decode(target.denoiser, target.prompt_for(kernel.num_chains) if target.per_row else target.prompt,
                      target.gen_length, rule=target.rule, temperature=kernel.proposal.temperature,
                      target_temperature=target.target_temperature, num_particles=num_particles,
                      ess_threshold=ess_threshold, generator=kernel.generator, max_rows=max_rows,
                      reference=reference, num_runs=kernel.num_chains, position_proposal=position_proposal,
                      resampling=resampling, tempering=tempering)


def pick_particle(kernel: TargetKernel, out: SMCResult) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One particle per chain drawn ``∝`` its final weight: its params (state and scalar sites, scored by
    ``kernel.target.score``; the order likelihood needs no forward call) and its slot ``[C]``."""
    picked = gumbel_max(out.log_weight, kernel.generator)
    rows = torch.arange(out.tokens.shape[0], device=picked.device)
    log_target, log_likelihood = kernel.target.score(out)  # [R, N]
    return kernel.sites(out.tokens[rows, picked], out.order[rows, picked], log_target[rows, picked],
                        log_likelihood[rows, picked]), picked


def cost_info(kernel: TargetKernel, nfe_before: int, rows_before: int, device: torch.device) -> dict[str, torch.Tensor]:
    """``nfe`` and ``forward_rows`` (divided by the number of chains) since the given meter readings, as float
    ``[C]`` info entries."""
    meter = kernel.target.denoiser
    C = kernel.num_chains
    return {"nfe": torch.full((C,), float(meter.nfe - nfe_before), device=device),
            "forward_rows": torch.full((C,), (meter.forward_rows - rows_before) / C, device=device)}
