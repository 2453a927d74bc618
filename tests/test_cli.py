import re
import io

from dllm_mcmc import RULES
from dllm_mcmc.cli import demo, main


def test_demo_prints_every_rule_with_matching_log_p():
    out = io.StringIO()
    demo(samples=3, temperature=0.5, seed=0, out=out)
    text = out.getvalue()
    for rule in RULES:
        assert f"[{rule}]" in text
    rows = [line.split() for line in text.split("IMH towards")[0].splitlines()
            if line.startswith("  ") and not line.strip().startswith("sample")]
    assert len(rows) == 3 * len(RULES)
    for row in rows:  # log p recorded along the order equals the toy's exact log p(x)
        assert abs(float(row[3]) - float(row[4])) < 1e-3


def test_main_returns_zero(capsys):
    assert main(["demo", "--samples", "1"]) == 0
    assert "[random]" in capsys.readouterr().out


def test_demo_imh_beats_local_tempering():
    out = io.StringIO()
    demo(samples=1, temperature=0.5, seed=0, out=out)
    line = next(line for line in out.getvalue().splitlines() if "TV to the exact target" in line)
    imh, local, iid = (float(number) for number in re.findall(r"\d+\.\d+", line))
    assert imh < local and imh < 2 * iid
