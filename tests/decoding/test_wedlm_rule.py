"""The ``wedlm`` rule: WeDLM's distance-penalised entropy argmin over a window, one position at a time.

`reference_choice` re-implements the rule row by row in plain Python (lists and loops, float64
conditionals read from the toy's logits), a separate code path from `PositionRule`'s batched tensors.
"""

import itertools
import math

import pytest
import torch
from conftest import empirical, seeded, total_variation

from dllm_mcmc import ExactDenoiser, TemperedTarget, decode, replay, sample
from dllm_mcmc.decoding import Rule, redecode
from dllm_mcmc.eval.methods import Method


@pytest.fixture
def prompted():
    """V=3, L=6 random joint after a two-token prompt (729 sequences)."""
    return ExactDenoiser.random(vocab_size=3, length=6, seed=5, sharpness=1.5, prompt=torch.tensor([7, 8]))


def conditionals(toy: ExactDenoiser, canvas: list[int]) -> list[list[float]]:
    """``p_j(v)`` of every response position, as float64 lists."""
    logits = toy(torch.tensor([canvas]))[0, len(toy.prompt):]
    return logits.double().softmax(-1).tolist()


def entropy(probs: list[float]) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0)


def reference_choice(probs: list[list[float]], unchosen: list[int], distance_penalty: float,
                     window: int) -> int:
    """WeDLM's position rule: among the unchosen positions within ``window`` of the leftmost unchosen one,
    the lowest ``H_j + λ (j − leftmost)``."""
    leftmost = min(unchosen)
    best, best_score = -1, math.inf
    for j in unchosen:
        if j - leftmost >= window:
            continue
        score = entropy(probs[j]) + distance_penalty * (j - leftmost)
        if score < best_score:
            best, best_score = j, score
    return best


def reference_order(toy: ExactDenoiser, tokens: list[int], length: int, block: int, k: int,
                    distance_penalty: float, window: int) -> list[int]:
    """The order the rule takes while ``tokens`` are written, ``k`` positions per forward call."""
    prompt = toy.prompt.tolist()
    canvas = prompt + [toy.mask_id] * length
    order: list[int] = []
    for start in range(0, length, block):
        unchosen = list(range(start, start + block))
        while unchosen:
            probs = conditionals(toy, canvas)  # one forward call per step
            step = []
            for _ in range(min(k, len(unchosen))):  # the step's positions, one at a time
                j = reference_choice(probs, unchosen, distance_penalty, window)
                unchosen.remove(j)
                step.append(j)
            for j in step:  # committed together, after the step's choices
                canvas[len(prompt) + j] = tokens[j]
            order += step
    return order


