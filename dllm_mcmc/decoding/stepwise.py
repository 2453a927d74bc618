"""`stepwise_decode`: decoding with stepwise independent MH, global tempering one token at a time.

The sampler of Fang et al., "Locally Confident, Globally Stuck" (arXiv 2604.00375). It aims at the
globally tempered distribution ``π_T(x) ∝ p(x)^(1/T)`` (see `dllm_mcmc.target`) by correcting, at
every decoding step, the locally tempered token proposal towards the exact conditional of ``π_T``
at the chosen position ``i`` given the observed tokens ``x_O``:

    π_T(x_i = v | x_O) ∝ p_i(v | x_O)^(1/T) · S_T(v; x_O),
    S_T(v; x_O) = Σ_{completions y of the other masked positions} p(y | x_O, x_i = v)^(1/T).

Algorithm (``S`` rows decoded together, one token per step, ``K`` candidates per step):

1. One forward call of the fully masked canvas ``[S, N]`` gives the first step's conditionals.
2. At every step: ``log p_j`` (untempered, the mask token removed) at the masked positions of the
   current block; choose a position ``i`` with the rule, with probability ``r(i | state)``.
3. Draw ``K`` candidates ``v_1..v_K`` i.i.d. from ``q_i(v) ∝ p_i(v)^(1/τ)`` (Gumbel-max).
4. Fill each candidate in and run ONE forward call over the ``S·K`` candidate canvases.
5. Score every candidate with the log target weight and the log proposal

       lw(v) = log p_i(v) / T + log S(v),      lq(v) = log q_i(v),      w(v) = lw(v) − lq(v).

   ``log S`` (`dllm_mcmc.decoding.suffix`): ``suffix="mean_field"`` (the paper's; an **approximation**,
   exact only when the masked positions in scope are conditionally independent given the candidate
   canvas) uses the candidate's own forward call,

       log Ŝ_T(v) = Σ_{j masked, j ≠ i, j in scope} log Σ_u p_j(u | x_O, x_i = v)^(1/T);

   ``suffix="exact"`` enumerates ``S_T`` over all ``V^m`` completions of the ``m`` masked positions
   in scope by the chain rule left to right: an **oracle for testing** on tiny vocabularies, at
   ``m − 1`` further (deduplicated, chunked) forward calls per step. The scope is the current block
   (``suffix_scope="block"``: later blocks stay masked, marginalised) or the whole response
   (``"all"``, which the exact conditional of ``π_T`` needs; the same with one block).
6. Select one candidate (`dllm_mcmc.mh`). ``selection="mh"``: an independent MH chain over the
   candidates in order from ``v_1``, moving to ``v_k`` with probability ``min(1, exp(w(v_k) − w(v)))``:

       log a(v → v') = (1/T − 1/τ)(log p_i(v') − log p_i(v)) + log S(v') − log S(v).

   Its stationary law is ``q_i · exp(w) ∝ p_i^(1/T) · S``; after only ``K − 1`` moves from ``q_i``
   the selected token is **approximately** (not exactly) a draw from it. ``selection="sir"``:
   sampling-importance-resampling, one candidate drawn ``∝ exp(w)`` (also exact only as ``K → ∞``).
7. Commit it, and reuse the selected candidate's forward pass as the next step's conditionals: no
   extra sequential forward call.

With ``K = 1`` every step commits its single proposal: plain local tempering (decoding at ``τ``
with the rule), draw for draw the same as `dllm_mcmc.decode` with the same generator.

Cost (``L`` steps, no ``max_rows`` chunking; the last step needs no candidate call, as nothing
follows it): ``forward calls = L``, ``rows = S + (L − 1) · S · K``. ``suffix="exact"`` adds its
enumeration calls; ``dedupe=True`` pushes only the distinct candidate canvases (same calls, fewer rows,
same results up to the model's batch-dependence of floating point). The record is not a density: its
``log_p`` and ``log_position`` are those of the committed tokens and choices, not of the sampler's law.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> draw = stepwise_decode(toy, None, 4, temperature=0.5, target_temperature=0.5, num_candidates=8,
    ...                        num_samples=2, generator=torch.Generator().manual_seed(0))
    >>> draw.tokens.shape, draw.nfe, draw.forward_rows
    (torch.Size([2, 4]), 4, 50)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm_mcmc._checks import boolean, one_of, positive_float, positive_int
from dllm_mcmc.decoding.canvas import Prompt, generator_for, masked_canvas, padding_id, prompt_batch
from dllm_mcmc.decoding.config import Rule
from dllm_mcmc.decoding.rules import position_rule_of, proposal_log_probs, sample_tokens
from dllm_mcmc.decoding.suffix import exact_log_suffix, mean_field_log_suffix, suffix_counts
from dllm_mcmc.denoisers.base import Denoiser, model_log_probs
from dllm_mcmc.denoisers.batching import LogitWindow, MaxRows, forward_in_chunks, resolve_max_rows
from dllm_mcmc.denoisers.metered import MeteredDenoiser
from dllm_mcmc.mh import mh_scan, sir

SUFFIXES = ("mean_field", "exact")
SELECTIONS = ("mh", "sir")
SUFFIX_SCOPES = ("block", "all")
PADDING = -1  # left padding's id inside the stepwise canvases of a list of prompts (never a model id)


@dataclass(frozen=True)
class StepwiseDraw:
    """``S`` responses of one stepwise decode (not a density record: see the module docstring).

    Attributes:
        tokens: ``[S, L]`` response ids; ``order``: ``[S, L]`` the position committed at each step.
        log_position: ``[S]`` sum of the rule's log-probabilities of its choices (``log u(σ | x)``).
        log_p: ``[S]`` untempered chain rule ``Σ_t log p(x_σt | state_t)`` of the committed tokens.
        selection_stat: ``[S]`` per-step mean of the selection's statistic: for ``mh`` the fraction of
            accepted moves (1 when ``K = 1``), for ``sir`` the normalised ESS ``∈ [1/K, 1]``.
        nfe, forward_rows: forward calls made to the denoiser (micro-batches counted) and rows.
    """

    tokens: torch.Tensor
    order: torch.Tensor
    log_position: torch.Tensor
    log_p: torch.Tensor
    selection_stat: torch.Tensor
    nfe: int
    forward_rows: int


def check_stepwise_options(rule: str | Rule, gen_length: int, denoiser: Denoiser, *, num_candidates: int,
                           suffix: str, selection: str, suffix_scope: str, dedupe: bool,
                           max_suffix_completions: int) -> Rule:
    """Validate the options of `stepwise_decode` (the rule as a `Rule`, one token per step; an
    ``exact`` enumeration no larger than ``max_suffix_completions``) and return the rule."""
    positive_int("num_candidates", num_candidates)
    positive_int("max_suffix_completions", max_suffix_completions)
    one_of("suffix", suffix, SUFFIXES)
    one_of("selection", selection, SELECTIONS)
    one_of("suffix_scope", suffix_scope, SUFFIX_SCOPES)
    boolean("dedupe", dedupe)
    rule = Rule.of(rule)
    if rule.tokens_per_step != 1:
        raise ValueError(f"tokens_per_step={rule.tokens_per_step}: the stepwise sampler commits one token "
                         f"per step; use a rule with tokens_per_step=1")
    if rule.name == "confidence":
        raise ValueError("rule='confidence' has no position law r(i | state) to choose positions with")
    size = int(denoiser.vocab_size) - (0 <= int(denoiser.mask_id) < int(denoiser.vocab_size))
    longest = max(suffix_counts(rule.config().schedule(gen_length), gen_length, suffix_scope))
    if suffix == "exact" and size**longest > max_suffix_completions:
        raise ValueError(f"suffix='exact' would enumerate {size}^{longest} = {size**longest} completions per "
                         f"candidate (more than max_suffix_completions={max_suffix_completions}); "
                         f"use suffix='mean_field'")
    return rule


@torch.no_grad()  # decoding never needs gradients, whatever the denoiser
def stepwise_decode(
    denoiser: Denoiser,
    prompt: Prompt,
    gen_length: int,
    *,
    rule: str | Rule = "random",
    temperature: float = 1.0,
    target_temperature: float = 1.0,
    num_candidates: int = 16,
    suffix: str = "mean_field",
    selection: str = "mh",
    suffix_scope: str = "block",
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    max_rows: MaxRows = None,
    dedupe: bool = False,
    max_suffix_completions: int = 100_000,
) -> StepwiseDraw:
    """Decode ``num_samples`` responses with ``K = num_candidates`` candidates per step (module docstring).

    Args:
        denoiser, prompt, gen_length, num_samples, generator, max_rows: as in `dllm_mcmc.decode` (a list
            of prompts of different lengths is left-padded; every candidate canvas keeps its row's padding).
        rule: a rule name or a `Rule` (any rule but ``confidence``; ``tokens_per_step=1``).
        temperature: ``τ`` of the candidate proposal ``q_i ∝ p_i^(1/τ)``.
        target_temperature: ``T`` of the target ``p^(1/T)``.
        num_candidates: ``K`` (1 gives local tempering, i.e. `dllm_mcmc.decode` at ``τ``).
        suffix: ``"mean_field"`` (approximate, the paper's) or ``"exact"`` (oracle, tiny vocabularies).
        selection: ``"mh"`` (independent MH scan over the candidates) or ``"sir"``.
        suffix_scope: the masked positions the suffix covers, ``"block"`` or ``"all"``.
        dedupe: forward only the distinct candidate canvases (one host read per step to size them).
        max_suffix_completions: the largest ``V^m`` ``suffix="exact"`` may enumerate.
    """
    rule = check_stepwise_options(rule, gen_length, denoiser, num_candidates=num_candidates, suffix=suffix,
                                  selection=selection, suffix_scope=suffix_scope, dedupe=dedupe,
                                  max_suffix_completions=max_suffix_completions)
    positive_float("temperature", temperature)
    positive_float("target_temperature", target_temperature)
    positive_int("num_samples", num_samples)
    meter = denoiser if isinstance(denoiser, MeteredDenoiser) else MeteredDenoiser(denoiser)
    nfe_before, rows_before = meter.nfe, meter.forward_rows
    prompts, prompt_mask = prompt_batch(meter, prompt, num_samples)
    device, (num_rows, prompt_length) = prompts.device, prompts.shape
    pad = padding_id(meter)
    generator = generator_for(generator, device)
    logit_window = LogitWindow(prompt_length, prompt_length + gen_length)  # every call: the response's logits
    max_rows = resolve_max_rows(meter, max_rows, prompt_length + gen_length, logit_positions=logit_window)
    response_positions = logit_window.positions(device)
    mask_id, vocab_size, T = int(meter.mask_id), int(meter.vocab_size), float(target_temperature)
    steps = rule.config().schedule(gen_length)
    counts = suffix_counts(steps, gen_length, suffix_scope)
    chooser = position_rule_of(rule)
    tokens = (None if suffix == "mean_field" else
              torch.tensor([v for v in range(vocab_size) if v != mask_id], device=device))
    columns = torch.arange(gen_length, device=device)

    def forward(canvases: torch.Tensor) -> torch.Tensor:
        if prompt_mask is None:  # no padding: the denoiser is called without a mask
            return forward_in_chunks(meter, canvases, max_rows, logit_positions=response_positions)
        padding = canvases < 0  # left padding travels in the canvases as PADDING ids (see below)
        return forward_in_chunks(meter, canvases.masked_fill(padding, pad), max_rows, ~padding,
                                 logit_positions=response_positions)

    rows = torch.arange(num_rows, device=device)
    if prompt_mask is not None:
        # The padding is written into the canvas as a negative id, so that every canvas derived from a
        # row (candidates, deduplicated states, the exact suffix's completions) carries its row's
        # padding, and equal canvases of different padding never merge; `forward` turns it back into
        # the pad id and the attention mask.
        prompts = prompts.masked_fill(~prompt_mask, PADDING)
    canvas = masked_canvas(prompts, gen_length, mask_id)
    response = canvas[:, prompt_length:]  # a view: commits write through to the canvas
    logits = forward(canvas)  # [S, L, V] conditionals of the state (response positions)
    order = torch.empty(num_rows, gen_length, dtype=torch.long, device=device)
    log_position = torch.zeros(num_rows, device=device)
    chain_log_p = torch.zeros(num_rows, device=device)
    accept_sum = torch.zeros(num_rows, dtype=torch.float64, device=device)
    invalid = []  # flags checked once at the end: no host read per step
    for step, (start, end, _) in enumerate(steps):
        log_p = model_log_probs(logits[:, start:end], mask_id)  # [S, B, V]
        eligible = response[:, start:end] == mask_id
        chosen = chooser.choose(log_p, eligible, 1, generator)  # [S, 1], block-relative
        log_position = log_position + chooser.log_prob(log_p, eligible, chosen)
        position = chosen[:, 0] + start
        log_p_i = log_p[rows, chosen[:, 0]]  # [S, V]
        log_q_i = proposal_log_probs(log_p_i, temperature)
        candidates = sample_tokens(log_q_i[:, None].expand(num_rows, num_candidates, -1), generator)  # [S, K]
        log_p_c, log_q_c = log_p_i.gather(1, candidates), log_q_i.gather(1, candidates)
        invalid.append(torch.isnan(log_p.amax(-1)).any() | torch.isnan(log_q_i.amax(-1)).any())
        if step + 1 < len(steps):
            canvases, inverse = _candidate_canvases(canvas, position, candidates, prompt_length, vocab_size, dedupe)
            candidate_logits = forward(canvases)  # [U, L, V]
            # compared, not assigned: `in_scope[low:high] = True` copies a host scalar at every step
            in_scope = (columns >= start) & (columns < end) if suffix_scope == "block" else columns >= 0
            if suffix == "mean_field":
                scope = (canvases[:, prompt_length:] == mask_id) & in_scope
                log_suffix = mean_field_log_suffix(candidate_logits, scope, T, mask_id, counts[step])
            else:
                log_suffix = exact_log_suffix(canvases, candidate_logits, in_scope, T, mask_id, forward,
                                              tokens, counts[step])
            log_suffix = log_suffix[inverse]
        else:  # nothing left to complete, nothing left to condition on
            log_suffix = torch.zeros_like(log_p_c)
        log_weight = (log_p_c.double() / T + log_suffix.double()) - log_q_c.double()
        selected, accept, bad = (mh_scan if selection == "mh" else sir)(log_weight, generator)
        invalid.append(bad)
        accept_sum += accept
        response[rows, position] = candidates.gather(1, selected[:, None]).squeeze(1)
        order[:, step] = position
        chain_log_p = chain_log_p + log_p_c.gather(1, selected[:, None]).squeeze(1)
        if step + 1 < len(steps):  # the selected candidates' conditionals are the next state's
            logits = candidate_logits[inverse.gather(1, selected[:, None]).squeeze(1)]
            del candidate_logits  # frees the S·K candidate logits before the next step's call
    if torch.stack(invalid).any():
        raise ValueError(
            "stepwise: NaN in the model's log-probabilities or in the candidate weights (the "
            "denoiser returned NaN/+inf logits, or every candidate has zero target mass)"
        )
    return StepwiseDraw(tokens=response.clone(), order=order, log_position=log_position, log_p=chain_log_p,
                        selection_stat=(accept_sum / len(steps)).float(), nfe=meter.nfe - nfe_before,
                        forward_rows=meter.forward_rows - rows_before)


def _candidate_canvases(canvas, position, candidates, prompt_length, vocab_size, dedupe):
    """``canvas [S, N]`` with each of ``candidates [S, K]`` filled in at ``position [S]``: the ``U``
    canvases (``U = S·K`` unless ``dedupe``) and ``inverse [S, K]``, each candidate's row among them."""
    num_rows, num_candidates = candidates.shape
    if dedupe:
        # a candidate canvas is (state, position, token): deduplicate the S states by rows, then the
        # triples as one integer key (far cheaper than unique rows of S·K canvases)
        length = canvas.shape[1] - prompt_length
        states, state_of = torch.unique(canvas, dim=0, return_inverse=True)
        key = (state_of[:, None] * length + position[:, None]) * vocab_size + candidates
        keys, inverse = torch.unique(key.reshape(-1), return_inverse=True)
        canvases = states[keys // (length * vocab_size)]
        rows = torch.arange(keys.shape[0], device=keys.device)
        canvases[rows, prompt_length + (keys // vocab_size) % length] = keys % vocab_size
        return canvases, inverse.view(num_rows, num_candidates)
    canvases = canvas[:, None, :].repeat(1, num_candidates, 1)
    canvases[:, :, prompt_length:].scatter_(
        2, position[:, None, None].expand(-1, num_candidates, 1), candidates[..., None]
    )
    inverse = torch.arange(num_rows * num_candidates, device=canvas.device).view(num_rows, num_candidates)
    return canvases.reshape(num_rows * num_candidates, -1), inverse
