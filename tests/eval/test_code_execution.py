"""Code tasks run the model's code only when asked (``--allow-code-execution`` / ``allow_code_execution``),
and the sandbox's isolation level is said once, warned about when weaker than full, and recorded.

The runner's tests draw with the bundled model behind a stand-in codec: every prompt is encoded as an
arithmetic prompt the model knows and every response decodes to the same fixed completion, so a code
task's grading really runs a program in the sandbox, in a second or two.
"""

import json
import warnings

import pytest

import dllm_mcmc.eval.experiment as experiment
import dllm_mcmc.eval.sandbox as sandbox
from dllm_mcmc.cli import main
from dllm_mcmc.eval.benchmarks import AIME, MBPP, HumanEval
from dllm_mcmc.eval.checking import (
    CodeExecutionNotAllowed,
    WeakIsolationWarning,
    isolation_is_full,
    isolation_notice,
    missing_isolation,
)
from dllm_mcmc.eval.engine import Engine, load_engine
from dllm_mcmc.eval.experiment import load_config, load_task, run_experiment
from dllm_mcmc.eval.records import read_records
from dllm_mcmc.eval.report import build_report

FULL = sandbox.FULL_ISOLATION  # "netns+rofs+pidns+nobody+audit"
ROW = {"task_id": "Tiny/0", "prompt": 'def one():\n    """Return 1."""\n',
       "test": "def check(candidate):\n    assert candidate() == 1\n", "entry_point": "one",
       "canonical_solution": "    return 1\n"}
COMPLETION = "    return 1\n"

CONFIG = """
model = "tasks-small"
samples = 2
problems = 1
output = "{output}"
tasks = {tasks}
{extra}
[task_paths]
humaneval = "{data}"

[[methods]]
name = "random"
"""


@pytest.fixture(scope="module")
def fake_engine():
    """The bundled model; any prompt is encoded as ``1+1=``, any response decodes to `COMPLETION`."""
    real = load_engine("tasks-small")
    prompt = real.encode("1+1=")
    return Engine("tasks-small", real.denoiser, real.gen_length, lambda text: prompt, lambda ids: COMPLETION)


@pytest.fixture
def write_config(tmp_path):
    data = tmp_path / "tiny-humaneval.jsonl"
    data.write_text(json.dumps(ROW) + "\n")

    def write(tasks=("humaneval",), extra=""):
        path = tmp_path / "eval.toml"
        path.write_text(CONFIG.format(output=(tmp_path / "results.jsonl").as_posix(), tasks=json.dumps(list(tasks)),
                                      extra=extra, data=data.as_posix()))
        return path

    return write


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the runner loads a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(experiment, "load_engine", refuse)


@pytest.fixture
def serve(monkeypatch, fake_engine):
    """The runner's model loader returns the stand-in engine (the CLI has no engine= argument)."""
    monkeypatch.setattr(experiment, "load_engine", lambda *args, **kwargs: fake_engine)


def isolation_is(monkeypatch, level):
    monkeypatch.setattr(sandbox, "detect_isolation", lambda: level)


# --------------------------------------------------------------------------------------------------
# The opt-in


