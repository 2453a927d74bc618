"""Validation in one place: the helpers, and public entry points naming the argument and the bad value."""

import math

import pytest
import torch

from dllm_mcmc import IMH, ExactDenoiser, TemperedTarget, decode, sample
from dllm_mcmc._checks import boolean, nonnegative_int, one_of, positive_float, positive_int
from dllm_mcmc.decoding import Rule
from dllm_mcmc.eval.experiment import load_config
from dllm_mcmc.eval.methods import Method


@pytest.mark.parametrize("value", [0, -3, 1.5, True, "2", None])
def test_positive_int_refuses(value):
    with pytest.raises(ValueError, match=rf"^n must be a positive integer, got {value!r}$"):
        positive_int("n", value)


def test_the_helpers_return_good_values():
    assert positive_int("n", 3) == 3 and nonnegative_int("n", 0) == 0
    assert positive_float("t", 2) == 2.0 and isinstance(positive_float("t", 2), float)
    assert one_of("rule", "a", ("a", "b")) == "a" and boolean("flag", False) is False


@pytest.mark.parametrize("value", [0, -1.0, math.inf, math.nan, True, "0.5"])
def test_positive_float_refuses(value):
    with pytest.raises(ValueError, match="^t must be"):
        positive_float("t", value)


def test_one_of_lists_the_choices():
    with pytest.raises(ValueError, match=r"^rule='x' is unknown; choose one of a, b$"):
        one_of("rule", "x", ("a", "b"))
    with pytest.raises(ValueError, match="flag must be True or False, got 1"):
        boolean("flag", 1)
    with pytest.raises(ValueError, match="n must be a non-negative integer, got -1"):
        nonnegative_int("n", -1)


@pytest.fixture(scope="module")
def toy():
    return ExactDenoiser.random(vocab_size=3, length=4, seed=0)


@pytest.mark.parametrize("call,message", [
    (lambda toy: decode(toy, None, 4, num_samples=0), "num_samples must be a positive integer, got 0"),
    (lambda toy: decode(toy, None, 4, temperature=-1), "temperature must be a finite number > 0, got -1"),
    (lambda toy: decode(toy, None, 4, rule=Rule("entropy"), block_length=2), "block_length: give these inside"),
    (lambda toy: Rule("random", tokens_per_step=0), "tokens_per_step must be a positive integer, got 0"),
    (lambda toy: TemperedTarget(toy, None, 4, target_temperature=0), "target_temperature must be a finite number"),
    (lambda toy: TemperedTarget(toy, None, 4, likelihood="ppl"), "likelihood='ppl' is unknown"),
    (lambda toy: IMH(TemperedTarget(toy, None, 4), num_chains=0), "num_chains must be a positive integer, got 0"),
    (lambda toy: IMH(TemperedTarget(toy, None, 4), proposal_temperature=0), "proposal_temperature must be"),
    (lambda toy: sample(toy, None, 4, num_samples=0, progress=False), "num_samples must be a positive integer"),
    (lambda toy: sample(toy, None, 4, warmup=-1, progress=False), "warmup must be a non-negative integer, got -1"),
    (lambda toy: Method.from_config({"name": "m", "temperature": 0}), "method 'm': temperature must be"),
    (lambda toy: Method.from_config({"name": "m", "warmup": 1.5}), "method 'm': warmup must be a non-negative integer"),
])
def test_entry_points_name_the_argument_and_the_value(toy, call, message):
    with pytest.raises(ValueError, match=message):
        call(toy)


def test_kernel_options_after_the_target_are_keyword_only(toy):
    with pytest.raises(TypeError):
        IMH(TemperedTarget(toy, None, 4), 0.5)  # type: ignore[misc]


@pytest.mark.parametrize("key,value,message", [
    ("samples", 0, "samples must be a positive integer, got 0"),
    ("problems", -2, "problems must be a positive integer, got -2"),
    ("seed", -1, "seed must be a non-negative integer, got -1"),
    ("gen_length", "long", "gen_length must be a positive integer, got 'long'"),
    ("tasks", "arith", "tasks must be a list of task names, got 'arith'"),
    ("methods", ["random"], "methods must be a list of tables"),
])
def test_config_fields_name_the_field_and_the_value(tmp_path, key, value, message):
    config = {"model": "tasks-small", "tasks": ["arith"], "methods": [{"name": "random"}], key: value}
    with pytest.raises(ValueError, match=message):
        load_config(None, config)


def test_a_rule_object_travels_unchanged(toy):
    rule = Rule("stochastic", block_length=2, position_temperature=0.3)
    traj = decode(toy, None, 4, rule=rule, temperature=0.5, num_samples=3, generator=torch.Generator().manual_seed(0))
    assert traj.config.rule == rule
    assert TemperedTarget(toy, None, 4, rule=rule).rule == rule
    result = sample(toy, None, 4, rule=rule, num_chains=2, num_samples=2, warmup=0, progress=False)
    assert result.config["rule"] == "stochastic" and result.config["rule_block_length"] == 2


def test_the_proposal_temperature_defaults_to_the_target_temperature(toy):
    import warnings

    from dllm_mcmc.mcmc.kernel import ColdProposalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at τ = T or hotter
        assert IMH(TemperedTarget(toy, None, 4, target_temperature=0.7)).proposal.temperature == 0.7
        IMH(TemperedTarget(toy, None, 4, target_temperature=0.7), proposal_temperature=1.0)
        result = sample(toy, None, 4, target_temperature=0.6, num_chains=2, num_samples=2, warmup=0, progress=False)
    assert result.config["proposal_temperature"] == 0.6
    with pytest.warns(ColdProposalWarning, match=r"τ=0.5 is colder than the target temperature T=2"):
        IMH(TemperedTarget(toy, None, 4, target_temperature=2.0), proposal_temperature=0.5)
