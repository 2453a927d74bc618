"""The canvas every decoder starts from: prompt rows, then the masked response; and the generator
that draws on the denoiser's device.

Prompts of different lengths (a list of 1-D id tensors, one per row) are left-padded to the longest
(`prompt_batch`): the rows get a boolean ``prompt_mask`` (``False`` on padding) and the canvas an
attention mask (`canvas_attention`) that the decoders pass to the denoiser, which hides the padding and
counts each row's positions from its first real token. Equal lengths (and every ``None``, ``[P]`` or
``[S, P]`` tensor) give no mask at all: the denoiser is called exactly as without this feature.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> masked_canvas(prompt_rows(toy, None, 2), 4, toy.mask_id).tolist()
    [[3, 3, 3, 3], [3, 3, 3, 3]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch

from dllm_mcmc.denoisers.base import Denoiser, denoiser_device


def masked_canvas(prompts: torch.Tensor, gen_length: int, mask_id: int) -> torch.Tensor:
    """``[S, P + L]``: each prompt row followed by ``gen_length`` mask tokens."""
    masks = torch.full((prompts.shape[0], gen_length), mask_id, dtype=torch.long, device=prompts.device)
    return torch.cat([prompts, masks], dim=1)


Prompt = torch.Tensor | Sequence[torch.Tensor] | None
"""What every decoder accepts as a prompt: ``None``, ``[P]`` ids shared by all rows, ``[S, P]`` ids one
row each, or a list of ``S`` 1-D id tensors, one per row, of any lengths (left-padded, see `prompt_batch`)."""


def padding_id(denoiser: Denoiser) -> int:
    """The id written into left padding: the denoiser's ``pad_id`` when it is a valid non-mask id, else
    the smallest such id. Its value never matters (padding is hidden by the attention mask); it only
    has to be a legal input id.

    >>> from dllm_mcmc import ExactDenoiser
    >>> padding_id(ExactDenoiser.random(vocab_size=3, length=2)), padding_id(ExactDenoiser.random(3, 2, pad_id=2))
    (0, 2)
    """
    mask_id, vocab_size = int(denoiser.mask_id), int(denoiser.vocab_size)
    pad = getattr(denoiser, "pad_id", None)
    if isinstance(pad, int) and not isinstance(pad, bool) and 0 <= pad < vocab_size and pad != mask_id:
        return pad
    return 0 if mask_id != 0 else 1


def prompt_batch(denoiser: Denoiser, prompt: Prompt, num_rows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate ``prompt`` and return ``(ids [num_rows, P], prompt_mask)`` on the denoiser's device.

    ``prompt_mask`` is ``None`` unless ``prompt`` is a list of ``num_rows`` 1-D id tensors of different
    lengths; then ``ids`` holds each prompt right-aligned after ``padding_id`` fill (left padding) up to
    the longest length ``P`` and ``prompt_mask [num_rows, P]`` is ``False`` on the padding. A list of
    equal lengths is stacked into the ``[S, P]`` tensor it equals (no mask).

    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=2)
    >>> ids, mask = prompt_batch(toy, [torch.tensor([1, 2]), torch.tensor([2])], 2)
    >>> ids.tolist(), mask.tolist()
    ([[1, 2], [0, 2]], [[True, True], [False, True]])
    """
    if not isinstance(prompt, (list, tuple)):
        return prompt_rows(denoiser, cast("torch.Tensor | None", prompt), num_rows), None
    if len(prompt) != num_rows:
        raise ValueError(
            f"prompt: a list holds one prompt per row; got {len(prompt)} prompts for {num_rows} rows "
            f"(num_samples, or the kernel's rows)"
        )
    device = denoiser_device(denoiser)
    for i, row in enumerate(prompt):
        if not isinstance(row, torch.Tensor) or row.dim() != 1:
            shape = tuple(row.shape) if isinstance(row, torch.Tensor) else type(row).__name__
            raise ValueError(f"prompt[{i}]: each prompt of a list must be a 1-D LongTensor of ids, got {shape}")
    lengths = [int(row.shape[0]) for row in prompt]
    if len(set(lengths)) == 1:  # nothing to pad: the [S, P] tensor it equals, on today's path
        first = prompt[0]
        if any(row.device != first.device for row in prompt):
            raise ValueError(f"prompt: the prompts of a list must share one device (the denoiser's, {device})")
        return prompt_rows(denoiser, torch.stack(list(prompt)), num_rows), None
    for i, row in enumerate(prompt):
        if row.is_floating_point() or row.is_complex() or row.dtype == torch.bool:
            raise ValueError(f"prompt[{i}] must hold integer token ids, got dtype {row.dtype}")
        if device is not None and row.device != device:
            raise ValueError(
                f"prompt[{i}] is on {row.device} but the denoiser computes on {device}; move the prompt"
            )
    target = device if device is not None else prompt[0].device
    if any(row.device != target for row in prompt):  # a denoiser of unknown device: one device all the same
        raise ValueError("prompt: the prompts of a list must share one device")
    flat = torch.cat([row.long() for row in prompt])
    if (flat == int(denoiser.mask_id)).any():
        raise ValueError(f"prompt contains the mask id {int(denoiser.mask_id)}")
    width = max(lengths)
    size = torch.tensor(lengths, device=target)
    rows = torch.repeat_interleave(torch.arange(num_rows, device=target), size)
    starts = size.cumsum(0) - size  # where each row's ids begin in flat
    columns = torch.arange(flat.numel(), device=target) - starts[rows] + (width - size)[rows]
    ids = torch.full((num_rows, width), padding_id(denoiser), dtype=torch.long, device=target)
    ids[rows, columns] = flat
    mask = torch.arange(width, device=target)[None] >= (width - size)[:, None]
    return ids, mask


