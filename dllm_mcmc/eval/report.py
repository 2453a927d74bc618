"""The quality–exploration report behind ``dllm-mcmc report RESULTS``: a table and three plots.

From the records of `dllm_mcmc.eval.experiment`, per task and method:

- unbiased Pass@k (`dllm_mcmc.eval.passk`) for k = 1, 2, 4, ... up to n, with 95% bootstrap intervals
  over problems;
- distinct answers per problem (exploration), NFE (sequential forward calls per problem), forward rows
  per sample (compute) and wall time;
- which methods sit on the Pareto front of (Pass@1, Pass@n): no other method is at least as good on
  both and better on one.

Plots: Pass@k against k per method; Pass@1 against Pass@n (the Pareto view); Pass@k against the forward
rows spent on k samples (the compute-matched view).

Example:
    >>> report = build_report(read_records("runs/eval/results.jsonl"))   # doctest: +SKIP
    >>> print(report.markdown())                                          # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from dllm_mcmc.eval.passk import Estimate, pass_at_k_estimate
from dllm_mcmc.eval.records import read_records

__all__ = ["MethodScores", "Report", "build_report", "read_records", "write_report"]


@dataclass
class MethodScores:
    """Scores of one method on one task."""

    task: str
    method: str
    problems: int
    samples: int
    pass_at: dict[int, Estimate]
    distinct_answers: float
    nfe: float
    rows_per_sample: float
    wall_seconds: float
    on_front: bool = False


@dataclass
class Report:
    """Per-task scores of every method, in first-seen order."""

    scores: dict[str, list[MethodScores]] = field(default_factory=dict)

    def markdown(self, ks: tuple[int, ...] = (1, 4, 16)) -> str:
        lines = []
        for task, rows in self.scores.items():
            n = min(r.samples for r in rows)
            shown = [k for k in ks if k <= n]
            counts = sorted({r.problems for r in rows})
            problems = str(counts[0]) if len(counts) == 1 else "/".join(f"{r.method} {r.problems}" for r in rows)
            lines += [f"### {task}", "",
                      f"{problems} problems, {n} samples per problem; 95% bootstrap intervals over problems.",
                      "", "| method | " + " | ".join(f"Pass@{k}" for k in shown)
                      + " | distinct answers | NFE | rows / sample | wall time (s) |",
                      "|---" * (len(shown) + 5) + "|"]
            for r in rows:
                cells = [str(r.pass_at[k]) for k in shown]
                lines.append(f"| {r.method}{' ★' if r.on_front else ''} | " + " | ".join(cells)
                             + f" | {r.distinct_answers:.2f} | {r.nfe:.0f} | {r.rows_per_sample:.0f}"
                             + f" | {r.wall_seconds:.1f} |")
            front = ", ".join(r.method for r in rows if r.on_front)
            lines += ["", f"Pareto front of (Pass@1, Pass@{n}) (★): {front}.", ""]
        return "\n".join(lines)


def build_report(records: list[dict], resamples: int = 2000, seed: int = 0) -> Report:
    """Scores from records (one per sample); problems with fewer samples than the rest, and a
    ``(unit, sample)`` given twice (a results file read twice), are refused."""
    if not records:
        raise ValueError("no records to report")
    seen: set[tuple] = set()
    for record in records:
        key = (record.get("unit"), record["task"], record["method"], record["problem"], record["sample"])
        if key in seen:
            raise ValueError(f"{key[2]} on {key[1]}: problem {key[3]!r} sample {key[4]} (unit {key[0]!r}) is given "
                             "twice; was a results file given twice, or copied into another?")
        seen.add(key)
    groups: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        groups[record["task"], record["method"]][record["problem"]].append(record)
    report = Report()
    for (task, method), problems in groups.items():
        sizes = {len(samples) for samples in problems.values()}
        if len(sizes) != 1:
            raise ValueError(f"{method} on {task}: problems hold different numbers of samples {sorted(sizes)}")
        n = sizes.pop()
        correct = [sum(bool(r["correct"]) for r in samples) for samples in problems.values()]
        ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128, 256) if k <= n]
        generator = torch.Generator().manual_seed(seed)
        scores = MethodScores(
            task, method, len(problems), n,
            {k: pass_at_k_estimate([n] * len(correct), correct, k, resamples=resamples, generator=generator)
             for k in ks},
            distinct_answers=_mean(len({r["answer"] for r in s if r["answer"] is not None}) for s in problems.values()),
            nfe=_mean(s[0]["nfe"] for s in problems.values()),
            rows_per_sample=_mean(r["forward_rows"] for s in problems.values() for r in s),
            wall_seconds=sum(r["seconds"] for s in problems.values() for r in s),
        )
        report.scores.setdefault(task, []).append(scores)
    for rows in report.scores.values():
        _mark_front(rows)
    return report


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _mark_front(rows: list[MethodScores]) -> None:
    n = min(r.samples for r in rows)
    points = [(r.pass_at[1].mean, r.pass_at[max(k for k in r.pass_at if k <= n)].mean) for r in rows]
    for row, (a, b) in zip(rows, points):
        row.on_front = not any(x >= a and y >= b and (x > a or y > b) for x, y in points)


def write_report(results: str | Path | list[str | Path], out: str | Path) -> Path:
    """Write ``report.md`` and the three plots for the records in ``results`` (one file or several) into
    ``out``; return the path of report.md."""
    results = [results] if isinstance(results, (str, Path)) else list(results)
    report = build_report([record for path in results for record in read_records(path)])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_report(report, out)
    sources = ", ".join(f"`{path}`" for path in results)
    text = "# Evaluation report\n\n" + f"Records: {sources}.\n\n" + report.markdown() + "\n" + "\n".join(
        f"![{name}]({path.name})" for name, path in plots.items()) + "\n"
    _write_atomically(out / "report.md", lambda temporary: temporary.write_text(text))
    return out / "report.md"


def _write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(temporary)`` into a temporary file beside ``path``, then ``os.replace`` it onto ``path``: a
    reader, or an interrupt, sees the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def plot_report(report: Report, out: Path) -> dict[str, Path]:
    """Pass@k against k, the Pareto view and the compute-matched view, one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(report.scores)
    paths = {}
    for kind, title in (("passk", "Pass@k against k"), ("pareto", "Pass@1 against Pass@n (Pareto view)"),
                        ("compute", "Pass@k against forward rows for k samples (compute-matched)")):
        figure, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
        for axis, task in zip(axes[0], tasks):
            for index, row in enumerate(report.scores[task]):
                color = f"C{index}"
                ks = sorted(row.pass_at)
                means = [row.pass_at[k].mean for k in ks]
                low = [row.pass_at[k].low for k in ks]
                high = [row.pass_at[k].high for k in ks]
                if kind == "pareto":
                    top = row.pass_at[ks[-1]]
                    first = row.pass_at[1]
                    axis.errorbar(first.mean, top.mean, xerr=[[first.mean - first.low], [first.high - first.mean]],
                                  yerr=[[top.mean - top.low], [top.high - top.mean]], fmt="o", color=color,
                                  label=row.method + (" (front)" if row.on_front else ""))
                    axis.set_xlabel("Pass@1")
                    axis.set_ylabel(f"Pass@{ks[-1]}")
                    continue
                x = ks if kind == "passk" else [k * row.rows_per_sample for k in ks]
                axis.plot(x, means, marker="o", color=color, label=row.method)
                axis.fill_between(x, low, high, color=color, alpha=0.15)
                axis.set_xscale("log", base=2 if kind == "passk" else 10)
                axis.set_xlabel("k" if kind == "passk" else "forward rows for k samples")
                axis.set_ylabel("Pass@k")
            axis.set_title(task)
            axis.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        figure.suptitle(title)
        figure.tight_layout()
        paths[kind] = out / f"{kind}.png"
        try:
            _write_atomically(paths[kind], partial(figure.savefig, dpi=110, format="png"))
        finally:
            plt.close(figure)
    return paths
