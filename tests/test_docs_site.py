"""The documentation site: the README's test command (which builds it) is what CI runs, the notebooks are
committed with their outputs, the API reference names every top-level export, and the strict build passes."""

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import dllm_mcmc

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README starts with a bash block of two commands"
    return block.group(1).strip().splitlines()


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    demo, test = readme_commands()
    assert demo.endswith("dllm-mcmc demo")
    assert "'.[test,docs]'" in test and "mkdocs build --strict" in test and "python -m pytest" in test
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#") and line not in ("set -euo pipefail",)
          and not line.startswith("cd ")]
    assert ci == [test]
    site_dir = re.search(r"--site-dir (\S+)", test).group(1)
    assert f"{site_dir}/" in (ROOT / ".gitignore").read_text().splitlines()


def test_getting_started_shows_the_readme_commands():
    page = (ROOT / "docs" / "getting-started.md").read_text()
    assert all(command in page for command in readme_commands())


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_committed_with_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code), "run it and save it with outputs"
    assert any(cell.outputs for cell in code)
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if str(ROOT) in str(o)], "an output shows a local path"


def test_api_reference_lists_every_top_level_export():
    page = (ROOT / "docs" / "reference" / "dllm_mcmc.md").read_text()
    missing = [name for name in dllm_mcmc.__all__ if f"`{name}`" not in page]
    assert not missing


def test_strict_build(tmp_path):
    """``mkdocs build --strict``: a warning (a broken link or anchor, a page left out of the nav, a docstring
    griffe cannot parse) fails it. Needs the ``docs`` extra."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("mkdocs_jupyter")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    problems = [line for line in done.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert done.returncode == 0, "\n".join(problems) or done.stderr[-4000:]
    assert (tmp_path / "reference" / "mcmc" / "index.html").is_file()
    assert (tmp_path / "notebooks" / "03_custom_kernel" / "index.html").is_file()
