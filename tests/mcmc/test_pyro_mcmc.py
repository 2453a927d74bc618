"""Every kernel under `pyro.infer.MCMC`: the scalar sites, `summary()`, `diagnostics()`, and the way to a
`Result` / ArviZ `DataTree` (`result_from_pyro`, `from_pyro_mcmc`), checked against the exact toy."""

import re
import types
import warnings

import arviz_stats
import pytest
import torch
from pyro.infer import MCMC
from pyro.ops.stats import effective_sample_size, split_gelman_rubin

from dllm_mcmc import IMH, SMC, ExactDenoiser, ParticleGibbs, Power, Stepwise, TemperedTarget
from dllm_mcmc.diagnostics import from_pyro_mcmc
from dllm_mcmc.mcmc import SCALAR_SITES, StatsRecorder, result_from_pyro
from dllm_mcmc.mcmc.result import Result

T, C, S, L, EOS = 0.5, 3, 12, 4, 2

KERNELS = {
    "imh": lambda target: IMH(target, num_chains=C, seed=0),
    "power": lambda target: Power(target, num_chains=C, seed=0),
    "stepwise": lambda target: Stepwise(target, num_candidates=4, num_chains=C, seed=0),
    "pgibbs": lambda target: ParticleGibbs(target, num_particles=3, num_chains=C, seed=0),
    "smc": lambda target: SMC(target, num_particles=4, num_chains=C, seed=0),
}
MH_KERNELS = ("imh", "power")  # the kernels with a proposal density: log_proposal in the posterior


@pytest.fixture(scope="module")
def eos_toy():
    """The V=3, L=4 toy with token 2 as EOS, so `length` varies between draws."""
    return ExactDenoiser.random(vocab_size=3, length=L, seed=0, eos_id=EOS)


def run(kernel, recorder=None, **options):
    mcmc = MCMC(kernel, num_samples=S, warmup_steps=0, hook_fn=recorder, disable_progbar=True, **options)
    mcmc.run()
    return mcmc


@pytest.fixture(scope="module", params=list(KERNELS))
def finished(request, eos_toy):
    """(name, target, kernel, recorder, mcmc) after a run of S draws of C chains, no warm-up."""
    target = TemperedTarget(eos_toy, None, L, target_temperature=T)
    kernel = KERNELS[request.param](target)
    recorder = StatsRecorder()
    return request.param, target, kernel, recorder, run(kernel, recorder)


def flat(site: torch.Tensor) -> torch.Tensor:
    """[1, S, C, ...] -> [S * C, ...]."""
    return site.reshape(S * C, *site.shape[3:])


def test_the_scalar_sites_are_the_exact_log_target_likelihood_and_length(finished, eos_toy):
    name, target, _, _, mcmc = finished
    samples = mcmc.get_samples(group_by_chain=True)
    assert set(samples) == {"tokens", "order", *SCALAR_SITES}
    for site in SCALAR_SITES:
        assert samples[site].shape == (1, S, C) and samples[site].dtype == torch.float32, site
    tokens, order = flat(samples["tokens"]), flat(samples["order"])
    assert torch.equal(tokens, tokens.round()) and torch.equal(order, order.round())  # exact ids in float32
    tokens, order = tokens.long(), order.long()
    # log π_T recomputed by conditioning and tracing the target's Pyro model on the draws
    traced = target.traced_log_density(tokens, order)
    assert torch.allclose(flat(samples["log_target"]).double(), traced.double(), atol=1e-4), name
    # the order likelihood of the consistent toy is log p(x) itself
    assert torch.allclose(flat(samples["log_likelihood"]), eos_toy.log_prob(tokens), atol=1e-5), name
    # length: tokens before the first EOS, counted by hand
    by_hand = torch.tensor([row.index(EOS) if EOS in row else L for row in tokens.tolist()], dtype=torch.float32)
    assert torch.equal(flat(samples["length"]), by_hand)
    assert len(set(by_hand.tolist())) > 1  # the check means something


def test_summary_prints_every_site_and_the_scalar_means(finished, capsys):
    name, _, _, _, mcmc = finished
    mcmc.summary()  # failed on integer sites before the scalar sites
    printed = capsys.readouterr().out
    samples = mcmc.get_samples(group_by_chain=True)
    for c in range(C):
        for site in SCALAR_SITES:
            row = re.search(rf"^\s*{site}\[{c}\]\s+(\S+)", printed, re.MULTILINE)
            assert row is not None, (name, site, c)
            assert float(row.group(1)) == pytest.approx(float(samples[site][0, :, c].mean()), abs=0.006)
    assert re.search(r"^\s*tokens\[2,3\]", printed, re.MULTILINE)  # token ids are handled, not refused