CASES = [  # distance_penalty, window, block_length, tokens_per_step
    (0.02, 16, None, 1),  # WeDLM's defaults
    (0.3, 2, None, 1),  # a window smaller than the response
    (0.0, 3, None, 1),  # entropy alone inside the window
    (5.0, 16, None, 1),  # λ > log V: strictly left to right
    (0.1, 3, 3, 1),  # blocks cut the window at their end
    (0.1, 4, None, 2),  # two positions per step, chosen one at a time
    (0.05, 2, 3, 3),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("distance_penalty,window,block_length,k", CASES)
def test_decoded_order_is_the_reference_rule_draw_for_draw(prompted, seed, distance_penalty, window,
                                                           block_length, k):
    rule = Rule("wedlm", distance_penalty=distance_penalty, window=window, block_length=block_length,
                tokens_per_step=k)
    traj = decode(prompted, prompted.prompt, 6, rule=rule, temperature=0.8, num_samples=12,
                  generator=seeded(seed))
    assert traj.exact_density and traj.config.rule.distance_penalty == distance_penalty
    for s in range(traj.num_samples):
        expected = reference_order(prompted, traj.tokens[s].tolist(), 6, block_length or 6, k, distance_penalty,
                                   window)
        assert traj.order[s].tolist() == expected, (s, traj.order[s].tolist(), expected)
    if distance_penalty > math.log(3):
        assert (traj.order == torch.arange(6)).all()


def test_without_penalty_and_window_it_is_the_entropy_rule(prompted):
    wide = decode(prompted, prompted.prompt, 6, rule="wedlm", distance_penalty=0.0, window=6, temperature=0.7,
                  num_samples=16, generator=seeded(4))
    entropy_rule = decode(prompted, prompted.prompt, 6, rule="entropy", temperature=0.7, num_samples=16,
                          generator=seeded(4))
    assert torch.equal(wide.order, entropy_rule.order) and torch.equal(wide.tokens, entropy_rule.tokens)
    narrow = decode(prompted, prompted.prompt, 6, rule="wedlm", distance_penalty=0.0, window=2, temperature=0.7,
                    num_samples=16, generator=seeded(4))
    assert not torch.equal(narrow.order, entropy_rule.order)  # the window binds on this toy


@pytest.mark.parametrize("distance_penalty,window,block_length,k", CASES)
def test_replay_reproduces_log_q_and_the_position_terms_are_zero(prompted, distance_penalty, window,
                                                                 block_length, k):
    rule = Rule("wedlm", distance_penalty=distance_penalty, window=window, block_length=block_length,
                tokens_per_step=k)
    traj = decode(prompted, prompted.prompt, 6, rule=rule, temperature=0.6, num_samples=16, generator=seeded(9))
    assert torch.all(traj.log_position_steps == 0)
    again = replay(prompted, prompted.prompt, traj.tokens, traj.order, traj.config)
    assert torch.allclose(again.log_q_steps, traj.log_q_steps, atol=1e-6)
    assert torch.allclose(again.log_p_steps, traj.log_p_steps, atol=1e-6)
    by_options = replay(prompted, prompted.prompt, traj.tokens, traj.order, rule="wedlm", temperature=0.6,
                        distance_penalty=distance_penalty, window=window, block_length=block_length,
                        tokens_per_step=k)
    assert torch.allclose(by_options.log_q, traj.log_q, atol=1e-6)


def test_an_order_the_rule_would_not_choose_gets_minus_infinity(prompted):
    traj = decode(prompted, prompted.prompt, 6, rule="wedlm", window=3, distance_penalty=0.1, temperature=0.6,
                  num_samples=16, generator=seeded(1))
    for other in (traj.order.flip(-1), traj.order.roll(1, -1)):
        differs = (other != traj.order).any(-1)
        assert differs.all()
        assert torch.isneginf(replay(prompted, prompted.prompt, traj.tokens, other, traj.config).log_q).all()
    # right to left is out of the window at the first step, whatever the tokens
    reverse = torch.arange(5, -1, -1).expand(16, 6)
    assert torch.isneginf(replay(prompted, prompted.prompt, traj.tokens, reverse, traj.config).log_position).all()


@pytest.mark.parametrize("probs", ["random", "uniform"])
@pytest.mark.parametrize("tokens_per_step", [1, 2])
def test_densities_of_every_trajectory_sum_to_one(probs, tokens_per_step):
    """Σ over every (order, tokens) of q = 1. On the uniform joint every entropy ties: the deterministic
    rule splits its mass between the tied positions, and the sum is still one."""
    toy = (ExactDenoiser.random(vocab_size=2, length=3, seed=2) if probs == "random"
           else ExactDenoiser(torch.full((2, 2, 2), 1 / 8)))
    orders = torch.tensor(list(itertools.permutations(range(3))))
    all_orders = orders.repeat_interleave(len(toy.sequences), 0)
    all_tokens = toy.sequences.repeat(len(orders), 1)
    traj = replay(toy, None, all_tokens, all_orders, rule="wedlm", window=2, distance_penalty=0.0 if
                  probs == "uniform" else 0.2, tokens_per_step=tokens_per_step, temperature=0.5)
    assert abs(float(traj.log_q.exp().sum()) - 1.0) < 1e-5
    if probs == "uniform" and tokens_per_step == 1:  # the first step ties positions 0 and 1 of the window
        assert torch.allclose(traj.log_position_steps[:, 0].exp().unique(), torch.tensor([0.0, 0.5]))


def test_redecode_keeps_the_prefix_and_follows_the_rule(prompted):
    rule = Rule("wedlm", window=2, distance_penalty=0.1)
    g = seeded(3)
    traj = decode(prompted, prompted.prompt, 6, rule=rule, temperature=0.9, num_samples=8, generator=g)
    keep = torch.tensor([0, 1, 2, 3, 4, 5, 6, 3])
    new = redecode(prompted, prompted.prompt, traj, keep, g)
    for s in range(8):
        kept = int(keep[s])
        assert new.order[s, :kept].tolist() == traj.order[s, :kept].tolist()
        assert torch.allclose(new.log_q_steps[s, :kept], traj.log_q_steps[s, :kept], atol=1e-6)
        assert new.order[s].tolist() == reference_order(prompted, new.tokens[s].tolist(), 6, 6, 1, 0.1, 2)
    again = replay(prompted, prompted.prompt, new.tokens, new.order, new.config)
    assert torch.allclose(again.log_q, new.log_q, atol=1e-6) and torch.all(new.log_position_steps == 0)


def test_the_target_traces_the_same_order_law(prompted):
    rule = Rule("wedlm", window=2, distance_penalty=0.1, tokens_per_step=2)
    target = TemperedTarget(prompted, prompted.prompt, 6, target_temperature=0.7, rule=rule)
    traj = decode(prompted, prompted.prompt, 6, rule=rule, temperature=0.5, num_samples=8, generator=seeded(0))
    direct = traj.log_position + traj.log_p / 0.7
    assert torch.allclose(target.traced_log_density(traj.tokens, traj.order), direct, atol=1e-5)
    assert torch.allclose(target.log_density(traj), direct, atol=1e-5)


@pytest.mark.parametrize("rule", [Rule("wedlm", window=3, distance_penalty=0.0), Rule("wedlm")],
                         ids=["window-3", "defaults"])
def test_imh_with_the_wedlm_proposal_matches_the_tempered_target(rule):
    """ExactDenoiser V=3, L=4 (seed 0, sharpness 0.5), T = 0.5, wedlm proposal at τ = 0.7.

    The order law is deterministic, so ``Σ_σ u(σ | x) = 1`` and the ``x``-marginal of the target is
    ``p^(1/T)/Z``. 16 chains × 10,000 draws (about 3 s on one thread). While writing this test seeds 1-5
    gave TV 0.007-0.010 (window 3) and 0.007-0.011 (WeDLM's defaults); the raw proposals are at TV 0.13
    from the target (checked below), so the tolerance 0.02 separates the two. The proposals take three
    (window 3) and two (defaults) different orders, so the order law is exercised, not one fixed order.
    """
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=0.5)
    result = sample(toy, None, 4, rule=rule, target_temperature=0.5, proposal_temperature=0.7, num_chains=16,
                    num_samples=10_000, warmup=100, seed=1, proposal_batch=2_000, progress=False)
    assert result.config["rule"] == "wedlm" and result.config["rule_window"] == rule.window
    tv = total_variation(empirical(toy, result.tokens.reshape(-1, 4)), toy.tempered(0.5))
    assert tv < 0.02, tv
    proposals = decode(toy, None, 4, rule=rule, temperature=0.7, num_samples=20_000, generator=seeded(0))
    assert total_variation(empirical(toy, proposals.tokens), toy.tempered(0.5)) > 0.08
    assert len(proposals.order.unique(dim=0)) >= 2


