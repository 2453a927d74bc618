"""`Result`: the draws of a sampling run, its per-draw statistics, cost and configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

STAT_NAMES = ("log_target", "log_proposal", "log_weight", "accept_prob", "accepted", "length")


@dataclass(frozen=True)
class Result:
    """What `dllm_mcmc.sample` returns.

    Attributes:
        tokens: ``[C, S, L]`` response ids of each chain's draws (warm-up removed).
        stats: float32 arrays ``[C, S]`` per draw. Every run has ``log_target`` (unnormalised log
            target of the current state), ``accept_prob`` and ``length`` (tokens before the first
            EOS, or ``L``); the MH kernels (``imh``, ``power``) add ``log_proposal`` (the state's log
            proposal density), ``log_weight`` (their difference) and ``accepted`` (0/1, or the mean
            over a draw's moves); ``stepwise`` adds ``nfe`` and ``forward_rows`` per draw; other
            kernels may add more.
        nfe: sequential forward calls over the whole run (warm-up included).
        forward_rows: rows pushed through the model over the whole run.
        wall_time: seconds.
        config: every option of the run (plain ints, floats, strings, bools).

    Example:
        >>> result.tokens.shape                      # doctest: +SKIP
        torch.Size([4, 1000, 16])
        >>> dllm_mcmc.diagnostics.to_datatree(result)   # doctest: +SKIP
    """

    tokens: torch.Tensor
    stats: dict[str, torch.Tensor]
    nfe: int
    forward_rows: int
    wall_time: float
    config: dict = field(default_factory=dict)

    @property
    def num_chains(self) -> int:
        return self.tokens.shape[0]

    @property
    def num_samples(self) -> int:
        return self.tokens.shape[1]

    @property
    def acceptance_rate(self) -> torch.Tensor:
        """``[C]`` mean acceptance per chain (of `acceptance_trace`)."""
        return self.acceptance_trace.float().mean(-1)

    @property
    def acceptance_trace(self) -> torch.Tensor:
        """``[C, S]`` acceptance per draw: the ``accepted`` stat (0/1, or the mean over a draw's moves),
        or, for a kernel without one (``stepwise``, whose every draw is new), ``accept_prob`` (for
        ``stepwise`` the per-step acceptance of its candidate selection)."""
        return self.stats["accepted" if "accepted" in self.stats else "accept_prob"]
