"""`dllm_mcmc.diagnostics`: DataTree conversion, summary statistics and plots."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from dllm_mcmc.diagnostics import (
    format_summary,
    from_datatree,
    plot_acceptance,
    plot_diagnostics,
    plot_rank,
    plot_sequence_frequencies,
    plot_trace,
    summary,
    to_datatree,
    trace_diagnostics,
)
from dllm_mcmc.mcmc.result import Result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_result(
    chains: int = 4,
    draws: int = 500,
    length: int = 3,
    vocab: int = 3,
    seed: int = 0,
    chain_offsets: list[float] | None = None,
    config: dict | None = None,
) -> Result:
    """I.i.d. standard normal ``log_target`` (shifted per chain by ``chain_offsets``)."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (chains, draws, length), generator=gen)
    log_target = torch.randn(chains, draws, generator=gen)
    if chain_offsets is not None:
        log_target = log_target + torch.tensor(chain_offsets)[:, None]
    log_proposal = torch.randn(chains, draws, generator=gen)
    accept_prob = torch.rand(chains, draws, generator=gen)
    accepted = (torch.rand(chains, draws, generator=gen) < accept_prob).float()
    stats = {
        "log_target": log_target,
        "log_proposal": log_proposal,
        "log_weight": log_target - log_proposal,
        "accept_prob": accept_prob,
        "accepted": accepted,
        "length": torch.full((chains, draws), float(length)),
    }
    return Result(
        tokens=tokens,
        stats={k: v.to(torch.float32) for k, v in stats.items()},
        nfe=1234,
        forward_rows=5678,
        wall_time=1.5,
        config=config if config is not None else {
            "rule": "entropy",
            "temperature": 0.7,
            "block_length": None,
            "num_chains": chains,
            "suppress_eos": True,
            "shape": (2, 3),
        },
    )


@pytest.fixture(scope="module")
def result() -> Result:
    return make_result()


# --- DataTree -------------------------------------------------------------------------------


def test_datatree_groups_dims_and_dtypes(result):
    tree = to_datatree(result)
    assert isinstance(tree, xr.DataTree)
    assert set(tree.children) == {"posterior", "sample_stats", "tokens"}
    posterior, sample_stats, draws = tree["posterior"], tree["sample_stats"], tree["tokens"]
    assert set(posterior.data_vars) == {"log_target", "log_proposal", "length"}  # no token ids
    assert set(sample_stats.data_vars) == {"accept_prob", "accepted", "log_weight"}
    assert set(draws.data_vars) == {"tokens"}  # this result has no order
    assert draws["tokens"].dims == ("chain", "draw", "position")
    assert draws["tokens"].shape == (4, 500, 3)
    assert np.issubdtype(draws["tokens"].dtype, np.integer)
    for name in ("log_target", "log_proposal", "length"):
        assert posterior[name].dims == ("chain", "draw")
    for name in ("accept_prob", "accepted", "log_weight"):
        assert sample_stats[name].dims == ("chain", "draw")
    np.testing.assert_array_equal(draws["tokens"].values, result.tokens.numpy())
    np.testing.assert_array_equal(sample_stats["log_weight"].values, result.stats["log_weight"])


def test_datatree_keeps_the_order_beside_the_tokens(result):
    order = torch.stack([torch.randperm(3, generator=torch.Generator().manual_seed(i)) for i in range(2000)])
    with_order = Result(result.tokens, result.stats, 1, 2, 0.5, {}, order=order.reshape(4, 500, 3))
    tree = to_datatree(with_order)
    assert tree["tokens"]["order"].dims == ("chain", "draw", "commit")
    np.testing.assert_array_equal(tree["tokens"]["order"].values, with_order.order.numpy())
    assert from_datatree(tree).equals(with_order)


def test_arviz_summary_ess_rhat_run_on_the_tree_without_token_ids(result):
    import arviz_stats

    tree = to_datatree(result)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the constant `length` trace: 0/0 in ArviZ
        table = arviz_stats.summary(tree)
        ess, rhat = arviz_stats.ess(tree), arviz_stats.rhat(tree)
    rows = set(table.index)
    assert rows == {"log_target", "log_proposal", "length"}  # one row per scalar, none for a token
    assert set(ess.data_vars) == set(rhat.data_vars) == rows
    # ArviZ's numbers are those of the scalar traces (the same functions `summary` calls)
    expected = trace_diagnostics(result.stats["log_target"].double().numpy())
    assert float(ess["log_target"]) == pytest.approx(expected["ess_bulk"], rel=1e-9)
    assert float(rhat["log_target"]) == pytest.approx(expected["r_hat"], rel=1e-9)
    assert float(table.loc["log_target", "mean"]) == pytest.approx(float(result.stats["log_target"].double().mean()),
                                                                  abs=0.01)


