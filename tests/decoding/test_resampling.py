"""The resampling schemes of SMC (`dllm_mcmc.decoding.smc.resampling`): pure functions of the log weights.

Each scheme is checked on fixed weights repeated over ``R = 20,000`` rows (one independent draw per row, one
generator): the mean number of children of particle ``i`` must equal ``N W_i`` within 4 standard errors of
the mean (the standard error measured from the same draws; measured worst |z| over N = 5, 8, 16 was 2.4),
plus the per-draw bounds each scheme guarantees. Chopthin keeps weighted children: its checks are the bound
on the weight ratio, the ESS bound and the unbiasedness of the weighted children.
"""

import math

import pytest
import torch
from conftest import seeded

from dllm_mcmc.decoding.smc import (
    CHOPTHIN_ETA,
    RESAMPLERS,
    chopthin_resample,
    conditional_resample,
    effective_sample_size,
    multinomial_resample,
    residual_resample,
    stratified_resample,
    systematic_resample,
)

ROWS = 20_000
EQUAL_WEIGHT = {"systematic": systematic_resample, "stratified": stratified_resample,
                "multinomial": multinomial_resample, "residual": residual_resample}


def _weights(num_particles: int, seed: int) -> torch.Tensor:
    """``[N]`` log weights, spread over about e^8, particle 0 of weight zero."""
    log_weight = torch.randn(num_particles, generator=seeded(seed), dtype=torch.float64) * 2
    log_weight[0] = float("-inf")
    return log_weight


def _counts(ancestors: torch.Tensor, values: torch.Tensor | None = None) -> torch.Tensor:
    """``[R, N]``: per row the number of children of each particle (or the sum of ``values`` over them)."""
    values = torch.ones(ancestors.shape, dtype=torch.float64) if values is None else values
    return torch.zeros(ancestors.shape, dtype=torch.float64).scatter_add_(1, ancestors, values)


def _assert_unbiased(per_row: torch.Tensor, expected: torch.Tensor) -> None:
    """Column means of ``per_row [R, N]`` equal ``expected`` within 4 standard errors (exactly where the
    draws do not vary)."""
    mean = per_row.mean(0)
    standard_error = per_row.std(0) / per_row.shape[0] ** 0.5
    assert ((mean - expected).abs() <= 4 * standard_error + 1e-9).all(), (mean, expected, standard_error)


def test_the_option_names():
    assert list(RESAMPLERS) == ["systematic", "stratified", "multinomial", "residual", "chopthin"]
    log_weight = _weights(6, 0).expand(3, 6)
    for name, resample in EQUAL_WEIGHT.items():  # the table's entries: the same draws, weights reset (None)
        ancestors, after = RESAMPLERS[name](log_weight, seeded(1))
        assert after is None and torch.equal(ancestors, resample(log_weight, seeded(1)))


@pytest.mark.parametrize("name", list(EQUAL_WEIGHT))
@pytest.mark.parametrize("num_particles", [5, 8, 16])
def test_mean_offspring_is_n_times_the_weight(name, num_particles):
    """E[C_i] = N W_i for every scheme (within 4 standard errors over 20,000 draws); every draw has N children
    and none of the zero-weight particle."""
    log_weight = _weights(num_particles, num_particles)
    counts = _counts(EQUAL_WEIGHT[name](log_weight.expand(ROWS, num_particles), seeded(2)))
    assert (counts.sum(-1) == num_particles).all() and (counts[:, 0] == 0).all()
    _assert_unbiased(counts, num_particles * torch.softmax(log_weight, -1))


def test_per_draw_bounds_of_the_low_variance_schemes():
    """Systematic: C_i ∈ {⌊N W_i⌋, ⌈N W_i⌉} (within ±1); stratified: within ±2 of N W_i; residual: at least
    ⌊N W_i⌋. Random weights of 200 rows per N, so the bounds are checked for many weight vectors."""
    generator = seeded(3)
    for num_particles in (2, 5, 16, 33):
        log_weight = torch.randn(200, num_particles, generator=generator, dtype=torch.float64) * 2
        log_weight[:, 0] = float("-inf")
        expected = num_particles * torch.softmax(log_weight, -1)
        systematic = _counts(systematic_resample(log_weight, generator))
        stratified = _counts(stratified_resample(log_weight, generator))
        residual = _counts(residual_resample(log_weight, generator))
        assert ((systematic - expected).abs() < 1 + 1e-9).all()
        assert ((stratified - expected).abs() < 2 + 1e-9).all()
        assert (residual >= expected.floor() - 1e-9).all()
        for counts in (systematic, stratified, residual):
            assert (counts[:, 0] == 0).all() and (counts.sum(-1) == num_particles).all()


