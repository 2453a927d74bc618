"""`Result.save` / `Result.load`: a netCDF file through the ArviZ DataTree, field for field."""

import importlib.util
import math

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

from dllm_mcmc import ExactDenoiser, Rule, load_model, sample
from dllm_mcmc.mcmc.result import Result


def assert_same(back: Result, result: Result) -> None:
    """Every field, one by one (and `Result.equals`, which the library offers for the same check)."""
    assert back.tokens.dtype == result.tokens.dtype == torch.int64
    assert torch.equal(back.tokens, result.tokens)
    assert (back.order is None) == (result.order is None)
    if result.order is not None:
        assert back.order is not None and back.order.dtype == torch.int64 and torch.equal(back.order, result.order)
    assert list(back.stats) == list(result.stats)
    for name, value in result.stats.items():
        assert back.stats[name].dtype == value.dtype == torch.float32, name
        assert torch.equal(back.stats[name], value), name
    assert (back.nfe, back.forward_rows) == (result.nfe, result.forward_rows)
    assert back.wall_time == result.wall_time
    assert back.config == result.config
    assert all(type(back.config[k]) is type(v) for k, v in result.config.items())  # bools stay bools
    assert back.equals(result) and result.equals(back)


@pytest.fixture(scope="module")
def prompted_toy():
    return ExactDenoiser.random(vocab_size=3, length=4, seed=3, prompt=torch.tensor([2, 0]), eos_id=1)


@pytest.mark.parametrize("kernel, options", [
    ("imh", {"proposal_batch": 5}),
    ("stepwise", {"num_candidates": 3}),
    ("pgibbs", {"num_particles": 3}),
])
def test_a_sampled_result_round_trips_field_for_field(tmp_path, prompted_toy, kernel, options):
    prompt = torch.tensor([2, 0])
    result = sample(prompted_toy, [prompt, prompt], 4, kernel=kernel, target_temperature=0.5, num_chains=4,
                    num_samples=7, warmup=2, seed=11, progress=False, rule=Rule("stochastic"), **options)
    assert isinstance(result.config["prompt_lengths"], list) and result.config["likelihood_exact"] is True
    assert result.order is not None and result.config["seed"] == 11
    path = result.save(tmp_path / "run.nc")
    assert path == tmp_path / "run.nc" and path.stat().st_size > 0
    assert_same(Result.load(path), result)


def test_the_file_is_a_plain_netcdf_datatree_arviz_can_read(tmp_path, prompted_toy):
    result = sample(prompted_toy, torch.tensor([2, 0]), 4, target_temperature=0.5, num_chains=2, num_samples=5,
                    warmup=1, progress=False)
    path = result.save(tmp_path / "run.nc")
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        assert set(tree.children) == {"posterior", "sample_stats", "tokens"}
        assert tree["tokens"]["tokens"].dtype == np.int64 and "tokens" not in tree["posterior"]
        np.testing.assert_array_equal(tree["posterior"]["log_target"].values, result.stats["log_target"].numpy())
        assert tree.attrs["nfe"] == result.nfe and tree.attrs["seed"] == 0
        assert tree.attrs["likelihood_exact"] == 1  # netCDF has no booleans; the JSON config keeps True


def test_special_values_round_trip(tmp_path):
    """NaN wall time (a Pyro run without a recorder), NaN and inf stats, None and nested config values."""
    result = Result(
        tokens=torch.tensor([[[5, 6], [7, 8]]]),
        stats={"log_target": torch.tensor([[-math.inf, 1.5]]), "custom": torch.tensor([[math.nan, 2.0]])},
        nfe=0, forward_rows=0, wall_time=math.nan,
        config={"seed": 3, "max_rows": None, "rule": "random", "ratio": 0.1, "flags": [True, None, 2.5],
                "nested": {"a": [1, 2]}},
    )
    assert_same_nan = Result.load(result.save(tmp_path / "special.nc"))
    assert assert_same_nan.equals(result)
    assert math.isnan(assert_same_nan.wall_time) and assert_same_nan.order is None
    assert assert_same_nan.config == result.config


