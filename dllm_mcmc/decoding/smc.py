"""`smc_decode`: sequential Monte Carlo decoding towards the globally tempered target.

Target (see `dllm_mcmc.target`, ``order`` likelihood): the path law

    π_T(σ, x) ∝ u(σ | x) · p(x | σ)^(1/T),   u(σ | x) = Π_t r(σ_t | state_t),  p(x | σ) = Π_t p_t(x_σt),

built up one commit at a time, so SMC applies with the decoding steps as its time index
(Del Moral, Doucet & Jasra 2006, "Sequential Monte Carlo samplers", JRSS B 68(3)). ``N`` particles
(rows) are decoded together, one batched forward call per step (the cost of ``N`` plain decodes).
At step ``t`` every particle chooses a position ``i`` by the rule (probability ``r``, exactly as
`decode`), draws ``v ~ q_i ∝ p_i^(1/τ)`` and multiplies its weight by the incremental weight

    w_t = [r(i) p_i(v)^(1/T)] / [r(i) q_i(v)],     log w_t = log p_i(v) / T − log q_i(v)

(the position terms cancel: the target's order law is the rule itself). With ``τ = T``,
``log w_t = log Σ_u p_i(u)^(1/T)``, known before the draw. When the effective sample size of the
normalised weights falls below ``ess_threshold · N`` the particles are resampled (systematic,
`dllm_mcmc.mh.systematic_resample`) and their weights reset to equal. The normalising constant is
estimated the standard way,

    log Ẑ = Σ_t log Σ_n W_{t−1}^n w_t^n,      W_{t−1}: the normalised weights before step t,

which is unbiased, ``E[Ẑ] = Z = Σ_{σ,x} u(σ | x) p(x | σ)^(1/T)`` (for a consistent model
``Z = Σ_x p(x)^(1/T)``), and the final weighted particles estimate ``π_T`` consistently as ``N → ∞``.

**Fully adapted positions** (``position_proposal="tempered_mass"``, random order, ``τ = T``): the
proposal picks position ``i`` with probability ``∝ Z_i = Σ_v p_i(v)^(1/T)`` (its tempered mass) and the
token from ``p_i^(1/T) / Z_i``, so it proposes exactly the target's one-step conditional. The incremental
weight is then ``(1/m) Σ_j Z_j`` (``m`` masked positions), the same whatever is drawn: it is computed from
the forward pass **before** the draw, the particles are resampled on it, and only then do they choose a
position and a token (the fully adapted auxiliary particle filter, Pitt & Shephard 1999, "Filtering via
simulation: auxiliary particle filters", JASA 94(446)). The target is unchanged (the uniform order law is
restored by the weights), the proposal becomes a soft easy-first rule for ``T < 1`` (peaked positions have
the larger tempered mass), and resampled copies of one particle diverge at once instead of a step later.

``reference`` gives conditional SMC (Andrieu, Doucet & Holenstein 2010, "Particle Markov chain Monte
Carlo methods", JRSS B 72(3)): slot 0 follows the given (tokens, order) path, its positions and tokens
forced at every step and its weights computed by the same formula, and resampling is conditional
(`dllm_mcmc.mh.conditional_resample`: slot 0 keeps ancestor 0, the others are multinomial). Picking one
particle ``∝`` its final weight is then a particle Gibbs move that leaves ``π_T`` invariant for any ``N ≥ 2``
(`dllm_mcmc.mcmc.particle_gibbs`).

``num_runs`` independent SMC systems (one per prompt of a list) run as one batch of ``R · N`` rows;
row ``r · N + n`` is particle ``n`` of run ``r``.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> out = smc_decode(toy, None, 4, temperature=0.5, target_temperature=0.5, num_particles=8,
    ...                  generator=torch.Generator().manual_seed(0))
    >>> out.tokens.shape, out.log_weight.shape, out.nfe, out.forward_rows
    (torch.Size([1, 8, 4]), torch.Size([1, 8]), 4, 32)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dllm_mcmc._checks import positive_float, positive_int
from dllm_mcmc.decoding.canvas import Prompt, canvas_attention, generator_for, masked_canvas, prompt_batch
from dllm_mcmc.decoding.config import Rule
from dllm_mcmc.decoding.rules import position_rule_of, proposal_log_probs, sample_tokens
from dllm_mcmc.denoisers.base import Denoiser, model_log_probs
from dllm_mcmc.denoisers.batching import MaxRows, forward_in_chunks, resolve_max_rows
from dllm_mcmc.denoisers.metered import MeteredDenoiser
from dllm_mcmc.mh import conditional_resample, effective_sample_size, gumbel_max, systematic_resample


@dataclass
class SMCResult:
    """The particle system after the last step (``R`` runs, ``N`` particles, ``L`` tokens, ``S`` steps).

    - ``tokens``, ``order``: ``[R, N, L]``, each particle's response and the positions in commit order;
    - ``log_weight``: ``[R, N]`` final unnormalised log weights (accumulated since the last resampling);
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


