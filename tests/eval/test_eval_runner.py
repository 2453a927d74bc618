"""The experiment runner: records, resume after kill -9, refusal of mixed settings, and the report."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dllm_mcmc.cli import main
from dllm_mcmc.eval.experiment import load_config, run_experiment
from dllm_mcmc.eval.records import RecordStore, read_records
from dllm_mcmc.eval.report import build_report

CONFIG = """
model = "tasks-small"
samples = 4
problems = 4
seed = 3
tasks = ["arith", "program", "countdown"]

[[methods]]
name = "random"

[[methods]]
name = "confidence"
rule = "confidence"

[[methods]]
name = "imh"
sampler = "imh"
warmup = 1
proposal_batch = 2
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "eval.toml"
    path.write_text(CONFIG)
    return path


def table(path):
    """The report's figures, without wall times (they differ between runs)."""
    report = build_report(read_records(path), resamples=200)
    return {(r.task, r.method): ({k: (e.mean, e.low, e.high) for k, e in r.pass_at.items()}, r.distinct_answers,
                                 r.nfe, r.rows_per_sample)
            for rows in report.scores.values() for r in rows}


def completions(path):
    return sorted((r["unit"], r["sample"], r["completion"], r["correct"]) for r in read_records(path))


def test_one_record_per_sample_with_the_promised_fields(tmp_path, config_file):
    config = load_config(config_file, {"output": str(tmp_path / "a.jsonl")})
    summary = run_experiment(config, progress=False)
    records = read_records(tmp_path / "a.jsonl")
    assert summary.ran == 3 * 4 * 3 and len(records) == 3 * 4 * 3 * 4
    assert {"config_hash", "method", "task", "problem", "sample", "completion", "answer", "correct", "reason",
            "nfe", "forward_rows", "seconds"} <= set(records[0])
    assert len({(r["unit"], r["sample"]) for r in records}) == len(records)
    assert any(r["correct"] for r in records) and all(r["reason"] in ("ok", "wrong answer", "no answer")
                                                      for r in records)
    # A rerun finds everything done and draws nothing.
    again = run_experiment(config, progress=False)
    assert again.ran == 0 and again.skipped == 36 and len(read_records(tmp_path / "a.jsonl")) == len(records)


