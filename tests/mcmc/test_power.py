"""The re-masking power-sampling kernel against the enumerated tempered target."""

import itertools

import pytest
import torch
from conftest import empirical, total_variation

from dllm_mcmc import ExactDenoiser, TemperedTarget, replay, sample
from dllm_mcmc.decoding import Rule
from dllm_mcmc.mcmc.power import Power

# A token-dependent order law: the stochastic rule on entropies at a low position temperature.
RULE = dict(rule=Rule("stochastic", position_score="entropy", position_temperature=0.05))


@pytest.fixture(scope="module")
def toy():
    return ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=1.0)


def run(toy, position_terms, **rule):
    kernel = Power(TemperedTarget(toy, None, 4, target_temperature=0.5, **rule), proposal_temperature=0.5,
                   num_chains=256, seed=1, position_terms=position_terms)
    result = sample(toy, None, 4, kernel=kernel, num_samples=500, warmup=50, progress=False)
    return empirical(toy, result.tokens.reshape(-1, 4)), result


def wrong_stationary_distribution(toy):
    """x-marginal of u(σ|x)² p(x)^(1/T): what the chain targets without the position terms."""
    orders = torch.tensor(list(itertools.permutations(range(4))))
    tokens = toy.sequences.repeat(len(orders), 1)
    log_u = replay(toy, None, tokens, orders.repeat_interleave(len(toy.sequences), 0), **RULE).log_position
    log_mass = torch.logsumexp(2 * log_u.double().reshape(len(orders), -1), 0)
    return torch.softmax(toy.tempered(0.5).log() + log_mass, 0)


@pytest.mark.parametrize("rule", [{}, RULE], ids=["random", "stochastic-entropy"])
def test_stationary_distribution_is_the_tempered_target(toy, rule):
    """256 chains × 500 draws (128,000 pooled), T = τ = 0.5. Observed while writing: TV 0.009-0.011."""
    frequencies, result = run(toy, True, **rule)
    tv = total_variation(frequencies, toy.tempered(0.5))
    assert tv < 0.02, tv
    assert result.tokens.shape == (256, 500, 4)
    assert set(result.stats) >= {"log_target", "log_proposal", "log_weight", "accept_prob", "accepted", "cut"}


def test_dropping_the_position_terms_gives_a_wrong_stationary_distribution(toy):
    """Without r(σ_t|state) in q the chain targets u² L^(1/T); here its x-marginal is TV 0.098 from
    the target (enumerated). The run lands there, far outside the correct kernel's 0.02."""
    frequencies, _ = run(toy, False, **RULE)
    assert total_variation(frequencies, toy.tempered(0.5)) > 0.06
    assert total_variation(frequencies, wrong_stationary_distribution(toy)) < 0.03


def test_with_random_order_the_position_terms_cancel(toy):
    with_terms, _ = run(toy, True)
    without, _ = run(toy, False)
    assert torch.equal(with_terms, without)


def test_cost_is_one_decode_per_move(toy):
    kernel = Power(TemperedTarget(toy, None, 4, target_temperature=0.5), proposal_temperature=0.5, num_chains=3,
                   moves_per_draw=2, seed=0)
    sample(toy, None, 4, kernel=kernel, num_samples=5, warmup=0, progress=False)
    assert kernel.cost == (4 * (1 + 10), 3 * 4 * (1 + 10))


def test_sample_by_name_and_bad_options(toy):
    result = sample(toy, None, 4, kernel="power", target_temperature=0.5, proposal_temperature=0.5,
                    num_chains=2, num_samples=10, warmup=2, moves_per_draw=2, progress=False)
    assert result.config["kernel"] == "power" and result.config["moves_per_draw"] == 2
    with pytest.raises(ValueError, match="moves_per_draw"):
        Power(TemperedTarget(toy, None, 4), moves_per_draw=0)
    with pytest.raises(ValueError, match="moves_per_draw is not an option of sampler 'imh'"):
        sample(toy, None, 4, kernel="imh", moves_per_draw=2, progress=False)
