"""`benchmarks/gpu.py --dry-run`: the GPU benchmark's code path on the CPU with a tiny model."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("gpu_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_dry_run_writes_every_row(gpu, tmp_path, capsys):
    out = tmp_path / "gpu.md"
    report = gpu.main(["--dry-run", "--out", str(out), "--repeats", "1"])
    table = out.read_text()
    assert table == capsys.readouterr().out == report.markdown()
    assert "torch " in table and "vocab 300" in table and "prompt 8 + generation 16" in table
    assert [r["batch"] for r in report.forward] == [1, 4]
    assert [(r["sampler"], r["K"]) for r in report.samplers] == [
        ("confidence", 1), ("imh", 4), ("stepwise", 4), ("imh", 8), ("stepwise", 8)]
    for row in ("| 1 |", "| 4 |", "| confidence | 1 | 4 | 16 |", "| imh | 8 | 32 | 16 |", "| stepwise | 4 | 16 | 16 |"):
        assert row in table, row
    # the samplers read no tensor value on the host inside their loops: equal counts at L = 8 and 16
    assert report.syncs and all(r["counts"][0] == r["counts"][1] for r in report.syncs)
    assert not report.skipped


def test_budget_skips_rows_and_still_writes_the_table(gpu, tmp_path):
    out = tmp_path / "gpu.md"
    report = gpu.main(["--dry-run", "--out", str(out), "--budget-seconds", "0", "--no-sync-check"])
    assert not report.forward and not report.samplers
    assert len(report.skipped) == 2 + 5 and "## Skipped" in out.read_text()


def test_forward_estimate_interpolates(gpu):
    table = [{"batch": 1, "seconds": 1.0}, {"batch": 4, "seconds": 4.0}]
    assert gpu.forward_estimate(table, 2) == 2.0 and gpu.forward_estimate(table, 8) == 8.0
    assert gpu.forward_estimate([], 8) == 0.0
