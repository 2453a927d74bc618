"""Third-party samplers and the public extension API, end to end.

The how-to ``docs/how-to/write-a-kernel.md`` carries a complete kernel (independent multiple-try Metropolis)
and its `SamplerSpec`. These tests execute that text: the kernel's draws are checked against the enumerated
target of a toy, then the code is installed as a separate package (a module and a ``dist-info`` with an entry
point of the group ``dllm_mcmc.samplers`` on a temporary path), and the sampler is used by name in
``sample(kernel=...)``, an evaluation method, the plan, the lm-eval model's arguments and, in a child process,
``dllm-mcmc samplers``, ``dllm-mcmc eval --plan`` and ``dllm-mcmc eval``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import empirical, total_variation

from dllm_mcmc import ExactDenoiser, TemperedTarget, sample
from dllm_mcmc.mcmc.registry import ENTRY_POINT_GROUP, reload_samplers, samplers

ROOT = Path(__file__).resolve().parents[2]
HOW_TO = ROOT / "docs" / "how-to" / "write-a-kernel.md"
PLUGIN = "dllm_mtm_plugin"


def how_to_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", HOW_TO.read_text(), flags=re.S)


def kernel_source() -> str:
    """The how-to's kernel and its registration: the first and the third python block."""
    blocks = how_to_blocks()
    return blocks[0] + "\n\n" + blocks[2]


def test_the_how_to_kernel_is_about_forty_lines_and_uses_only_public_names():
    kernel = how_to_blocks()[0]
    assert len(kernel.strip().splitlines()) <= 50
    assert not re.search(r"\.\_[a-z]", kernel), "a kernel author needs no underscore name"


@pytest.fixture(scope="module")
def namespace() -> dict:
    scope: dict = {}
    exec(compile(kernel_source(), str(HOW_TO), "exec"), scope)
    return scope


def test_the_how_to_check_runs_as_written(namespace):
    """The how-to's own run: T = τ = 0.5, K = 4 tries, 64 chains × 2,000 draws after 50 warm-up steps; it asserts
    TV < 0.03 itself, and the pooled TV was 0.008 when written (128,000 draws: the noise floor is about 0.005)."""
    scope = dict(namespace)
    exec(compile(how_to_blocks()[1], str(HOW_TO), "exec"), scope)
    assert scope["tv"] < 0.02
    assert 0.2 < float(scope["result"].acceptance_rate.mean()) < 1.0


def test_the_how_to_kernel_samples_a_flat_target_with_a_cold_proposal(namespace):
    """The harder case: T = 2 with a colder proposal (τ = 0.5, whose raw draws are more than 0.1 away in TV:
    tests/mcmc/test_imh.py), 8 tries; 64 chains × 3,000 draws, TV < 0.03."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=0.5)
    target = TemperedTarget(toy, None, 4, target_temperature=2.0)
    with pytest.warns(UserWarning, match="colder"):
        kernel = namespace["MultipleTryIMH"](target, num_tries=8, num_chains=64, seed=2, proposal_temperature=0.5)
    result = sample(toy, None, 4, kernel=kernel, num_samples=3000, warmup=50, progress=False)
    tv = total_variation(empirical(toy, result.tokens.reshape(-1, 4)), toy.tempered(2.0))
    assert tv < 0.03, tv


def test_the_how_to_kernel_runs_under_pyro(namespace):
    scope = dict(namespace)
    setup = ("from dllm_mcmc import ExactDenoiser, TemperedTarget\n"
             "toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)\nT = 0.5\n")
    exec(compile(setup + how_to_blocks()[-1], str(HOW_TO), "exec"), scope)
    tokens = scope["mcmc"].get_samples(group_by_chain=True)["tokens"]
    assert tokens.shape[-2:] == (4, 4) and tokens.shape[-3] == 50  # 50 draws of 4 batched chains


def install_plugin(root: Path) -> Path:
    """The how-to's code as an installed package: a module and a dist-info declaring the entry point."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{PLUGIN}.py").write_text(kernel_source())
    info = root / f"{PLUGIN}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PLUGIN}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nmtm = {PLUGIN}:SPEC\n")
    (info / "RECORD").write_text("")
    return root


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    path = install_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(path))
    reload_samplers()
    yield path
    monkeypatch.undo()
    sys.modules.pop(PLUGIN, None)
    reload_samplers()