@pytest.mark.parametrize("options,message", [
    ({"window": 0}, "window must be a positive integer, got 0"),
    ({"window": 2.5}, "window must be a positive integer"),
    ({"window": True}, "window must be a positive integer"),
    ({"distance_penalty": -0.1}, "distance_penalty must be a finite number >= 0, got -0.1"),
    ({"distance_penalty": float("nan")}, "distance_penalty must be a finite number >= 0"),
    ({"distance_penalty": float("inf")}, "distance_penalty must be a finite number >= 0"),
    ({"distance_penalty": "0.1"}, "distance_penalty must be a finite number >= 0"),
    ({"distance_penalty": False}, "distance_penalty must be a finite number >= 0"),
])
def test_bad_window_or_distance_penalty_is_refused_with_its_name(toy, options, message):
    with pytest.raises(ValueError, match=message):
        decode(toy, None, 4, rule="wedlm", **options)
    with pytest.raises(ValueError, match=message):
        Rule.of("wedlm", **options)
    with pytest.raises(ValueError, match=f"method 'w': {message}"):
        Method.from_config({"name": "w", "rule": "wedlm", **options})


def test_the_options_are_rule_options_everywhere(toy):
    assert Rule.of("wedlm", window=3).config(0.5).rule.window == 3
    method = Method.from_config({"name": "w", "sampler": "imh", "rule": "wedlm", "window": 3,
                                 "distance_penalty": 0.5, "proposal_batch": 2})
    assert method.decoding_rule == Rule("wedlm", window=3, distance_penalty=0.5)
    assert "window" not in method.sampler_options  # a rule option, not the kernel's
    with pytest.raises(ValueError, match="distance_penalty, window"):
        Rule.of("wedlm", windows=3)  # the message lists the rule options