def test_diagnostics_are_pyros_statistics_of_the_sites_and_the_kernels_acceptance(finished):
    name, _, kernel, recorder, mcmc = finished
    diagnostics = mcmc.diagnostics()
    samples = mcmc.get_samples(group_by_chain=True)
    for site in SCALAR_SITES:  # Pyro's one chain [1, S, C]: each batched chain's trace on its own
        expected_ess = effective_sample_size(samples[site])
        assert diagnostics[site]["n_eff"].shape == (C,)
        assert torch.allclose(diagnostics[site]["n_eff"], expected_ess, equal_nan=True), site
        assert torch.allclose(diagnostics[site]["r_hat"], split_gelman_rubin(samples[site]), equal_nan=True), site
    # the kernel's own entries, per Pyro chain: acceptance over every step (no warm-up here: the kept draws)
    stat, trace = result_from_pyro(mcmc, recorder).move_stat  # each kernel's own move statistic
    acceptance = diagnostics[stat]["chain 0"]
    recorded = trace.double().mean(-1)
    assert torch.allclose(torch.tensor(acceptance, dtype=torch.float64), recorded, atol=1e-6), name
    # the cost at the end of the run (other tests score draws through the same metered target afterwards)
    assert diagnostics["nfe"]["chain 0"] == recorder.cost[0] and diagnostics["steps"]["chain 0"] == S


def test_result_from_pyro_has_int_tokens_the_sites_and_the_recorded_stats(finished, tmp_path):
    name, target, kernel, recorder, mcmc = finished
    samples = mcmc.get_samples(group_by_chain=True)
    result = result_from_pyro(mcmc, recorder)
    assert result.tokens.dtype == torch.int64 and result.tokens.shape == (C, S, L)
    assert torch.equal(result.tokens, samples["tokens"][0].transpose(0, 1).long())
    assert result.order is not None and torch.equal(result.order, samples["order"][0].transpose(0, 1).long())
    for site in SCALAR_SITES:
        assert torch.equal(result.stats[site], samples[site][0].T), site
    # the recorder's per-draw info: the kernel's own record of each step
    assert torch.equal(result.stats["log_target"], torch.stack([i["log_target"] for i in recorder.infos], 1))
    assert result.move_stat is not None
    end = mcmc.diagnostics()  # the kernel's cost when the run ended
    assert (result.nfe, result.forward_rows) == (end["nfe"]["chain 0"], end["forward_rows"]["chain 0"])
    assert result.nfe > 0 and result.wall_time > 0
    assert result.config["kernel"] == name and result.config["seed"] == 0 and result.config["num_samples"] == S
    assert result.config["target_temperature"] == T and result.config["num_chains"] == C
    assert Result.load(result.save(tmp_path / "pyro.nc")).equals(result)


def test_from_pyro_mcmc_gives_a_tree_arviz_summarises_without_token_ids(finished):
    name, _, _, recorder, mcmc = finished
    tree = from_pyro_mcmc(mcmc, recorder)
    posterior = set(SCALAR_SITES) | ({"log_proposal"} if name in MH_KERNELS else set())
    assert set(tree["posterior"].data_vars) == posterior
    assert set(tree["tokens"].data_vars) == {"tokens", "order"}
    assert result_from_pyro(mcmc, recorder).move_stat[0] in tree["sample_stats"].data_vars
    assert dict(tree["posterior"].sizes) == {"chain": C, "draw": S}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant trace is 0/0 for ArviZ
        table = arviz_stats.summary(tree)
        arviz_stats.ess(tree), arviz_stats.rhat(tree)
    assert set(table.index) == posterior
    log_target = mcmc.get_samples()["log_target"].double()
    assert float(table.loc["log_target", "mean"]) == pytest.approx(float(log_target.mean()), abs=0.01)


@pytest.mark.parametrize("name", list(KERNELS))
def test_save_params_scalar_sites_gives_a_scalar_summary(name, toy, capsys):
    kernel = KERNELS[name](TemperedTarget(toy, None, L, target_temperature=T))
    mcmc = run(kernel, save_params=kernel.scalar_sites)
    samples = mcmc.get_samples(group_by_chain=True)
    assert set(samples) == set(SCALAR_SITES)
    mcmc.summary()
    assert "tokens" not in capsys.readouterr().out
    assert (samples["length"] == L).all()  # no EOS in this toy
    with pytest.raises(ValueError, match="save_params"):
        result_from_pyro(mcmc)