def test_datatree_attrs_carry_config_and_cost(result):
    attrs = to_datatree(result).attrs
    assert attrs["rule"] == "entropy"
    assert attrs["temperature"] == 0.7
    assert attrs["num_chains"] == 4
    assert attrs["suppress_eos"] is True
    assert attrs["block_length"] == "None"
    assert attrs["shape"] == "(2, 3)"  # non-scalars become strings so the tree serialises
    assert (attrs["nfe"], attrs["forward_rows"], attrs["wall_time"]) == (1234, 5678, 1.5)
    assert json.loads(attrs["dllm_mcmc_config"])["shape"] == [2, 3]  # the faithful copy


def test_extra_stats_go_to_sample_stats():
    base = make_result(chains=2, draws=10)
    stats = dict(base.stats, step_size=torch.ones(2, 10))
    tree = to_datatree(Result(base.tokens, stats, 1, 2, 0.1, {}))
    assert "step_size" in tree["sample_stats"].data_vars
    assert "step_size" in from_datatree(tree).stats


def test_datatree_round_trip(result):
    back = from_datatree(to_datatree(result))
    assert back.tokens.dtype == torch.long
    assert torch.equal(back.tokens, result.tokens)
    assert list(back.stats) == list(result.stats)
    for name, value in result.stats.items():
        assert back.stats[name].dtype == torch.float32
        assert torch.equal(back.stats[name], value), name
    assert (back.nfe, back.forward_rows, back.wall_time) == (1234, 5678, 1.5)
    assert back.config == dict(result.config, shape=[2, 3])  # JSON: a tuple comes back as a list
    assert back.order is None


def test_a_tree_of_the_older_layout_still_loads(result):
    """Trees written before the tokens group (tokens in posterior, no JSON attributes)."""
    tree = to_datatree(result)
    old = xr.DataTree.from_dict({
        "posterior": tree["posterior"].to_dataset().assign(tokens=tree["tokens"]["tokens"]),
        "sample_stats": tree["sample_stats"].to_dataset(),
    })
    old.attrs = {k: v for k, v in tree.attrs.items() if not k.startswith("dllm_mcmc_")}
    back = from_datatree(old)
    assert torch.equal(back.tokens, result.tokens)
    stat_names = ("log_target", "log_likelihood", "log_proposal", "log_weight", "accept_prob", "accepted", "length")
    assert [n for n in stat_names if n in back.stats] == list(back.stats)
    assert all(torch.equal(back.stats[n], v) for n, v in result.stats.items())
    assert back.config["block_length"] is None and back.config["shape"] == "(2, 3)"


def test_config_key_clashing_with_cost_is_rejected():
    with pytest.raises(ValueError, match="nfe"):
        to_datatree(make_result(chains=2, draws=10, config={"nfe": 3}))


# --- summary --------------------------------------------------------------------------------


def test_iid_chains_converge():
    diag = summary(make_result(seed=1))["diagnostics"]["log_target"]
    assert diag["r_hat"] < 1.01
    assert diag["ess_bulk"] > 1000
    assert diag["ess_tail"] > 1000


def test_chains_with_different_means_do_not_converge():
    diag = summary(make_result(seed=1, chain_offsets=[0.0, 0.0, 2.0, -2.0]))["diagnostics"]
    assert diag["log_target"]["r_hat"] > 1.1
    assert diag["log_weight"]["r_hat"] > 1.1
    assert diag["log_proposal"]["r_hat"] < 1.01  # untouched trace still looks converged


def test_autocorrelated_chains_have_low_ess():
    gen = torch.Generator().manual_seed(2)
    # Random walks: each chain wanders, so the bulk ESS is a small fraction of 2000 draws.
    walk = torch.randn(4, 500, generator=gen).cumsum(-1).numpy()
    assert trace_diagnostics(walk)["ess_bulk"] < 100


def test_constant_trace_gives_nan_not_an_error(result):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diag = summary(result)["diagnostics"]["length"]
    assert diag["mean"] == 3.0
    assert all(math.isnan(diag[key]) for key in ("ess_bulk", "ess_tail", "r_hat"))
    (row,) = [line for line in format_summary(summary(result)).splitlines()
              if line.startswith("length")]
    assert row.split()[1:] == ["3", "nan", "nan", "nan"]


