"""The wheel: what it holds (LICENSE, the packaged configs, the bundled model, py.typed), and that it works
installed on its own: ``dllm-mcmc demo`` and an eval from a packaged config, run outside the checkout.

The wheel is built offline (``python -m build --wheel --no-isolation``) from a copy of the sources, so no
stale ``build/`` folder of the checkout can leak into it. It is installed with ``--no-deps`` into a fresh
virtual environment that sees this environment's site-packages through a ``.pth`` file (torch and the other
dependencies are not installed again, nothing is downloaded), and the commands run from a folder outside the
checkout, so the package they import is the wheel's.
"""

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}


def run(*args, cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "configs", src / "configs", ignore=ignore)
    shutil.copytree(ROOT / "dllm_mcmc", src / "dllm_mcmc", symlinks=True, ignore=ignore)  # configs: the link
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, src, cwd=src)
    (path,) = dist.glob("dllm_mcmc-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The bin folder of a fresh venv with the wheel installed (no dependencies, no network)."""
    venv = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=venv).strip())
    (purelib / "parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel,
        cwd=venv)
    return venv / "bin"


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{info}/licenses/LICENSE" in names
    assert "Apache License" in zipfile.ZipFile(wheel).read(f"{info}/licenses/LICENSE").decode()
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert "dllm_mcmc/py.typed" in names
    configs = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.toml"))
    assert configs and all(f"dllm_mcmc/{c}" in names for c in configs)
    bundled = ROOT / "dllm_mcmc" / "small_model" / "bundled"
    files = sorted(p.relative_to(ROOT).as_posix() for p in bundled.rglob("*") if p.is_file())
    assert any(f.endswith("model.safetensors") for f in files)
    assert all(f in names for f in files)
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "dllm_mcmc").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert modules <= names


def test_installed_wheel_runs_demo_and_a_packaged_config(installed, tmp_path):
    where = run(installed / "python", "-c", "import dllm_mcmc; print(dllm_mcmc.__file__)", cwd=tmp_path)
    assert Path(where.strip()).is_relative_to(installed.parent), where  # the wheel's copy, not the checkout

    listed = run(installed / "dllm-mcmc", "eval", "--list-configs", cwd=tmp_path)
    assert "eval-small" in listed and "paper/llada-code-math" in listed

    demo = run(installed / "dllm-mcmc", "demo", "--problems", "1", "--samples", "2", cwd=tmp_path)
    assert "pass@1" in demo and "imh" in demo

    out = tmp_path / "results.jsonl"
    run(installed / "dllm-mcmc", "eval", "eval-small", "--problems", "1", "--samples", "2", "--tasks", "arith",
        "--methods", "random,imh", "--out", out, "--no-progress", cwd=tmp_path)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    samples = [r for r in records if r.get("kind") != "settings"]  # one settings record per (method, task)
    assert sorted(r["method"] for r in samples) == ["imh", "imh", "random", "random"]
    assert all(isinstance(r["correct"], bool) for r in samples)


def test_packaged_configs_are_found_by_name(tmp_path, monkeypatch, capsys):
    from dllm_mcmc.cli import main
    from dllm_mcmc.eval.experiment import CONFIG_DIR, find_config, load_config, packaged_configs

    monkeypatch.chdir(tmp_path)  # outside the checkout: no configs/ folder here
    names = packaged_configs()
    assert "eval-small" in names and "paper/llada-code-math" in names
    assert len(names) == len(list((ROOT / "configs").rglob("*.toml")))
    for spelling in ("eval-small", "eval-small.toml", "configs/eval-small.toml"):
        assert find_config(spelling).resolve() == (CONFIG_DIR / "eval-small.toml").resolve()
    assert load_config("paper/llada-aime")["tasks"] == load_config(ROOT / "configs/paper/llada-aime.toml")["tasks"]
    (tmp_path / "eval-small").write_text('model = "tasks-small"\ntasks = ["arith"]\n'
                                         '[[methods]]\nname = "r"\nrule = "random"\n')
    assert load_config("eval-small")["tasks"] == ["arith"]  # an existing file comes first
    with pytest.raises(FileNotFoundError, match="packaged config: baselines-small, eval-small"):
        find_config("no-such-config")
    assert main(["eval", "--list-configs"]) == 0
    assert "paper/wedlm-aime" in capsys.readouterr().out
    assert main(["eval"]) == 2
    assert "needs a CONFIG" in capsys.readouterr().err
