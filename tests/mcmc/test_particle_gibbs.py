"""Particle Gibbs (`ParticleGibbs`, Andrieu, Doucet & Holenstein 2010): exact for any N ≥ 2.

Toy and setting for the exactness test: ``ExactDenoiser.random(vocab_size=3, length=4, seed=0)``, random
rule, T = 0.25 (target ``p^4``, concentrated, which makes the stepwise kernel's finite-K / mean-field bias
large). 500 chains × 40 draws after 5 warm-up steps = 20,000 draws. The plug-in TV of 20,000 *exact*
i.i.d. draws from ``p^(1/T)`` is the noise floor ``f`` (measured 0.0051 here); particle Gibbs measured
0.0044, stepwise with K = 4 0.054. Bounds: particle Gibbs below ``2.5 f`` (its draws are correlated, which
inflates the noise: acceptance ≈ 0.64), stepwise above ``5 f``.
"""

import pickle

import pytest
import torch
from conftest import empirical, seeded, total_variation
from pyro.infer import MCMC

from dllm_mcmc import ExactDenoiser, ParticleGibbs, TemperedTarget, get_sampler, sample
from dllm_mcmc.mcmc.stepwise import Stepwise


def test_particle_gibbs_is_exact_where_stepwise_k4_is_biased():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    temperature = 0.25
    target = toy.tempered(temperature)
    draws = 20_000
    exact = toy.sequences[torch.multinomial(target, draws, replacement=True, generator=seeded(0))]
    floor = total_variation(empirical(toy, exact), target)
    result = sample(toy, None, 4, kernel="pgibbs", target_temperature=temperature, num_chains=500,
                    num_samples=40, warmup=5, progress=False, num_particles=4)
    assert result.tokens.shape == (500, 40, 4)
    particle_gibbs = total_variation(empirical(toy, result.tokens.reshape(-1, 4)), target)
    stepwise_kernel = Stepwise(TemperedTarget(toy, None, 4, target_temperature=temperature),
                               proposal_temperature=temperature, num_candidates=4, num_chains=2_000, seed=0)
    stepwise = sample(toy, None, 4, kernel=stepwise_kernel, num_samples=10, warmup=0, progress=False)
    biased = total_variation(empirical(toy, stepwise.tokens.reshape(-1, 4)), target)
    assert particle_gibbs < 2.5 * floor
    assert biased > 5 * floor


def test_info_and_cost():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    target = TemperedTarget(toy, None, 4, target_temperature=0.5)
    kernel = ParticleGibbs(target, num_particles=3, num_chains=5, seed=1)
    assert kernel.proposal.temperature == 0.5  # τ defaults to T
    kernel.setup(0)
    params = kernel.initial_params
    for _ in range(5):
        reference = params["tokens"]
        params = kernel.sample(params)
        info = kernel.info
        assert set(info) == {"log_target", "log_likelihood", "leave_prob", "left_reference", "nfe", "forward_rows"}
        assert all(value.shape == (5,) for value in info.values())
        assert info["nfe"].tolist() == [4.0] * 5 and info["forward_rows"].tolist() == [12.0] * 5
        assert ((info["leave_prob"] >= 0) & (info["leave_prob"] <= 1)).all()
        kept = info["left_reference"] == 0
        assert torch.equal(params["tokens"][kept], reference[kept])
        # random rule: log u(σ | x) = −log 4! for every order
        expected = toy.probs.log()[toy.index(params["tokens"])] / 0.5 - torch.tensor(24.0).log()
        assert torch.allclose(info["log_target"].double(), expected, atol=1e-4)
        assert torch.allclose(info["log_likelihood"].double(), toy.probs.log()[toy.index(params["tokens"])], atol=1e-5)


