"""`MeteredDenoiser`: counts the forward calls, rows and seconds spent in a denoiser."""

from __future__ import annotations

import time

import torch


class MeteredDenoiser:
    """A pass-through `Denoiser` that records its cost.

    ``nfe`` (sequential forward calls), ``forward_rows`` (rows pushed through), ``seconds`` (wall time
    inside the model; on CUDA the device is synchronised around each call only when
    ``synchronize=True``, since an unsynchronised timer would measure launch time only).

    Example:
        >>> from dllm_mcmc import ExactDenoiser, decode
        >>> meter = MeteredDenoiser(ExactDenoiser.random(3, 4))
        >>> _ = decode(meter, None, 4, num_samples=8)
        >>> meter.nfe, meter.forward_rows
        (4, 32)
    """

    def __init__(self, inner, synchronize: bool = False) -> None:
        self.inner = inner
        self.synchronize = synchronize
        self.reset()

    def reset(self) -> None:
        self.nfe, self.forward_rows, self.seconds = 0, 0, 0.0

    @property
    def device(self) -> torch.device | None:
        from dllm_mcmc.denoisers.base import denoiser_device

        return denoiser_device(self.inner)

    def __getattr__(self, name):  # mask_id, vocab_size, eos_id, pad_id, device, ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 logit_positions: torch.Tensor | None = None) -> torch.Tensor:
        sync = self.synchronize and tokens.is_cuda
        if sync:
            torch.cuda.synchronize(tokens.device)
        start = time.perf_counter()
        if logit_positions is None:
            logits = self.inner(tokens, attention_mask)
        else:  # only reached when the inner denoiser accepts it (see `accepts_logit_positions`)
            logits = self.inner(tokens, attention_mask, logit_positions=logit_positions)
        if sync:
            torch.cuda.synchronize(tokens.device)
        self.seconds += time.perf_counter() - start
        self.nfe += 1
        self.forward_rows += tokens.shape[0]
        return logits
