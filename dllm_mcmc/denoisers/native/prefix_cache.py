"""An exact key-value cache for a causal stack run on reordered canvases (WeDLM's any-order decoding).

Why it is exact. Under causal attention the keys and values at physical slot ``i`` are a function of the
``(token, position)`` pairs at slots ``0..i`` only. After WeDLM's reordering (`reorder`) the first
``|O|`` slots hold the observed tokens in logical order, so two canvases whose observed sequences agree on
their first ``l`` pairs have the same keys and values at slots ``0..l-1``, whatever their masks. The cache
keeps the keys and values of the previous call's rows; a new row reuses those of the entry sharing its
longest such common prefix, found by comparing the token ids and positions themselves (no hashing), so a
reuse can never be wrong; only slots after the reused prefix go through the stack again. For
left-to-right decoding that is the prompt and every committed token; for a random order it is the
observed tokens left of the leftmost new commit.

One call. Identical rows are computed once (`unique_rows`). The rows' own longest common observed prefix
``c`` (a prompt, the state shared by the K candidates of a stepwise move) is computed once, with batch
one, when it extends the reuse by at least `SHARED_PASS_MIN` slots. All rows then resume together from
``s = max(r, c)`` (or ``r``), where ``r`` is the smallest reuse among them: rows decoded in lockstep (left
to right) gain most; a row that could reuse more than ``r`` recomputes the difference, which costs time,
never exactness.

Memory is bounded: only the last call's keys and values are kept (``layers × 2 × rows × kv_heads × N ×
head_dim`` elements, in the model dtype), replaced at every call. A call split into micro-batches
(``max_rows``) keeps the last part only, so later parts of the next call find less to reuse.

Example:
    >>> from dllm_mcmc.denoisers.native.transformer import ArchitectureConfig, BidirectionalTransformer
    >>> config = ArchitectureConfig(hidden=16, layers=1, heads=2, kv_heads=1, head_dim=8,
    ...                             intermediate=32, vocab=11, mask_id=10, causal=True)
    >>> model = BidirectionalTransformer(config).eval()
    >>> cache = PrefixCache()
    >>> tokens, positions = torch.tensor([[1, 2, 3, 10]]), torch.tensor([[0, 1, 2, 3]])
    >>> with torch.no_grad():
    ...     first, _ = cache.run(model, tokens, positions, torch.tensor([3]))
    ...     again, start = cache.run(model, tokens, positions, torch.tensor([3]))
    >>> start, bool(torch.allclose(again, first[:, start:], atol=1e-6))
    (3, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm_mcmc.denoisers.native.transformer import BidirectionalTransformer, KeyValues

SHARED_PASS_MIN = 8
"""Fewest shared slots worth a pass of their own: a pass reads every weight once, which for a few tokens
costs more than recomputing them in every row of the main pass."""


@dataclass
class CacheStats:
    """Counters over the calls since creation or `PrefixCache.clear`.

    Attributes:
        calls: forward calls.
        unique_rows: distinct rows computed.
        computed_tokens: token slots pushed through the stack.
        reused_tokens: slots whose keys and values came from the previous call (per row).
        rows, requested_tokens: the rows asked for and rows × length, what calls without cache or
            deduplication compute (counted by `WeDLMDenoiser`, which removes the duplicates before `run`).
    """

    calls: int = 0
    rows: int = 0
    unique_rows: int = 0
    computed_tokens: int = 0
    requested_tokens: int = 0
    reused_tokens: int = 0


@dataclass(frozen=True)
class _Entries:
    tokens: torch.Tensor  # [E, N] physical ids
    positions: torch.Tensor  # [E, N]
    observed: torch.Tensor  # [E] slots 0..observed-1 are reusable
    kv: list[KeyValues]  # per layer, [E or 1, kv_heads, N, head_dim]


def common_prefix(equal: torch.Tensor) -> torch.Tensor:
    """Length of the leading run of ``True`` along the last dimension.

    >>> common_prefix(torch.tensor([[True, True, False, True], [False, True, True, True]])).tolist()
    [2, 0]
    """
    return equal.long().cumprod(-1).sum(-1)


def unique_rows(tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Distinct canvases: ``(tokens [U, N], attention_mask [U, N] or None, inverse [B])``, row ``b`` being
    distinct row ``inverse[b]``. Padding is compared as padding, whatever id it holds (it becomes 0).

    >>> rows, _, inverse = unique_rows(torch.tensor([[4, 5], [1, 2], [4, 5]]))
    >>> rows.tolist(), inverse.tolist()
    ([[1, 2], [4, 5]], [1, 0, 1])
    """
    key = tokens if attention_mask is None else torch.where(attention_mask.bool(), tokens, -1)
    rows, inverse = torch.unique(key, dim=0, return_inverse=True)
    if attention_mask is None:
        return rows, None, inverse
    return rows.clamp_min(0), rows >= 0, inverse


