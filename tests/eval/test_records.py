"""Results files are never lost, overwritten or mixed: each refused case leaves the file byte-identical."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from dllm_mcmc.cli import main
from dllm_mcmc.eval import report as report_module
from dllm_mcmc.eval.experiment import load_config, run_experiment
from dllm_mcmc.eval.fingerprint import model_fingerprint
from dllm_mcmc.eval.records import (
    OutputLocked,
    RecordStore,
    ResultsFileError,
    UnreadableLinesWarning,
    read_records,
)
from dllm_mcmc.eval.report import build_report, write_report
from dllm_mcmc.small_model import BUNDLED

torch.set_num_threads(1)


def config_of(out, **changes):
    settings = {"model": "tasks-small", "samples": 2, "problems": 1, "seed": 0, "tasks": ["arith"],
                "methods": [{"name": "random", "rule": "random"}], "output": str(out)}
    return load_config(None, {**settings, **changes})


@pytest.fixture
def results(tmp_path):
    """A finished results file of a real small run and its bytes."""
    out = tmp_path / "results.jsonl"
    assert run_experiment(config_of(out), progress=False).ran == 1
    return out, out.read_bytes()


def refused(config, match):
    with pytest.raises(ResultsFileError, match=match) as error:
        run_experiment(config, progress=False)
    assert str(config["output"]) in str(error.value)
    return str(error.value)


def test_the_file_holds_one_settings_line_and_the_records(results):
    out, data = results
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert lines[0]["kind"] == "settings" and lines[0]["settings"]["samples"] == 2
    assert lines[0]["settings"]["model_fingerprint"] == model_fingerprint("tasks-small")
    assert [r["sample"] for r in read_records(out)] == [0, 1] and "kind" not in read_records(out)[0]
    again = run_experiment(config_of(out), progress=False)
    assert again.ran == 0 and again.records == 2 and out.read_bytes() == data  # no second settings line


@pytest.mark.parametrize("changes, difference", [
    ({"samples": 4}, r"samples=2 \(now 4\)"),
    ({"seed": 1}, r"seed=0 \(now 1\)"),
    ({"methods": [{"name": "random", "rule": "random", "temperature": 0.7}]}, r"method.temperature=0.5 \(now 0.7\)"),
    ({"methods": [{"name": "random", "rule": "confidence"}]}, r"method.rule='random' \(now 'confidence'\)"),
])
def test_changed_settings_are_refused_naming_what_differs(results, changes, difference):
    out, data = results
    message = refused(config_of(out, **changes), "other settings: .*" + difference)
    assert "method 'random' on task 'arith'" in message
    assert out.read_bytes() == data


def test_changed_samples_from_the_command_line_leave_the_file_as_it_was(results, tmp_path, capsys):
    out, data = results
    config = tmp_path / "eval.toml"
    config.write_text('model = "tasks-small"\nsamples = 2\nproblems = 1\ntasks = ["arith"]\n'
                      '[[methods]]\nname = "random"\n')
    assert main(["eval", str(config), "--out", str(out), "--samples", "8", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert str(out) in error and "samples=2 (now 8)" in error
    assert out.read_bytes() == data


def test_changed_weights_in_the_same_directory_are_refused(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(BUNDLED / "tasks-small", model)
    out = tmp_path / "results.jsonl"
    run_experiment(config_of(out, model=str(model)), progress=False)
    data = out.read_bytes()
    assert run_experiment(config_of(out, model=str(model)), progress=False).ran == 0  # same weights: resumes
    weights = bytearray((model / "model.safetensors").read_bytes())
    weights[200_000:200_004] = bytes(255 - b for b in weights[200_000:200_004])  # same size, other values
    (model / "model.safetensors").write_bytes(bytes(weights))
    refused(config_of(out, model=str(model)), r"other settings: model_fingerprint=")
    assert out.read_bytes() == data


def test_fingerprint_covers_config_and_each_weight_file(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(BUNDLED / "tasks-small", model)
    first = model_fingerprint(model)
    assert first == model_fingerprint("tasks-small")  # a copy is the same model
    (model / "extra.pt").write_bytes(b"x")
    second = model_fingerprint(model)
    (model / "config.json").write_text((model / "config.json").read_text() + " ")
    assert len({first, second, model_fingerprint(model)}) == 3
    assert model_fingerprint("not-a-model") == "not-a-model"


@pytest.mark.parametrize("name, content", [
    ("README.md", b"# My project\n\nResults of last week, do not delete.\n"),
    ("data.jsonl", b'{"prompt": "x"}\n{"prompt": "y"}\n'),
    ("numbers.jsonl", b"1\n2\n"),
    ("notes.txt", b"one line without a newline"),
    ("records.jsonl", b'{"unit": "a", "sample": 0}\n'),  # a record, but not one of the runner's
])
def test_out_naming_a_file_that_is_not_a_results_file_is_refused_untouched(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    refused(config_of(path), "is not a results file of dllm-mcmc eval")
    assert path.read_bytes() == content and not (tmp_path / (name + ".lock")).exists()


def test_a_new_output_is_created_by_the_first_unit_only(tmp_path):
    path = tmp_path / "sub" / "results.jsonl"
    with RecordStore.open(path, samples_per_unit=2) as store:
        assert store.done_units() == set()
    assert not path.exists() and not (tmp_path / "sub" / "results.jsonl.lock").exists()


def test_a_second_store_on_one_output_is_refused_until_the_first_closes(tmp_path):
    path = tmp_path / "r.jsonl"
    first = RecordStore.open(path, samples_per_unit=1)
    with pytest.raises(OutputLocked, match=f"another process is writing {path}"):
        RecordStore.open(path, samples_per_unit=1)
    first.append([{"unit": "a", "sample": 0}])
    first.close()
    with pytest.raises(ValueError, match="closed"):
        first.append([{"unit": "b", "sample": 0}])
    with RecordStore.open(path, samples_per_unit=1) as second:
        assert second.done_units() == {"a"}
    assert not path.with_name("r.jsonl.lock").exists()


def test_two_processes_on_one_output_one_is_refused(results):
    out, data = results
    program = ("import sys\nfrom dllm_mcmc.eval.records import RecordStore\n"
               "try:\n    RecordStore.open(sys.argv[1])\nexcept ValueError as e:\n    print(e); sys.exit(3)\n")
    with RecordStore.open(out, samples_per_unit=2):
        done = subprocess.run([sys.executable, "-c", program, str(out)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 3 and f"another process is writing {out}" in done.stdout
        refused(config_of(out), "another process is writing")
    done = subprocess.run([sys.executable, "-c", program, str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.read_bytes() == data


def test_duplicate_records_are_refused_by_the_store_and_the_report(results, tmp_path):
    out, data = results
    doubled = data + data.splitlines(keepends=True)[1]
    out.write_bytes(doubled)
    refused(config_of(out), r"holds unit '[0-9a-f]+/.*' sample 0 twice \(lines 2 and 4\)")
    assert out.read_bytes() == doubled
    with pytest.raises(ValueError, match="sample 0 twice"):
        read_records(out)
    out.write_bytes(data)
    with pytest.raises(ValueError, match="given twice"):
        build_report(read_records(out) + read_records(out), resamples=10)
    with pytest.raises(ValueError, match="given twice"):
        write_report([out, out], tmp_path / "report")
    with RecordStore.open(out, samples_per_unit=2) as store, pytest.raises(ValueError, match="written twice"):
        store.append(read_records(out)[:1])
    assert out.read_bytes() == data


def test_garbage_and_invalid_utf8_lines_are_skipped_with_a_warning(results):
    out, data = results
    lines = data.splitlines(keepends=True)
    damaged = lines[0] + b"\xff\xfe\x00 not utf-8\n" + lines[1] + b"garbage {\n" + b"".join(lines[2:])
    out.write_bytes(damaged)
    with pytest.warns(UnreadableLinesWarning, match=f"{out}: skipped 2 unreadable line\\(s\\).*lines 2, 4"):
        records = read_records(out)
    assert [r["sample"] for r in records] == [0, 1]
    with pytest.warns(UnreadableLinesWarning, match="2 unreadable"):
        assert run_experiment(config_of(out), progress=False).ran == 0
    assert out.read_bytes() == damaged  # skipped, not deleted


def test_a_torn_tail_is_repaired_only_after_every_check_passed(results):
    out, data = results
    torn = data + b'{"answer": null, "compl'
    out.write_bytes(torn)
    with pytest.warns(UnreadableLinesWarning, match="a torn last line"):
        refused(config_of(out, seed=1), "seed=0")
    assert out.read_bytes() == torn
    with pytest.warns(UnreadableLinesWarning, match="a torn last line"):
        assert run_experiment(config_of(out), progress=False).ran == 0
    assert out.read_bytes() == data


def test_an_unfinished_unit_of_refused_settings_is_not_touched(results):
    out, data = results
    cut = b"".join(data.splitlines(keepends=True)[:2])  # the settings line and one of two samples
    out.write_bytes(cut)
    refused(config_of(out, samples=3), r"samples=2 \(now 3\)")
    assert out.read_bytes() == cut
    assert run_experiment(config_of(out), progress=False).ran == 1  # same settings: redrawn, not duplicated
    lines = out.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3 and lines[0] == data.splitlines(keepends=True)[0]
    without_time = [{k: v for k, v in r.items() if k != "seconds"} for r in read_records(out)]
    assert without_time == [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                            for line in data.splitlines()[1:]]


def test_a_file_written_before_settings_lines_names_the_hashes(results):
    out, data = results
    old = b"".join(data.splitlines(keepends=True)[1:])  # as written before settings lines existed
    out.write_bytes(old)
    refused(config_of(out, seed=5), "other settings: hash [0-9a-f]+, now [0-9a-f]+ .*does not say which")
    assert out.read_bytes() == old


def test_sample_counts_other_than_expected_are_refused_by_the_plain_store(tmp_path):
    path = tmp_path / "r.jsonl"
    rows = [{"unit": u, "sample": s} for u in "ab" for s in range(3)]
    content = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(content)
    with pytest.raises(ResultsFileError, match=f"{path} holds 3 samples of unit 'a', more than samples=2"):
        RecordStore.open(path, samples_per_unit=2)
    with pytest.raises(ResultsFileError, match=r"holds 3 samples of unit 'a', fewer \(as do 1 other units"):
        RecordStore.open(path, samples_per_unit=4)  # two short units: not what an interrupt leaves
    assert path.read_bytes() == content
    with RecordStore.open(path, samples_per_unit=3) as store:
        assert store.done_units() == {"a", "b"}


def test_report_files_are_replaced_atomically(results, tmp_path, monkeypatch):
    out, _ = results
    report = tmp_path / "report"
    replaced = []
    real_replace = report_module.os.replace
    monkeypatch.setattr(report_module.os, "replace",
                        lambda source, target: (replaced.append(target), real_replace(source, target))[1])
    write_report(out, report)
    assert sorted(p.name for p in replaced) == ["compute.png", "frontier.png", "passk.png", "report.md"]
    before = {p.name: p.read_bytes() for p in report.iterdir()}

    def broken_savefig(figure, path, **options):
        open(path, "wb").write(b"half a png")
        raise RuntimeError("disk full")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(out, report)
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before  # no partial file, no temporary left
