"""`smc_decode`: the SMC decoder, composed from the parts of `dllm_mcmc.decoding.smc` (see its docstring for the
target and the formulas): per decoding step one batched forward call, then the proposal's draws and
`step.propagate`, `step.reweight` with the schedule's incremental weight (`tempering`) and `step.resample`
with the chosen scheme (`resampling`); fully adapted, the reweighting and resampling come before the draws;
conditional, a `conditional.ReferencePath` forces slot 0 and resamples conditionally."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dllm_mcmc._checks import one_of, positive_float, positive_int
from dllm_mcmc.decoding.canvas import Prompt, canvas_attention, generator_for, masked_canvas, prompt_batch
from dllm_mcmc.decoding.config import Rule
from dllm_mcmc.decoding.rules import position_rule_of, proposal_log_probs, sample_tokens
from dllm_mcmc.decoding.smc.conditional import FreePath, ReferencePath
from dllm_mcmc.decoding.smc.resampling import RESAMPLERS
from dllm_mcmc.decoding.smc.step import Particles, check_ess_threshold, degenerate, propagate, resample, reweight
from dllm_mcmc.decoding.smc.tempering import Fixed, Tempering, incremental_log_weight, tempering_of
from dllm_mcmc.denoisers.base import Denoiser, model_log_probs
from dllm_mcmc.denoisers.batching import LogitWindow, MaxRows, forward_in_chunks, resolve_max_rows
from dllm_mcmc.denoisers.metered import MeteredDenoiser
from dllm_mcmc.mh import gumbel_max


@dataclass
class SMCResult:
    """The particle system after the last step (``R`` runs, ``N`` particles, ``L`` tokens, ``S`` steps).

    - ``tokens``, ``order``: ``[R, N, L]``, each particle's response and the positions in commit order;
    - ``log_weight``: ``[R, N]`` final unnormalised log weights (the increments since the last resampling, added
      to chopthin's weights after it where ``resampling="chopthin"``);
    - ``log_normalizer``: ``[R]`` ``log Ẑ``;
    - ``log_p``, ``log_position``: ``[R, N]`` the chain rule ``log p(x | σ)`` and the rule's ``log u(σ | x)``
      of each particle's path (so ``log π_T = log_position + log_p / T`` up to ``log Z``);
    - ``ess``: ``[R, S]`` effective sample size of the weights after each step's reweighting;
    - ``resampled``: ``[R, S]`` whether the particles were resampled after that step (fully adapted: before
      that step's draw);
    - ``ancestors``: ``[R, S, N]`` ancestor indices of the resampling after each step (identity if none);
    - ``nfe``, ``forward_rows``: forward calls and rows of this run.
    """

    tokens: torch.Tensor
    order: torch.Tensor
    log_weight: torch.Tensor
    log_normalizer: torch.Tensor
    log_p: torch.Tensor
    log_position: torch.Tensor
    ess: torch.Tensor
    resampled: torch.Tensor
    ancestors: torch.Tensor
    nfe: int
    forward_rows: int

    def normalised_weights(self) -> torch.Tensor:
        """``[R, N]`` final weights normalised per run."""
        return torch.softmax(self.log_weight.double(), -1)


POSITION_PROPOSALS = ("rule", "tempered_mass")
"""The position proposals of `smc_decode`: the rule's own, or the fully adapted one."""


def check_position_proposal(position_proposal: str, rule: str, temperature: float, target_temperature: float) -> None:
    """Refuse a ``position_proposal`` other than ``"rule"`` / ``"tempered_mass"``, and ``"tempered_mass"``
    off the random-order target with ``τ = T`` (the only case where it is fully adapted). Shared by
    `smc_decode`, the particle kernels and the eval ``smc`` method, which check it before running."""
    if position_proposal not in POSITION_PROPOSALS:
        raise ValueError(f"position_proposal={position_proposal!r}: choose 'rule' or 'tempered_mass'")
    if position_proposal == "tempered_mass" and (rule != "random" or float(temperature) != float(target_temperature)):
        raise ValueError("position_proposal='tempered_mass' is the fully adapted proposal of the random-order "
                         "target: it needs rule='random' and a proposal temperature equal to the target's "
                         f"(temperature == target_temperature), got rule={rule!r}, temperature={temperature}, "
                         f"target_temperature={target_temperature}")


@torch.no_grad()
def smc_decode(
    denoiser: Denoiser,
    prompt: Prompt,
    gen_length: int,
    *,
    rule: str | Rule = "random",
    temperature: float = 1.0,
    target_temperature: float = 1.0,
    num_particles: int = 16,
    ess_threshold: float = 0.5,
    generator: torch.Generator | None = None,
    max_rows: MaxRows = None,
    reference: tuple[torch.Tensor, torch.Tensor] | None = None,
    num_runs: int = 1,
    position_proposal: str = "rule",
    resampling: str = "systematic",
    tempering: str | Tempering = "fixed",
) -> SMCResult:
    """Run ``num_runs`` SMC systems of ``num_particles`` particles towards ``π_T`` (see
    `dllm_mcmc.decoding.smc`).

    Args:
        denoiser: any `Denoiser`.
        prompt: ``[P]`` ids or ``None`` (shared by every run), or a list of ``num_runs`` 1-D id tensors,
            one per run.
        gen_length: ``L``.
        rule: a rule name or `Rule` (any rule but ``confidence``, ``tokens_per_step=1``): the proposal's
            and the target's order law.
        temperature: ``τ`` of the token proposal ``q ∝ p^(1/τ)``.
        target_temperature: ``T``.
        num_particles: ``N``.
        ess_threshold: resample when ``ESS < ess_threshold · N`` (0: never; 1: whenever the weights are
            not all equal). Never after the last step.
        generator: source of every draw (as in `decode`).
        max_rows: largest batch of one forward call (as in `decode`).
        reference: ``(tokens, order)``, ``[L]`` or ``[R, L]``: conditional SMC with this path in slot 0
            (`dllm_mcmc.decoding.smc.conditional`; its resampling is conditional multinomial).
        num_runs: ``R`` independent systems decoded as one batch.
        position_proposal: ``"rule"`` (positions drawn by the rule, the target's order law) or
            ``"tempered_mass"`` (fully adapted: positions ``∝`` their tempered mass, weights and resampling
            before the draw; needs ``rule="random"`` and ``temperature == target_temperature``).
        resampling: the scheme, one of ``"systematic"`` (the default), ``"stratified"``, ``"multinomial"``,
            ``"residual"``, ``"chopthin"`` (`dllm_mcmc.decoding.smc.resampling`); conditional SMC takes the
            default only (it resamples conditionally).
        tempering: the schedule of the target exponent, ``"fixed"`` (the default: ``1/T`` from the first
            step), ``"ramp"`` or a `Tempering` object such as ``Ramp(steps=8)``
            (`dllm_mcmc.decoding.smc.tempering`); the fully adapted proposal takes ``"fixed"`` only.
    """
    rule = Rule.of(rule)
    if rule.name == "confidence":
        raise ValueError("smc_decode: rule='confidence' has no exact order law; use another rule")
    if rule.tokens_per_step != 1:
        raise ValueError(f"tokens_per_step={rule.tokens_per_step}: smc_decode commits one token per step")
    positive_float("temperature", temperature)
    positive_float("target_temperature", target_temperature)
    positive_int("num_particles", num_particles)
    positive_int("num_runs", num_runs)
    ess_threshold = check_ess_threshold(ess_threshold)
    check_position_proposal(position_proposal, rule.name, temperature, target_temperature)
    adapted = position_proposal == "tempered_mass"
    one_of("resampling", resampling, RESAMPLERS)
    if reference is not None and resampling != "systematic":
        raise ValueError(f"resampling={resampling!r}: conditional SMC (reference) resamples conditionally "
                         "(slot 0 keeps its ancestor, the others multinomially); leave resampling at its default")
    schedule = tempering_of(tempering)
    if adapted and not isinstance(schedule, Fixed):
        raise ValueError(f"tempering={schedule.name!r}: the fully adapted proposal (position_proposal="
                         "'tempered_mass') proposes the target's one-step conditional at 1/T; use tempering='fixed'")
    if reference is not None and num_particles < 2:
        raise ValueError("conditional SMC (reference) needs num_particles >= 2")
    meter = denoiser if isinstance(denoiser, MeteredDenoiser) else MeteredDenoiser(denoiser)
    nfe_before, rows_before = meter.nfe, meter.forward_rows
    R, N, T = num_runs, num_particles, float(target_temperature)
    if isinstance(prompt, Sequence) and not isinstance(prompt, torch.Tensor):
        if len(prompt) != R:
            raise ValueError(f"prompt: a list of {len(prompt)} prompts for num_runs={R} (give one per run)")
        prompt = [p for p in prompt for _ in range(N)]  # row r * N + n: run r's prompt
    prompts, prompt_mask = prompt_batch(meter, prompt, R * N)
    device, prompt_length = prompts.device, prompts.shape[1]
    generator = generator_for(generator, device)
    steps = rule.config().schedule(gen_length)
    temperatures = schedule.temperatures(len(steps), T)
    max_rows = resolve_max_rows(meter, max_rows, prompt_length + gen_length,
                                [LogitWindow(prompt_length + start, prompt_length + end) for start, end, _ in steps])
    mask_id = int(meter.mask_id)
    chooser = position_rule_of(rule)
    path = (FreePath(RESAMPLERS[resampling]) if reference is None
            else ReferencePath(reference, R, N, gen_length, device))

    rows = torch.arange(R * N, device=device)
    identity = torch.arange(N, device=device).expand(R, N)
    particles = Particles(
        canvas=masked_canvas(prompts, gen_length, mask_id),
        order=torch.empty(R * N, gen_length, dtype=torch.long, device=device),
        log_p=torch.zeros(R * N, dtype=torch.float64, device=device),
        log_position=torch.zeros(R * N, dtype=torch.float64, device=device),
        log_weight=torch.zeros(R, N, dtype=torch.float64, device=device),
        log_normalizer=torch.zeros(R, dtype=torch.float64, device=device),
    )
    attention = canvas_attention(prompt_mask, gen_length)
    ess_steps, resampled_steps, ancestor_steps, invalid = [], [], [], []
    for step, (start, end, _) in enumerate(steps):
        block_positions = LogitWindow(prompt_length + start, prompt_length + end)
        logits = forward_in_chunks(meter, particles.canvas, max_rows, attention, logit_positions=block_positions)
        log_p = model_log_probs(logits, mask_id)  # [RN, B, V]
        del logits
        eligible = particles.canvas[:, prompt_length + start : prompt_length + end] == mask_id
        if adapted:  # weight (the one-step predictive mass) and resample before the draw
            log_mass, log_m, predictive = _tempered_mass(log_p, eligible, T)
            particles, ess = reweight(particles, predictive.view(R, N))
            ess_steps.append(ess)
            invalid.append(degenerate(particles.log_weight))
            particles, flags, ancestors, (log_p, eligible, log_mass, log_m) = resample(
                particles, ess, ess_threshold, path.resampler, generator, log_p, eligible, log_mass, log_m)
            resampled_steps.append(flags)
            ancestor_steps.append(ancestors)
            chosen = gumbel_max(log_mass, generator)[:, None]  # ∝ tempered mass, block-relative
            log_u = -log_m  # the target's order law is uniform over the masked positions
        else:
            chosen = chooser.choose(log_p, eligible, 1, generator)  # [RN, 1], block-relative
        chosen = path.position(step, start, chosen)
        if not adapted:
            log_u = chooser.log_prob(log_p, eligible, chosen).double()
        log_p_i = log_p[rows, chosen[:, 0]]  # [RN, V]
        log_q_i = proposal_log_probs(log_p_i, temperature)
        position = chosen[:, 0] + start
        tokens = path.token(position, sample_tokens(log_q_i, generator))
        log_p_v = log_p_i.gather(1, tokens[:, None])[:, 0].double()
        log_q_v = log_q_i.gather(1, tokens[:, None])[:, 0].double()
        invalid.append(torch.isnan(log_p_i.amax(-1)).any() | torch.isnan(log_q_i.amax(-1)).any())
        committed = particles.log_p  # log p of the path before this step
        particles = propagate(particles, step, prompt_length, position, tokens, log_p_v, log_u)
        if adapted:  # weighted and resampled before the draw
            continue
        previous_temperature = temperatures[step - 1] if step else temperatures[0]
        increment = incremental_log_weight(committed, log_p_v, log_q_v, temperatures[step], previous_temperature)
        particles, ess = reweight(particles, increment.view(R, N))
        ess_steps.append(ess)
        if step + 1 < len(steps):
            particles, flags, ancestors, _ = resample(particles, ess, ess_threshold, path.resampler, generator)
        else:
            flags = torch.zeros(R, dtype=torch.bool, device=device)
            ancestors = identity
        resampled_steps.append(flags)
        ancestor_steps.append(ancestors)
        invalid.append(degenerate(particles.log_weight))
    if torch.stack(invalid).any():
        raise ValueError("smc_decode: NaN in the model's log-probabilities or weights, or every particle of a run "
                         "has zero target mass")
    return SMCResult(
        tokens=particles.canvas[:, prompt_length:].reshape(R, N, gen_length).clone(),
        order=particles.order.reshape(R, N, gen_length),
        log_weight=particles.log_weight,
        log_normalizer=particles.log_normalizer,
        log_p=particles.log_p.view(R, N),
        log_position=particles.log_position.view(R, N),
        ess=torch.stack(ess_steps, 1),
        resampled=torch.stack(resampled_steps, 1),
        ancestors=torch.stack(ancestor_steps, 1),
        nfe=meter.nfe - nfe_before,
        forward_rows=meter.forward_rows - rows_before,
    )


def _tempered_mass(log_p: torch.Tensor, eligible: torch.Tensor, target_temperature: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fully adapted proposal's quantities of one step: ``log Z_j = log Σ_v p_j(v)^(1/T)`` of each block
    position (``-inf`` off the masked ones) ``[RN, B]``, ``log m`` (masked positions) ``[RN]`` and the
    predictive weight ``log((1/m) Σ_j Z_j)`` ``[RN]``."""
    log_mass = (log_p / target_temperature).logsumexp(-1).masked_fill(~eligible, float("-inf"))
    log_m = eligible.sum(-1).double().log()
    return log_mass, log_m, log_mass.double().logsumexp(-1) - log_m