@pytest.mark.parametrize("extra", ["", "allow_code_execution = false\n"])
def test_the_command_line_refuses_code_tasks_unless_allowed(capsys, tmp_path, write_config, no_model, extra):
    config = write_config(tasks=("arith", "humaneval"), extra=extra)
    assert main(["eval", str(config), "--no-progress"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    line = lines[0]
    assert line.startswith("dllm-mcmc: error: task humaneval grades completions by running the model's code")
    assert "--allow-code-execution" in line and "allow_code_execution = true" in line and "arith" not in line
    assert not (tmp_path / "results.jsonl").exists()  # nothing drawn, nothing written


def test_the_library_refuses_before_loading_a_model(tmp_path, write_config, no_model):
    config = load_config(write_config())
    with pytest.raises(CodeExecutionNotAllowed, match="humaneval.*allow_code_execution = true"):
        run_experiment(config, progress=False)
    assert not (tmp_path / "results.jsonl").exists()


def test_plan_needs_no_permission(capsys, write_config, no_model):
    assert main(["eval", str(write_config()), "--plan"]) == 0
    assert "humaneval 1" in capsys.readouterr().out


def test_the_flag_allows_it_and_records_carry_the_isolation(capsys, tmp_path, write_config, serve, monkeypatch):
    isolation_is(monkeypatch, FULL)
    config = write_config(tasks=("humaneval", "arith"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", WeakIsolationWarning)
        assert main(["eval", str(config), "--no-progress", "--allow-code-execution"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("dllm-mcmc: code of humaneval runs in the sandbox with isolation "
                              f"{FULL} (full)") == 1
    assert "warning" not in captured.err and f"code ran at isolation {FULL}" in captured.out
    records = read_records(tmp_path / "results.jsonl")
    code = [r for r in records if r["task"] == "humaneval"]
    other = [r for r in records if r["task"] == "arith"]
    assert len(code) == len(other) == 2
    assert all(r["isolation"] == FULL and r["correct"] and r["reason"] == "ok" for r in code)  # the code ran
    assert all("isolation" not in r for r in other)


@pytest.mark.filterwarnings("ignore::dllm_mcmc.eval.checking.WeakIsolationWarning")  # this machine's level
def test_the_config_key_allows_it(tmp_path, write_config, fake_engine):
    config = load_config(write_config(extra="allow_code_execution = true\n"))
    lines = []
    summary = run_experiment(config, progress=False, engine=fake_engine, log=lines.append)
    level = sandbox.detect_isolation()
    assert summary.ran == 1 and summary.isolation == level and len(lines) == 1 and level in lines[0]
    records = read_records(tmp_path / "results.jsonl")
    assert [r["isolation"] for r in records] == [level, level] and all(r["correct"] for r in records)
    # resuming draws nothing and says the level again (once per run)
    again = run_experiment(config, progress=False, engine=fake_engine, log=lines.append)
    assert again.ran == 0 and len(lines) == 2


def test_allow_code_execution_must_be_a_boolean(write_config):
    with pytest.raises(ValueError, match="allow_code_execution must be true or false, got 'yes'"):
        load_config(write_config(extra='allow_code_execution = "yes"\n'))
    assert load_config(write_config())["allow_code_execution"] is False


def test_code_benchmarks_grade_only_when_built_to(tmp_path):
    for task in (HumanEval(records=[ROW]), MBPP(records=[{"task_id": 11, "text": "Return 1.", "code": "def one():\n"
                                                          "    return 1", "test_list": ["assert one() == 1"]}])):
        problem = task.problems()[0]
        assert task.prompt_text(problem)  # problems and prompts need no permission
        with pytest.raises(CodeExecutionNotAllowed, match="allow_code_execution=True"):
            task.check(problem, "")  # not even an empty completion: the refusal does not wait for code
    allowed = HumanEval(records=[ROW], allow_code_execution=True)
    assert allowed.check(allowed.problems()[0], COMPLETION).correct
    with pytest.raises(ValueError, match="must be True or False"):
        HumanEval(records=[ROW], allow_code_execution="yes")
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(ROW) + "\n")
    assert load_task("humaneval", str(path), allow_code_execution=True).allow_code_execution
    assert not load_task("humaneval", str(path)).allow_code_execution
    aime = tmp_path / "aime.jsonl"
    aime.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    assert isinstance(load_task("aime24", str(aime), allow_code_execution=True), AIME)  # runs no code: ignored


# --------------------------------------------------------------------------------------------------
# The isolation level


@pytest.mark.parametrize("level, root, full, missing", [
    (FULL, True, True, []),
    ("netns+rofs+pidns+audit", True, False, ["nobody"]),
    ("netns+rofs+pidns+userns+audit", False, True, []),  # a non-root parent's child is not root without nobody
    ("netns+rofs+audit", False, False, ["pidns"]),
    ("netns+audit", False, False, ["rofs", "pidns"]),
    ("audit", True, False, ["netns", "rofs", "pidns", "nobody"]),
])
def test_isolation_is_full(level, root, full, missing):
    assert isolation_is_full(level, parent_is_root=root) is full
    assert missing_isolation(level, parent_is_root=root) == missing
    line, says_full = isolation_notice(level, ["humaneval"], parent_is_root=root)
    assert says_full is full and level in line and all(layer in line for layer in missing)


def test_full_follows_the_sandbox_when_it_lists_its_layers(monkeypatch):
    monkeypatch.setattr(sandbox, "FULL_ISOLATION", "netns+rofs+pidns+nobody+seccomp+audit", raising=False)
    assert missing_isolation(FULL, parent_is_root=True) == ["seccomp"]


def test_a_weaker_level_warns_in_the_library(tmp_path, write_config, fake_engine, monkeypatch):
    isolation_is(monkeypatch, "audit")
    config = load_config(write_config(extra="allow_code_execution = true\n"))
    with pytest.warns(WeakIsolationWarning, match="isolation audit, weaker than full.*netns: no network namespace"):
        summary = run_experiment(config, progress=False, engine=fake_engine)
    assert summary.isolation == "audit"
    assert {r["isolation"] for r in read_records(tmp_path / "results.jsonl")} == {"audit"}


def test_a_weaker_level_is_one_warning_line_in_the_command_line(capsys, write_config, serve, monkeypatch):
    isolation_is(monkeypatch, "netns+audit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["eval", str(write_config()), "--no-progress", "--allow-code-execution"]) == 0
    assert not [w for w in caught if issubclass(w.category, WeakIsolationWarning)]  # printed once, below
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if "isolation" in line]
    assert len(warning) == 1
    assert warning[0].startswith("dllm-mcmc: warning: code of humaneval runs in the sandbox with isolation "
                                 "netns+audit, weaker than full")
    assert "rofs: no read-only file system" in warning[0]


def test_records_without_isolation_still_report(tmp_path):
    """Records written before the field existed, beside new ones, read and report as before."""
    path = tmp_path / "mixed.jsonl"
    base = {"config_hash": "h", "method": "m", "task": "humaneval", "problem": "p", "completion": "",
            "answer": None, "correct": True, "reason": "ok", "nfe": 1, "forward_rows": 1.0, "seconds": 0.1}
    rows = [dict(base, unit="h/p", sample=0), dict(base, unit="h/p", sample=1, isolation=FULL)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = read_records(path)
    assert len(records) == 2
    assert build_report(records, resamples=10).scores