def test_an_installed_sampler_is_usable_by_name_everywhere(plugin):
    from dllm_mcmc.eval.engine import load_engine
    from dllm_mcmc.eval.methods import Method, generate
    from dllm_mcmc.eval.plan import method_cost
    from dllm_mcmc.lm_eval_model import method_from_args

    assert "mtm" in samplers() and samplers()["mtm"].kernel.__name__ == "MultipleTryIMH"
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=0.5)
    result = sample(toy, None, 4, kernel="mtm", target_temperature=0.5, num_chains=8, num_samples=20, warmup=2,
                    num_tries=3, progress=False)
    assert result.tokens.shape == (8, 20, 4) and result.config["kernel"] == "mtm"
    with pytest.raises(ValueError, match="num_trys is not an option of sampler 'mtm' .*did you mean 'num_tries'"):
        sample(toy, None, 4, kernel="mtm", num_trys=3, progress=False)
    with pytest.raises(ValueError, match="method 'm': num_trys is not an option .*'num_tries'"):
        Method.from_config({"name": "m", "sampler": "mtm", "num_trys": 3})
    with pytest.raises(ValueError, match="num_tries must be a positive integer"):
        Method.from_config({"name": "m", "sampler": "mtm", "num_tries": 0})
    method = Method.from_config({"name": "mtm-2", "sampler": "mtm", "temperature": 0.5, "warmup": 1,
                                 "num_tries": 2, "max_rows": None})
    engine = load_engine("tasks-small")
    generation = generate(method, engine, engine.encode("7+5*3="), samples=3, seed=0)
    assert method_cost(method, engine.gen_length, 3) == (generation.nfe, generation.forward_rows)
    assert method_from_args({"sampler": "mtm", "num_tries": "2"}).sampler_settings.num_tries == 2


def test_a_broken_plugin_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    info = tmp_path / "broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nbad = no_such_module:SPEC\n"
                                           f"imh = {PLUGIN}:SPEC\n")
    (tmp_path / f"{PLUGIN}.py").write_text(kernel_source().replace('SamplerSpec("mtm"', 'SamplerSpec("imh"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry = reload_samplers()
        assert registry["imh"].kernel.__name__ == "IMH"  # a plugin never hides a built-in sampler
        assert "bad" not in registry
        assert "not loaded" in caplog.text and "no_such_module" in caplog.text and "is taken" in caplog.text
    finally:
        monkeypatch.undo()
        sys.modules.pop(PLUGIN, None)
        reload_samplers()


def test_an_installed_sampler_runs_end_to_end_through_dllm_mcmc_eval(tmp_path):
    path = install_plugin(tmp_path / "site")
    config = tmp_path / "mtm.toml"
    out = tmp_path / "results.jsonl"
    config.write_text(textwrap.dedent(f"""
        model = "tasks-small"
        tasks = ["arith"]
        problems = 2
        samples = 2
        output = "{out}"

        [[methods]]
        name = "mtm-2"
        sampler = "mtm"
        temperature = 0.5
        warmup = 1
        num_tries = 2
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dllm_mcmc"]

    def run(*args: str) -> str:
        done = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        return done.stdout

    listing = run("samplers")
    assert re.search(rf"^mtm .*plugin {PLUGIN}", listing, flags=re.M)
    planned = run("eval", str(config), "--plan")
    # (w + 2)·s steps and n·(1 + K·(w + 1))·s rows per unit: 3·16 = 48 steps, 2·5·16 = 160 rows, 2 units
    assert re.search(r"\| mtm-2 \| 2 \| 4 \| 96 \| 320 \|", planned), planned
    assert not out.exists()
    run("eval", str(config), "--no-progress")
    records = [record for line in out.read_text().splitlines() if "sample" in (record := json.loads(line))]
    assert len(records) == 4 and {r["method"] for r in records} == {"mtm-2"}
    assert all(r["nfe"] == 48 for r in records)
    misspelled = config.read_text().replace("num_tries", "num_trys")
    config.write_text(misspelled)
    done = subprocess.run([*command, "eval", str(config), "--plan"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 2 and "num_trys is not an option of sampler 'mtm'" in done.stderr
    assert "did you mean 'num_tries'" in done.stderr
