"""The `Denoiser` interface: what the samplers need from a masked diffusion LM.

A denoiser maps a partially masked canvas (prompt + response; masked positions hold
``mask_id``) to logits over the vocabulary at every position. Position ``i``'s logits
predict the token at position ``i`` (adapters for models that shift, such as Dream,
undo the shift). Any object with these members works: the protocol is structural.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> canvas = torch.full((2, 4), toy.mask_id)
    >>> toy(canvas).shape
    torch.Size([2, 4, 3])
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

MaxRows = int | str | None
"""A micro-batching setting: a positive int, ``"auto"`` (from free device memory) or ``None`` (no split)."""


@runtime_checkable
class Denoiser(Protocol):
    """A mask predictor: ``__call__(tokens [B, N], attention_mask=None) -> logits [B, N, V]``.

    Attributes:
        mask_id: the id that marks a masked position. It may lie outside ``[0, vocab_size)``
            (then the model cannot predict it); when it lies inside, samplers remove it from
            every predictive distribution, since committing a mask is meaningless.
        vocab_size: ``V``, the size of the logits' last dimension.
        eos_id, pad_id: optional special ids (``None`` when the model has none).
    """

    mask_id: int
    vocab_size: int

    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...


class HasVocabSize(Protocol):
    """What `row_bytes` needs of a denoiser at the least (its other widths are looked up optionally)."""

    @property
    def vocab_size(self) -> int: ...


def denoiser_device(denoiser: object) -> torch.device | None:
    """The device a denoiser computes on, when it can be told; ``None`` otherwise.

    Looks for a ``device`` attribute, then at the first parameter of a ``torch.nn.Module``.
    """
    device = getattr(denoiser, "device", None)
    if device is not None:
        return torch.device(device)
    if isinstance(denoiser, torch.nn.Module):
        for parameter in denoiser.parameters():
            return parameter.device
    return None


def check_logits(logits: object, batch: int, length: int, vocab_size: int) -> torch.Tensor:
    """Raise a ValueError naming the denoiser unless ``logits`` is a float ``[batch, length, V]``."""
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"denoiser returned {type(logits).__name__}, expected a logits tensor")
    expected = (batch, length, vocab_size)
    if tuple(logits.shape) != expected:
        raise ValueError(
            f"denoiser returned logits of shape {tuple(logits.shape)}, expected "
            f"[batch, sequence, vocab_size] = {list(expected)}"
        )
    if not logits.is_floating_point():
        raise ValueError(f"denoiser returned {logits.dtype} logits, expected a float dtype")
    return logits


def model_log_probs(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    """``log p`` over the vocabulary in float32, with the mask token removed (it is never an output).

    Whatever the model's dtype, the result is float32 on the logits' device; the input is not
    modified.

    >>> model_log_probs(torch.zeros(1, 3, dtype=torch.bfloat16), mask_id=2).exp()
    tensor([[0.5000, 0.5000, 0.0000]])
    """
    logits = logits.float()
    if 0 <= mask_id < logits.shape[-1]:
        # the index is made on the device: torch.tensor([mask_id], device=...) would copy from the
        # host and wait for the device at every decoding step
        index = torch.full((1,), mask_id, dtype=torch.long, device=logits.device)
        logits = logits.index_fill(-1, index, float("-inf"))
    return logits.log_softmax(-1)


def forward_in_chunks(
    denoiser: Denoiser, tokens: torch.Tensor, max_rows: int | None = None
) -> torch.Tensor:
    """Checked logits for ``tokens [B, N]`` in forward calls of at most ``max_rows`` rows.

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
    if max_rows is None or max_rows >= batch:
        return check_logits(denoiser(tokens), batch, length, vocab_size)
    if max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer or None, got {max_rows!r}")
    out: torch.Tensor | None = None
    for i in range(0, batch, max_rows):
        part = tokens[i : i + max_rows]
        logits = check_logits(denoiser(part), part.shape[0], length, vocab_size)
        if out is None:
            out = torch.empty((batch, length, vocab_size), dtype=logits.dtype, device=logits.device)
        out[i : i + part.shape[0]] = logits
    assert out is not None  # batch > max_rows >= 1, so the loop ran
    return out


# Bytes per logit entry a row costs around a forward call: the model-dtype head output, its float32
# copy (what denoisers return), and the float32 log-softmax and temporaries the samplers take of it.
LOGIT_BYTES = 2 + 4 + 4 + 4


def row_bytes(denoiser: HasVocabSize, row_length: int) -> int:
    """Estimated device bytes one row of ``row_length`` tokens needs during a forward call.

    Per token: ``vocab × LOGIT_BYTES`` for the logits, plus one layer's activations (the residual
    stream, query/key/value, the attention output, the gated MLP's three intermediate tensors; in
    the parameters' dtype) and a float32 attention-score row per head (SDPA's math path). Without
    gradients, layers free their activations as they go, so depth does not multiply them. Widths
    come from ``denoiser.config`` (a native `ArchitectureConfig`) or ``denoiser.model.config`` (a
    transformers config); an unknown architecture counts the logits only, doubled. An estimate for
    choosing micro-batches, not a bound.

    >>> from dllm_mcmc.denoisers.native import ArchitectureConfig
    >>> class Llada:
    ...     vocab_size = 126464
    ...     config = ArchitectureConfig(hidden=4096, layers=32, heads=32, kv_heads=32, head_dim=128,
    ...                                 intermediate=12288, vocab=126464, mask_id=126336)
    >>> round(row_bytes(Llada(), 384) / 2**20)  # MiB per row of a 128 + 256 canvas
    711
    """
    vocab = int(denoiser.vocab_size)
    config = getattr(denoiser, "config", None)
    if not hasattr(config, "hidden"):
        config = getattr(getattr(denoiser, "model", None), "config", None)
    hidden = getattr(config, "hidden", None) or getattr(config, "hidden_size", None)
    if not hidden:
        return 2 * row_length * vocab * LOGIT_BYTES
    intermediate = getattr(config, "intermediate", None) or getattr(config, "intermediate_size", None) or 4 * hidden
    heads = getattr(config, "heads", None) or getattr(config, "num_attention_heads", None) or 1
    element = _parameter_bytes(denoiser)
    activations = (6 * hidden + 3 * intermediate) * element + 4 * heads * row_length
    return row_length * (vocab * LOGIT_BYTES + activations)


def auto_max_rows(
    denoiser: HasVocabSize, row_length: int, free_bytes: int | None = None, fraction: float = 0.5
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
    return max(1, int(free_bytes * fraction) // row_bytes(denoiser, row_length))


def resolve_max_rows(denoiser: HasVocabSize, max_rows: MaxRows, row_length: int) -> int | None:
    """Validate a micro-batching setting and turn ``"auto"`` into a number (or ``None`` off CUDA).

    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> resolve_max_rows(toy, 8, 4), resolve_max_rows(toy, "auto", 4), resolve_max_rows(toy, None, 4)
    (8, None, None)
    """
    if max_rows is None:
        return None
    if max_rows == "auto":
        return auto_max_rows(denoiser, row_length)
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
