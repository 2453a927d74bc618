"""`benchmarks/target_diagnostics.py` runs on the bundled model and prints one row per family."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "target_diagnostics.py"


def test_prints_a_row_per_family_with_scores_in_range():
    out = subprocess.run([sys.executable, str(SCRIPT), "--problems", "2", "--samples", "4", "--orders", "1"],
                         capture_output=True, text=True, check=True).stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and not line.startswith("| family")}
    assert set(rows) == {"countdown", "arith"}
    for cells in rows.values():
        assert 0 <= float(cells[0]) <= 1 and float(cells[1]) >= 0 and float(cells[2]) >= 0
        assert all(cell == "-" or 0 <= float(cell) <= 1 for cell in cells[4:])  # AUCs, "-" without a mixed problem
