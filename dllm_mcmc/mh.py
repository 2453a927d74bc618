"""All accept/reject arithmetic of dllm-mcmc in one room (torch only; BlackJAX keeps the same in
``mcmc/proposal.py``). Every kernel and the stepwise decoder decide through these functions.

- `mh_accept`: accept with probability ``min(1, exp(log_ratio))``, in log space.
- `independent_log_ratio`: ``w(y) − w(x)`` of an independent proposal (Tierney 1994, Ann. Statist.
  22(4)), ``w = log π − log q``, with the ``-inf`` current state handled.
- `where_rows` / `select`: per chain, the proposed state where accepted, the current one elsewhere.
- `mh_scan`: an independent MH chain over ``K`` candidates in order (the stepwise sampler's
  selection, Fang et al. arXiv 2604.00375).
- `sir`: sampling-importance-resampling, one candidate drawn ``∝ exp(w)`` (Rubin 1987).
- `gumbel_max` / `gumbel_noise`: one categorical draw per row by the Gumbel-max trick.

The resampling arithmetic of sequential Monte Carlo (the schemes, the effective sample size) is not here: it
lives with SMC, in `dllm_mcmc.decoding.smc.resampling`.

NaN policy: a NaN log ratio means both states have zero target mass. `mh_accept` refuses it with an
error at once; the scan and SIR never accept a NaN move and return an ``invalid`` flag, so a decoding
loop can check all its flags with one host read after the loop instead of one per step.

Example:
    >>> import torch
    >>> generator = torch.Generator().manual_seed(0)
    >>> accept_prob, accepted = mh_accept(torch.tensor([0.0, -float("inf")]), generator)
    >>> accept_prob.tolist(), accepted.tolist()
    ([1.0, 0.0], [True, False])
"""

from __future__ import annotations

from typing import TypeVar

import torch

State = TypeVar("State", bound=tuple)


def mh_accept(log_ratio: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept with probability ``min(1, exp(log_ratio))``, decided in log space.

    A NaN ratio (both states of probability zero) is refused with an error: it means the chain sits
    on a state outside the target's support and nothing sensible can follow.
    Returns ``(accept_prob [C], accepted [C] bool)``.
    """
    if torch.isnan(log_ratio).any():
        raise ValueError("MH log ratio is NaN: the current and proposed states both have zero target mass")
    accept_prob = log_ratio.clamp(max=0.0).exp()
    log_uniform = torch.rand(log_ratio.shape, generator=generator, device=log_ratio.device,
                             dtype=torch.float64).log()
    return accept_prob, log_uniform < log_ratio.double()


def independent_log_ratio(current_log_weight: torch.Tensor, proposed_log_weight: torch.Tensor) -> torch.Tensor:
    """``w(y) − w(x)`` of independent MH, with a current state of weight ``-inf`` accepting any
    proposal of finite weight (ratio 0) instead of producing ``inf − inf``.

    >>> independent_log_ratio(torch.tensor([-float("inf"), 1.0]), torch.tensor([2.0, 0.5])).tolist()
    [0.0, -0.5]
    """
    log_ratio = proposed_log_weight - current_log_weight
    return torch.where(
        torch.isneginf(current_log_weight) & torch.isfinite(proposed_log_weight),
        torch.zeros_like(log_ratio),
        log_ratio,
    )


def where_rows(accepted: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Rows of ``new`` where ``accepted [C]``, rows of ``old`` elsewhere (any trailing shape)."""
    return torch.where(accepted.reshape(-1, *([1] * (new.dim() - 1))), new, old)


def select(accepted: torch.Tensor, proposed: State, current: State) -> State:
    """Per chain, the proposed state where ``accepted`` and the current one elsewhere; a state is a
    tuple (a NamedTuple) of tensors with the chains first."""
    return type(current)(*(where_rows(accepted, new, old) for new, old in zip(proposed, current)))


def mh_scan(log_weight: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Independent MH over candidates ``1..K`` in order, starting at candidate 1; all rows at once.

    Move from the current candidate ``v`` to ``v_k`` with probability ``min(1, exp(w(v_k) − w(v)))``.
    Its stationary law is ``q · exp(w)``; after ``K − 1`` moves from a draw of ``q`` the selected
    candidate is only **approximately** a draw from it (exact as ``K → ∞``).

    Args:
        log_weight: ``[C, K]`` log importance weights of the candidates.
    Returns:
        ``(selected [C], fraction of accepted moves [C] (1 when K = 1), invalid flag)``; ``invalid``
        (a 0-d bool tensor) is set for a NaN weight or a row whose every candidate has weight ``-inf``.

    Example:
        >>> selected, accepted, invalid = mh_scan(torch.tensor([[0.0, 50.0, -50.0]]), torch.Generator().manual_seed(0))
        >>> selected.tolist(), accepted.tolist(), bool(invalid)
        ([1], [0.5], False)
    """
    num_rows, num_candidates = log_weight.shape
    log_uniform = torch.rand(num_rows, max(num_candidates - 1, 0), generator=generator, device=log_weight.device,
                             dtype=torch.float64).log()
    current = torch.zeros(num_rows, dtype=torch.long, device=log_weight.device)
    current_weight = log_weight[:, 0]
    accepted = torch.zeros(num_rows, dtype=torch.float64, device=log_weight.device)
    for k in range(1, num_candidates):
        proposed = log_weight[:, k]
        # a NaN ratio (both of zero mass) is never below the uniform: refused, flagged below
        accept = log_uniform[:, k - 1] < independent_log_ratio(current_weight, proposed)
        current = torch.where(accept, k, current)
        current_weight = torch.where(accept, proposed, current_weight)
        accepted += accept
    fraction = accepted / (num_candidates - 1) if num_candidates > 1 else torch.ones_like(accepted)
    invalid = torch.isnan(log_weight).any() | torch.isneginf(current_weight).any()
    return current, fraction, invalid


def sir(log_weight: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sampling-importance-resampling: one candidate per row drawn ``∝ exp(w)``.

    Returns ``(selected [C], normalised ESS [C], invalid flag)``; the normalised effective sample size
    of the weights is ``(Σ e^w)² / (K Σ e^{2w}) ∈ [1/K, 1]``.

    Example:
        >>> selected, ess, invalid = sir(torch.tensor([[0.0, 0.0]]), torch.Generator().manual_seed(0))
        >>> ess.tolist(), bool(invalid)
        ([1.0], False)
    """
    num_candidates = log_weight.shape[1]
    selected = gumbel_max(log_weight, generator)
    ess = (2 * log_weight.logsumexp(-1) - (2 * log_weight).logsumexp(-1)).exp() / num_candidates
    invalid = torch.isnan(log_weight).any() | torch.isneginf(log_weight.amax(-1)).any()
    return selected, ess, invalid


def gumbel_max(log_weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``log_weight [..., K]`` drawn ``∝ exp(log_weight)`` (Gumbel-max trick).

    The noise is float64 (as in LLaDA's sampler): float32 Gumbel noise truncates the tail and
    under-samples outcomes of very low probability.
    """
    return (log_weight.double() + gumbel_noise(log_weight.shape, generator, log_weight.device)).argmax(-1)


def gumbel_noise(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard Gumbel noise ``[shape]`` in float64, ``−log E`` with ``E ~ Exp(1)``."""
    exponential = torch.empty(shape, dtype=torch.float64, device=device).exponential_(generator=generator)
    return -exponential.log()

