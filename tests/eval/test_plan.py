"""The plan's cost formulas equal the metered cost of real runs, and the plan touches nothing."""

import pytest

from dllm_mcmc.eval.engine import load_engine
from dllm_mcmc.eval.experiment import load_config
from dllm_mcmc.eval.methods import Method, generate
from dllm_mcmc.eval.plan import BENCHMARK_SIZES, method_cost, plan


@pytest.fixture(scope="module")
def engine():
    return load_engine("tasks-small")


@pytest.mark.parametrize("config", [
    {"name": "random", "rule": "random"},
    {"name": "blocks", "rule": "entropy", "block_length": 4, "tokens_per_step": 2},
    {"name": "egi", "rule": "egi", "block_length": 8},
    {"name": "best-of", "sampler": "best_of", "candidates": 3, "rule": "top_prob"},
    {"name": "best-of-blocks", "sampler": "best_of", "candidates": 2, "block_length": 4, "tokens_per_step": 2},
    {"name": "majority", "sampler": "majority", "candidates": 4, "rule": "egi"},
    {"name": "imh", "sampler": "imh", "warmup": 2, "proposal_batch": 3},
    {"name": "imh-b1", "sampler": "imh", "warmup": 0},
    {"name": "imh-l2r", "sampler": "imh", "warmup": 1, "proposal_batch": 2, "likelihood": "left_to_right"},
    {"name": "power", "sampler": "power", "warmup": 1, "moves_per_draw": 2},
    {"name": "stepwise", "sampler": "stepwise", "num_candidates": 3},
    {"name": "stepwise-elbo", "sampler": "stepwise", "num_candidates": 2, "likelihood": "elbo", "elbo_samples": 3},
    {"name": "pgibbs", "sampler": "pgibbs", "num_particles": 3, "warmup": 1},
    {"name": "particles", "sampler": "particles"},
    {"name": "particles-threshold", "sampler": "particles", "rule": "entropy", "ess_threshold": 1.0},
    {"name": "smc", "sampler": "smc", "num_particles": 3},
])
def test_formulas_equal_the_metered_cost(engine, config):
    method = Method.from_config({**config, "max_rows": None})
    prompt = engine.encode("7+5*3=")
    generation = generate(method, engine, prompt, samples=3, seed=0, answer_of=lambda text: text[:2])
    assert generation.tokens.shape == (3, engine.gen_length)
    assert method_cost(method, engine.gen_length, 3) == (generation.nfe, generation.forward_rows)


def test_plan_of_the_bundled_config(tmp_path):
    config = load_config("configs/eval-small.toml", {"problems": 2, "output": str(tmp_path / "r.jsonl")})
    result = plan(config)
    assert result.problems == {"countdown": 2, "arith": 2, "program": 2} and not result.assumed_sizes
    by_name = {m.method: m for m in result.methods}
    assert by_name["random"].rows == 6 * 16 * 16  # units x samples x steps
    assert result.gpu_hours(1000.0) == pytest.approx(result.rows / 3600)
    assert "| total |" in result.markdown(2.0) and not (tmp_path / "r.jsonl").exists()


def test_paper_config_plans_without_its_data():
    result = plan(load_config("configs/paper/llada-code-math.toml"))
    assert result.problems["math500"] == BENCHMARK_SIZES["math500"] and "math500" in result.assumed_sizes
    assert result.problems["humaneval"] == 164 and "humaneval" not in result.assumed_sizes  # ships offline
    imh = next(m for m in result.methods if m.method == "imh")
    # the figure: MATH500 x 16 samples x 8 proposals x 256 steps ≈ 16M rows for IMH
    assert imh.rows_per_unit * 500 == 500 * 16 * 8 * 256


def test_exact_suffix_is_not_planned():
    method = Method.from_config({"name": "s", "sampler": "stepwise", "suffix": "exact"})
    with pytest.raises(ValueError, match="mean_field"):
        method_cost(method, 4, 1)


def test_plan_flag_prints_the_table_and_writes_nothing(tmp_path, capsys):
    from dllm_mcmc.cli import main

    out = tmp_path / "never.jsonl"
    assert main(["eval", "configs/eval-small.toml", "--plan", "--problems", "2", "--out", str(out),
                 "--forward-ms", "12.6"]) == 0
    printed = capsys.readouterr().out
    assert "| imh | 6 | 96 |" in printed and "GPU-hours at 12.6 ms" in printed
    assert not out.exists()
    assert main(["eval", "configs/eval-small.toml", "--plan", "--forward-ms", "0"]) == 2
