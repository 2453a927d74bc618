"""The canvas every decoder starts from: prompt rows, then the masked response; and the generator
that draws on the denoiser's device.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> masked_canvas(prompt_rows(toy, None, 2), 4, toy.mask_id).tolist()
    [[3, 3, 3, 3], [3, 3, 3, 3]]
"""

from __future__ import annotations

import torch

from dllm_mcmc.denoisers.base import Denoiser, denoiser_device


def masked_canvas(prompts: torch.Tensor, gen_length: int, mask_id: int) -> torch.Tensor:
    """``[S, P + L]``: each prompt row followed by ``gen_length`` mask tokens."""
    masks = torch.full((prompts.shape[0], gen_length), mask_id, dtype=torch.long, device=prompts.device)
    return torch.cat([prompts, masks], dim=1)


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
