"""Decoding rules: which masked positions to commit next, and the probability of that choice.

Every rule except ``confidence`` chooses positions from the current state *before* any token
is drawn, from a score per masked position computed on the model's untempered conditionals
``p_j``:

============  ======================================  ==============================
rule          score of masked position ``j``           choice
============  ======================================  ==============================
random        0                                        uniform (softmax of equal scores)
top_prob      ``max_v p_j(v)``                         argmax (deterministic)
margin        ``p_j(v_1) - p_j(v_2)`` (top two)        argmax (deterministic)
entropy       ``-H(p_j)``                              argmax (deterministic)
stochastic    ``score`` (top_prob, margin or entropy)  softmax(score / position_temperature)
egi           ``H(p_j)`` at a block's first commit,     argmax (deterministic)
              ``max_v p_j(v)`` at every later one
============  ======================================  ==============================

``egi`` (entropy-guided initialisation, after Jeon et al. 2026: commit first where the model is least
sure, then choose-then-sample by ``top_prob``) takes its first position **per block**: the first commit
of every block (of the whole response when there is one block) is the masked position of highest
entropy, every later commit of the block the ``top_prob`` argmax. A block's first commit is recognised
as "every position of the block is still available", so callers pass the block's own positions (as
`decode`, `redecode`, `replay` and `TemperedTarget` do). With ``tokens_per_step=k`` the first position of
the block's first step is the entropy argmax and the other ``k - 1`` follow ``top_prob``.

With ``k`` positions per step, stochastic rules draw an *ordered* ``k``-tuple without
replacement (Gumbel-top-k), whose probability is the Plackett–Luce product
``prod_i softmax(score / t)[j_i]`` over the positions still unchosen; deterministic rules take
the top ``k`` in descending score, with probability 1. Both are exact densities of the
recorded order, so any such decoder is a valid independent MH proposal.

``confidence`` (LLaDA's low-confidence remasking) is different: it draws a token at every
masked position, then commits the position whose *drawn* token has the highest untempered
probability. The chance of choosing a position depends on the draws that were discarded at
the other positions, so the trajectory density has no closed form; see `decode`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dllm_mcmc.mh import gumbel_max, gumbel_noise

NEG_INF = float("-inf")


def top_prob_score(log_probs: torch.Tensor) -> torch.Tensor:
    """``max_v p_j(v)`` for every position: ``[..., V] -> [...]``."""
    return log_probs.max(-1).values.exp()


def margin_score(log_probs: torch.Tensor) -> torch.Tensor:
    """Gap between the two most likely tokens, ``p_j(v_1) - p_j(v_2)``."""
    top_two = log_probs.topk(2, dim=-1).values.exp()
    return top_two[..., 0] - top_two[..., 1]


def negative_entropy_score(log_probs: torch.Tensor) -> torch.Tensor:
    """``-H(p_j) = sum_v p_j(v) log p_j(v)`` (0 log 0 taken as 0)."""
    probs = log_probs.exp()
    return torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs)).sum(-1)


def entropy_score(log_probs: torch.Tensor) -> torch.Tensor:
    """``H(p_j)``: the ``egi`` rule's first commit goes to its argmax."""
    return -negative_entropy_score(log_probs)


def zero_score(log_probs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(log_probs.shape[:-1], device=log_probs.device)


SCORES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "top_prob": top_prob_score,
    "margin": margin_score,
    "entropy": negative_entropy_score,
}


@dataclass(frozen=True)
class PositionRule:
    """A position-choice rule: a score per position and how the score becomes a choice.

    ``temperature=None`` means argmax (deterministic); a float means sampling from
    ``softmax(score / temperature)``. ``first_score`` (``None``: ``score`` throughout) replaces ``score``
    for the choice made while every position of the given block is available (its first commit).
    """

    score: Callable[[torch.Tensor], torch.Tensor]
    temperature: float | None
    first_score: Callable[[torch.Tensor], torch.Tensor] | None = None

    def choose(
        self, log_probs: torch.Tensor, eligible: torch.Tensor, k: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Choose ``k`` ordered positions ``[B, k]`` among ``eligible [B, L]``."""
        if self.first_score is not None:  # the score depends on the state: one choice at a time
            available, picks = eligible.clone(), []
            for _ in range(k):
                keys = self._keys(log_probs, available)
                if self.temperature is not None:
                    keys = keys + gumbel_noise(keys.shape, generator, keys.device).to(keys.dtype)
                pick = keys.masked_fill(~available, NEG_INF).argmax(-1, keepdim=True)
                picks.append(pick)
                available = available.scatter(1, pick, False)
            return torch.cat(picks, 1)
        keys = self._keys(log_probs, eligible)
        if self.temperature is not None:
            # Gumbel-top-k: the top k of (logits + Gumbel noise) is a Plackett–Luce draw.
            keys = keys + gumbel_noise(keys.shape, generator, keys.device).to(keys.dtype)
        return keys.masked_fill(~eligible, NEG_INF).topk(k, dim=-1).indices

    def next_logits(self, log_probs: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-probabilities ``[B, L]`` of the next single choice among ``available``.

        A deterministic rule puts all its mass on the best available score (split evenly between
        exact ties); unavailable positions get ``-inf``.
        """
        keys = self._keys(log_probs, available).masked_fill(~available, NEG_INF)
        if self.temperature is None:
            best = keys.max(-1, keepdim=True).values
            return torch.where(available & (keys >= best), 0.0, NEG_INF)
        return keys

    def log_prob(
        self, log_probs: torch.Tensor, eligible: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Log-probability ``[B]`` that this rule chooses the ordered ``positions [B, k]``."""
        available = eligible.clone()
        total = torch.zeros(positions.shape[0], device=positions.device)
        for i in range(positions.shape[1]):
            chosen = positions[:, i : i + 1]
            logits = self.next_logits(log_probs, available)
            total = total + logits.log_softmax(-1).gather(1, chosen).squeeze(1)
            available = available.scatter(1, chosen, False)
        return total

    def _keys(self, log_probs: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        scores = self.score(log_probs)
        if self.first_score is not None:  # rows whose block is untouched use the first-commit score
            scores = torch.where(available.all(-1, keepdim=True), self.first_score(log_probs), scores)
        return scores if self.temperature is None else scores / self.temperature


def position_rule(name: str, position_temperature: float, position_score: str) -> PositionRule:
    """The `PositionRule` behind a rule name (every rule but ``confidence``)."""
    if name == "random":
        return PositionRule(zero_score, 1.0)
    if name == "stochastic":
        return PositionRule(SCORES[position_score], position_temperature)
    if name == "egi":  # highest entropy first, then top_prob
        return PositionRule(top_prob_score, None, first_score=entropy_score)
    return PositionRule(SCORES[name], None)


def proposal_log_probs(log_p: torch.Tensor, temperature: float, suppressed: int | None = None) -> torch.Tensor:
    """The decoder's token proposal ``log q_j(v) = log softmax(log p_j(v) / τ)``, optionally with
    one token (EOS) given probability zero."""
    proposal_logits = log_p / temperature
    if suppressed is not None:
        proposal_logits[..., suppressed] = NEG_INF
    return proposal_logits.log_softmax(-1)


def sample_tokens(log_q: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw one token per row of ``log_q [..., V]`` (`dllm_mcmc.mh.gumbel_max`, float64 noise)."""
    return gumbel_max(log_q, generator)
