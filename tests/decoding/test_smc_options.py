"""`smc_decode`'s options ``resampling=`` and ``tempering=`` on the exact toy, and the validation of the options.

Toy: ``ExactDenoiser.random(vocab_size=3, length=4, seed=0)`` (81 sequences), random rule, so the target
``π_T ∝ p^(1/T)`` and its normaliser ``Z = Σ_x p(x)^(1/T)`` can be enumerated. The exact checks are of the two
unbiased estimates of SMC: ``E[Ẑ] = Z`` and ``E[Ẑ Σ_n W_n f(x_n)] = Σ_x p(x)^(1/T) f(x)`` (the unnormalised
particle measure), with ``f`` the number of zeros of ``x``; over 20,000 independent runs of ``N = 4``
particles at ``τ = 1 ≠ T``, resampling after every non-final step (``ess_threshold = 1``), the mean of each must
lie within 4 standard errors of the exact value. The consistency checks pool weighted particles (64,000 in all,
``N = 32``) against the enumerated target in TV (the noise of 64,000 weighted draws is about 0.015).
"""

import pytest
import torch
from conftest import empirical, seeded, total_variation

from dllm_mcmc import ExactDenoiser, smc_decode
from dllm_mcmc.decoding.smc import RESAMPLERS, Fixed, Ramp, check_ess_threshold, tempering_of
from dllm_mcmc.decoding.smc.tempering import incremental_log_weight
from dllm_mcmc.mh import gumbel_max

RUNS = 20_000


@pytest.fixture(scope="module")
def toy():
    return ExactDenoiser.random(vocab_size=3, length=4, seed=0)


def _assert_unbiased_estimates(toy, out, temperature):
    """``E[Ẑ] = Z`` and ``E[Ẑ Σ W f] = Σ_x p^(1/T) f`` within 4 standard errors over the runs of ``out``."""
    tempered = toy.probs.double() ** (1 / temperature)
    f = (toy.sequences == 0).sum(-1).double()
    runs, particles = out.log_weight.shape
    estimate = out.log_normalizer.exp()
    values = f[toy.index(out.tokens.reshape(-1, 4))].view(runs, particles)
    measure = estimate * (out.normalised_weights() * values).sum(-1)
    for sample, exact in ((estimate, float(tempered.sum())), (measure, float((tempered * f).sum()))):
        assert abs(float(sample.mean()) - exact) < 4 * float(sample.std()) / runs**0.5, (float(sample.mean()), exact)


def _weighted_law(toy, out):
    runs = out.log_weight.shape[0]
    return torch.zeros(81, dtype=torch.float64).index_add_(
        0, toy.index(out.tokens.reshape(-1, 4)), out.normalised_weights().reshape(-1)) / runs


@pytest.mark.parametrize("resampling", list(RESAMPLERS))
def test_every_resampling_scheme_keeps_the_estimates_unbiased(toy, resampling):
    """T = 0.5: measured |z| ≤ 2.5 for Ẑ and the unnormalised measure over the five schemes (seed 1); pooled
    over 10 seeds (200,000 runs) every |z| was ≤ 1.3."""
    out = smc_decode(toy, None, 4, temperature=1.0, target_temperature=0.5, num_particles=4, num_runs=RUNS,
                     ess_threshold=1.0, generator=seeded(1), resampling=resampling)
    assert out.resampled[:, :-1].float().mean() > 0.9  # all but runs whose weights are still equal
    _assert_unbiased_estimates(toy, out, 0.5)