def test_summary_acceptance_matches_hand_computation(result):
    acceptance = summary(result)["acceptance"]
    accepted = result.stats["accepted"].tolist()
    per_chain = [sum(row) / len(row) for row in accepted]
    assert acceptance["per_chain"] == pytest.approx(per_chain, abs=1e-12)
    assert acceptance["mean"] == pytest.approx(sum(per_chain) / len(per_chain), abs=1e-12)


def test_summary_table_and_flags():
    good = summary(make_result(seed=1))
    assert set(good["diagnostics"]) == {"log_target", "log_proposal", "log_weight", "length"}
    assert set(good["diagnostics"]["log_target"]) == {"mean", "ess_bulk", "ess_tail", "r_hat"}
    text = format_summary(good)
    assert "4 chains x 500 draws" in text
    assert "ess_bulk" in text and "r_hat" in text
    assert "!" not in text
    bad = format_summary(summary(make_result(seed=1, chain_offsets=[0.0, 0.0, 2.0, -2.0])))
    flagged = [line for line in bad.splitlines() if line.endswith("!")]
    assert [line.split()[0] for line in flagged] == ["log_target", "log_weight"]


def test_single_chain_rhat_is_nan():
    diag = summary(make_result(chains=1, draws=200))["diagnostics"]["log_target"]
    assert math.isnan(diag["r_hat"])
    assert diag["ess_bulk"] > 0


# --- plots ----------------------------------------------------------------------------------


def assert_png(path):
    assert path.exists()
    data = path.read_bytes()
    assert len(data) > 1000
    assert data[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def small() -> Result:
    return make_result(chains=3, draws=120, length=2, vocab=3, seed=3)


def test_plot_trace(small, tmp_path):
    fig = plot_trace(small, path=tmp_path / "trace.png")
    assert len(fig.axes) == 2
    assert len(fig.axes[0].get_lines()) == small.num_chains
    assert_png(tmp_path / "trace.png")
    plot_trace(small, stat="length", path=tmp_path / "length.png")  # constant trace
    assert_png(tmp_path / "length.png")


def test_plot_rank(small, tmp_path):
    fig = plot_rank(small, path=tmp_path / "rank.png")
    assert len([ax for ax in fig.axes if ax.get_visible()]) == small.num_chains
    assert_png(tmp_path / "rank.png")


def test_plot_acceptance(small, tmp_path):
    fig = plot_acceptance(small, path=tmp_path / "acceptance.png")
    lines = fig.axes[0].get_lines()
    running = lines[0].get_ydata()
    accepted = small.stats["accepted"][0].double()
    np.testing.assert_allclose(running[-1], accepted.mean().item())
    assert_png(tmp_path / "acceptance.png")


def test_plot_sequence_frequencies_with_exact(small, tmp_path):
    uniform = 1 / 3**2
    fig = plot_sequence_frequencies(
        small,
        exact=lambda x: torch.full((x.shape[0],), uniform),
        top=5,
        labels=lambda row: "".join("abc"[i] for i in row.tolist()),
        path=tmp_path / "seq.png",
    )
    ax = fig.axes[0]
    assert len(ax.patches) == 5
    heights = [bar.get_width() for bar in ax.patches]
    assert heights == sorted(heights, reverse=True)
    assert sum(heights) <= 1
    assert all(len(t.get_text()) == 2 and set(t.get_text()) <= set("abc")
               for t in ax.get_yticklabels())
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], uniform)
    assert_png(tmp_path / "seq.png")


def test_plot_sequence_frequencies_counts_and_dict_exact():
    tokens = torch.tensor([[[0, 1], [0, 1], [1, 1]], [[0, 1], [2, 2], [1, 1]]])
    stats = {name: torch.zeros(2, 3) for name in ("log_target", "log_likelihood", "log_proposal", "log_weight",
                                                  "accept_prob", "accepted", "length")}
    result = Result(tokens, stats, 0, 0, 0.0, {})
    fig = plot_sequence_frequencies(result, exact={(0, 1): 0.5, (1, 1): 0.25}, top=10)
    ax = fig.axes[0]
    assert [bar.get_width() for bar in ax.patches] == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0 1", "1 1", "2 2"]
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], [0.5, 0.25, 0.0])


def test_plot_diagnostics_writes_all(small, tmp_path):
    paths = plot_diagnostics(small, tmp_path / "figs")
    assert [p.name for p in paths] == ["trace.png", "rank.png", "acceptance.png", "sequences.png"]
    for path in paths:
        assert_png(path)
