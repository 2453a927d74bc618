"""`DecoderRecord`: what every decoder's record shares (plain `decode`'s `Trajectory`, the stepwise
sampler's `StepwiseDraw`, the SMC decoder's `SMCResult`), so that one method,
`dllm_mcmc.target.TemperedTarget.score`, scores any of them.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser, decode
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> isinstance(decode(toy, None, 4, num_samples=2, generator=torch.Generator().manual_seed(0)), DecoderRecord)
    True
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class DecoderRecord(Protocol):
    """Decoded responses with the two densities the tempered target needs and their cost.

    Attributes:
        tokens: ``[..., L]`` response ids.
        order: ``[..., L]`` the position committed at each commit.
        log_p: ``[...]`` the model's chain rule ``log p(x | σ)`` along ``order`` (untempered).
        log_position: ``[...]`` ``log u(σ | x)``, the rule's probability of its position choices.
        nfe, forward_rows: sequential forward calls and rows pushed through the model.
    """

    @property
    def tokens(self) -> torch.Tensor: ...

    @property
    def order(self) -> torch.Tensor: ...

    @property
    def log_p(self) -> torch.Tensor: ...

    @property
    def log_position(self) -> torch.Tensor: ...

    @property
    def nfe(self) -> int: ...

    @property
    def forward_rows(self) -> int: ...
