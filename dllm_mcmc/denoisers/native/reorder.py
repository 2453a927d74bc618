"""WeDLM's topological reordering of a canvas: observed tokens first, then masks, then padding.

For one row with valid positions ``V`` (all of them, or those the ``attention_mask`` keeps), observed set
``O = {j ∈ V : x_j ≠ m}`` and masked set ``M = V \\ O`` (``m`` the mask id), the physical order is

    π = (O ascending, M ascending, padding ascending),   slot(j) = π⁻¹(j),

so physical slot ``i`` holds token ``x_π(i)`` with rotary position ``pos(π(i))``, the logical position
counted from the row's first valid token (`token_positions`). Padding goes last: under causal attention
nothing valid comes after it, so it needs no key mask and a padded row is the unpadded row followed by
ignored slots.

Example:
    >>> r = reorder(torch.tensor([[7, 9, 8, 9]]), mask_id=9)
    >>> r.tokens.tolist(), r.positions.tolist(), r.slot.tolist(), r.observed.tolist()
    ([[7, 8, 9, 9]], [[0, 2, 1, 3]], [[0, 2, 1, 3]], [2])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm_mcmc.denoisers.native.transformer import token_positions


@dataclass(frozen=True)
class Reordering:
    """A batch of canvases in physical (reordered) form.

    Attributes:
        tokens, positions: ``[B, N]`` physical ids and their rotary (logical) positions.
        order: ``[B, N]`` the logical index at each physical slot (``π``).
        slot: ``[B, N]`` the physical slot of each logical index (``π⁻¹``).
        masked: ``[B, N]`` logical positions that are valid and hold the mask id.
        observed: ``[B]`` the number of valid unmasked tokens, ``|O|``: slots ``0..|O|-1``.
    """

    tokens: torch.Tensor
    positions: torch.Tensor
    order: torch.Tensor
    slot: torch.Tensor
    masked: torch.Tensor
    observed: torch.Tensor


def reorder(tokens: torch.Tensor, mask_id: int, attention_mask: torch.Tensor | None = None) -> Reordering:
    """The `Reordering` of canvases ``tokens [B, N]`` (``attention_mask``: ``False`` / 0 on left padding)."""
    batch, length = tokens.shape
    valid = torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    masked = valid & (tokens == mask_id)
    observed = valid & ~masked
    group = torch.where(observed, 0, torch.where(masked, 1, 2))
    # A stable sort keeps logical order inside each group: the permutation above, for every row at once.
    order = torch.sort(group, dim=1, stable=True).indices
    slot = torch.empty_like(order).scatter_(1, order, torch.arange(length, device=tokens.device).expand(batch, -1))
    positions = token_positions(tokens, attention_mask).expand(batch, -1)
    return Reordering(tokens=tokens.gather(1, order), positions=positions.gather(1, order), order=order,
                      slot=slot, masked=masked, observed=observed.sum(1))