def test_texts_of_a_loaded_result_with_the_model(tmp_path):
    model, codec = load_model("tasks-small")
    assert codec.gen_length is not None
    result = sample(model, codec.encode("7+5*3="), codec.gen_length, kernel="imh", target_temperature=0.5,
                    num_chains=2, num_samples=3, warmup=1, seed=0, progress=False)
    back = Result.load(result.save(tmp_path / "small.nc"))
    texts = back.texts(codec)
    assert texts == [[codec.decode(row.tolist()) for row in chain] for chain in result.tokens]
    assert len(texts) == 2 and all(len(chain) == 3 for chain in texts)
    assert any(text for chain in texts for text in chain)
    assert back.texts(codec.decode) == texts  # a plain function works too
    with pytest.raises(TypeError, match="decoder"):
        back.texts(42)


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no result file at .*absent.nc"):
        Result.load(tmp_path / "absent.nc")


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a file"):
        Result.load(tmp_path)


def test_a_corrupt_or_truncated_file_is_a_clear_error(tmp_path, prompted_toy):
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"this is not a netCDF file at all")
    with pytest.raises(ValueError, match="not a readable netCDF file"):
        Result.load(garbage)
    result = sample(prompted_toy, torch.tensor([2, 0]), 4, target_temperature=0.5, num_chains=2, num_samples=5,
                    warmup=1, progress=False)
    whole = result.save(tmp_path / "whole.nc").read_bytes()
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="truncated"):
        Result.load(truncated)


@pytest.mark.filterwarnings("ignore:The 'phony_dims' kwarg")  # h5netcdf on the plain HDF5 file
def test_a_netcdf_file_of_something_else_is_refused(tmp_path):
    other = tmp_path / "other.nc"
    xr.Dataset({"x": ("i", np.arange(3))}).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(ValueError, match="not a dllm_mcmc result"):
        Result.load(other)
    with h5py.File(tmp_path / "plain.h5", "w") as file:  # HDF5, but not netCDF's layout
        file["x"] = np.arange(3)
    with pytest.raises(ValueError, match="not a dllm_mcmc result|not a readable netCDF file"):
        Result.load(tmp_path / "plain.h5")


def test_a_missing_engine_names_what_to_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "h5py" else real(name, *a))
    result = Result(torch.zeros(1, 1, 1, dtype=torch.long), {}, 0, 0, 0.0)
    with pytest.raises(ImportError, match="pip install h5py"):
        result.save(tmp_path / "x.nc")


def test_equals_tells_fields_apart():
    result = Result(torch.tensor([[[1, 2]]]), {"a": torch.tensor([[0.5]]), "b": torch.tensor([[1.0]])}, 1, 2, 0.5,
                    {"seed": 0}, order=torch.tensor([[[1, 0]]]))
    same = Result(result.tokens.clone(), {k: v.clone() for k, v in result.stats.items()}, 1, 2, 0.5, {"seed": 0},
                  order=torch.tensor([[[1, 0]]]))
    assert result.equals(same)
    variants = [
        Result(torch.tensor([[[1, 3]]]), same.stats, 1, 2, 0.5, {"seed": 0}, order=same.order),
        Result(same.tokens, same.stats, 1, 2, 0.5, {"seed": 0}, order=None),
        Result(same.tokens, {"b": same.stats["b"], "a": same.stats["a"]}, 1, 2, 0.5, {"seed": 0}, order=same.order),
        Result(same.tokens, dict(same.stats, a=torch.tensor([[0.25]])), 1, 2, 0.5, {"seed": 0}, order=same.order),
        Result(same.tokens, same.stats, 9, 2, 0.5, {"seed": 0}, order=same.order),
        Result(same.tokens, same.stats, 1, 2, 0.75, {"seed": 0}, order=same.order),
        Result(same.tokens, same.stats, 1, 2, 0.5, {"seed": 1}, order=same.order),
        Result(same.tokens.int(), same.stats, 1, 2, 0.5, {"seed": 0}, order=same.order),
    ]
    assert not any(result.equals(variant) for variant in variants)
