"""Fully adapted SMC (``position_proposal="tempered_mass"``): positions proposed in proportion to their
tempered mass, weights and resampling before the draw (`dllm_mcmc.decoding.smc`).

Toy: ``ExactDenoiser.random(vocab_size=3, length=4, seed=0)`` (81 sequences), random-order target at
T = τ = 0.5, so ``Z = Σ_x p(x)^(1/T)`` (the toy is consistent). The same target as the rule proposal's:
only the proposal and the moment of resampling change, so every exactness check of plain SMC applies.
"""

import math

import pytest
import torch
from conftest import empirical, seeded, total_variation

from dllm_mcmc import ExactDenoiser, MeteredDenoiser, TemperedTarget, sample, smc_decode
from dllm_mcmc.denoisers.base import model_log_probs
from dllm_mcmc.mcmc.particle_gibbs import ParticleGibbs

T = 0.5


@pytest.fixture(scope="module")
def toy():
    return ExactDenoiser.random(vocab_size=3, length=4, seed=0)


def adapted(toy, num_particles, num_runs, seed, **options):
    return smc_decode(toy, None, 4, temperature=T, target_temperature=T, num_particles=num_particles,
                      num_runs=num_runs, generator=seeded(seed), position_proposal="tempered_mass", **options)


def test_normalising_constant_estimate_is_unbiased(toy):
    """Mean of Ẑ over 20,000 runs of N = 4 equals Z within 4 standard errors of the mean."""
    exact = float((toy.probs.double() ** (1 / T)).sum())
    estimates = adapted(toy, 4, 20_000, seed=1).log_normalizer.exp()
    assert abs(float(estimates.mean()) - exact) < 4 * float(estimates.std()) / 20_000**0.5


def test_weights_do_not_depend_on_the_draw(toy):
    """With one particle per run and no resampling, the final log weight is Σ_t log((1/m_t) Σ_j Z_j), a
    function of the states the path went through, computed here independently by calling the toy: the weight
    of the fully adapted proposal is the one-step predictive mass, not a function of the draw."""
    out = adapted(toy, 1, 200, seed=2, ess_threshold=0.0)
    for run in range(20):
        state = torch.full((4,), toy.mask_id)
        expected = 0.0
        for position in out.order[run, 0].tolist():
            masked = (state == toy.mask_id).nonzero()[:, 0]
            log_p = model_log_probs(toy(state[None]), toy.mask_id)[0]  # [L, V] the toy's conditionals
            mass = (log_p[masked].double() / T).logsumexp(-1)
            expected += float(mass.logsumexp(0)) - math.log(len(masked))
            state[position] = out.tokens[run, 0, position]
        assert float(out.log_weight[run, 0]) == pytest.approx(expected, abs=1e-5)


def test_weighted_particles_are_consistent(toy):
    """Pooled weighted particles (64,000 in all, N = 16), resampled before every draw whose weights differ
    (``ess_threshold=1``), sit within 0.02 in TV of p^(1/T) (the noise of 64,000 weighted draws is below
    0.015, the O(1/N) self-normalisation bias smaller still)."""
    out = adapted(toy, 16, 4_000, seed=4, ess_threshold=1.0)
    law = torch.zeros(81, dtype=torch.float64).index_add_(
        0, toy.index(out.tokens.reshape(-1, 4)), out.normalised_weights().reshape(-1)) / 4_000
    assert total_variation(law, toy.tempered(T)) < 0.02
    assert out.resampled.any()


def test_records_and_cost(toy):
    meter = MeteredDenoiser(toy)
    out = smc_decode(meter, None, 4, temperature=T, target_temperature=T, num_particles=6, num_runs=3,
                     ess_threshold=1.0, generator=seeded(0), position_proposal="tempered_mass")
    assert (out.nfe, out.forward_rows) == (4, 72) == (meter.nfe, meter.forward_rows)
    assert out.resampled.shape == (3, 4) and out.ancestors.shape == (3, 4, 6)
    # resampled at the last step too (before its draw), so the final weights are equal
    assert out.resampled[:, -1].all() and torch.equal(out.log_weight, torch.zeros_like(out.log_weight))
    tokens = out.tokens.reshape(-1, 4)
    assert torch.allclose(out.log_p.reshape(-1), toy.probs.log()[toy.index(tokens)], atol=1e-5)
    # the target's order law is uniform: log u = −log 4!
    assert torch.allclose(out.log_position, torch.full_like(out.log_position, -math.log(24)))


def test_particle_gibbs_with_the_adapted_proposal_is_exact(toy):
    """20,000 draws (500 chains × 40 after 5 warm-up steps), N = 4, T = 0.25: TV below 2.5× the floor of
    20,000 i.i.d. exact draws (as for the rule proposal in tests/mcmc/test_particle_gibbs.py)."""
    temperature = 0.25
    target = toy.tempered(temperature)
    exact = toy.sequences[torch.multinomial(target, 20_000, replacement=True, generator=seeded(0))]
    floor = total_variation(empirical(toy, exact), target)
    result = sample(toy, None, 4, kernel="pgibbs", target_temperature=temperature, num_chains=500,
                    num_samples=40, warmup=5, progress=False, num_particles=4, position_proposal="tempered_mass")
    assert total_variation(empirical(toy, result.tokens.reshape(-1, 4)), target) < 2.5 * floor


@pytest.mark.parametrize("options, message", [
    ({"rule": "top_prob"}, "needs rule='random'"),
    ({"temperature": 1.0}, "temperature == target_temperature"),
    ({"position_proposal": "best"}, "choose 'rule' or 'tempered_mass'"),
])
def test_bad_settings_are_refused(toy, options, message):
    settings = {"temperature": T, "target_temperature": T, "position_proposal": "tempered_mass", **options}
    with pytest.raises(ValueError, match=message):
        smc_decode(toy, None, 4, generator=seeded(0), **settings)


def test_kernels_refuse_it_off_the_random_order_tempered_proposal(toy):
    with pytest.raises(ValueError, match="needs rule='random'"):
        ParticleGibbs(TemperedTarget(toy, None, 4, target_temperature=T, rule="top_prob"),
                      position_proposal="tempered_mass")
    with pytest.raises(ValueError, match="proposal temperature equal"):
        ParticleGibbs(TemperedTarget(toy, None, 4, target_temperature=T), proposal_temperature=1.0,
                      position_proposal="tempered_mass")