def test_chopthin_keeps_weighted_particles_and_targets_p_to_the_one_over_t(toy):
    """Chopthin resampling after every step: the weights after it are not reset (they differ within a ratio of
    η), the weighted particles of N = 32 land within 0.03 in TV of p^(1/T) (measured 0.0186 at T = 0.5, 0.0133
    at T = 0.25, against 0.0179 / 0.0120 for systematic), and in the fully adapted SMC too (T = τ = 0.5,
    measured 0.0149 for N = 16; Ẑ and the unnormalised measure unbiased as above, measured z = 1.17 / 0.44)."""
    for temperature in (0.5, 0.25):
        out = smc_decode(toy, None, 4, temperature=1.0, target_temperature=temperature, num_particles=32,
                         num_runs=2_000, ess_threshold=1.0, generator=seeded(2), resampling="chopthin")
        assert total_variation(_weighted_law(toy, out), toy.tempered(temperature)) < 0.03
    assert not (out.log_weight == out.log_weight[:, :1]).all()  # weighted children, not reset to equal
    adapted = dict(temperature=0.5, target_temperature=0.5, ess_threshold=1.0, resampling="chopthin",
                   position_proposal="tempered_mass")
    out = smc_decode(toy, None, 4, num_particles=16, num_runs=4_000, generator=seeded(3), **adapted)
    assert total_variation(_weighted_law(toy, out), toy.tempered(0.5)) < 0.03
    _assert_unbiased_estimates(toy, smc_decode(toy, None, 4, num_particles=4, num_runs=RUNS, generator=seeded(4),
                                               **adapted), 0.5)


def test_ramp_schedule_exponents():
    """β_t = 1 + (1/T − 1) min(t, k)/k, ending exactly at 1/T (T_S == T bit for bit); k beyond S counts as S."""
    assert Fixed().temperatures(3, 0.3) == [0.3, 0.3, 0.3]
    temperatures = Ramp(steps=4).temperatures(6, 0.25)
    assert [1 / t for t in temperatures] == pytest.approx([1.75, 2.5, 3.25, 4.0, 4.0, 4.0])
    assert temperatures[3:] == [0.25] * 3
    assert Ramp().temperatures(4, 0.3)[-1] == 0.3 and Ramp(steps=10).temperatures(4, 2.0)[-1] == 2.0
    assert [1 / t for t in Ramp().temperatures(4, 2.0)] == pytest.approx([0.875, 0.75, 0.625, 0.5])
    assert tempering_of("ramp") == Ramp() and tempering_of(Ramp(steps=2)) == Ramp(steps=2)


def test_incremental_weight_formula():
    """(β_t − β_{t−1}) log p(path) + β_t log p_i(v) − log q_i(v); with an unchanged exponent the path term is
    left out, so the fixed schedule is today's log p / T − log q bit for bit."""
    path, log_p, log_q = (torch.tensor(values, dtype=torch.float64)
                          for values in ([-1.5, float("-inf")], [-0.7, -0.2], [-0.4, -0.9]))
    same = incremental_log_weight(path, log_p, log_q, 0.3, 0.3)
    assert torch.equal(same, log_p / 0.3 - log_q)  # no 0 · (−inf)
    changed = incremental_log_weight(path[:1], log_p[:1], log_q[:1], 0.25, 0.5)
    assert float(changed) == pytest.approx((4 - 2) * -1.5 + 4 * -0.7 + 0.4)


def test_ramp_weights_telescope_to_the_target(toy):
    """Without resampling (N = 1) a particle's final log weight is Σ_t log w_t = β_S log p(x) − Σ_t log q_t
    whatever the schedule (the path terms telescope): the same paths and final weights as the fixed schedule
    (to 1e-9), at T = 0.25 and T = 2."""
    for temperature in (0.25, 2.0):
        fixed, ramp = (smc_decode(toy, None, 4, temperature=1.0, target_temperature=temperature, num_particles=1,
                                  num_runs=200, generator=seeded(5), tempering=tempering)
                       for tempering in ("fixed", Ramp(steps=3)))
        assert torch.equal(fixed.tokens, ramp.tokens) and torch.equal(fixed.order, ramp.order)
        assert torch.allclose(fixed.log_weight, ramp.log_weight, atol=1e-9, rtol=0)


