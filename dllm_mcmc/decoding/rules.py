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
wedlm         ``-(H(p_j) + λ·d_j)`` if ``d_j < W``     argmax (deterministic)
              (``d_j``: distance from the leftmost
              available position), else excluded
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
the top ``k`` in descending score, with probability 1 (``egi`` and ``wedlm``, whose scores depend on
which positions are still available, make the ``k`` choices one at a time). Both are exact densities of
the recorded order, so any such decoder is a valid independent MH proposal.

``wedlm`` is the position rule of WeDLM's streaming parallel decoding (Tencent, arXiv 2512.22737),
one position per choice: among the still-available positions in the window of ``W`` (``window``) slots
that starts at the leftmost available one, take the lowest distance-adjusted entropy
``H(p_j) + λ·d_j`` (``λ = distance_penalty``), so nearby confident positions go first and the decoder
drifts left to right. WeDLM's engine computes the entropy on the raw logits, mask id included; here it is
computed on ``p_j``, with the mask token removed like every other score (a tiny difference). Its
threshold variant (commit every window position whose score is below a threshold) is not offered: it
commits a variable number of positions per forward call (``docs/decoding.md``).

``confidence`` (LLaDA's low-confidence remasking) is different: it draws a token at every
masked position, then commits the position whose *drawn* token has the highest untempered
probability. The chance of choosing a position depends on the draws that were discarded at
the other positions, so the trajectory density has no closed form; see `decode`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from dllm_mcmc.decoding.config import DEFAULT_DISTANCE_PENALTY, DEFAULT_WINDOW, DecodeConfig, Rule
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
    ``distance_penalty`` (``λ``) and ``window`` (``W``, ``None``: no window) make the score depend on the
    leftmost available position ``a``: ``score_j - λ·(j - a)``, and only ``a <= j < a + W`` can be chosen.

    Example:
        >>> import torch
        >>> wedlm = position_rule("wedlm", distance_penalty=0.1, window=2)
        >>> log_probs = torch.tensor([[[0.5, 0.5], [0.9, 0.1], [1.0, 0.0]]]).log()  # entropies 0.69, 0.33, 0
        >>> free = torch.ones(1, 3, dtype=torch.bool)
        >>> wedlm.choose(log_probs, free, 3, torch.Generator())  # 2 is out of the window until 0 is taken
        tensor([[1, 0, 2]])
        >>> [wedlm.log_prob(log_probs, free, torch.tensor([order])) for order in ([1, 0, 2], [0, 1, 2])]
        [tensor([0.]), tensor([-inf])]
    """

    score: Callable[[torch.Tensor], torch.Tensor]
    temperature: float | None
    first_score: Callable[[torch.Tensor], torch.Tensor] | None = None
    distance_penalty: float = 0.0
    window: int | None = None

    @property
    def state_dependent(self) -> bool:
        """Whether a position's key changes as other positions are chosen (then ``k`` choices of one step
        are made one at a time)."""
        return self.first_score is not None or self.distance_penalty != 0 or self.window is not None

    def choose(
        self, log_probs: torch.Tensor, eligible: torch.Tensor, k: int, generator: torch.Generator
    ) -> torch.Tensor:
        """Choose ``k`` ordered positions ``[B, k]`` among ``eligible [B, L]``."""
        if self.state_dependent:  # the score depends on the state: one choice at a time
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
        """Keys ``[B, L]`` of ``log_probs [B, L, V]`` given the positions still ``available [B, L]``."""
        if self.distance_penalty == 0 and self.window is None:
            return self._scale(self._scores(log_probs, available))
        length = available.shape[-1]
        positions = torch.arange(length, device=available.device)
        # the leftmost available position (the row length when none is: then every key is masked anyway)
        leftmost = torch.where(available, positions, length).amin(-1, keepdim=True)
        distance = positions - leftmost
        if self.window is None or self.window >= length:
            scores = self._scores(log_probs, available)
        else:
            # Score the window's W positions only: the score of a position outside it is never used, and
            # the block's [B, L, V] temporaries would be the largest tensors of a step without blocks.
            columns = (leftmost + torch.arange(self.window, device=available.device)).clamp(max=length - 1)
            window_log_probs = log_probs.gather(-2, columns[..., None].expand(-1, -1, log_probs.shape[-1]))
            window_scores = self._scores(window_log_probs, available)
            # clamped columns repeat the last position with its own score; the rest of the row stays -inf
            scores = torch.full(available.shape, NEG_INF, dtype=window_scores.dtype, device=available.device)
            scores = scores.scatter(-1, columns, window_scores)
        scores = scores - self.distance_penalty * distance
        if self.window is not None:  # positions left of the leftmost are never available
            scores = scores.masked_fill(distance >= self.window, NEG_INF)
        return self._scale(scores)

    def _scores(self, log_probs: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """``score`` of every row of ``log_probs [B, n, V]``, or ``first_score`` in the rows whose
        ``available [B, L]`` block is untouched."""
        scores = self.score(log_probs)
        if self.first_score is not None:  # rows whose block is untouched use the first-commit score
            scores = torch.where(available.all(-1, keepdim=True), self.first_score(log_probs), scores)
        return scores

    def _scale(self, scores: torch.Tensor) -> torch.Tensor:
        return scores if self.temperature is None else scores / self.temperature


def position_rule(
    name: str,
    position_temperature: float = 1.0,
    position_score: str = "top_prob",
    *,
    distance_penalty: float = DEFAULT_DISTANCE_PENALTY,
    window: int = DEFAULT_WINDOW,
) -> PositionRule:
    """The `PositionRule` behind a rule name (every rule but ``confidence``); each rule reads only its own
    options (``stochastic``: the position temperature and score; ``wedlm``: the distance penalty and
    window). `position_rule_of` reads them from a `Rule` or `DecodeConfig`."""
    if name == "random":
        return PositionRule(zero_score, 1.0)
    if name == "stochastic":
        return PositionRule(SCORES[position_score], position_temperature)
    if name == "egi":  # highest entropy first, then top_prob
        return PositionRule(top_prob_score, None, first_score=entropy_score)
    if name == "wedlm":  # argmin of H + λ·d within the window = argmax of -H - λ·d
        return PositionRule(negative_entropy_score, None, distance_penalty=distance_penalty, window=window)
    return PositionRule(SCORES[name], None)


def position_rule_of(options: Rule | DecodeConfig) -> PositionRule:
    """The `PositionRule` of a `Rule` or a `DecodeConfig` (not ``confidence``), with all its options."""
    rule = options.rule if isinstance(options, DecodeConfig) else options
    return position_rule(rule.name, rule.position_temperature, rule.position_score,
                         distance_penalty=rule.distance_penalty, window=rule.window)


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
