"""Micro-batching: split a forward call into calls of at most ``max_rows`` rows, and size ``max_rows``
from free device memory (``"auto"``). Results do not depend on the split (beyond the model's
batch-dependence of floating point); `nfe` counts logical calls, the meter every physical one.

Where a caller needs logits at some positions only (a block, the response), it says so once, as a
`LogitWindow`: the forward call (`forward_in_chunks`) computes logits there and the memory estimate
(`resolve_max_rows`, `auto_max_rows`, `row_bytes`) counts that many logits per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from dllm_mcmc.denoisers.base import Denoiser, check_logits, denoiser_device

MaxRows = int | str | None
"""A micro-batching setting: a positive int, ``"auto"`` (from free device memory) or ``None`` (no split)."""


def accepts_logit_positions(denoiser: object) -> bool:
    """Whether ``denoiser(tokens, attention_mask, logit_positions=...)`` returns logits at those positions only
    (an ``accepts_logit_positions = True`` attribute; the native LLaDA, Dream and WeDLM denoisers have it)."""
    return bool(getattr(denoiser, "accepts_logit_positions", False))


@dataclass(frozen=True)
class LogitWindow:
    """The positions ``[start, stop)`` of every row at which a forward call needs logits (the rest of the
    row is context only): `forward_in_chunks` computes logits there (`positions`) and the memory estimate
    counts `width` logits per row.

    >>> window = LogitWindow(3, 7)  # the 4-token response after a 3-token prompt
    >>> window.width, window.positions().tolist()
    (4, [3, 4, 5, 6])
    """

    start: int
    stop: int

    def __post_init__(self) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.start, self.stop)) or \
                not 0 <= self.start <= self.stop:
            raise ValueError(f"a logit window needs integers 0 <= start <= stop, got [{self.start!r}, {self.stop!r})")

    @property
    def width(self) -> int:
        """Logits per row."""
        return self.stop - self.start

    def positions(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The window as a 1-D index (what a denoiser that `accepts_logit_positions` takes)."""
        return torch.arange(self.start, self.stop, device=device)


LogitWindows = LogitWindow | Sequence[LogitWindow] | None
"""The logits a memory estimate counts per row: one window (every call's), the windows of a run's calls in
turn (the widest counts), or ``None`` (every position)."""


def _logit_width(windows: LogitWindows, row_length: int) -> int:
    if windows is None:
        return row_length
    if isinstance(windows, LogitWindow):
        return windows.width
    return max((window.width for window in windows), default=0)


class HasVocabSize(Protocol):
    """What `row_bytes` needs of a denoiser at the least (its other widths are looked up optionally)."""

    @property
    def vocab_size(self) -> int: ...


def forward_in_chunks(
    denoiser: Denoiser, tokens: torch.Tensor, max_rows: int | None = None,
    attention_mask: torch.Tensor | None = None, logit_positions: torch.Tensor | LogitWindow | None = None,
) -> torch.Tensor:
    """Checked logits for ``tokens [B, N]`` in forward calls of at most ``max_rows`` rows.

    ``attention_mask [B, N]`` (``False`` on left padding, see `dllm_mcmc.decoding.canvas`) is split
    alongside the rows and passed to the denoiser; ``None`` calls ``denoiser(tokens)`` alone.

    ``logit_positions`` (a `LogitWindow`, or any 1-D index into ``[0, N)``, shared by the rows; ``None``:
    every position) asks for logits ``[B, K, V]`` at those positions only. A denoiser that
    `accepts_logit_positions` runs its output head there alone (for LLaDA-8B at 128 + 256 tokens the full
    float32 logits are ~190 MB per row); any other denoiser computes every position and the positions are
    selected after the call.

    The one place forward calls are split into micro-batches (decode, the kernels and the
    likelihoods all call it). ``None`` makes one call. The parts are written into one preallocated
    output, so the peak is the full logits plus one part, not twice the full logits. Every row is
    computed as it would be alone or in any batch (a denoiser's rows are independent), so splitting
    changes no result beyond the model's batch-dependence of floating point.

    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> canvas = torch.full((5, 4), toy.mask_id)
    >>> torch.equal(forward_in_chunks(toy, canvas, max_rows=2), forward_in_chunks(toy, canvas))
    True
    """
    batch, length = tokens.shape
    vocab_size = int(denoiser.vocab_size)
    if attention_mask is not None and tuple(attention_mask.shape) != (batch, length):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {[batch, length]}")
    out_length = length  # of the logits returned
    if isinstance(logit_positions, LogitWindow):
        if logit_positions.stop > length:
            raise ValueError(f"logit_positions {logit_positions} reach past the rows' {length} tokens")
        logit_positions = logit_positions.positions(tokens.device)
    if logit_positions is not None:
        if logit_positions.dim() != 1 or logit_positions.is_floating_point():
            raise ValueError(f"logit_positions must be a 1-D integer tensor, got shape {tuple(logit_positions.shape)}")
        out_length = logit_positions.shape[0]
    passes_positions = logit_positions is not None and accepts_logit_positions(denoiser)

    def call(rows: slice | None) -> torch.Tensor:
        part = tokens if rows is None else tokens[rows]
        mask = attention_mask if rows is None or attention_mask is None else attention_mask[rows]
        if passes_positions:
            return denoiser(part, mask, logit_positions=logit_positions)  # type: ignore[call-arg]
        # the call every unpadded batch makes has the tokens alone
        logits = denoiser(part) if mask is None else denoiser(part, mask)
        if logit_positions is None:
            return logits
        return check_logits(logits, part.shape[0], length, vocab_size).index_select(1, logit_positions)

    if max_rows is None or max_rows >= batch:
        return check_logits(call(None), batch, out_length, vocab_size)
    if max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer or None, got {max_rows!r}")
    out: torch.Tensor | None = None
    for i in range(0, batch, max_rows):
        part = tokens[i : i + max_rows]
        logits = check_logits(call(slice(i, i + max_rows)), part.shape[0], out_length, vocab_size)
        if out is None:
            out = torch.empty((batch, out_length, vocab_size), dtype=logits.dtype, device=logits.device)
        out[i : i + part.shape[0]] = logits
    assert out is not None  # batch > max_rows >= 1, so the loop ran
    return out


