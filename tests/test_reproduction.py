"""Refactors keep the samples: a handful of units of the frontier study's configs and every kernel's draws on an
exact toy, drawn by the current code from the recorded seeds, equal the completions and tokens written by
``scripts/fixtures/frontier_units.py`` before the sampler registry and the SMC parts landed (bit for bit)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = json.loads((ROOT / "tests/data/frontier_units.json").read_text())


def _script():
    spec = importlib.util.spec_from_file_location("frontier_units", ROOT / "scripts/fixtures/frontier_units.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _script()


def test_frontier_units_reproduced(script, monkeypatch):
    monkeypatch.chdir(ROOT)
    drawn = script.draw_units()
    recorded = FIXTURE["units"]
    assert [(u["method"], u["task"], u["problem"], u["seed"]) for u in drawn] == \
        [(u["method"], u["task"], u["problem"], u["seed"]) for u in recorded]
    for new, old in zip(drawn, recorded):
        assert new["completions"] == old["completions"], (new["method"], new["task"], new["problem"])


def test_toy_draws_reproduced(script):
    drawn = script.toy_draws()
    assert sorted(drawn) == sorted(FIXTURE["toy"])
    for name, old in FIXTURE["toy"].items():
        new = drawn[name]
        if name.startswith("smc_decode"):
            assert new[:2] == old[:2], name
            torch.testing.assert_close(torch.tensor(new[2], dtype=torch.float64),
                                       torch.tensor(old[2], dtype=torch.float64), rtol=0, atol=1e-12)
        else:
            assert new == old, name
