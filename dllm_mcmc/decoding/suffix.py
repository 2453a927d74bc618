"""Suffix-mass estimators of the stepwise sampler (`dllm_mcmc.decoding.stepwise`).

After a candidate token ``v`` is filled in at position ``i``, the exact conditional of the globally
tempered target ``π_T ∝ p^(1/T)`` weighs it by the tempered mass of every completion ``y`` of the
masked positions still in scope:

    S_T(v; x_O) = Σ_y p(y | x_O, x_i = v)^(1/T).

Two estimators of ``log S_T``, both per candidate canvas (a batch of ``U`` canvases at once):

- `mean_field_log_suffix` (the paper's choice, Fang et al. arXiv 2604.00375): an **approximation**
  from the canvas's own forward call,

      log Ŝ_T(v) = Σ_{j masked in scope} log Σ_u p_j(u | x_O, x_i = v)^(1/T);

  it is exact when the masked positions in scope are conditionally independent given the canvas
  (or when at most one is left).
- `exact_log_suffix`: ``log Σ_y p(y | ·)^(1/T)`` over all ``V^m`` completions of the ``m`` masked
  positions in scope, ``p(y | ·)`` by the chain rule left to right: exact, and costs ``m − 1``
  further forward calls over up to ``U · V^(m−1)`` canvases. An **oracle** for tiny vocabularies.

Both assume the same number of masked positions in scope in every canvas (true inside the stepwise
loop: one commit per step). ``T = 1`` gives ``log S_1 = 0`` for any consistent model.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> canvases = torch.tensor([[0, 3, 3, 3], [1, 3, 3, 3]])  # 3 is the mask id
    >>> logits, in_scope = toy(canvases), torch.ones(4, dtype=torch.bool)
    >>> scope = (canvases == toy.mask_id) & in_scope
    >>> mean_field_log_suffix(logits, scope, 0.5, toy.mask_id).shape
    torch.Size([2])
    >>> exact = exact_log_suffix(canvases, logits, in_scope, 0.5, toy.mask_id, forward=toy)
    >>> bool((exact <= 0).all())  # Σ_y p(y)^2 ≤ 1
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dllm_mcmc.denoisers.base import model_log_probs


def mean_field_log_suffix(
    logits: torch.Tensor,
    scope: torch.Tensor,
    target_temperature: float,
    mask_id: int,
    count: int | None = None,
) -> torch.Tensor:
    """``[U]`` ``Σ_{j in scope} log Σ_u p_j(u)^(1/T)`` (mean field: an approximation, see above).

    Args:
        logits: ``[U, L, V]`` response logits of the canvases.
        scope: ``[U, L]`` bool, the masked positions the suffix covers.
        target_temperature: ``T``.
        mask_id: removed from every ``p_j``.
        count: masked positions in scope per canvas, if the caller knows it (else read from
            ``scope``: one host read).
    """
    count = scope_count(scope, count)
    if count == 0:
        return torch.zeros(logits.shape[0], device=logits.device)
    index = scope_index(scope, count)
    picked = logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))
    return (model_log_probs(picked, mask_id) / target_temperature).logsumexp(-1).sum(-1)


def exact_log_suffix(
    canvases: torch.Tensor,
    logits: torch.Tensor,
    in_scope: torch.Tensor,
    target_temperature: float,
    mask_id: int,
    forward: Callable[[torch.Tensor], torch.Tensor],
    tokens: torch.Tensor | None = None,
    count: int | None = None,
) -> torch.Tensor:
    """``[U]`` float64 ``log Σ_y p(y | canvas)^(1/T)`` over every completion ``y`` of the masked
    positions in scope, ``p(y | ·)`` by the chain rule left to right (exact; an oracle).

    Args:
        canvases: ``[U, P + L]`` prompt and response of each canvas.
        logits: ``[U, L, V]`` their response logits (the first chain-rule level, already computed).
        in_scope: ``[L]`` bool, the response columns the suffix covers (its masked ones are summed).
        target_temperature: ``T``.
        mask_id: the mask id (never a completion token).
        forward: canvases ``[B, P + L]`` -> their response logits ``[B, L, V]`` (e.g. chunked model calls
            that run the head on the response only); called once per further level on the deduplicated
            canvases of that level.
        tokens: the token ids to enumerate (default: every id of the vocabulary but ``mask_id``).
        count: masked positions in scope per canvas, if known (else one host read).
    """
    num, width = canvases.shape
    prompt_length = width - logits.shape[1]
    scope = (canvases[:, prompt_length:] == mask_id) & in_scope
    count = scope_count(scope, count)
    if count == 0:
        return torch.zeros(num, dtype=torch.float64, device=canvases.device)
    if tokens is None:
        vocab = torch.arange(logits.shape[-1], device=canvases.device)
        tokens = vocab[vocab != mask_id]
    index = scope_index(scope, count)  # response positions, ascending per row
    size = len(tokens)
    states = canvases[:, None, :]  # [U, V^k, N]: the first k positions of the scope filled
    log_p_prefix = torch.zeros(num, 1, dtype=torch.float64, device=canvases.device)
    for k in range(count):
        if k == 0:  # the canvases' own forward call
            level_rows, level_logits = canvases, logits
            where = torch.arange(num, device=canvases.device)
            at = index[:, 0]
        else:
            level_rows, where = torch.unique(states.reshape(-1, width), dim=0, return_inverse=True)
            level_logits = forward(level_rows)
            # a distinct state's next position: its leftmost masked position in scope (the same
            # for every state it stands for, since they are equal canvases)
            masked = (level_rows[:, prompt_length:] == mask_id) & in_scope
            at = masked.int().argmax(-1)
        rows = torch.arange(level_rows.shape[0], device=canvases.device)
        step_log_p = model_log_probs(level_logits[rows, at], mask_id)[:, tokens]
        step_log_p = step_log_p[where].view(num, -1, size).double()
        log_p_prefix = (log_p_prefix[..., None] + step_log_p).reshape(num, -1)
        if k + 1 < count:
            states = states[:, :, None, :].repeat(1, 1, size, 1)
            positions = (index[:, k] + prompt_length).view(num, 1, 1, 1).expand(-1, states.shape[1], size, 1)
            fill = tokens.view(1, 1, size, 1).expand(num, states.shape[1], size, 1)
            states = states.scatter(3, positions, fill).reshape(num, -1, width)
    return (log_p_prefix / target_temperature).logsumexp(-1)


def suffix_counts(schedule: list[tuple[int, int, int]], gen_length: int, suffix_scope: str) -> list[int]:
    """Masked positions left in scope after each step's commit (one token per step, the same in
    every row): step ``t`` of block ``[start, end)`` leaves ``end − t − 1`` (``"block"``) or
    ``gen_length − t − 1`` (``"all"``).

    >>> suffix_counts([(0, 2, 1), (0, 2, 1), (2, 4, 1), (2, 4, 1)], 4, "block")
    [1, 0, 1, 0]
    """
    return [(gen_length if suffix_scope == "all" else end) - step - 1 for step, (_, end, _) in enumerate(schedule)]


def scope_count(scope: torch.Tensor, count: int | None = None) -> int:
    """Masked positions in scope per row, which must be the same in every row: ``count`` when the
    caller knows it (not checked), else read from ``scope [B, L]`` and checked (host reads)."""
    if count is not None:
        return count
    if scope.shape[0] == 0:
        return 0
    counts = scope.sum(1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"every canvas needs the same number of masked positions in scope, got {counts.tolist()}")
    return int(counts[0])


def scope_index(scope: torch.Tensor, count: int) -> torch.Tensor:
    """``[B, count]`` the positions where ``scope [B, L]`` is true, ascending, without a host read
    (a stable descending sort puts the true positions first, in their order).

    >>> scope_index(torch.tensor([[False, True, False, True]]), 2).tolist()
    [[1, 3]]
    """
    return scope.to(torch.uint8).argsort(dim=1, descending=True, stable=True)[:, :count]