# Bytes per logit entry a row costs around a forward call: the model-dtype head output, its float32
# copy (what denoisers return), and the float32 log-softmax and temporaries the samplers take of it.
LOGIT_BYTES = 2 + 4 + 4 + 4


def row_bytes(denoiser: HasVocabSize, row_length: int, logit_positions: LogitWindows = None) -> int:
    """Estimated device bytes one row of ``row_length`` tokens needs during a forward call.

    Per token with logits (``logit_positions``: the window(s) the calls pass to `forward_in_chunks`, the
    widest counting; ``None``: all ``row_length``; fewer only when the denoiser `accepts_logit_positions`,
    otherwise it computes them all): ``vocab × LOGIT_BYTES``. Per
    token of the row: one layer's activations (the residual stream, query/key/value, the attention
    output, the gated MLP's three intermediate tensors; in the parameters' dtype) and a float32
    attention-score row per head (SDPA's math path). Without gradients, layers free their activations
    as they go, so depth does not multiply them. Widths come from ``denoiser.config`` (a native
    `ArchitectureConfig`) or ``denoiser.model.config`` (a transformers config); an unknown architecture
    counts the logits only, doubled. An estimate for choosing micro-batches, not a bound.

    >>> from dllm_mcmc.denoisers.native import ArchitectureConfig
    >>> class Llada:
    ...     vocab_size = 126464
    ...     config = ArchitectureConfig(hidden=4096, layers=32, heads=32, kv_heads=32, head_dim=128,
    ...                                 intermediate=12288, vocab=126464, mask_id=126336)
    >>> round(row_bytes(Llada(), 384) / 2**20)  # MiB per row of a 128 + 256 canvas
    711
    >>> Llada.accepts_logit_positions = True
    >>> round(row_bytes(Llada(), 384, LogitWindow(128, 160)) / 2**20)  # logits of one 32-token block only
    117
    """
    vocab = int(denoiser.vocab_size)
    logits_per_row = _logit_width(logit_positions, row_length) if accepts_logit_positions(denoiser) else row_length
    config = getattr(denoiser, "config", None)
    if not hasattr(config, "hidden"):
        config = getattr(getattr(denoiser, "model", None), "config", None)
    hidden = getattr(config, "hidden", None) or getattr(config, "hidden_size", None)
    if not hidden:
        return 2 * logits_per_row * vocab * LOGIT_BYTES
    intermediate = getattr(config, "intermediate", None) or getattr(config, "intermediate_size", None) or 4 * hidden
    heads = getattr(config, "heads", None) or getattr(config, "num_attention_heads", None) or 1
    element = _parameter_bytes(denoiser)
    activations = (6 * hidden + 3 * intermediate) * element + 4 * heads * row_length
    return logits_per_row * vocab * LOGIT_BYTES + row_length * activations


def auto_max_rows(
    denoiser: HasVocabSize, row_length: int, free_bytes: int | None = None, fraction: float = 0.5,
    logit_positions: LogitWindows = None,
) -> int | None:
    """Rows per forward call that fit ``fraction`` of the free device memory, by `row_bytes`.

    ``free_bytes=None`` asks the device (``torch.cuda.mem_get_info`` on CUDA); on any other device
    there is nothing to ask and the answer is ``None`` (no split). At least 1.

    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> auto_max_rows(toy, 4), auto_max_rows(toy, 4, free_bytes=10_000)
    (None, 14)
    """
    if free_bytes is None:
        device = denoiser_device(denoiser)
        if device is None or device.type != "cuda":
            return None
        free_bytes, _ = torch.cuda.mem_get_info(device)
    return max(1, int(free_bytes * fraction) // row_bytes(denoiser, row_length, logit_positions))


def resolve_max_rows(denoiser: HasVocabSize, max_rows: MaxRows, row_length: int,
                     logit_positions: LogitWindows = None) -> int | None:
    """Validate a micro-batching setting and turn ``"auto"`` into a number (or ``None`` off CUDA), counting
    the logits of ``logit_positions`` per row: the window(s) the run's forward calls will pass to
    `forward_in_chunks` (``None``: every position; see `row_bytes`).

    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> resolve_max_rows(toy, 8, 4), resolve_max_rows(toy, "auto", 4), resolve_max_rows(toy, None, 4)
    (8, None, None)
    """
    if max_rows is None:
        return None
    if max_rows == "auto":
        return auto_max_rows(denoiser, row_length, logit_positions=logit_positions)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, 'auto' or None, got {max_rows!r}")
    return max_rows


def _parameter_bytes(denoiser: object) -> int:
    """Bytes per element of the denoiser's parameters (2 when it cannot be told)."""
    dtype = getattr(denoiser, "dtype", None)
    if not isinstance(dtype, torch.dtype):
        model = denoiser if isinstance(denoiser, torch.nn.Module) else getattr(denoiser, "model", None)
        parameter = next(model.parameters(), None) if isinstance(model, torch.nn.Module) else None
        dtype = parameter.dtype if parameter is not None else torch.bfloat16
    return torch.empty((), dtype=dtype).element_size()
