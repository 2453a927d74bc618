"""The command line's error contract: a user error is one line on stderr, ``dllm-mcmc: error: ...``, and
exit code 2, with no traceback unless ``--debug``; plus ``--version``, help texts and ``demo --samples N``."""

import argparse
import re
import subprocess
import sys

import pytest
import torch

import dllm_mcmc
from dllm_mcmc.cli import build_parser, main, one_line

torch.set_num_threads(1)

PREFIX = "dllm-mcmc: error: "

CONFIG = """
model = "{model}"
tasks = {tasks}
problems = 1
samples = 1
output = "{output}"

[[methods]]
name = "random"
rule = "random"
{extra}
"""


def write_config(tmp_path, model="tasks-small", tasks='["arith"]', extra="", name="config.toml"):
    path = tmp_path / name
    output = (tmp_path / "results.jsonl").as_posix()
    path.write_text(CONFIG.format(model=model, tasks=tasks, output=output, extra=extra))
    return path


def assert_user_error(capsys, argv) -> str:
    """``main(argv)`` returns 2 and prints exactly one ``dllm-mcmc: error: ...`` line; returns that line."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(PREFIX) and lines[0][len(PREFIX):].strip()
    return lines[0]


def test_eval_missing_config(capsys, tmp_path):
    line = assert_user_error(capsys, ["eval", str(tmp_path / "missing.toml")])
    assert "missing.toml" in line


def test_eval_unknown_config_key(capsys, tmp_path):
    config = write_config(tmp_path, extra="")
    config.write_text('modle = "tasks-small"\n' + config.read_text())
    line = assert_user_error(capsys, ["eval", str(config), "--no-progress"])
    assert "modle" in line


def test_eval_unknown_task(capsys, tmp_path):
    config = write_config(tmp_path, tasks='["nope"]')
    line = assert_user_error(capsys, ["eval", str(config), "--no-progress"])
    assert "'nope'" in line
    assert not (tmp_path / "results.jsonl").exists()  # refused before any file is written


def test_eval_unknown_model(capsys, tmp_path):
    config = write_config(tmp_path, model="no-such-model")
    line = assert_user_error(capsys, ["eval", str(config), "--no-progress"])
    assert "no-such-model" in line
    assert not (tmp_path / "results.jsonl").exists()  # refused before any file is written


def test_eval_methods_not_in_the_config(capsys, tmp_path):
    config = write_config(tmp_path)
    line = assert_user_error(capsys, ["eval", str(config), "--methods", "random,nope", "--no-progress"])
    assert "--methods" in line and "nope" in line


def test_report_missing_results(capsys, tmp_path):
    line = assert_user_error(capsys, ["report", str(tmp_path / "missing.jsonl")])
    assert "missing.jsonl" in line
    assert not (tmp_path / "missing-report").exists()


@pytest.mark.parametrize("argv, flag, value", [
    (["demo", "--samples", "0"], "--samples", "0"),
    (["demo", "--problems", "0"], "--problems", "0"),
    (["demo", "--temperature", "-1"], "--temperature", "-1"),
    (["demo", "--temperature", "0"], "--temperature", "0"),
    (["toy", "--samples", "-3"], "--samples", "-3"),
    (["toy", "--temperature", "nan"], "--temperature", "nan"),
    (["eval", "unused.toml", "--samples", "0"], "--samples", "0"),
    (["eval", "unused.toml", "--problems", "-1"], "--problems", "-1"),
])
def test_bad_flag_values_name_the_flag_and_value(capsys, argv, flag, value):
    line = assert_user_error(capsys, argv)
    assert flag in line and f"got {value}" in line


def test_bad_flag_syntax_is_argparse_exit_2(capsys):
    assert main(["demo", "--samples", "many"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "--samples" in err and "Traceback" not in err


def test_error_from_the_real_entry_point_has_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dllm_mcmc", "eval", str(tmp_path / "missing.toml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX) and "missing.toml" in lines[0]


def test_debug_raises_with_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        main(["--debug", "eval", str(tmp_path / "missing.toml")])
    with pytest.raises(ValueError, match="--samples"):
        main(["--debug", "demo", "--samples", "0"])


def test_messages_are_collapsed_to_one_line():
    assert one_line(ValueError("first line\n   second line\n")) == "first line second line"
    assert one_line(KeyError("nope")) == "nope"
    assert one_line(ValueError()) == "ValueError"
    missing = FileNotFoundError(2, "No such file or directory", "x.jsonl")
    assert one_line(missing) == "x.jsonl: No such file or directory"


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"dllm-mcmc {dllm_mcmc.__version__}"


def test_every_flag_of_every_command_has_help():
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) == {"demo", "toy", "eval", "report", "samplers", "headroom", "lm-eval"}
    for action in parser._actions + commands._choices_actions:
        assert action.help and action.help.strip(), action
    for name, subparser in commands.choices.items():
        for action in subparser._actions:
            assert action.help and action.help.strip(), (name, action.dest)
        subparser.format_help()  # the %(default)s substitutions are well formed


@pytest.mark.parametrize("samples", [1, 3])
def test_model_demo_draws_exactly_n_samples_per_method(capsys, samples):
    assert main(["demo", "--problems", "1", "--samples", str(samples)]) == 0
    text = capsys.readouterr().out
    assert f"all {samples} answers shown per method" in text.splitlines()[0]
    rows = re.findall(r"^  (random|confidence|imh) +(\d+)/(\d+) correct   (.*)$", text, flags=re.M)
    assert len(rows) == 9
    for _, k, total, answers in rows:
        assert int(total) == samples and 0 <= int(k) <= samples
        assert len(answers.split(", ")) == samples
    assert f"imh pass@{samples}" in text.splitlines()[-1]
