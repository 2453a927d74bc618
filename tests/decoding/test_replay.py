"""The recorded log q of every sequence equals an independent replay of its order.

`reference_log_q` below re-implements each rule's density row by row with plain Python
(a separate code path from the library's batched loop) and feeds the model one row at a time.
"""

import math

import pytest
import torch
from conftest import seeded

from dllm_mcmc import ExactDenoiser, decode, replay

EXACT_RULES = ["random", "top_prob", "stochastic", "margin", "entropy", "egi", "wedlm"]


def _score(probs: list[float], name: str) -> float:
    ranked = sorted(probs, reverse=True)
    if name == "top_prob":
        return ranked[0]
    if name == "margin":
        return ranked[0] - ranked[1]
    if name == "max_entropy":
        return -sum(p * math.log(p) for p in probs if p > 0)
    return sum(p * math.log(p) for p in probs if p > 0)  # negative entropy


def reference_log_q(toy, row_tokens, row_order, rule, temperature, block_length, k,
                    position_temperature=1.0, position_score="top_prob"):
    length = len(row_tokens)
    prompt = toy.prompt.tolist()
    canvas = prompt + [toy.mask_id] * length
    total, t = 0.0, 0
    for start in range(0, length, block_length):
        while any(canvas[len(prompt) + j] == toy.mask_id for j in range(start, start + block_length)):
            logits = toy(torch.tensor([canvas]))[0, len(prompt):]
            probs = logits.double().softmax(-1).tolist()
            masked = [j for j in range(start, start + block_length) if canvas[len(prompt) + j] == toy.mask_id]
            chosen = row_order[t : t + min(k, len(masked))]
            for j in chosen:
                if rule == "random":
                    total -= math.log(len(masked))
                elif rule == "stochastic":
                    keys = {i: _score(probs[i], position_score) / position_temperature for i in masked}
                    top = max(keys.values())
                    total += keys[j] - top - math.log(sum(math.exp(v - top) for v in keys.values()))
                elif rule == "wedlm":  # lowest H + 0.02·distance within 16 of the leftmost unchosen (defaults)
                    leftmost = min(masked)
                    scores = {i: _score(probs[i], "entropy") - 0.02 * (i - leftmost) for i in masked
                              if i - leftmost < 16}
                    if j not in scores or scores[j] < max(scores.values()):
                        total = -math.inf
                else:
                    name = rule
                    if rule == "egi":  # the block's first commit at the highest entropy, then top_prob
                        name = "max_entropy" if len(masked) == block_length else "top_prob"
                    scores = {i: _score(probs[i], name) for i in masked}
                    if scores[j] < max(scores.values()):
                        total = -math.inf
                tempered = [p ** (1 / temperature) for p in probs[j]]
                total += math.log(tempered[row_tokens[j]] / sum(tempered))
                masked.remove(j)
            for j in chosen:
                canvas[len(prompt) + j] = row_tokens[j]
            t += len(chosen)
    return total


@pytest.mark.parametrize("rule", EXACT_RULES)
@pytest.mark.parametrize("block_length,k", [(4, 1), (2, 1), (4, 3)])
def test_recorded_log_q_matches_independent_replay(rule, block_length, k):
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=7, sharpness=1.5, prompt=torch.tensor([5, 6]))
    traj = decode(toy, toy.prompt, 4, rule=rule, temperature=0.6, block_length=block_length,
                  tokens_per_step=k, num_samples=24, generator=seeded(11), position_temperature=0.3)
    assert traj.exact_density
    for s in range(traj.num_samples):
        expected = reference_log_q(toy, traj.tokens[s].tolist(), traj.order[s].tolist(), rule, 0.6,
                                   block_length, k, position_temperature=0.3)
        assert math.isfinite(expected)
        assert abs(float(traj.log_q[s]) - expected) < 1e-5, (s, float(traj.log_q[s]), expected)
    again = replay(toy, toy.prompt, traj.tokens, traj.order, traj.config)
    assert torch.allclose(again.log_q_steps, traj.log_q_steps, atol=1e-6)
    assert torch.allclose(again.log_p_steps, traj.log_p_steps, atol=1e-6)