class PrefixCache:
    """The keys and values of the last call's rows, and the computation that reuses them (`run`).

    Attributes:
        stats: a `CacheStats`.
    """

    def __init__(self) -> None:
        self._entries: _Entries | None = None
        self.stats = CacheStats()

    def clear(self) -> None:
        """Forget the stored keys and values and reset the counters."""
        self._entries = None
        self.stats = CacheStats()

    def lookup(self, tokens: torch.Tensor, positions: torch.Tensor, observed: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """For each row, ``(entry, length)``: the stored row sharing the longest observed prefix, and its length."""
        rows = tokens.shape[0]
        none = torch.zeros(rows, dtype=torch.long, device=tokens.device)
        entries = self._entries
        if entries is None or entries.tokens.device != tokens.device:
            return none, none
        width = min(tokens.shape[1], entries.tokens.shape[1])
        equal = ((tokens[:, None, :width] == entries.tokens[None, :, :width])
                 & (positions[:, None, :width] == entries.positions[None, :, :width]))
        # Only observed slots are reused: every mask's output is needed, and computing it computes its
        # keys and values anyway (the stored row's limit is implied by the token comparison; kept for clarity).
        limit = torch.minimum(observed[:, None], entries.observed[None, :])
        equal &= torch.arange(width, device=tokens.device) < limit[..., None]
        length, entry = common_prefix(equal).max(dim=1)
        return entry, length

    @torch.no_grad()
    def run(self, model: BidirectionalTransformer, tokens: torch.Tensor, positions: torch.Tensor,
            observed: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Hidden states of physical slots ``start..N-1`` for reordered rows, reusing stored keys and values.

        Args:
            model: a causal stack (``config.causal``).
            tokens, positions: ``[U, N]`` physical ids and rotary positions (`Reordering`), padding last.
            observed: ``[U]`` observed slots per row; every masked slot comes after them.

        Returns:
            ``(hidden [U, N - start, hidden], start)`` with ``start <= min(observed)``, so every masked slot is
            covered; ``hidden`` is the last block's output before the final norm. Stores the rows' keys and
            values for the next call. Reads the device once (the lengths decide the shapes).
        """
        rows, length = tokens.shape
        width = model.config.hidden
        self.stats.calls += 1
        self.stats.unique_rows += rows
        if rows == 0 or length == 0:
            return tokens.new_zeros((rows, 0, width), dtype=model.embed.weight.dtype), 0
        dtype = model.embed.weight.dtype
        if self._entries is not None and self._entries.kv[0][0].dtype != dtype:
            self._entries = None  # the model was cast since: its old keys and values do not fit
        shared = ((tokens == tokens[:1]) & (positions == positions[:1])).all(0)
        shared &= torch.arange(length, device=tokens.device) < observed.min()
        entry, reuse = self.lookup(tokens, positions, observed)
        # The one host read: both lengths decide the shapes below.
        common, reused = (int(v) for v in torch.stack([common_prefix(shared), reuse.min()]).tolist())
        past: list[KeyValues] | None = None
        entries = self._entries
        if common < reused:
            assert entries is not None  # reused > 0 comes from an entry
            # The rows differ inside what they can reuse: each takes its own entry's keys and values.
            past = [(k[entry, :, :reused], v[entry, :, :reused]) for k, v in entries.kv]
            start = reused
        else:
            if entries is not None and reused:
                # The rows agree up to `common` >= `reused`: the first row's entry serves them all.
                first = entry[:1]
                past = [(k[first, :, :reused], v[first, :, :reused]) for k, v in entries.kv]
            start = reused
            if rows > 1 and common - reused >= SHARED_PASS_MIN:  # the rows' shared prefix, once, batch one
                _, past = model.hidden_states(tokens[:1, reused:common], positions[:1, reused:common],
                                              past=past, keep_kv=True)
                self.stats.computed_tokens += common - reused
                start = common
        self.stats.reused_tokens += rows * reused
        if start < length:
            hidden, kv = model.hidden_states(tokens[:, start:], positions[:, start:], past=past, keep_kv=True)
            self.stats.computed_tokens += rows * (length - start)
        else:  # every slot observed and known: nothing to compute, nothing to predict
            assert past is not None  # start = length > 0 came from a past
            hidden = tokens.new_zeros((rows, 0, width), dtype=dtype)
            kv = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in past]
        self._entries = _Entries(tokens, positions, observed, kv)
        return hidden, start