def test_run_killed_midway_resumes_to_the_same_table_without_duplicates(tmp_path, config_file):
    whole, broken = tmp_path / "whole.jsonl", tmp_path / "broken.jsonl"
    assert main(["eval", str(config_file), "--out", str(whole), "--no-progress"]) == 0
    command = [sys.executable, "-m", "dllm_mcmc", "eval", str(config_file), "--out", str(broken), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if broken.exists() and len(broken.read_text().splitlines()) >= 3 * 4:  # three units written
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = len(read_records(broken))
    assert 0 < written < 144
    with broken.open("a") as handle:  # what a kill in the middle of a write would leave
        handle.write('{"unit": "torn", "sam')
    assert main(["eval", str(config_file), "--out", str(broken), "--no-progress"]) == 0
    assert completions(broken) == completions(whole)
    assert table(broken) == table(whole)
    records = read_records(broken)
    assert len({(r["unit"], r["sample"]) for r in records}) == len(records) == 144


def test_unfinished_unit_is_dropped_on_open(tmp_path):
    path = tmp_path / "r.jsonl"
    lines = [{"unit": "a", "sample": 0}, {"unit": "a", "sample": 1}, {"unit": "b", "sample": 0}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    store = RecordStore.open(path, samples_per_unit=2)
    assert store.done_units() == {"a"} and len(read_records(path)) == 2


def test_changed_settings_are_refused_not_mixed(tmp_path, config_file):
    out = str(tmp_path / "r.jsonl")
    run_experiment(load_config(config_file, {"output": out, "problems": 1, "tasks": ["arith"]}), progress=False)
    with pytest.raises(ValueError, match="other settings"):
        run_experiment(load_config(config_file, {"output": out, "problems": 1, "tasks": ["arith"], "seed": 4}),
                       progress=False)


@pytest.mark.parametrize("overrides, message", [
    ({"samples": 0}, "samples must"), ({"tasks": []}, "needs 'tasks'"), ({"gen_lenght": 3}, "unknown config keys"),
])
def test_bad_configs_are_refused(config_file, overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(config_file, overrides)


def test_unknown_task_and_method_options_are_named(tmp_path, config_file):
    with pytest.raises(ValueError, match="unknown task 'sudoku'"):
        run_experiment(load_config(config_file, {"tasks": ["sudoku"], "output": str(tmp_path / "r.jsonl")}),
                       progress=False)
    bad = load_config(config_file, {"output": str(tmp_path / "r.jsonl")})
    bad["methods"] = [{"name": "x", "rule": "random", "proposal_batch": 2}]
    with pytest.raises(ValueError, match="proposal_batch is not an option of sampler 'decode'"):
        run_experiment(bad, progress=False)


def test_report_writes_table_and_plots(tmp_path, config_file, capsys):
    out = tmp_path / "r.jsonl"
    run_experiment(load_config(config_file, {"output": str(out)}), progress=False)
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    for name in ("passk.png", "frontier.png", "compute.png"):
        assert (tmp_path / "report" / name).stat().st_size > 5000 and name in text
    assert "| random" in text and "| imh" in text and "Pass@4" in text and "Pareto front" in text
    report = build_report(read_records(out), resamples=100)
    for rows in report.scores.values():
        assert any(r.on_front for r in rows)
        for r in rows:  # Pass@k cannot fall as k grows, and IMH pays for its warm-up in rows
            assert r.pass_at[1].mean <= r.pass_at[2].mean <= r.pass_at[4].mean
        rows_of = {r.method: r.rows_per_sample for r in rows}
        assert rows_of["imh"] > rows_of["random"] == rows_of["confidence"]


def test_eval_flag_report_writes_the_report_after_the_run(tmp_path, config_file, capsys):
    out, report = tmp_path / "r.jsonl", tmp_path / "report"
    assert main(["eval", str(config_file), "--out", str(out), "--problems", "1", "--methods", "random",
                 "--tasks", "arith", "--report", str(report), "--no-progress"]) == 0
    assert "| random" in (report / "report.md").read_text()
    capsys.readouterr()
    assert main(["eval", str(config_file), "--out", str(out), "--methods", "beam"]) == 2
    assert "not in the config" in capsys.readouterr().err


def test_transformers_model_directory_runs_through_the_runner(tmp_path, config_file):
    """A tiny random BERT saved with a character tokenizer: encode, decode, grade, record."""
    from hf_fixtures import char_tokenizer, tiny_model

    tokenizer = char_tokenizer()
    model_dir = tmp_path / "bert"
    tiny_model("bert", len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    config = load_config(config_file, {"model": str(model_dir), "gen_length": 5, "tasks": ["arith"],
                                       "problems": 2, "samples": 3, "output": str(tmp_path / "r.jsonl")})
    config["methods"] = [{"name": "random"}, {"name": "imh", "sampler": "imh", "warmup": 1}]
    assert run_experiment(config, progress=False).ran == 4
    records = read_records(tmp_path / "r.jsonl")
    assert len(records) == 12 and all(isinstance(r["completion"], str) for r in records)
    assert all(r["nfe"] >= 5 for r in records)
    with pytest.raises(ValueError, match="gen_length"):
        run_experiment({**config, "gen_length": None, "output": str(tmp_path / "s.jsonl")}, progress=False)


def test_every_shipped_config_is_valid():
    """configs/*.toml and configs/paper/*.toml: known keys, valid methods, known tasks."""
    from dllm_mcmc.eval.benchmarks import BENCHMARKS
    from dllm_mcmc.eval.methods import Method
    from dllm_mcmc.tasks import FAMILIES

    root = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs"
    paths = sorted(root.rglob("*.toml"))
    assert len(paths) >= 5
    for path in paths:
        config = load_config(path)
        assert [Method.from_config(m).name for m in config["methods"]]
        assert set(config["tasks"]) <= set(FAMILIES) | set(BENCHMARKS), path
    paper = [load_config(p) for p in paths if p.parent.name == "paper"]
    # every paper config compares these four; the WeDLM configs add WeDLM's own decoding rule
    assert {m["name"] for c in paper for m in c["methods"]} == {"random", "confidence", "imh", "stepwise", "wedlm"}
    assert all({"random", "confidence", "imh", "stepwise"} <= {m["name"] for m in c["methods"]} for c in paper)
    assert {t for c in paper for t in c["tasks"]} == {"humaneval", "mbpp", "math500", "aime24", "aime25"}
    assert all(c["gen_length"] == (512 if "aime24" in c["tasks"] else 256) for c in paper)
