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


@runtime_checkable
class Denoiser(Protocol):
    """A mask predictor: ``__call__(tokens [B, N], attention_mask=None) -> logits [B, N, V]``.

    Attributes:
        mask_id: the id that marks a masked position. It may lie outside ``[0, vocab_size)``
            (then the model cannot predict it); when it lies inside, samplers remove it from
            every predictive distribution, since committing a mask is meaningless.
        vocab_size: ``V``, the size of the logits' last dimension.
        eos_id, pad_id: optional special ids (``None`` when the model has none).

    ``attention_mask [B, N]`` (bool or 0/1) is passed only for left-padded rows (prompts of different
    lengths, `dllm_mcmc.decoding.canvas.prompt_batch`): it is ``False`` on the padding, and a row's
    logits at its real positions must then equal those of the row alone (padding hidden from every
    query, positions counted from the row's first real token). Unpadded batches are called without it.

    Optional: a denoiser with ``accepts_logit_positions = True`` also takes ``logit_positions`` (a 1-D index
    shared by the rows) and returns logits ``[B, K, V]`` there only, running its output head at those
    positions alone (`dllm_mcmc.denoisers.batching.forward_in_chunks`; the native models do).
    """

    mask_id: int
    vocab_size: int

    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...


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
