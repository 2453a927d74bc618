import math

import pytest
import torch
from conftest import seeded

from dllm_mcmc import ExactDenoiser, TemperedTarget, decode
from dllm_mcmc.decoding import Rule
from dllm_mcmc.likelihood import elbo_log_likelihood, left_to_right_log_likelihood


@pytest.fixture
def prompted_toy():
    return ExactDenoiser.random(vocab_size=3, length=4, seed=3, sharpness=1.5, prompt=torch.tensor([5, 6]))


@pytest.mark.parametrize("likelihood", ["order", "left_to_right"])
@pytest.mark.parametrize("rule,k,block",
                         [("random", 1, None), ("stochastic", 2, 2), ("entropy", 1, 2), ("margin", 3, None),
                          ("egi", 1, 2), ("egi", 2, None)])
def test_traced_pyro_log_density_equals_direct_arithmetic(prompted_toy, likelihood, rule, k, block):
    toy = prompted_toy
    target = TemperedTarget(toy, toy.prompt, 4, target_temperature=0.7, likelihood=likelihood,
                            rule=Rule(rule, tokens_per_step=k, block_length=block, position_temperature=0.4))
    traj = decode(toy, toy.prompt, 4, rule=rule, tokens_per_step=k, block_length=block, position_temperature=0.4,
                  temperature=0.5, num_samples=12, generator=seeded(0))
    traced = target.traced_log_density(traj.tokens, traj.order)
    # direct arithmetic: log u(σ|x) + L(x, σ)/T
    if likelihood == "order":
        log_lik = traj.log_p
    else:
        log_lik = toy.log_prob(traj.tokens)  # the left-to-right chain rule of an exact joint is log p(x)
    direct = traj.log_position + log_lik / 0.7
    assert torch.allclose(traced, direct, atol=1e-5)
    assert torch.allclose(target.log_density(traj), direct, atol=1e-5)


def test_random_order_law_is_uniform_over_orders(toy):
    target = TemperedTarget(toy, None, 4, target_temperature=2.0)
    traj = decode(toy, None, 4, num_samples=5, generator=seeded(0))
    expected = -math.log(math.factorial(4)) + toy.log_prob(traj.tokens) / 2.0
    assert torch.allclose(target.log_density(traj), expected, atol=1e-5)


def test_left_to_right_likelihood_is_exact_on_the_toy(prompted_toy):
    toy = prompted_toy
    rows = toy.prompt[None].expand(81, -1)
    ll = left_to_right_log_likelihood(toy, rows, toy.sequences, max_rows=50)
    assert torch.allclose(ll.double(), toy.probs.log(), atol=1e-5)


def test_elbo_estimate_is_unbiased_on_an_exact_joint(prompted_toy):
    """For exact conditionals the ELBO is tight (E over l and the masked subset of
    (L/l) Σ log p(x_i | unmasked) equals log p(x), checked by enumeration while writing this),
    so the Monte-Carlo estimate must scatter around log p(x): std ≈ 0.03 at 4000 maskings."""
    toy = prompted_toy
    x = toy.sequences[::10]
    rows = toy.prompt[None].expand(len(x), -1)
    error = elbo_log_likelihood(toy, rows, x, num_samples=4000, generator=seeded(0)) - toy.log_prob(x)
    assert error.abs().max() < 0.15 and error.abs().mean() < 0.05, error
    few = elbo_log_likelihood(toy, rows, x, num_samples=4, generator=seeded(0)) - toy.log_prob(x)
    assert few.abs().mean() > error.abs().mean()  # noisy with few maskings: it is an estimate
    assert not TemperedTarget(toy, toy.prompt, 4, likelihood="elbo").exact


def test_confidence_is_refused_with_the_reason(toy):
    with pytest.raises(ValueError, match="no exact trajectory density"):
        TemperedTarget(toy, None, 4, rule="confidence")


@pytest.mark.parametrize("kwargs,name", [({"target_temperature": 0}, "target_temperature"),
                                         ({"likelihood": "ppl"}, "likelihood"),
                                         ({"rule": Rule(block_length=3)}, "block_length"),
                                         ({"rule": "fast"}, "rule")])
def test_bad_target_options(toy, kwargs, name):
    with pytest.raises(ValueError, match=name):
        TemperedTarget(toy, None, 4, **kwargs)
