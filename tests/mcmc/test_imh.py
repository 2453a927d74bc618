"""The IMH kernel: exact-target statistics, MH mechanics, Pyro integration, and the runner."""

import math
import pickle

import pytest
import torch
from conftest import empirical, seeded, total_variation
from pyro.infer import MCMC

from dllm_mcmc import IMH, ExactDenoiser, TemperedTarget, decode, replay, sample
from dllm_mcmc.diagnostics import summary, to_datatree
from dllm_mcmc.mcmc import ChainState, independent_mh_step


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_pooled_draws_match_the_tempered_target(temperature):
    """ExactDenoiser V=3, L=4 (seed 0, sharpness 0.5), random-order proposal at τ = 0.5.

    16 chains × 20,000 post-warm-up draws (320,000 pooled). Tolerance TV < 0.02. While writing
    this test, seeds 1 and 2 gave TV 0.010/0.008 (T=0.5), 0.013/0.013 (T=1), 0.016/0.014 (T=2) with
    half as many draws; T = 2 is the hardest because a colder proposal (τ < T) gives
    heavy-tailed weights and slow mixing, and the flat target needs many draws.
    """
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=0.5)
    result = sample(toy, None, 4, target_temperature=temperature, proposal_temperature=0.5,
                    num_chains=16, num_samples=20_000, warmup=200, seed=1, proposal_batch=2_000,
                    progress=False)
    tv = total_variation(empirical(toy, result.tokens.reshape(-1, 4)), toy.tempered(temperature))
    assert tv < 0.02, tv


