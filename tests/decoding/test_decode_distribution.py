"""Statistical tests: decoded sequences against the enumerated joint of an ExactDenoiser.

With exact conditionals and one token per step at temperature 1, *any* position rule that
looks only at the state samples the joint exactly, so the empirical distribution of 20,000
sequences must be within TV 0.02 of it. Tolerance: for 20,000 exact i.i.d. draws from the
toy below (V=3, L=4, sharpness 2, seed 0) the TV to the joint has mean 0.0142 and 99th
percentile 0.0185 (200 simulated repetitions). A near-uniform joint would not do: over 81
outcomes its expected TV at this sample size is already ~0.022. Seeds are fixed.
"""

import pytest
import torch
from conftest import empirical, seeded, total_variation

from dllm_mcmc import ExactDenoiser, decode

NUM_SAMPLES = 20_000


@pytest.fixture
def toy():
    return ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=2.0)


def test_random_order_at_temperature_one_samples_the_joint(toy):
    traj = decode(toy, None, 4, rule="random", temperature=1.0, num_samples=NUM_SAMPLES, generator=seeded(0))
    tv = total_variation(empirical(toy, traj.tokens), toy.probs)
    assert tv < 0.02, tv


@pytest.mark.parametrize("rule", ["top_prob", "margin", "entropy", "stochastic", "egi", "wedlm"])
def test_state_based_rules_at_temperature_one_sample_the_joint(toy, rule):
    traj = decode(toy, None, 4, rule=rule, temperature=1.0, block_length=2,
                  num_samples=NUM_SAMPLES, generator=seeded(1))
    tv = total_variation(empirical(toy, traj.tokens), toy.probs)
    assert tv < 0.02, tv


def test_confidence_is_biased_even_at_temperature_one(toy):
    """Sample-then-filter keeps the luckiest draw: its tokens are not drawn from p_j.

    This is why `confidence` has no exact density. Reference: the same test for `random`
    above passes at TV < 0.02; here the bias is several times larger.
    """
    traj = decode(toy, None, 4, rule="confidence", temperature=1.0, num_samples=NUM_SAMPLES, generator=seeded(2))
    assert not traj.exact_density
    tv = total_variation(empirical(toy, traj.tokens), toy.probs)
    assert tv > 0.05, tv


def test_local_tempering_at_low_temperature_differs_from_global(toy):
    """τ=0.5 random order is *not* p^2/Z: the gap the MCMC kernels exist to close."""
    traj = decode(toy, None, 4, rule="random", temperature=0.5, num_samples=NUM_SAMPLES, generator=seeded(3))
    tv = total_variation(empirical(toy, traj.tokens), toy.tempered(0.5))
    assert tv > 0.05, tv


def test_log_p_is_the_exact_joint_for_one_token_per_step(toy):
    traj = decode(toy, None, 4, rule="margin", temperature=0.7, num_samples=64, generator=seeded(4))
    assert torch.allclose(traj.log_p, toy.log_prob(traj.tokens), atol=1e-5)
