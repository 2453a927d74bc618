"""The kernels over a target with one prompt per chain, of different lengths, all chains in one batch.

`TemperedTarget` with a list of ``C`` prompts: chain ``c`` samples ``π_T(· | prompt c mod C)``. Every
chain's recorded ``log_target`` and ``log_proposal`` must be what a single-prompt target and a replay
alone give for the same state, and the chains must share each forward call.
"""

from __future__ import annotations

import pytest
import torch
from conftest import seeded
from hf_fixtures import char_tokenizer, tiny_model
from native_fixtures import checkpoint

from dllm_mcmc import IMH, HFDenoiser, Power, Stepwise, TemperedTarget, decode, replay, sample
from dllm_mcmc.denoisers.native import load_native

GEN = 4


@pytest.fixture(scope="module", params=["bert", "dream"])
def denoiser(request, tmp_path_factory):
    if request.param == "dream":
        path, _ = checkpoint(tmp_path_factory.mktemp("dream"), "dream")
        return load_native(path)
    tokenizer = char_tokenizer()
    return HFDenoiser(tiny_model("bert", len(tokenizer)).eval(), tokenizer=tokenizer)


def prompts_of(lengths=(3, 7, 5), seed=0) -> list[torch.Tensor]:
    generator = seeded(seed)
    return [torch.randint(4, 26, (n,), generator=generator) for n in lengths]


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-4) -> bool:
    return bool(torch.allclose(a, b, atol=atol, rtol=0))


def check_chains_against_single_prompt_targets(kernel, prompts, info, params, config=None):
    """Chain c's log_target (and log_proposal, when recorded) from a single-prompt target and a replay alone."""
    target = kernel.target
    config = kernel.proposal if config is None else config
    for chain in range(kernel.num_chains):
        prompt = prompts[chain % len(prompts)]
        alone = TemperedTarget(target.denoiser.inner, prompt, target.gen_length,
                               target_temperature=target.target_temperature, likelihood=target.likelihood,
                               rule=target.rule)
        rows = slice(chain, chain + 1)
        record = replay(alone.denoiser, prompt, params["tokens"][rows], params["order"][rows], config)
        assert close(alone.log_density(record), info["log_target"][rows]), chain
        if "log_proposal" in info:
            assert close(record.log_q, info["log_proposal"][rows]), chain


@pytest.mark.parametrize("likelihood", ["order", "left_to_right"])
@pytest.mark.parametrize("num_chains", [3, 6])
def test_imh_chains_record_their_own_prompts_target(denoiser, likelihood, num_chains):
    prompts = prompts_of()
    target = TemperedTarget(denoiser, prompts, GEN, target_temperature=0.5, likelihood=likelihood, rule="stochastic")
    kernel = IMH(target, proposal_temperature=0.8, num_chains=num_chains, proposal_batch=2, seed=1)
    kernel.setup(0)
    params = kernel.initial_params
    for _ in range(3):
        params = kernel.sample(params)
        assert all(torch.isfinite(value).all() for value in kernel.info.values())
        check_chains_against_single_prompt_targets(kernel, prompts, kernel.info, params)
    # the initial-state setter scores given states with each chain's own prompt
    kernel.initial_params = params
    assert close(kernel._state.log_target, kernel.info["log_target"])


def test_imh_decodes_all_chains_and_proposals_in_one_call_per_step(denoiser):
    mixed = IMH(TemperedTarget(denoiser, prompts_of(), GEN), num_chains=3, proposal_batch=2)
    single = IMH(TemperedTarget(denoiser, prompts_of()[1], GEN), num_chains=3, proposal_batch=2)
    for kernel in (mixed, single):
        kernel.setup(0)
        kernel.sample(kernel.initial_params)
    assert mixed.cost == single.cost == (GEN, GEN * 6)


def test_power_chains_record_their_own_prompts_target(denoiser):
    prompts = prompts_of(seed=1)
    target = TemperedTarget(denoiser, prompts, GEN, target_temperature=0.5, rule="random", likelihood="left_to_right")
    kernel = Power(target, proposal_temperature=0.8, num_chains=3, moves_per_draw=2, seed=2)
    kernel.setup(0)
    params = kernel.initial_params
    for _ in range(3):
        params = kernel.sample(params)
        assert all(torch.isfinite(value).all() for value in kernel.info.values())
        check_chains_against_single_prompt_targets(kernel, prompts, kernel.info, params)
    kernel.initial_params = params
    assert close(kernel._log_target, kernel.info["log_target"])


@pytest.mark.parametrize("dedupe", [False, True])
def test_stepwise_chains_record_their_own_prompts_target(denoiser, dedupe):
    prompts = prompts_of(seed=2)
    target = TemperedTarget(denoiser, prompts, GEN, target_temperature=0.5, rule="stochastic")
    kernel = Stepwise(target, proposal_temperature=0.8, num_candidates=3, num_chains=6, seed=3, dedupe=dedupe)
    kernel.setup(0)
    params = kernel.sample(kernel.initial_params)
    assert all(torch.isfinite(value).all() for value in kernel.info.values())
    # log u(σ|x) of the rule at τ = 1 and the order likelihood: a replay under the target's order law
    check_chains_against_single_prompt_targets(kernel, prompts, kernel.info, params, target.order_law)


def test_the_traced_target_scores_each_row_with_its_prompt(denoiser):
    prompts = prompts_of(seed=3)
    target = TemperedTarget(denoiser, prompts, GEN, target_temperature=0.7, rule="entropy",
                            likelihood="left_to_right")
    traj = decode(denoiser, prompts * 2, GEN, rule="entropy", temperature=0.6, num_samples=6, generator=seeded(4))
    assert close(target.traced_log_density(traj.tokens, traj.order), target.log_density(traj))


def test_sample_runs_every_kernel_over_a_list_of_prompts(denoiser):
    prompts = prompts_of(seed=4)
    for kernel, options in (("imh", dict(proposal_batch=2)), ("power", {}), ("stepwise", dict(num_candidates=2)),
                            ("imh", dict(likelihood="elbo", elbo_samples=2))):
        result = sample(denoiser, prompts, GEN, kernel=kernel, target_temperature=0.5, proposal_temperature=0.8,
                        num_chains=3, num_samples=2, warmup=1, progress=False, max_rows=5, **options)
        assert result.tokens.shape == (3, 2, GEN)
        assert result.config["prompt_length"] == 7 and result.config["prompt_lengths"] == [3, 7, 5]
        assert all(torch.isfinite(value).all() for value in result.stats.values())


def test_chains_must_cycle_through_the_prompts(denoiser):
    target = TemperedTarget(denoiser, prompts_of(), GEN)
    assert (target.num_prompts, target.prompt_length, target.per_row) == (3, 7, True)
    with pytest.raises(ValueError, match="num_chains=4 is not a multiple of the target's 3 prompts"):
        IMH(target, num_chains=4)
    with pytest.raises(ValueError, match="4 rows cannot cycle through 3 prompts"):
        target.prompt_for(4)
    with pytest.raises(ValueError, match="an empty list"):
        TemperedTarget(denoiser, [], GEN)