def test_an_unsorted_save_params_still_labels_the_sites_right(toy):
    """Pyro packs a draw in save_params order and unpacks it sorted: the kernel keeps the list sorted."""
    target = TemperedTarget(toy, None, L, target_temperature=T)
    kernel = IMH(target, num_chains=C, seed=0)
    mcmc = run(kernel, save_params=["tokens", "log_target"])
    assert kernel.save_params == ["log_target", "tokens"]
    samples = mcmc.get_samples(group_by_chain=True)
    tokens = flat(samples["tokens"])
    assert ((tokens >= 0) & (tokens < 3)).all() and torch.equal(tokens, tokens.round())
    expected = toy.log_prob(tokens.long()) / T - torch.tensor(24.0).log()  # random order: log u = −log 4!
    assert torch.allclose(flat(samples["log_target"]), expected, atol=1e-4)


@pytest.mark.parametrize("name", list(KERNELS))
def test_initial_params_setter_scores_the_given_state(name, toy):
    """Pyro's `MCMC(initial_params=...)` hands the kernel tokens and order: the sites are scored by replay."""
    target = TemperedTarget(toy, None, L, target_temperature=T)
    kernel = KERNELS[name](target)
    kernel.setup(0)
    tokens = torch.tensor([[0, 1, 2, 0], [2, 2, 2, 2], [1, 0, 1, 1]])
    order = torch.tensor([[3, 1, 0, 2], [0, 1, 2, 3], [2, 3, 1, 0]])
    kernel.initial_params = {"tokens": tokens, "order": order}
    params = kernel.initial_params
    assert torch.equal(params["tokens"], tokens) and torch.equal(params["order"], order)
    assert torch.allclose(params["log_target"].double(), target.traced_log_density(tokens, order).double(),
                          atol=1e-4)
    assert torch.allclose(params["log_likelihood"], toy.log_prob(tokens), atol=1e-5)
    assert torch.equal(params["length"], torch.full((C,), float(L)))


def test_left_to_right_likelihood_sites_are_exact(toy):
    target = TemperedTarget(toy, None, L, target_temperature=T, likelihood="left_to_right")
    mcmc = run(IMH(target, num_chains=C, seed=1))
    samples = mcmc.get_samples(group_by_chain=True)
    tokens, order = flat(samples["tokens"]).long(), flat(samples["order"]).long()
    assert torch.allclose(flat(samples["log_likelihood"]), toy.log_prob(tokens), atol=1e-5)
    assert torch.allclose(flat(samples["log_target"]).double(), target.traced_log_density(tokens, order).double(),
                          atol=1e-4)


def test_result_from_pyro_lays_pyro_chains_then_kernel_chains():
    """Pyro's P chains of the kernel's C batched chains become chain p * C + c (a stand-in MCMC object)."""
    P, draws, chains = 2, 5, 3
    tokens = torch.arange(P * draws * chains * 2, dtype=torch.float32).reshape(P, draws, chains, 2)
    log_target = torch.randn(P, draws, chains)
    mcmc = types.SimpleNamespace(
        get_samples=lambda group_by_chain: {"tokens": tokens, "log_target": log_target},
        kernel=types.SimpleNamespace(name="custom", num_chains=chains, cost=(7, 8)),
        warmup_steps=4,
    )
    result = result_from_pyro(mcmc)
    for p in range(P):
        for c in range(chains):
            assert torch.equal(result.tokens[p * chains + c], tokens[p, :, c].long())
            assert torch.equal(result.stats["log_target"][p * chains + c], log_target[p, :, c])
    assert torch.equal(result.stats["length"], torch.full((P * chains, draws), 2.0))  # no target: no EOS
    assert result.order is None and (result.nfe, result.forward_rows) == (7, 8)
    assert result.config == {"kernel": "custom", "num_chains": 6, "num_samples": 5, "warmup": 4, "seed": None,
                             "pyro_num_chains": 2}
    assert torch.isnan(torch.tensor(result.wall_time))
    recorder = StatsRecorder()
    with pytest.raises(ValueError, match="hook_fn"):
        result_from_pyro(mcmc, recorder)  # it saw none of the run's draws


def test_the_recorder_keeps_only_kept_draws_and_sums_the_cost_of_pyros_chains(toy):
    kernel = IMH(TemperedTarget(toy, None, L, target_temperature=T), num_chains=2, seed=0)
    recorder = StatsRecorder()
    mcmc = MCMC(kernel, num_samples=4, warmup_steps=3, hook_fn=recorder, disable_progbar=True)
    mcmc.run()
    assert len(recorder.infos) == 4 and recorder.cost == kernel.cost and recorder.seconds > 0
    recorder.costs["[1]"] = (10, 20)  # a second Pyro chain's cost adds up
    assert recorder.cost == (kernel.cost[0] + 10, kernel.cost[1] + 20)