def test_systematic_resampling_is_unbiased():
    """E[count_i] = N W_i: over 20,000 rows the mean count of each of 4 fixed weights is within 0.02
    (the count takes two adjacent values, so its standard deviation is ≤ 0.5; 4 standard errors ≈ 0.014)."""
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    log_weight = weights.log().expand(20_000, 4)
    counts = _counts(systematic_resample(log_weight, seeded(1)))
    assert torch.allclose(counts.mean(0), 4 * weights, atol=0.02)


def test_conditional_resampling_keeps_the_reference_and_draws_the_rest_by_weight():
    log_weight = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64).log().expand(20_000, 4)
    indices = conditional_resample(log_weight, seeded(2))
    assert (indices[:, 0] == 0).all()
    frequency = torch.bincount(indices[:, 1:].reshape(-1), minlength=4).double() / (20_000 * 3)
    # multinomial frequencies over 60,000 draws: standard error ≤ 0.002
    assert torch.allclose(frequency, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64), atol=0.01)


def test_ess_formula():
    log_weight = torch.log(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]], dtype=torch.float64)) + 7.0
    assert torch.allclose(effective_sample_size(log_weight), torch.tensor([36 / 14, 3.0], dtype=torch.float64))


def test_chopthin_bounds_the_weight_ratio_and_the_ess():
    """For 20,000 rows of N = 8 log-normal weights (σ = 5, ratios up to e^40) and N = 33 (σ = 2): after chopthin
    every row's largest-to-smallest weight ratio is at most η = 3 + √8 (measured up to 5.817 ≤ 5.828) and its
    ESS at least N/2 (measured ≥ 0.695 N), since 4η/(1 + η)² = 1/2; children only of positive weights, sorted."""
    assert 4 * CHOPTHIN_ETA / (1 + CHOPTHIN_ETA) ** 2 == pytest.approx(0.5)
    generator = seeded(4)
    for num_particles, scale in ((8, 5.0), (33, 2.0)):
        log_weight = torch.randn(ROWS, num_particles, generator=generator, dtype=torch.float64) * scale
        log_weight[:, 1] = float("-inf")
        ancestors, after = chopthin_resample(log_weight, generator)
        ratio = (after.amax(-1) - after.amin(-1)).exp()
        assert (ratio <= CHOPTHIN_ETA * (1 + 1e-9)).all()
        assert (effective_sample_size(after) >= num_particles / 2 * (1 - 1e-9)).all()
        assert (ancestors != 1).all() and (ancestors.diff(dim=-1) >= 0).all()


def test_chopthin_with_a_smaller_eta():
    """η = 4 (the smallest allowed): the ratio stays ≤ 4, the ESS ≥ 4·4/25 N = 0.64 N; η < 4 is refused."""
    log_weight = torch.randn(2_000, 10, generator=seeded(5), dtype=torch.float64) * 3
    _, after = chopthin_resample(log_weight, seeded(6), eta=4.0)
    assert ((after.amax(-1) - after.amin(-1)).exp() <= 4 * (1 + 1e-9)).all()
    assert (effective_sample_size(after) >= 0.64 * 10 * (1 - 1e-9)).all()
    with pytest.raises(ValueError, match="eta"):
        chopthin_resample(log_weight, seeded(6), eta=3.0)


@pytest.mark.parametrize("num_particles", [5, 8, 16])
def test_chopthin_is_unbiased(num_particles):
    """The children of particle i weigh N W_i in expectation (the new weights in units of the mean weight
    before): over 20,000 draws, within 4 standard errors; hence the weighted estimate (1/N) Σ_j w'_j f(x_{a_j})
    of Σ_i W_i f(x_i) is unbiased (checked for a random f, same tolerance). The number of children is N."""
    log_weight = _weights(num_particles, 10 + num_particles)
    weights = torch.softmax(log_weight, -1)
    ancestors, after = chopthin_resample(log_weight.expand(ROWS, num_particles), seeded(7))
    assert ancestors.shape == after.shape == (ROWS, num_particles)
    _assert_unbiased(_counts(ancestors, after.exp()), num_particles * weights)
    f = torch.randn(num_particles, generator=seeded(8), dtype=torch.float64)
    estimate = (after.exp() * f[ancestors]).sum(-1, keepdim=True) / num_particles
    _assert_unbiased(estimate, (weights * f).sum()[None])


def test_chopthin_leaves_even_weights_alone():
    """Weights within a ratio of 2 of each other (all between a and η a / 2): each particle kept once with its
    own weight, in units of the mean."""
    log_weight = torch.tensor([[0.0, 0.3, -0.2, 0.5, 0.1]], dtype=torch.float64)
    ancestors, after = chopthin_resample(log_weight, seeded(9))
    assert ancestors.tolist() == [[0, 1, 2, 3, 4]]
    assert torch.allclose(after, log_weight - log_weight.logsumexp(-1, keepdim=True) + math.log(5))
