"""Sequential Monte Carlo decoding (`smc_decode`) with its default parts (systematic resampling, fixed
tempering); the resampling schemes are tested in test_resampling.py, the other options in test_smc_options.py.

Toy: ``ExactDenoiser.random(vocab_size=3, length=4, seed=0)`` (81 sequences), random rule, T = 0.5, so
the target's normaliser is ``Z = Σ_σ Σ_x u(σ | x) p(x)^(1/T) = Σ_x p(x)^(1/T)`` (the toy is consistent
and ``Σ_σ u(σ | x) = 1``). The mixed-prompt test uses the bundled small model (the toy has one fixed prompt).
"""

import pytest
import torch
from conftest import seeded, total_variation

from dllm_mcmc import ExactDenoiser, MeteredDenoiser, smc_decode

T = 0.5


def _exact_normaliser(toy):
    return float((toy.probs.double() ** (1 / T)).sum())


def test_normalising_constant_estimate_is_unbiased():
    """Mean of Ẑ over 20,000 independent SMC runs (N = 4) equals Z within 4 standard errors of the
    mean, for τ = T (weights known before the draw) and τ = 1 ≠ T (resampling does happen)."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    exact = _exact_normaliser(toy)
    for tau, seed in ((0.5, 1), (1.0, 2)):
        out = smc_decode(toy, None, 4, temperature=tau, target_temperature=T, num_particles=4, num_runs=20_000,
                         generator=seeded(seed))
        estimates = out.log_normalizer.exp()
        standard_error = float(estimates.std()) / 20_000**0.5
        assert abs(float(estimates.mean()) - exact) < 4 * standard_error
        if tau != T:
            assert out.resampled.any()


def test_weighted_particles_converge_to_the_target_as_n_grows():
    """τ = 1, T = 0.5. Pooled over runs with 64,000 particles in all for each N, the weighted particle
    law's TV to p^(1/T) (its self-normalisation bias is O(1/N)) measured 0.27 / 0.086 / 0.025 at N = 2 / 8 / 32
    (seed 2); the noise of 64,000 weighted draws is below 0.015. Asserted: strictly falling, N = 32 < 0.04."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    target = toy.tempered(T)
    distances = []
    for num_particles in (2, 8, 32):
        runs = 64_000 // num_particles
        out = smc_decode(toy, None, 4, temperature=1.0, target_temperature=T, num_particles=num_particles,
                         num_runs=runs, generator=seeded(2))
        law = torch.zeros(81, dtype=torch.float64).index_add_(
            0, toy.index(out.tokens.reshape(-1, 4)), out.normalised_weights().reshape(-1)) / runs
        distances.append(total_variation(law, target))
    assert distances[0] > distances[1] > distances[2]
    assert distances[0] > 0.15 and distances[2] < 0.04


def test_records_shapes_cost_and_path_densities():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    meter = MeteredDenoiser(toy)
    out = smc_decode(meter, None, 4, temperature=1.0, target_temperature=T, num_particles=6, num_runs=3,
                     ess_threshold=1.0, generator=seeded(0))
    assert out.tokens.shape == out.order.shape == (3, 6, 4)
    assert out.ess.shape == out.resampled.shape == (3, 4) and out.ancestors.shape == (3, 4, 6)
    assert (out.nfe, out.forward_rows) == (4, 72) == (meter.nfe, meter.forward_rows)
    assert not out.resampled[:, -1].any()  # never after the last step
    # each particle's record is its own path: chain rule and 1/|M| position terms
    tokens = out.tokens.reshape(-1, 4)
    assert torch.allclose(out.log_p.reshape(-1), toy.probs.log()[toy.index(tokens)], atol=1e-5)
    assert torch.allclose(out.log_position, torch.full_like(out.log_position, -float(torch.tensor(24.0).log())))
    assert (out.order.sort(-1).values == torch.arange(4)).all()


