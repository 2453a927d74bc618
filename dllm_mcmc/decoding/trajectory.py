"""`Trajectory`: the record of a batch of decoded responses, with their densities."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm_mcmc.decoding.config import DecodeConfig


@dataclass(frozen=True)
class Trajectory:
    """S decoded responses and everything an MCMC kernel needs to weigh them.

    Attributes:
        tokens: ``[S, L]`` response ids (prompt excluded).
        order: ``[S, L]``; ``order[s, t]`` is the response position committed ``t``-th
            (positions committed in one step appear in the order they were drawn).
        log_q_steps: ``[S, steps]`` log-probability of each step under the decoder: the
            position choice plus the tempered token probabilities ``log p_j(v)^(1/τ) / Z``.
            For ``confidence`` it holds the token terms only (see ``exact_density``).
        log_p_steps: ``[S, steps]`` untempered model log-probability of the committed tokens.
        log_position_steps: ``[S, steps]`` the position-choice part of ``log_q_steps``
            (zeros for ``confidence``, whose position law is unknown).
        nfe: forward calls made (one per step, each of batch S).
        exact_density: ``False`` when ``log_q`` is not the trajectory's density
            (the ``confidence`` rule).
        config: the options that produced it.
        prompt: the prompt as given (``[P]`` shared, ``[S, P]`` per row, or a list of ``S`` 1-D
            prompts, kept as a list so that it can be passed back to `replay` / `redecode`: the
            left-padded ids alone would lose the padding mask). ``None`` is recorded as ``[0]``.

    Example:
        >>> import torch
        >>> from dllm_mcmc import ExactDenoiser, decode
        >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
        >>> traj = decode(toy, None, 4, num_samples=8, generator=torch.Generator().manual_seed(1))
        >>> traj.tokens.shape, traj.log_q.shape, traj.nfe
        (torch.Size([8, 4]), torch.Size([8]), 4)
    """

    tokens: torch.Tensor
    order: torch.Tensor
    log_q_steps: torch.Tensor
    log_p_steps: torch.Tensor
    log_position_steps: torch.Tensor
    nfe: int
    exact_density: bool
    config: DecodeConfig
    prompt: torch.Tensor | list[torch.Tensor]

    @property
    def log_q(self) -> torch.Tensor:
        """``[S]`` log-density of each trajectory under the decoder (order and tokens)."""
        return self.log_q_steps.sum(-1)

    @property
    def log_p(self) -> torch.Tensor:
        """``[S]`` model log-probability of the tokens by the chain rule along ``order``."""
        return self.log_p_steps.sum(-1)

    @property
    def log_position(self) -> torch.Tensor:
        """``[S]`` log-probability of the decoding order given the tokens (the rule's choices)."""
        return self.log_position_steps.sum(-1)

    @property
    def num_samples(self) -> int:
        return self.tokens.shape[0]

    @property
    def gen_length(self) -> int:
        return self.tokens.shape[1]

    @property
    def forward_rows(self) -> int:
        """Rows pushed through the model: ``nfe × S``."""
        return self.nfe * self.num_samples
