"""The evaluation sampler ``sampler = "particles"``: one SMC system of ``n`` particles per prompt, whose particles,
after a final systematic resampling, are the ``n`` samples (`dllm_mcmc.mcmc.particles`); and ``sampler = "smc"``
in an evaluation: the SMC kernel's independent draws, with the old meaning refused naming the new name.

Checked on the bundled engine (``tasks-small``, ``s = gen_length = 16`` steps) against `smc_decode` run
directly with the same seed: the samples are exactly the particles the method's own SMC run and final
resampling pick, their cost is that of ``n`` plain decodes (``n·s`` rows in ``s`` steps, what the plan
says), and in a pack each prompt's block is its own SMC system.
"""

from __future__ import annotations

import pytest
import torch
from conftest import seeded

from dllm_mcmc.decoding.smc import SMCResult, smc_decode, systematic_resample
from dllm_mcmc.eval.engine import Engine, load_engine
from dllm_mcmc.eval.methods import Method, generate, generate_pack
from dllm_mcmc.eval.plan import method_cost

SAMPLES, SEED, TAU = 8, 3, 0.5


@pytest.fixture(scope="module")
def engine() -> Engine:
    return load_engine("tasks-small")


def smc_method(**options: object) -> Method:
    return Method.from_config({"name": "s", "sampler": "particles", "rule": "random", "temperature": TAU,
                               **options})


def direct_run(engine: Engine, prompt: torch.Tensor | list[torch.Tensor], num_runs: int,
               seed: int = SEED) -> tuple[SMCResult, torch.Tensor]:
    """`smc_decode` as the method calls it (same seed, settings and generator) and the final systematic
    resampling's ``[R, N]`` ancestors drawn from the same generator afterwards."""
    generator = seeded(seed)
    out = smc_decode(engine.denoiser, prompt, engine.gen_length, rule="random", temperature=TAU,
                     target_temperature=TAU, num_particles=SAMPLES, ess_threshold=0.5, generator=generator,
                     num_runs=num_runs)
    return out, systematic_resample(out.log_weight, generator)


def test_cost_reproducibility_and_seeds(engine: Engine) -> None:
    method = smc_method()
    prompt = engine.encode("7+5*3=")
    steps = engine.gen_length
    first = generate(method, engine, prompt, SAMPLES, SEED)
    assert first.tokens.shape == (SAMPLES, engine.gen_length)
    assert (first.tokens != engine.denoiser.mask_id).all()
    assert (first.nfe, first.forward_rows) == (steps, SAMPLES * steps)  # the cost of n plain decodes
    assert method_cost(method, engine.gen_length, SAMPLES) == (first.nfe, first.forward_rows)
    again = generate(method, engine, prompt, SAMPLES, SEED)
    assert torch.equal(again.tokens, first.tokens)
    other = generate(method, engine, prompt, SAMPLES, SEED + 1)
    assert not torch.equal(other.tokens, first.tokens)


def test_samples_are_the_finally_resampled_particles_of_the_same_run(engine: Engine) -> None:
    """Every sample is a final particle of the SMC run made with the same seed; the samples are exactly
    the particles picked by a systematic resampling of its final weights (drawn from the same generator
    after the run), so particle ``i`` appears ``⌊n W_i⌋`` or ``⌈n W_i⌉`` times."""
    prompt = engine.encode("7+5*3=")
    generation = generate(smc_method(), engine, prompt, SAMPLES, SEED)
    out, ancestors = direct_run(engine, prompt, 1)
    particles = out.tokens[0]
    assert all(any(torch.equal(sample, p) for p in particles) for sample in generation.tokens)
    assert torch.equal(generation.tokens, particles[ancestors[0]])
    counts = torch.bincount(ancestors[0], minlength=SAMPLES).double()
    assert ((counts - SAMPLES * out.normalised_weights()[0]).abs() < 1 + 1e-9).all()