def test_reference_path_is_kept_in_slot_zero():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    tokens, order = torch.tensor([2, 0, 1, 1]), torch.tensor([3, 1, 0, 2])
    out = smc_decode(toy, None, 4, temperature=1.0, target_temperature=T, num_particles=5, num_runs=50,
                     ess_threshold=1.0, generator=seeded(3), reference=(tokens, order))
    assert (out.tokens[:, 0] == tokens).all() and (out.order[:, 0] == order).all()
    assert (out.ancestors[:, :, 0] == 0).all() and out.resampled.any()


def test_same_seed_same_run():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    first, second = (smc_decode(toy, None, 4, temperature=1.0, target_temperature=T, num_particles=4, num_runs=8,
                                generator=seeded(5)) for _ in range(2))
    assert torch.equal(first.tokens, second.tokens) and torch.equal(first.log_normalizer, second.log_normalizer)


def _small_model_and_prompts():
    """The bundled small model and two prompts of different lengths (ids among its characters, none of
    ``<pad> <mask> <eos>``)."""
    from dllm_mcmc import load_model

    denoiser, _ = load_model("tasks-small")
    generator = seeded(20)
    return denoiser, [torch.randint(3, denoiser.vocab_size, (n,), generator=generator) for n in (3, 7)]


@pytest.mark.parametrize("conditional", [False, True])
def test_mixed_prompts_run_each_system_as_with_its_prompt_alone(conditional):
    """Two prompts of different lengths (left-padded, with an attention mask), R = 2 systems in one batch.

    The strongest check that holds: the random streams are drawn for the whole batch, so a run alone
    (R = 1) makes other draws than the same run in a batch of two; but run ``r`` of the mixed batch makes
    exactly the draws of run ``r`` in a batch of R = 2 runs that all have prompt ``r`` (same seed, same batch
    shape, no padding there). So it must give the same tokens, orders, ancestors and resampling decisions,
    and the same log weights, ``log p``, ``log u`` and ``log Ẑ`` to 1e-5. τ = 1 ≠ T = 0.5 and
    ``ess_threshold = 1`` make the weights uneven and resampling happen. With a reference (conditional SMC)
    the forced slot 0 is also checked against a truly alone run (R = 1): its ``log p`` and ``log u`` are
    deterministic functions of the forced path and must match to 1e-5.
    """
    denoiser, prompts = _small_model_and_prompts()
    gen, particles = 5, 4
    options = dict(temperature=1.0, target_temperature=T, num_particles=particles, ess_threshold=1.0, num_runs=2)
    reference = None
    if conditional:  # one path per run: decoded by a first SMC run on the mixed prompts
        first = smc_decode(denoiser, prompts, gen, generator=seeded(21), **options)
        reference = (first.tokens[:, 1], first.order[:, 1])
    mixed = smc_decode(denoiser, prompts, gen, generator=seeded(22), reference=reference, **options)
    assert mixed.resampled.any()
    for run, prompt in enumerate(prompts):
        same = smc_decode(denoiser, prompt, gen, generator=seeded(22), reference=reference, **options)
        assert torch.equal(same.tokens[run], mixed.tokens[run]) and torch.equal(same.order[run], mixed.order[run])
        assert torch.equal(same.ancestors[run], mixed.ancestors[run])
        assert torch.equal(same.resampled[run], mixed.resampled[run])
        for name in ("log_weight", "log_p", "log_position", "log_normalizer", "ess"):
            assert torch.allclose(getattr(same, name)[run], getattr(mixed, name)[run], atol=1e-5, rtol=0), name
        if reference is not None:
            assert torch.equal(mixed.tokens[run, 0], reference[0][run])
            alone = smc_decode(denoiser, prompt, gen, generator=seeded(23), reference=(reference[0][run],
                               reference[1][run]), **{**options, "num_runs": 1})
            assert torch.allclose(alone.log_p[0, 0], mixed.log_p[run, 0], atol=1e-5, rtol=0)
            assert torch.allclose(alone.log_position[0, 0], mixed.log_position[run, 0], atol=1e-5, rtol=0)
    assert not torch.allclose(mixed.log_normalizer[0], mixed.log_normalizer[1])  # two different systems
