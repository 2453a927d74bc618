"""The registry of samplers: one descriptor per sampler, read by `sample`, the evaluation, the plan, the lm-eval
model and the command line."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from dllm_mcmc import ExactDenoiser, sample
from dllm_mcmc.cli import describe_samplers, main
from dllm_mcmc.eval.experiment import load_config
from dllm_mcmc.eval.methods import Method
from dllm_mcmc.lm_eval_model import allowed_options
from dllm_mcmc.mcmc.registry import BUILTIN, get_sampler, kernel_names, samplers
from dllm_mcmc.mcmc.spec import TARGET_OPTIONS, UnitShape

KERNEL_ARGUMENTS = ("target", "proposal_temperature", "num_chains", "seed")
"""Set by `sample` and the evaluation, not options."""


def test_every_built_in_sampler_is_registered_once():
    assert list(BUILTIN) == ["decode", "best_of", "majority", "particles", "imh", "power", "stepwise", "pgibbs",
                             "smc"]
    assert set(kernel_names()) == {"imh", "power", "stepwise", "pgibbs", "smc"}
    assert all(samplers()[name] is spec for name, spec in BUILTIN.items())


@pytest.mark.parametrize("name", [name for name in BUILTIN if BUILTIN[name].kernel is not None])
def test_a_kernels_options_dataclass_is_its_constructors_options(name):
    """The options dataclass and the kernel's keyword arguments name the same options with the same defaults
    (a kernel's ``max_rows`` is the target's option: `sample` gives it to the target)."""
    spec = get_sampler(name)
    parameters = inspect.signature(spec.kernel).parameters
    constructor = {key: p.default for key, p in parameters.items() if key not in (*KERNEL_ARGUMENTS, "max_rows")}
    fields = {field.name: field.default for field in dataclasses.fields(spec.options)}
    assert fields == constructor


@pytest.mark.parametrize("name", list(BUILTIN))
def test_every_sampler_has_checked_options_a_cost_and_a_listing(name):
    spec = get_sampler(name)
    defaults = spec.parse_options({})
    cost = spec.cost(defaults, UnitShape(steps=16, gen_length=16, samples=4, warmup=2))
    assert cost.nfe >= 16 and cost.rows >= 4 * 16
    assert name in describe_samplers()
    assert set(spec.own_options) <= set(allowed_options(name))
    for key in spec.own_options:  # a misspelling of every own option is refused naming the option
        with pytest.raises(ValueError, match=f"did you mean '{key}'"):
            spec.parse_options({key + "x": 1})


@pytest.mark.parametrize("options, message", [
    ({"proposal_batch": 0}, "proposal_batch must be a positive integer"),
    ({"propsal_batch": 2}, "propsal_batch is not an option of sampler 'imh' \\(did you mean 'proposal_batch'\\?\\)"),
    ({"likelihood": "exact"}, "likelihood='exact' is unknown"),
])
def test_a_bad_option_is_refused_when_the_config_is_read(tmp_path, options, message):
    """Before any model loads: load_config builds every method, and the method asks its sampler's descriptor."""
    lines = "\n".join(f"{key} = {value!r}".replace("'", '"') for key, value in options.items())
    path = tmp_path / "c.toml"
    path.write_text(f'model = "no-such-model"\ntasks = ["arith"]\n[[methods]]\nname = "imh8"\nsampler = "imh"\n'
                    f"{lines}\n")
    with pytest.raises(ValueError, match=f"method 'imh8': {message}"):
        load_config(path)


def test_the_plan_refuses_a_misspelled_option_without_loading_anything(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('model = "no-such-model"\ntasks = ["arith"]\n[[methods]]\nname = "s"\nsampler = "stepwise"\n'
                    "num_candiates = 4\n")
    assert main(["eval", str(path), "--plan"]) == 2
    error = capsys.readouterr().err
    assert "method 's': num_candiates is not an option of sampler 'stepwise'" in error
    assert "did you mean 'num_candidates'" in error


def test_unknown_samplers_and_batch_samplers_are_refused_by_sample():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    with pytest.raises(ValueError, match="sampler 'ihm' is unknown \\(did you mean 'imh'\\?\\)"):
        sample(toy, None, 4, kernel="ihm", progress=False)
    with pytest.raises(ValueError, match="'decode' is a batch sampler of the evaluation, not a kernel"):
        sample(toy, None, 4, kernel="decode", progress=False)
    with pytest.raises(ValueError, match="block_length is not an option of sampler 'imh'"):
        sample(toy, None, 4, kernel="imh", block_length=2, progress=False)  # rule options travel in rule=Rule(...)
    with pytest.raises(ValueError, match="method 'x': sampler 'majorty' is unknown \\(did you mean 'majority'\\?\\)"):
        Method.from_config({"name": "x", "sampler": "majorty"})


def test_target_options_go_to_the_target():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    result = sample(toy, None, 4, kernel="imh", num_chains=2, num_samples=3, warmup=0, progress=False,
                    likelihood="elbo", elbo_samples=2, max_rows=3)
    assert set(TARGET_OPTIONS) == {"likelihood", "elbo_samples", "max_rows"}
    assert result.config["elbo_samples"] == 2 and result.config["likelihood"] == "elbo"