def test_a_pack_runs_one_system_per_prompt(engine: Engine) -> None:
    """Two prompts of different lengths (one with its left padding partly stripped), packed: the method's
    samples equal `smc_decode` over the list of prompts with ``num_runs=2`` and the same seed, followed by
    the final resampling. And each prompt's block is the block of a run with that prompt in both slots
    (same seed, same batch shape, so the same random draws; no padding there): run ``u`` of the mixed batch
    is an SMC system on prompt ``u`` alone, draw for draw."""
    prompts = [engine.encode("7+5*3="), engine.encode("12-3=")[-8:]]
    assert prompts[0].numel() != prompts[1].numel()
    per_prompt, generation = generate_pack(smc_method(), engine, prompts, SAMPLES, SEED)
    assert [t.shape for t in per_prompt] == [(SAMPLES, engine.gen_length)] * 2
    assert (generation.nfe, generation.forward_rows) == (engine.gen_length, 2 * SAMPLES * engine.gen_length)
    out, ancestors = direct_run(engine, prompts, 2)
    for u in range(2):
        assert torch.equal(per_prompt[u], out.tokens[u][ancestors[u]])
    for u, prompt in enumerate(prompts):
        alone, alone_ancestors = direct_run(engine, prompt, 2)  # one shared [P] prompt, no padding
        assert torch.equal(alone.tokens[u], out.tokens[u]) and torch.equal(alone_ancestors[u], ancestors[u])
        assert torch.allclose(alone.log_weight[u], out.log_weight[u], atol=1e-5, rtol=0)
        assert torch.allclose(alone.log_normalizer[u], out.log_normalizer[u], atol=1e-5, rtol=0)
        assert torch.equal(per_prompt[u], alone.tokens[u][alone_ancestors[u]])
    # the two systems are different: their particles differ
    assert not torch.equal(per_prompt[0], per_prompt[1])


@pytest.mark.parametrize("config, message", [
    ({"num_particles": 4}, "num_particles is not an option of sampler 'particles'"),
    ({"rule": "confidence"}, "exact order law"),
    ({"ess_threshold": 1.5}, "ess_threshold must lie in"),
    ({"ess_threshold": True}, "ess_threshold must lie in"),
    ({"tokens_per_step": 2}, "one token"),
])
def test_invalid_settings_are_refused_naming_the_method(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"method 'bad-smc': .*{message}"):
        Method.from_config({"name": "bad-smc", "sampler": "particles", **config})


def test_spec_has_no_warmup_and_keeps_the_threshold() -> None:
    spec = smc_method(ess_threshold=0.25).spec()
    assert "warmup" not in spec and spec["options"] == {"ess_threshold": 0.25}


def test_the_old_meaning_of_smc_is_refused_naming_the_new_sampler() -> None:
    """A config written when ``sampler = "smc"`` meant the particle sampler (it had no num_particles) is refused
    when read, and the message names ``particles``; with num_particles, ``smc`` is the SMC kernel."""
    with pytest.raises(ValueError, match="method 'old': .*now named 'particles'.*give num_particles"):
        Method.from_config({"name": "old", "sampler": "smc", "ess_threshold": 0.5})
    kernel = Method.from_config({"name": "new", "sampler": "smc", "num_particles": 4})
    assert kernel.sampler_spec.is_kernel and kernel.sampler_spec.independent


def test_the_smc_kernel_in_an_evaluation_draws_independent_runs(engine: Engine) -> None:
    """``sampler = "smc"`` with num_particles: each sample is one particle of its own SMC run of N particles (N·s
    rows per sample, s steps: what the plan says), reproducible from the seed."""
    method = Method.from_config({"name": "k", "sampler": "smc", "num_particles": 4, "temperature": TAU})
    prompt = engine.encode("7+5*3=")
    first = generate(method, engine, prompt, SAMPLES, SEED)
    steps = engine.gen_length
    assert (first.nfe, first.forward_rows) == (steps, SAMPLES * 4 * steps)
    assert method_cost(method, engine.gen_length, SAMPLES) == (first.nfe, first.forward_rows)
    assert torch.equal(generate(method, engine, prompt, SAMPLES, SEED).tokens, first.tokens)