def test_the_proposal_alone_is_not_the_target():
    """Control for the test above: the raw τ = 0.5 proposals are far from p^(1/T) at T = 2."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=0.5)
    traj = decode(toy, None, 4, temperature=0.5, num_samples=100_000, generator=seeded(0))
    assert total_variation(empirical(toy, traj.tokens), toy.tempered(2.0)) > 0.1


def _state(log_target, log_proposal, token):
    c = len(log_target)
    return ChainState(torch.full((c, 2), token), torch.arange(2).expand(c, 2),
                      torch.tensor(log_target), torch.tensor(log_proposal))


def test_forced_accept_and_forced_reject():
    current = _state([-1.0, -1.0, float("-inf")], [-2.0, -2.0, -1.0], token=0)
    proposed = _state([5.0, float("-inf"), -3.0], [-2.0, -1.0, -1.0], token=1)
    for seed in range(20):
        new, info = independent_mh_step(current, proposed, seeded(seed))
        assert info.accepted.tolist() == [True, False, True]
        assert info.accept_prob.tolist() == [1.0, 0.0, 1.0]
        assert new.tokens[:, 0].tolist() == [1, 0, 1]
        assert new.log_target.tolist() == [5.0, -1.0, -3.0]


def test_accept_probability_and_frequency_match_the_hand_computation():
    current = _state([-1.0] * 4000, [-2.0] * 4000, token=0)   # w(x) = 1
    proposed = _state([-3.0] * 4000, [-2.5] * 4000, token=1)  # w(y) = -0.5
    _, info = independent_mh_step(current, proposed, seeded(0))
    assert torch.allclose(info.accept_prob, torch.tensor(math.exp(-1.5)))
    assert abs(info.accepted.float().mean().item() - math.exp(-1.5)) < 4 * math.sqrt(0.22 * 0.78 / 4000)


def test_kernel_acceptance_ratio_against_direct_arithmetic(toy):
    temperature, tau = 0.7, 0.5
    kernel = IMH(TemperedTarget(toy, None, 4, target_temperature=temperature), proposal_temperature=tau, num_chains=8,
                 seed=3)
    kernel.setup(0)
    before = kernel.initial_params
    kernel.sample(before)
    x_tokens, x_order = before["tokens"], before["order"]
    # hand computation: π(σ,x) = u(σ) p(x)^(1/T) with u = 1/4!, q from an independent replay
    def log_weight(tokens, order):
        q = replay(toy, None, tokens, order, rule="random", temperature=tau).log_q
        return -math.log(24) + toy.log_prob(tokens) / temperature - q
    proposed_weight = kernel.info["proposed_log_weight"]
    expected_prob = (proposed_weight - log_weight(x_tokens, x_order)).clamp(max=0).exp()
    assert torch.allclose(kernel.info["accept_prob"], expected_prob, atol=1e-5)
    now = kernel.initial_params
    assert torch.allclose(kernel.info["log_weight"], log_weight(now["tokens"], now["order"]), atol=1e-5)


def test_the_proposal_never_reads_the_state(toy):
    """Two kernels with the same seed but different current states see the same proposals."""
    proposals = []
    for start in (0, 2):
        kernel = IMH(TemperedTarget(toy, None, 4, target_temperature=0.5), proposal_temperature=0.5, num_chains=4,
                     seed=9)
        kernel.setup(0)
        kernel.initial_params = {"tokens": torch.full((4, 4), start), "order": torch.arange(4).expand(4, 4)}
        params, seen = kernel.initial_params, []
        for _ in range(5):
            params = kernel.sample(params)
            seen.append(kernel.info["proposed_log_weight"])
        proposals.append(torch.stack(seen))
    assert torch.equal(proposals[0], proposals[1])


def test_runs_under_pyro_mcmc_with_exact_token_ids(toy):
    kernel = IMH(TemperedTarget(toy, None, 4, target_temperature=0.5), proposal_temperature=0.5, num_chains=3, seed=0)
    mcmc = MCMC(kernel, num_samples=20, warmup_steps=5, disable_progbar=True)
    mcmc.run()
    tokens = mcmc.get_samples(group_by_chain=True)["tokens"]
    # with the float scalar sites, Pyro stores each draw as one float tensor: the ids are exact integers
    assert tokens.dtype == torch.float32 and tokens.shape == (1, 20, 3, 4) and torch.equal(tokens, tokens.round())
    assert ((tokens >= 0) & (tokens < 3)).all()
    assert "accepted" in kernel.logging()
    diagnostics = pickle.loads(pickle.dumps(kernel.diagnostics()))
    assert len(diagnostics["accepted"]) == 3


def test_proposal_batch_decodes_many_proposals_in_one_batch(toy):
    kernel = IMH(TemperedTarget(toy, None, 4, target_temperature=0.5), proposal_temperature=0.5, num_chains=3,
                 proposal_batch=10, seed=0)
    kernel.setup(0)
    params = kernel.initial_params
    for _ in range(20):  # 1 initial + 20 proposals = 21 -> three batched decodes of 10 per chain
        params = kernel.sample(params)
    assert kernel.cost == (3 * 4, 3 * 4 * 10 * 3)


def test_confidence_proposal_is_refused(toy):
    with pytest.raises(ValueError, match="no exact trajectory density"):
        sample(toy, None, 4, rule="confidence", progress=False)


def test_sample_result_shapes_stats_seed_and_cost(toy):
    kwargs = dict(target_temperature=0.5, proposal_temperature=0.5, num_chains=4, num_samples=300,
                  warmup=20, seed=5, progress=False)
    result = sample(toy, None, 4, **kwargs)
    again = sample(toy, None, 4, **kwargs)
    assert result.tokens.shape == (4, 300, 4) and result.tokens.dtype == torch.long
    for name in ("log_target", "log_likelihood", "log_proposal", "log_weight", "accept_prob", "accepted", "length"):
        assert result.stats[name].shape == (4, 300) and result.stats[name].dtype == torch.float32
    # p(x | σ) = p(x) on the consistent toy; random order: log u = −log 4!
    assert torch.allclose(result.stats["log_likelihood"], toy.log_prob(result.tokens.reshape(-1, 4)).reshape(4, 300),
                          atol=1e-5)
    assert torch.allclose(result.stats["log_target"],
                          result.stats["log_likelihood"] / 0.5 - torch.tensor(24.0).log(), atol=1e-4)
    assert result.order is not None and result.order.shape == (4, 300, 4)
    assert torch.equal(result.order.sort(-1).values, torch.arange(4).expand(4, 300, 4))  # permutations
    assert torch.equal(result.tokens, again.tokens)
    assert torch.allclose(result.stats["log_weight"], result.stats["log_target"] - result.stats["log_proposal"])
    assert (result.stats["length"] == 4).all()
    assert result.nfe == 4 * 321 and result.forward_rows == 4 * 4 * 321
    assert result.config["target_temperature"] == 0.5 and result.config["kernel"] == "imh"
    assert 0.3 < float(result.acceptance_rate.mean()) < 1.0


def test_r_hat_and_ess_on_the_toy_with_four_chains(toy):
    result = sample(toy, None, 4, target_temperature=0.5, proposal_temperature=0.5, num_chains=4,
                    num_samples=2_000, warmup=100, seed=0, proposal_batch=500, progress=False)
    diagnostics = summary(result)["diagnostics"]["log_target"]
    assert diagnostics["r_hat"] < 1.01
    assert math.isfinite(diagnostics["ess_bulk"]) and diagnostics["ess_bulk"] > 1000
    tree = to_datatree(result)
    assert tree["tokens"]["tokens"].dtype.kind == "i" and "tokens" not in tree["posterior"]
    assert tree.attrs["target_temperature"] == 0.5


def test_a_user_kernel_object_plugs_in(toy):
    kernel = IMH(TemperedTarget(toy, None, 4, target_temperature=1.0), proposal_temperature=1.0, num_chains=2, seed=0)
    result = sample(toy, None, 4, kernel=kernel, num_samples=50, warmup=0, progress=False)
    assert result.tokens.shape == (2, 50, 4)
    assert result.config["kernel"] == "imh" and result.config["target_temperature"] == 1.0
    # at T = τ = 1 the proposal is the target: every move is accepted
    assert (result.stats["accepted"] == 1).all()


@pytest.mark.parametrize("likelihood", ["left_to_right", "elbo"])
def test_other_likelihoods_run_and_left_to_right_is_exact_on_the_toy(likelihood):
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=0.5)
    result = sample(toy, None, 4, likelihood=likelihood, target_temperature=0.5, proposal_temperature=0.5,
                    num_chains=8, num_samples=5_000, warmup=100, seed=2, proposal_batch=1_000,
                    elbo_samples=8, progress=False)
    tv = total_variation(empirical(toy, result.tokens.reshape(-1, 4)), toy.tempered(0.5))
    assert result.config["likelihood_exact"] == (likelihood != "elbo")
    if likelihood == "left_to_right":
        assert tv < 0.03, tv
    else:  # a noisy likelihood: the chain targets a perturbed distribution; only sanity here
        assert tv < 0.2, tv