def test_registered_and_runs_under_sample_and_pyro_mcmc():
    assert get_sampler("pgibbs").kernel is ParticleGibbs
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    result = sample(toy, None, 4, kernel="pgibbs", target_temperature=0.5, num_chains=2, num_samples=6, warmup=2,
                    progress=False, num_particles=3, ess_threshold=1.0)
    assert result.tokens.shape == (2, 6, 4) and result.config["kernel"] == "pgibbs"
    kernel = ParticleGibbs(TemperedTarget(toy, None, 4, target_temperature=0.5), num_chains=3, seed=0)
    mcmc = MCMC(kernel, num_samples=10, warmup_steps=3, disable_progbar=True)
    mcmc.run()
    tokens = mcmc.get_samples(group_by_chain=True)["tokens"]
    # with the float scalar sites, Pyro stores each draw as one float tensor: the ids are exact integers
    assert tokens.dtype == torch.float32 and tokens.shape == (1, 10, 3, 4) and torch.equal(tokens, tokens.round())
    assert "left_reference" in kernel.logging()
    assert len(pickle.loads(pickle.dumps(kernel.diagnostics()))["left_reference"]) == 3


def test_same_seed_same_chain():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    runs = [sample(toy, None, 4, kernel="pgibbs", target_temperature=0.5, num_chains=2, num_samples=5, warmup=1,
                   progress=False, seed=3).tokens for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("options", [dict(num_particles=1), dict(ess_threshold=1.5)])
def test_bad_options_are_refused(options):
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    with pytest.raises(ValueError, match=next(iter(options))):
        ParticleGibbs(TemperedTarget(toy, None, 4, target_temperature=0.5), **options)


def test_other_likelihoods_are_refused():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    with pytest.raises(ValueError, match="order"):
        ParticleGibbs(TemperedTarget(toy, None, 4, target_temperature=0.5, likelihood="left_to_right"))


def test_smc_kernel_draws_independently_and_approaches_the_target():
    """The thin `SMC` kernel: one SMC run per `sample`, one particle per chain ∝ its final weight. Not exact
    (O(1/N) bias); with N = 16, τ = T = 0.5 and 10,000 draws its TV measured 0.028 against an i.i.d. floor of
    0.022 (bound 0.045, about twice the floor); warm-up is skipped and ``info`` carries ``log Ẑ``."""
    from dllm_mcmc import SMC

    assert get_sampler("smc").kernel is SMC
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    result = sample(toy, None, 4, kernel="smc", target_temperature=0.5, proposal_temperature=0.5,
                    num_chains=1_000, num_samples=10, warmup=5, progress=False, num_particles=16)
    assert result.config["warmup"] == 0 and "log_normalizer" in result.stats
    assert total_variation(empirical(toy, result.tokens.reshape(-1, 4)), toy.tempered(0.5)) < 0.045


def test_smc_and_particle_gibbs_are_siblings():
    """Both are `TargetKernel`s over the same parts (`dllm_mcmc.mcmc.particle_runs`), neither a subclass of the
    other."""
    from dllm_mcmc import SMC, TargetKernel

    assert issubclass(SMC, TargetKernel) and issubclass(ParticleGibbs, TargetKernel)
    assert not issubclass(SMC, ParticleGibbs) and not issubclass(ParticleGibbs, SMC)


def test_smc_kernel_resampling_option():
    """``resampling`` picks the scheme of the kernel's SMC runs (chopthin here); the info is unchanged; an unknown
    name and a bad ``ess_threshold`` are refused."""
    from dllm_mcmc import SMC

    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    target = TemperedTarget(toy, None, 4, target_temperature=0.5)
    kernel = SMC(target, proposal_temperature=1.0, num_particles=8, num_chains=3, seed=2, ess_threshold=1.0,
                 resampling="chopthin")
    kernel.setup(0)
    params = kernel.sample({})
    assert params["tokens"].shape == (3, 4) and kernel.resampling == "chopthin"
    assert set(kernel.info) == {"log_target", "log_likelihood", "ess", "log_normalizer", "nfe", "forward_rows"}
    assert ((kernel.info["ess"] > 0) & (kernel.info["ess"] <= 1)).all()
    with pytest.raises(ValueError, match="resampling"):
        SMC(target, resampling="killing")
    with pytest.raises(ValueError, match="ess_threshold"):
        SMC(target, ess_threshold=-0.5)


def test_mixed_prompts_each_chain_runs_as_with_its_prompt_alone():
    """A `TemperedTarget` over two prompts of different lengths on the bundled small model (left-padded
    rows with an attention mask), two chains in one batch: chain ``c`` samples ``π_T(· | prompt c)``.

    Checked two ways. (1) Draw for draw: the kernel's random streams are drawn for the whole batch, so the
    strongest comparison that holds is with a kernel of the same seed and shape over the single prompt
    ``c`` (no padding): chain ``c`` must hold the same states and ``info`` (to 1e-5) at every step. (2) Each
    chain's ``log_target`` equals ``log u(σ | x) + log p(x | σ) / T`` of its state replayed alone under
    its own prompt by a single-prompt target (to 1e-4, float32 logits)."""
    from dllm_mcmc import load_model, replay

    denoiser, _ = load_model("tasks-small")
    generator = seeded(30)
    prompts = [torch.randint(3, denoiser.vocab_size, (n,), generator=generator) for n in (6, 2)]
    gen, temperature = 5, 0.5

    def kernel_for(prompt):
        target = TemperedTarget(denoiser, prompt, gen, target_temperature=temperature, rule="random")
        kernel = ParticleGibbs(target, proposal_temperature=1.0, num_particles=3, num_chains=2, seed=4,
                               ess_threshold=1.0)
        kernel.setup(0)
        return kernel

    mixed = kernel_for(prompts)
    assert mixed.target.per_row
    singles = [kernel_for(prompt) for prompt in prompts]
    for chain in range(2):
        assert torch.equal(singles[chain].initial_params["tokens"][chain], mixed.initial_params["tokens"][chain])
    params = mixed.initial_params
    accepted = torch.zeros(2)
    for _ in range(4):
        params = mixed.sample(params)
        accepted += mixed.info["left_reference"]
        for chain, (single, prompt) in enumerate(zip(singles, prompts)):
            alone = single.sample(single.initial_params)
            assert torch.equal(alone["tokens"][chain], params["tokens"][chain])
            assert torch.equal(alone["order"][chain], params["order"][chain])
            for name in ("log_target", "leave_prob", "left_reference"):
                assert torch.allclose(single.info[name][chain], mixed.info[name][chain], atol=1e-5, rtol=0), name
            rows = slice(chain, chain + 1)
            record = replay(denoiser, prompt, params["tokens"][rows], params["order"][rows], mixed.target.order_law)
            own = TemperedTarget(denoiser, prompt, gen, target_temperature=temperature, rule="random")
            assert torch.allclose(own.log_density(record).float(), mixed.info["log_target"][rows], atol=1e-4, rtol=0)
    assert mixed.info["nfe"].tolist() == [float(gen)] * 2 and mixed.info["forward_rows"].tolist() == [3.0 * gen] * 2
    assert accepted.sum() > 0  # the chains moved


def test_particle_gibbs_with_the_ramp_schedule_stays_exact():
    """``tempering="ramp"``: the conditional SMC targets intermediate laws whose exponent ramps from 1 to 1/T and
    ends at π_T, so the particle Gibbs move still leaves π_T invariant. Same setting as the exactness test above
    (T = 0.25, N = 4, 500 chains × 40 draws after 5 warm-up steps): TV below 2.5 times the floor of as many i.i.d.
    draws (the floor of 20,000 exact draws, as above)."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    temperature = 0.25
    target = toy.tempered(temperature)
    exact = toy.sequences[torch.multinomial(target, 20_000, replacement=True, generator=seeded(0))]
    floor = total_variation(empirical(toy, exact), target)
    result = sample(toy, None, 4, kernel="pgibbs", target_temperature=temperature, num_chains=500,
                    num_samples=40, warmup=5, progress=False, num_particles=4, tempering="ramp")
    assert total_variation(empirical(toy, result.tokens.reshape(-1, 4)), target) < 2.5 * floor


def test_smc_kernel_with_chopthin_and_the_ramp_approaches_the_target():
    """The SMC kernel with both diversity options (chopthin resampling, the ramp): as its systematic twin above
    (N = 16, τ = T = 0.5, 10,000 draws; bound 0.045, about twice the i.i.d. floor of 0.022)."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    result = sample(toy, None, 4, kernel="smc", target_temperature=0.5, proposal_temperature=0.5, num_chains=1_000,
                    num_samples=10, progress=False, num_particles=16, resampling="chopthin", tempering="ramp")
    assert total_variation(empirical(toy, result.tokens.reshape(-1, 4)), toy.tempered(0.5)) < 0.045
    with pytest.raises(ValueError, match="tempering='cool' is unknown"):
        sample(toy, None, 4, kernel="smc", num_particles=4, tempering="cool", progress=False)