@pytest.mark.parametrize("score", ["margin", "entropy"])
def test_stochastic_rule_with_other_scores_matches_replay(toy, score):
    traj = decode(toy, None, 4, rule="stochastic", position_score=score, position_temperature=0.2,
                  temperature=0.8, num_samples=16, generator=seeded(3))
    for s in range(traj.num_samples):
        expected = reference_log_q(toy, traj.tokens[s].tolist(), traj.order[s].tolist(), "stochastic",
                                   0.8, 4, 1, position_temperature=0.2, position_score=score)
        assert abs(float(traj.log_q[s]) - expected) < 1e-5


def test_deterministic_rule_gives_zero_probability_to_another_order(toy):
    traj = decode(toy, None, 4, rule="top_prob", num_samples=8, generator=seeded(0))
    flipped = traj.order.flip(-1)
    other = replay(toy, None, traj.tokens, flipped, traj.config)
    differs = (flipped != traj.order).any(-1)
    assert torch.isneginf(other.log_q[differs]).all()


def test_replay_of_random_order_densities_sum_to_one_over_all_trajectories():
    """Σ over every (order, tokens) of q = 1: the density is a density."""
    toy = ExactDenoiser.random(vocab_size=2, length=3, seed=2)
    orders = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
    tokens = toy.sequences
    all_orders = orders.repeat_interleave(len(tokens), 0)
    all_tokens = tokens.repeat(len(orders), 1)
    for rule in EXACT_RULES:
        traj = replay(toy, None, all_tokens, all_orders, rule=rule, temperature=0.5, position_temperature=0.5)
        assert abs(float(traj.log_q.exp().sum()) - 1.0) < 1e-5, rule


def test_replay_refuses_an_order_that_is_not_a_permutation(toy):
    with pytest.raises(ValueError, match="order"):
        replay(toy, None, torch.zeros(1, 4, dtype=torch.long), torch.tensor([[0, 0, 1, 2]]))
    with pytest.raises(ValueError, match="order"):
        replay(toy, None, torch.zeros(1, 4, dtype=torch.long), torch.tensor([[2, 0, 1, 3]]), block_length=2)


@pytest.mark.parametrize("block_length", [None, 2])
def test_egi_commits_the_highest_entropy_position_first_then_follows_top_prob(block_length):
    toy = ExactDenoiser.random(vocab_size=4, length=6, seed=3, sharpness=1.5, prompt=torch.tensor([5, 6]))
    traj = decode(toy, toy.prompt, 6, rule="egi", block_length=block_length, temperature=0.7, num_samples=8,
                  generator=seeded(2))
    assert traj.exact_density and torch.all(traj.log_position_steps == 0)
    block = 6 if block_length is None else block_length
    for s in range(traj.num_samples):
        tokens, order = traj.tokens[s].tolist(), traj.order[s].tolist()
        canvas = toy.prompt.tolist() + [toy.mask_id] * 6
        for t, j in enumerate(order):
            start = t // block * block
            probs = toy(torch.tensor([canvas]))[0, 2:].double().softmax(-1)
            masked = [i for i in range(start, start + block) if canvas[2 + i] == toy.mask_id]
            if t % block == 0:  # a block's first commit: the highest entropy
                entropy = -(probs * probs.log()).sum(-1)
                assert entropy[j] >= max(entropy[i] for i in masked) - 1e-9, (s, t)
            else:  # later commits: argmax of max_v p_j(v)
                top = probs.max(-1).values
                assert top[j] >= max(top[i] for i in masked) - 1e-9, (s, t)
            canvas[2 + j] = tokens[j]
    top_prob = decode(toy, toy.prompt, 6, rule="top_prob", block_length=block_length, temperature=0.7,
                      num_samples=8, generator=seeded(2))
    assert not torch.equal(top_prob.order[:, 0], traj.order[:, 0])  # the first commit differs from top_prob's
