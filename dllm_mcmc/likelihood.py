"""Sequence log-likelihoods ``log p(x)`` of a dLLM, for the tempered target.

A masked diffusion LM's conditionals need not be consistent, so ``p(x)`` is not unique. Three
choices, all batched:

- ``order``: the chain rule along the decoding order that produced ``x``; it is the sum of the
  decoder's recorded ``log p`` steps and costs no forward pass (see `Trajectory.log_p`).
- `left_to_right_log_likelihood`: the chain rule along the fixed order ``0..L-1``,
  ``Σ_i log p(x_i | prompt, x_<i, rest masked)``: ``L`` rows per sequence in one batch.
- `elbo_log_likelihood`: **approximate**. LLaDA's lower-variance Monte-Carlo ELBO (Nie et al. 2025,
  arXiv 2502.09992, Algorithm 3): draw ``l ~ U{1..L}``, mask ``l`` positions uniformly, and average
  ``(L / l) Σ_{i masked} log p(x_i | unmasked)``. It is a noisy lower bound of ``log p(x)``.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> x = toy.sequences[:2]
    >>> ll = left_to_right_log_likelihood(toy, torch.zeros(2, 0, dtype=torch.long), x)
    >>> bool(torch.allclose(ll, toy.log_prob(x), atol=1e-5))
    True
"""

from __future__ import annotations

import torch

from dllm_mcmc.decoding.canvas import canvas_attention
from dllm_mcmc.denoisers.base import Denoiser, model_log_probs
from dllm_mcmc.denoisers.batching import LogitWindow, MaxRows, forward_in_chunks, resolve_max_rows

LIKELIHOODS = ("order", "left_to_right", "elbo")


def left_to_right_log_likelihood(
    denoiser: Denoiser, prompt_rows: torch.Tensor, tokens: torch.Tensor, max_rows: MaxRows = None,
    prompt_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B]`` chain-rule log-likelihood of ``tokens [B, L]`` after ``prompt_rows [B, P]`` along positions
    ``0..L-1``; its ``B·L`` rows go through the model in calls of at most ``max_rows`` rows (as in
    `dllm_mcmc.decode`). ``prompt_mask [B, P]`` (``False`` on left padding; see
    `dllm_mcmc.decoding.canvas.prompt_batch`) travels with every row built from a prompt row."""
    batch, length = tokens.shape
    reveal = torch.arange(length, device=tokens.device)
    # row (b, i) shows x_<i and masks x_>=i
    hidden = reveal[None, :] >= reveal[:, None]  # [L(i), L(position)]
    responses = tokens[:, None, :].masked_fill(hidden[None], int(denoiser.mask_id))
    canvases = torch.cat(
        [prompt_rows[:, None, :].expand(-1, length, -1), responses], dim=-1
    ).reshape(batch * length, -1)
    return _masked_token_log_probs(denoiser, canvases, prompt_rows.shape[1], tokens, length, max_rows,
                                   torch.eye(length, dtype=torch.bool, device=tokens.device)[None],
                                   attention=_expanded_attention(prompt_mask, length, length))


def elbo_log_likelihood(
    denoiser: Denoiser,
    prompt_rows: torch.Tensor,
    tokens: torch.Tensor,
    num_samples: int,
    generator: torch.Generator,
    max_rows: MaxRows = None,
    prompt_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B]`` Monte-Carlo ELBO of ``tokens [B, L]`` with ``num_samples`` maskings each (approximate);
    ``prompt_mask`` as in `left_to_right_log_likelihood`."""
    batch, length = tokens.shape
    shape = (batch, num_samples)
    masked_count = torch.randint(1, length + 1, shape, generator=generator, device=tokens.device)
    ranks = torch.rand(*shape, length, generator=generator, device=tokens.device).argsort(-1).argsort(-1)
    hidden = ranks < masked_count[..., None]  # l uniformly chosen positions per masking
    responses = tokens[:, None, :].masked_fill(hidden, int(denoiser.mask_id))
    canvases = torch.cat(
        [prompt_rows[:, None, :].expand(-1, num_samples, -1), responses], dim=-1
    ).reshape(batch * num_samples, -1)
    weights = length / masked_count.float()
    per_masking = _masked_token_log_probs(
        denoiser, canvases, prompt_rows.shape[1], tokens, num_samples, max_rows, hidden, per_row=True,
        attention=_expanded_attention(prompt_mask, num_samples, length),
    )
    return (weights * per_masking).mean(-1)


def _expanded_attention(prompt_mask: torch.Tensor | None, rows_per_sequence: int, length: int) -> torch.Tensor | None:
    """The canvas attention mask of ``rows_per_sequence`` rows per prompt row (``None``: no padding)."""
    if prompt_mask is None:
        return None
    attention = canvas_attention(prompt_mask, length)
    assert attention is not None
    return attention.repeat_interleave(rows_per_sequence, dim=0)


@torch.no_grad()  # decoding never needs gradients, whatever the denoiser
def _masked_token_log_probs(
    denoiser, canvases, prompt_length, tokens, rows_per_sequence, max_rows, counted, per_row=False, attention=None
):
    """Σ over ``counted`` positions of ``log p(x_i | canvas)``, for each of the expanded rows."""
    batch, length = tokens.shape
    response = LogitWindow(prompt_length, canvases.shape[1])  # the logits of the response, [B·rows, L, V]
    max_rows = resolve_max_rows(denoiser, max_rows, canvases.shape[1], logit_positions=response)
    logits = forward_in_chunks(denoiser, canvases, max_rows, attention, logit_positions=response)
    log_p = model_log_probs(logits, int(denoiser.mask_id)).reshape(batch, rows_per_sequence, length, -1)
    token_log_p = log_p.gather(-1, tokens[:, None, :, None].expand(-1, rows_per_sequence, -1, 1)).squeeze(-1)
    token_log_p = token_log_p.masked_fill(~counted, 0.0).sum(-1)  # [B, rows]
    return token_log_p if per_row else token_log_p.sum(-1)