@pytest.mark.parametrize("tempering", ["ramp", Ramp(steps=2)])
@pytest.mark.parametrize("temperature", [0.25, 2.0])
def test_ramp_keeps_the_estimates_unbiased_and_the_target_exact(toy, tempering, temperature):
    """The ramp changes the intermediate targets only: Ẑ and the unnormalised measure stay unbiased (measured
    |z| ≤ 0.88 over the four cases, seed 1), and the weighted particles of N = 32 (resampled after every step)
    land within 0.03 in TV of p^(1/T) (measured: full ramp 0.0148 at T = 0.25, 0.0214 at T = 2; k = 2 0.0128 /
    0.0188; the fixed schedule 0.0120 / 0.0198)."""
    out = smc_decode(toy, None, 4, temperature=1.0, target_temperature=temperature, num_particles=4, num_runs=RUNS,
                     ess_threshold=1.0, generator=seeded(1), tempering=tempering)
    _assert_unbiased_estimates(toy, out, temperature)
    out = smc_decode(toy, None, 4, temperature=1.0, target_temperature=temperature, num_particles=32,
                     num_runs=2_000, ess_threshold=1.0, generator=seeded(2), tempering=tempering)
    assert total_variation(_weighted_law(toy, out), toy.tempered(temperature)) < 0.03


def test_particle_gibbs_with_the_ramp_is_exact(toy):
    """Conditional SMC with the ramp (its last exponent 1/T) still leaves π_T invariant: 500 chains of particle
    Gibbs (N = 4, τ = T = 0.25) by hand from `smc_decode(reference=...)`, 40 draws after 5 warm-up steps each;
    TV of the 20,000 draws to p^4 below 2.5 times the TV of 20,000 i.i.d. exact draws (the bound of
    tests/mcmc/test_particle_gibbs.py; measured 0.0046 against a floor of 0.0051)."""
    temperature, chains = 0.25, 500
    target = toy.tempered(temperature)
    generator = seeded(6)
    options = dict(temperature=temperature, target_temperature=temperature, num_particles=4, num_runs=chains,
                   generator=generator, tempering="ramp")
    out = smc_decode(toy, None, 4, **options)
    rows = torch.arange(chains)
    draws = []
    for step in range(45):
        picked = gumbel_max(out.log_weight, generator)
        tokens, order = out.tokens[rows, picked], out.order[rows, picked]
        if step >= 5:
            draws.append(tokens)
        out = smc_decode(toy, None, 4, reference=(tokens, order), **options)
    exact = toy.sequences[torch.multinomial(target, 20_000, replacement=True, generator=seeded(0))]
    floor = total_variation(empirical(toy, exact), target)
    assert total_variation(empirical(toy, torch.cat(draws)), target) < 2.5 * floor


@pytest.mark.parametrize("options, message", [
    (dict(resampling="killing"), "resampling"),
    (dict(resampling="chopthin", reference=(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 3]))),
     "conditionally"),
    (dict(tempering="adaptive"), "tempering"),
    (dict(tempering=0.5), "tempering"),
    (dict(tempering="ramp", position_proposal="tempered_mass", temperature=0.5), "fixed"),
    (dict(ess_threshold=1.5), "ess_threshold must lie in"),
    (dict(ess_threshold=True), "ess_threshold must lie in"),
])
def test_bad_options_are_refused(toy, options, message):
    options = {"temperature": 1.0, "target_temperature": 0.5, **options}
    with pytest.raises(ValueError, match=message):
        smc_decode(toy, None, 4, num_particles=4, generator=seeded(0), **options)


def test_ess_threshold_check():
    assert check_ess_threshold(0) == 0.0 and check_ess_threshold(1) == 1.0 and check_ess_threshold(0.25) == 0.25
    for bad in (-0.1, 1.01, True, "0.5", None, float("nan")):
        with pytest.raises(ValueError, match="ess_threshold must lie in"):
            check_ess_threshold(bad)
    with pytest.raises(ValueError, match="steps"):
        Ramp(steps=0)
