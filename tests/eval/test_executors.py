"""Executors of the experiment runner: inline, local worker processes and Ray actors draw the same records;
a worker killed with SIGKILL mid-unit loses and duplicates nothing; a unit that raises is reported."""

import json
import os

import pytest
import torch
from worker_faults import TESTS, KillOnce

from dllm_mcmc import cli
from dllm_mcmc.cli import main
from dllm_mcmc.eval import experiment
from dllm_mcmc.eval.executors import Done, Failed, make_executor
from dllm_mcmc.eval.executors.threads import use_threads
from dllm_mcmc.eval.experiment import run_experiment
from dllm_mcmc.eval.family_tasks import FamilyTask
from dllm_mcmc.eval.records import read_records

TASKS = ["arith", "countdown"]
CONFIG = {
    "model": "tasks-small", "samples": 2, "problems": 2, "seed": 3, "tasks": TASKS, "threads": 1,
    "methods": [{"name": "random"}, {"name": "imh", "sampler": "imh", "warmup": 1, "proposal_batch": 2}],
}
UNITS = len(TASKS) * 2 * 2  # tasks x problems x methods


def config(path, **settings):
    return {**CONFIG, "output": str(path), **settings}


def comparable(path):
    """The records minus their wall times, in (unit, sample) order; asserts one record per (unit, sample)."""
    records = read_records(path)
    assert len({(r["unit"], r["sample"]) for r in records}) == len(records), "a duplicated record"
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in records),
                  key=lambda r: (r["unit"], r["sample"]))