def check_position_proposal(position_proposal: str, rule: str, temperature: float, target_temperature: float) -> None:
    """Refuse a ``position_proposal`` other than ``"rule"`` / ``"tempered_mass"``, and ``"tempered_mass"``
    off the random-order target with ``τ = T`` (the only case where it is fully adapted). Shared by
    `smc_decode`, the particle kernels and the eval ``smc`` method, which check it before running."""
    if position_proposal not in ("rule", "tempered_mass"):
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
) -> SMCResult:
    """Run ``num_runs`` SMC systems of ``num_particles`` particles towards ``π_T`` (see the module docstring).

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
        reference: ``(tokens, order)``, ``[L]`` or ``[R, L]``: conditional SMC with this path in slot 0.
        num_runs: ``R`` independent systems decoded as one batch.
        position_proposal: ``"rule"`` (positions drawn by the rule, the target's order law) or
            ``"tempered_mass"`` (fully adapted: positions ``∝`` their tempered mass, weights and resampling
            before the draw; needs ``rule="random"`` and ``temperature == target_temperature``).
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
    if not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold={ess_threshold}: must lie in [0, 1]")
    check_position_proposal(position_proposal, rule.name, temperature, target_temperature)
    adapted = position_proposal == "tempered_mass"
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
    max_rows = resolve_max_rows(meter, max_rows, prompt_length + gen_length,
                                logit_length=max(end - start for start, end, _ in steps))
    mask_id = int(meter.mask_id)
    chooser = position_rule_of(rule)
    ref_tokens = ref_order = None
    if reference is not None:
        ref_tokens, ref_order = (t.to(device).reshape(-1, gen_length).expand(R, gen_length) for t in reference)

    canvas = masked_canvas(prompts, gen_length, mask_id)
    attention = canvas_attention(prompt_mask, gen_length)
    rows = torch.arange(R * N, device=device)
    slot0 = (rows % N == 0)[:, None]  # the reference's rows
    offsets = (torch.arange(R, device=device) * N)[:, None]  # run r's first row
    identity = torch.arange(N, device=device).expand(R, N)
    order = torch.empty(R * N, gen_length, dtype=torch.long, device=device)
    log_weight = torch.zeros(R, N, dtype=torch.float64, device=device)
    log_normalizer = torch.zeros(R, dtype=torch.float64, device=device)
    log_p_path = torch.zeros(R * N, dtype=torch.float64, device=device)
    log_position = torch.zeros(R * N, dtype=torch.float64, device=device)
    ess_steps, resampled_steps, ancestor_steps, invalid = [], [], [], []
    for step, (start, end, _) in enumerate(steps):
        block_positions = torch.arange(prompt_length + start, prompt_length + end, device=device)
        logits = forward_in_chunks(meter, canvas, max_rows, attention, logit_positions=block_positions)
        log_p = model_log_probs(logits, mask_id)  # [RN, B, V]
        del logits
        eligible = canvas[:, prompt_length + start : prompt_length + end] == mask_id
        if adapted:
            log_mass = (log_p / T).logsumexp(-1).masked_fill(~eligible, float("-inf"))  # log Z_j  [RN, B]
            log_m = eligible.sum(-1).double().log()
            predictive = (log_mass.double().logsumexp(-1) - log_m).view(R, N)  # log (1/m) Σ_j Z_j
            previous = log_weight
            log_weight = previous + predictive
            log_normalizer = log_normalizer + log_weight.logsumexp(-1) - previous.logsumexp(-1)
            ess = effective_sample_size(log_weight)
            ess_steps.append(ess)
            invalid.append(torch.isnan(log_weight).any() | torch.isneginf(log_weight.amax(-1)).any())
            resample, ancestors, log_weight = _resample(log_weight, ess < ess_threshold * N, ref_tokens is None,
                                                        generator)
            source = (ancestors + offsets).reshape(-1)
            canvas, order = canvas[source], order[source]
            log_p_path, log_position = log_p_path[source], log_position[source]
            log_p, eligible, log_mass, log_m = log_p[source], eligible[source], log_mass[source], log_m[source]
            resampled_steps.append(resample)
            ancestor_steps.append(ancestors)
            chosen = gumbel_max(log_mass, generator)[:, None]  # ∝ tempered mass, block-relative
        else:
            chosen = chooser.choose(log_p, eligible, 1, generator)  # [RN, 1], block-relative
        if ref_order is not None:
            forced = (ref_order[:, step] - start).repeat_interleave(N)[:, None]
            chosen = torch.where(slot0, forced, chosen)
        if adapted:  # the target's order law is uniform over the masked positions
            log_position = log_position - log_m
        else:
            log_position = log_position + chooser.log_prob(log_p, eligible, chosen).double()
        log_p_i = log_p[rows, chosen[:, 0]]  # [RN, V]
        log_q_i = proposal_log_probs(log_p_i, temperature)
        tokens = sample_tokens(log_q_i, generator)
        position = chosen[:, 0] + start
        if ref_tokens is not None:
            forced_token = ref_tokens.gather(1, (position.view(R, N)[:, :1])).repeat_interleave(N)
            tokens = torch.where(slot0[:, 0], forced_token, tokens)
        log_p_v = log_p_i.gather(1, tokens[:, None])[:, 0].double()
        log_q_v = log_q_i.gather(1, tokens[:, None])[:, 0].double()
        invalid.append(torch.isnan(log_p_i.amax(-1)).any() | torch.isnan(log_q_i.amax(-1)).any())
        canvas[rows, prompt_length + position] = tokens
        order[:, step] = position
        log_p_path = log_p_path + log_p_v
        if adapted:  # weighted and resampled before the draw
            continue
        increment = (log_p_v / T - log_q_v).view(R, N)
        previous = log_weight
        log_weight = previous + increment
        # log Σ_n W_{t-1}^n w_t^n with W_{t-1} the normalised previous weights
        log_normalizer = log_normalizer + log_weight.logsumexp(-1) - previous.logsumexp(-1)
        ess = effective_sample_size(log_weight)
        ess_steps.append(ess)
        if step + 1 < len(steps):
            resample, ancestors, log_weight = _resample(log_weight, ess < ess_threshold * N, ref_tokens is None,
                                                        generator)
            source = (ancestors + offsets).reshape(-1)
            canvas, order = canvas[source], order[source]
            log_p_path, log_position = log_p_path[source], log_position[source]
        else:
            resample = torch.zeros(R, dtype=torch.bool, device=device)
            ancestors = identity
        resampled_steps.append(resample)
        ancestor_steps.append(ancestors)
        invalid.append(torch.isnan(log_weight).any() | torch.isneginf(log_weight.amax(-1)).any())
    if torch.stack(invalid).any():
        raise ValueError("smc_decode: NaN in the model's log-probabilities or weights, or every particle of a run "
                         "has zero target mass")
    return SMCResult(
        tokens=canvas[:, prompt_length:].reshape(R, N, gen_length).clone(),
        order=order.reshape(R, N, gen_length),
        log_weight=log_weight,
        log_normalizer=log_normalizer,
        log_p=log_p_path.view(R, N),
        log_position=log_position.view(R, N),
        ess=torch.stack(ess_steps, 1),
        resampled=torch.stack(resampled_steps, 1),
        ancestors=torch.stack(ancestor_steps, 1),
        nfe=meter.nfe - nfe_before,
        forward_rows=meter.forward_rows - rows_before,
    )


def _resample(log_weight: torch.Tensor, resample: torch.Tensor, unconditional: bool,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ancestors ``[R, N]`` of the runs flagged in ``resample [R]`` (systematic, or conditional on slot 0's
    path when not ``unconditional``; the identity elsewhere) and the log weights after it (reset to equal on
    those runs). The ancestors are drawn for every run, so the random stream does not depend on the flags."""
    drawn = systematic_resample(log_weight, generator) if unconditional else conditional_resample(log_weight, generator)
    identity = torch.arange(log_weight.shape[1], device=log_weight.device).expand_as(drawn)
    ancestors = torch.where(resample[:, None], drawn, identity)
    return resample, ancestors, torch.where(resample[:, None], torch.zeros_like(log_weight), log_weight)