def canvas_attention(prompt_mask: torch.Tensor | None, gen_length: int) -> torch.Tensor | None:
    """``[S, P + L]`` bool attention mask of a canvas (``False`` on the prompt's left padding), or ``None``
    when there is no padding (then the denoiser is called without a mask)."""
    if prompt_mask is None:
        return None
    response = torch.ones(prompt_mask.shape[0], gen_length, dtype=torch.bool, device=prompt_mask.device)
    return torch.cat([prompt_mask, response], dim=1)


def prompt_rows(denoiser: Denoiser, prompt: torch.Tensor | None, num_rows: int) -> torch.Tensor:
    """Validate ``prompt`` and expand it to ``[num_rows, P]`` on the denoiser's device."""
    device = denoiser_device(denoiser)
    if prompt is None:
        return torch.zeros(num_rows, 0, dtype=torch.long, device=device)
    if not isinstance(prompt, torch.Tensor):
        raise ValueError(f"prompt must be a LongTensor of token ids, got {type(prompt).__name__}")
    if prompt.is_floating_point() or prompt.is_complex() or prompt.dtype == torch.bool:
        raise ValueError(f"prompt must hold integer token ids, got dtype {prompt.dtype}")
    if device is not None and prompt.device != device:
        raise ValueError(
            f"prompt is on {prompt.device} but the denoiser computes on {device}; move the prompt"
        )
    if (prompt == int(denoiser.mask_id)).any():
        raise ValueError(f"prompt contains the mask id {int(denoiser.mask_id)}")
    if prompt.dim() == 1:
        return prompt.long()[None].expand(num_rows, -1)
    if prompt.dim() == 2 and prompt.shape[0] == num_rows:
        return prompt.long()
    raise ValueError(
        f"prompt must be [P] or [num_samples={num_rows}, P], got shape {tuple(prompt.shape)}"
    )


def generator_for(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """The generator that draws on ``device``: ``generator`` itself when it lives on that device
    type; else a generator on ``device`` seeded by one 62-bit draw from ``generator`` (``None``:
    from torch's global generator).

    A generator is bound to its device: a CPU one cannot fill a CUDA tensor. Drawing on the CPU
    and copying each step's noise (``[S, block, V]`` float64 for ``confidence``) to the device would
    cost a transfer and a host wait per step, so the draws stay on the device and a foreign
    generator only seeds them. The same seed gives the same result on a given device type (CPU
    and CUDA streams differ), and the caller's generator advances, so successive calls differ.
    """
    if generator is None:
        seed = int(torch.randint(0, 2**62, (1,)))
        return torch.Generator(device=device).manual_seed(seed)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if torch.device(generator.device).type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)
