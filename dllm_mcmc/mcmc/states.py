"""The small records kernels keep per chain (BlackJAX style: a state carries its cached log
densities, so a step never recomputes them; an info says what one step did)."""

from __future__ import annotations

from typing import NamedTuple

import torch


class ChainState(NamedTuple):
    """The current state of C chains.

    ``tokens``/``order``: ``[C, L]``; ``log_target``: ``[C]`` unnormalised ``log π``;
    ``log_proposal``: ``[C]`` ``log q`` of the state under the independent proposal.
    """

    tokens: torch.Tensor
    order: torch.Tensor
    log_target: torch.Tensor
    log_proposal: torch.Tensor

    @property
    def log_weight(self) -> torch.Tensor:
        """Importance weight ``log π − log q`` (what the independent MH ratio compares)."""
        return self.log_target - self.log_proposal


class StepInfo(NamedTuple):
    """What one MH step did, per chain (``[C]`` each)."""

    accept_prob: torch.Tensor
    accepted: torch.Tensor
    proposed_log_weight: torch.Tensor