def write_toml(tmp_path, out):
    """CONFIG as a TOML file writing to ``out`` (without `threads`: the CLI's default applies)."""
    methods = "".join("\n[[methods]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in m.items())
                      for m in CONFIG["methods"])
    path = tmp_path / "eval.toml"
    path.write_text(f'model = "tasks-small"\nsamples = 2\nproblems = 2\nseed = 3\ntasks = {json.dumps(TASKS)}\n'
                    f'output = "{out.as_posix()}"\n{methods}')
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The records of an uninterrupted single-process (inline) run."""
    path = tmp_path_factory.mktemp("inline") / "r.jsonl"
    summary = run_experiment(config(path), progress=False)
    assert summary.ran == UNITS and summary.executor == "inline" and not summary.failed
    records = comparable(path)
    assert len(records) == UNITS * 2
    return records


def kill_once(monkeypatch, tmp_path):
    """Make the worker handed (imh, countdown, 2nd problem) SIGKILL itself, once; returns the marker file.
    The executor the runner makes gets its worker factory (the `UnitDrawer`) wrapped in
    `worker_faults.KillOnce`, which the workers import."""
    marker = tmp_path / "killed"
    problem = FamilyTask("countdown").problems(2)[1].id
    make = experiment.make_executor

    def make_executor(*args, **options):
        executor = make(*args, **options)
        run = executor.run
        executor.run = lambda jobs, factory: run(jobs, KillOnce(factory, "imh", "countdown", problem, str(marker)))
        return executor

    monkeypatch.setattr(experiment, "make_executor", make_executor)
    return marker


def test_local_workers_draw_the_inline_records(tmp_path, reference, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["eval", str(write_toml(tmp_path, out)), "--no-progress", "--executor", "local", "--workers", "2",
                 "--threads", "1"]) == 0
    assert f"{UNITS} units drawn by local×2, 0 already done, 0 failed, 0 retried" in capsys.readouterr().out
    assert comparable(out) == reference


def test_local_worker_killed_midway_loses_and_duplicates_nothing(tmp_path, reference, monkeypatch):
    marker = kill_once(monkeypatch, tmp_path)
    out = tmp_path / "r.jsonl"
    summary = run_experiment(config(out, executor="local", workers=2), progress=False)
    assert marker.exists(), "no worker was killed"
    assert summary.retried == 1 and summary.ran == UNITS and not summary.failed
    assert comparable(out) == reference


@pytest.fixture(scope="module")
def ray_cluster():
    """One local two-CPU Ray cluster for the module's Ray tests (starting one takes seconds)."""
    ray = pytest.importorskip("ray")
    # the actors import tests/worker_faults.py (the killed actor's drawer)
    path = os.pathsep.join([TESTS, *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def test_ray_actors_draw_the_inline_records(tmp_path, reference, ray_cluster):
    out = tmp_path / "r.jsonl"
    summary = run_experiment(config(out, executor="ray", workers=2), progress=False)
    assert (summary.executor, summary.workers, summary.ran, summary.retried) == ("ray", 2, UNITS, 0)
    assert comparable(out) == reference


def test_ray_actor_killed_midway_loses_and_duplicates_nothing(tmp_path, reference, monkeypatch, ray_cluster):
    marker = kill_once(monkeypatch, tmp_path)
    out = tmp_path / "r.jsonl"
    summary = run_experiment(config(out, executor="ray"), progress=False)  # workers: the cluster's 2 CPUs
    assert marker.exists(), "no actor was killed"
    assert summary.workers == 2 and summary.retried == 1 and summary.ran == UNITS and not summary.failed
    assert comparable(out) == reference
    assert run_experiment(config(out, executor="ray"), progress=False).ran == 0  # resumes: nothing left


def test_a_ray_actor_that_cannot_load_the_model_stops_the_run_with_its_error(tmp_path, ray_cluster):
    with pytest.raises(ValueError, match="colour: not options of the small model"):
        run_experiment(config(tmp_path / "r.jsonl", executor="ray", workers=1, model_options={"colour": "red"}),
                       progress=False)


def test_a_unit_that_raises_is_reported_not_recorded_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    real, bad = experiment._draw_unit, FamilyTask("arith").problems(1)[0].id

    def draw_unit(config, engine, hashes, method, task, problems):
        if (method.name, task.name, problems[0].id) == ("imh", "arith", bad):
            raise RuntimeError("a bug\nin two lines")
        return real(config, engine, hashes, method, task, problems)

    monkeypatch.setattr(experiment, "_draw_unit", draw_unit)
    out = tmp_path / "r.jsonl"
    assert main(["eval", str(write_toml(tmp_path, out)), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert f"{UNITS - 1} units drawn by inline×1, 0 already done, 1 failed, 0 retried" in captured.out
    assert f"imh / arith / {bad!r}: RuntimeError: a bug in two lines" in captured.err
    assert len(read_records(out)) == (UNITS - 1) * 2
    monkeypatch.setattr(experiment, "_draw_unit", real)  # fixed: a rerun draws the failed unit alone
    summary = run_experiment(config(out), progress=False)
    assert (summary.ran, summary.skipped, summary.failed) == (1, UNITS - 1, ())


class Draw:
    """A worker for the executor tests: job ``i`` returns (i, torch threads), job ``fail`` raises."""

    def __init__(self, fail):
        self.fail = fail

    def __call__(self):
        return self.draw

    def draw(self, job):
        if job == self.fail:
            raise ValueError(f"job {job} is bad")
        return job, torch.get_num_threads()


@pytest.mark.parametrize("name", ["inline", "local"])
def test_executors_report_failures_and_set_threads(name):
    events = list(make_executor(name, workers=2, threads=1).run(list(range(5)), Draw(fail=3)))
    assert sorted(e.result for e in events if isinstance(e, Done)) == [(i, 1) for i in (0, 1, 2, 4)]
    (failed,) = [e for e in events if isinstance(e, Failed)]
    assert failed.index == 3 and failed.error == "ValueError: job 3 is bad" and "Traceback" in failed.details


def test_a_local_worker_that_cannot_load_the_model_stops_the_run_with_its_error(tmp_path):
    with pytest.raises(ValueError, match="colour: not options of the small model"):
        run_experiment(config(tmp_path / "r.jsonl", executor="local", workers=1, model_options={"colour": "red"}),
                       progress=False)
    assert not read_records(tmp_path / "r.jsonl") if (tmp_path / "r.jsonl").exists() else True


def test_bad_execution_settings_are_refused(tmp_path):
    for settings, message in [({"executor": "slurm"}, "executor='slurm' is unknown"),
                              ({"workers": 0}, "workers must be a positive integer"),
                              ({"threads": -1}, "threads must be a positive integer"),
                              ({"address": 6379}, "address must be")]:
        with pytest.raises(ValueError, match=message):
            run_experiment(config(tmp_path / "r.jsonl", **settings), progress=False)
    assert not (tmp_path / "r.jsonl").exists()


def test_ray_missing_names_the_extra(monkeypatch):
    from dllm_mcmc.eval.executors import ray as ray_executor

    monkeypatch.setattr(ray_executor.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install 'dllm-mcmc\[ray\]'"):
        make_executor("ray")


def test_threads_are_set_deliberately_and_interop_twice_is_harmless(monkeypatch):
    previous = use_threads(1)
    assert torch.get_num_threads() == 1 and use_threads(1) == 1  # the second inter-op call is skipped
    use_threads(previous)
    monkeypatch.setattr(cli, "demo", lambda *args: None)
    try:
        assert main(["toy", "--threads", "2"]) == 0 and torch.get_num_threads() == 2
        assert main(["toy"]) == 0 and torch.get_num_threads() == 1  # the default: one thread
    finally:
        torch.set_num_threads(1)

