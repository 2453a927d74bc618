import contextlib
import io
import re

import pytest

from dllm_mcmc import RULES
from dllm_mcmc.cli import main


@pytest.fixture(scope="module")
def demo_text():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["toy", "--samples", "3", "--temperature", "0.5", "--seed", "0"]) == 0
    return out.getvalue()


def test_demo_prints_every_rule_with_matching_log_p(demo_text):
    for rule in RULES:
        assert f"[{rule}]" in demo_text
    rows = [line.split() for line in demo_text.split("IMH towards")[0].splitlines()
            if line.startswith("  ") and not line.strip().startswith("sample")]
    assert len(rows) == 3 * len(RULES)
    for row in rows:  # log p recorded along the order equals the toy's exact log p(x)
        assert abs(float(row[3]) - float(row[4])) < 1e-3


def test_demo_imh_beats_local_tempering(demo_text):
    line = next(line for line in demo_text.splitlines() if "TV to the exact target" in line)
    imh, local, iid = (float(number) for number in re.findall(r"\d+\.\d+", line))
    assert imh < local and imh < 2 * iid


def test_model_demo_decodes_test_problems_with_every_rule():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["demo", "--problems", "1", "--samples", "4"]) == 0
    text = out.getvalue()
    for family in ("countdown", "arith", "program"):
        assert f"[{family}]" in text
    rows = re.findall(r"^  (random|confidence|imh) +(\d+)/(\d+) correct", text, flags=re.M)
    assert len(rows) == 9 and all(int(total) == 4 and 0 <= int(k) <= 4 for _, k, total in rows)
    assert "imh pass@1" in text.splitlines()[-1]
