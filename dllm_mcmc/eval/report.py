"""The quality–exploration report behind ``dllm-mcmc report RESULTS``: tables and four plots.

From the records of `dllm_mcmc.eval.experiment`, per task and method:

- unbiased Pass@k (`dllm_mcmc.eval.passk`) for k = 1, 2, 4, ... up to n, with 95% bootstrap intervals
  over problems;
- distinct answers per problem (exploration), NFE (sequential forward calls per problem), forward rows
  per sample (compute) and wall time;
- which methods sit on the Pareto front of (Pass@1, Pass@n): no other method is at least as good on
  both and better on one (among the methods run on the most problems: means over different problems are
  not comparable).

With ``baselines`` (method names; the config key ``baselines`` or ``dllm-mcmc report --baseline``), every
other method is compared with each baseline on the problems both were run on: the paired difference in
Pass@1 and Pass@n with a 95% bootstrap interval over problems resampled jointly
(`dllm_mcmc.eval.paired`).

**Curves.** Methods named ``<curve>-t<τ>`` or ``<curve>-T<T>`` (``random-t0.5``, ``smc-T0.25``) are the
points of one curve swept over the token temperature ``τ`` or the target temperature ``T``; the frontier
plot joins them in order of the swept value. Other names are single points.

Plots, one panel per task, each with its own legend: Pass@k against k per method; the frontier, Pass@1
against Pass@n with one curve per method family; Pass@k against the forward rows spent on k samples (the
compute-matched view, every method on it); and, with baselines, the paired differences against the first
baseline (a forest plot).

Example:
    >>> report = build_report(read_records("runs/eval/results.jsonl"))   # doctest: +SKIP
    >>> print(report.markdown())                                          # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch

from dllm_mcmc.eval.paired import PairedDifference, paired_difference
from dllm_mcmc.eval.passk import Estimate, pass_at_k_estimate
from dllm_mcmc.eval.records import read_records

__all__ = ["MethodScores", "Report", "build_report", "curve_of", "read_records", "write_report"]

_SWEPT = re.compile(r"^(?P<curve>.+)-(?P<symbol>[tT])(?P<value>\d+(?:\.\d+)?)$")


def curve_of(method: str) -> tuple[str, str, float | None]:
    """``(curve, symbol, value)`` of a method name: ``"smc-T0.25"`` is the point ``T = 0.25`` of curve
    ``"smc"``; a name without a ``-t<τ>``/``-T<T>`` suffix is its own curve (value ``None``).

    >>> curve_of("smc-T0.25"), curve_of("random-t1.0"), curve_of("best-of-8")
    (('smc', 'T', 0.25), ('random', 'τ', 1.0), ('best-of-8', '', None))
    """
    match = _SWEPT.match(method)
    if match is None:
        return method, "", None
    return match["curve"], "T" if match["symbol"] == "T" else "τ", float(match["value"])


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
    baselines: tuple[str, ...] = ()
    paired: dict[str, list[PairedDifference]] = field(default_factory=dict)

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
            lines += ["", f"Pareto front of (Pass@1, Pass@{n}) (★): {front}."]
            if len(counts) > 1:
                lines.append(f"The front is taken among the methods run on all {counts[-1]} problems; the others "
                             "ran on fewer and are compared in the paired tables below.")
            lines.append("")
            lines += self._paired_markdown(task)
        return "\n".join(lines)

    def _paired_markdown(self, task: str) -> list[str]:
        differences = self.paired.get(task, [])
        if not differences:
            return []
        top = max(d.k for d in differences)
        lines = ["Paired differences (method − baseline) on the problems both ran, 95% bootstrap intervals over "
                 "problems resampled jointly; ▲/▼: the interval excludes 0.", ""]
        for baseline in self.baselines:
            rows: dict[str, dict[int, PairedDifference]] = {}
            for d in differences:
                if d.baseline == baseline:
                    rows.setdefault(d.method, {})[d.k] = d
            if not rows:
                continue
            lines += [f"Against **{baseline}**:", "", f"| method | problems | Δ Pass@1 | Δ Pass@{top} |",
                      "|---|---:|---|---|"]
            for method, by_k in rows.items():
                own = max(by_k)  # below ``top`` when one of the pair has fewer samples
                cells = [f"{by_k[k]}{_arrow(by_k[k])}{'' if k in (1, top) else f' (Pass@{k})'}" for k in (1, own)]
                lines.append(f"| {method} | {by_k[1].problems} | " + " | ".join(cells) + " |")
            lines.append("")
        return lines


def _arrow(difference: PairedDifference) -> str:
    if not difference.excludes_zero:
        return ""
    return " ▲" if difference.estimate.mean > 0 else " ▼"


def build_report(records: list[dict], resamples: int = 2000, seed: int = 0,
                 baselines: tuple[str, ...] | list[str] = ()) -> Report:
    """Scores from records (one per sample); problems with fewer samples than the rest, and a
    ``(unit, sample)`` given twice (a results file read twice), are refused. ``baselines``: method names
    every other method is compared with (paired differences in Pass@1 and Pass@n on each task where the
    baseline ran; a name found on no task is refused)."""
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
    report.baselines = tuple(baselines)
    ran = {row.method for rows in report.scores.values() for row in rows}
    unknown = [b for b in report.baselines if b not in ran]
    if unknown:
        raise ValueError(f"baseline {', '.join(map(repr, unknown))} not in the records "
                         f"(methods: {', '.join(sorted(ran))})")
    for task, rows in report.scores.items():
        methods = {row.method: row for row in rows}
        for baseline in (b for b in report.baselines if b in methods):
            for row in rows:
                if row.method == baseline:
                    continue
                top = min(row.samples, methods[baseline].samples)
                for k in sorted({1, top}):
                    report.paired.setdefault(task, []).append(
                        paired_difference(records, task, row.method, baseline, k, resamples=resamples, seed=seed))
    return report


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _mark_front(rows: list[MethodScores]) -> None:
    """Mark the Pareto front among the methods run on the most problems: a method run on fewer problems (a
    costly one on a subset) is not comparable by its means; the paired tables compare it."""
    n = min(r.samples for r in rows)
    most = max(r.problems for r in rows)
    compared = [r for r in rows if r.problems == most]
    points = [(r.pass_at[1].mean, r.pass_at[max(k for k in r.pass_at if k <= n)].mean) for r in compared]
    for row in rows:
        row.on_front = False
    for row, (a, b) in zip(compared, points):
        row.on_front = not any(x >= a and y >= b and (x > a or y > b) for x, y in points)


def write_report(results: str | Path | list[str | Path], out: str | Path,
                 baselines: tuple[str, ...] | list[str] = ()) -> Path:
    """Write ``report.md`` and the plots for the records in ``results`` (one file or several) into
    ``out``, with paired differences against ``baselines``; return the path of report.md."""
    results = [results] if isinstance(results, (str, Path)) else list(results)
    report = build_report([record for path in results for record in read_records(path)], baselines=baselines)
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
    """The plots of the module docstring (one panel per task, a legend beside every panel); returns
    ``{kind: path}`` for ``passk``, ``frontier``, ``compute`` and, with baselines, ``paired``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(report.scores)
    curves = list(dict.fromkeys(curve_of(row.method)[0] for rows in report.scores.values() for row in rows))
    palette = plt.get_cmap("tab20" if len(curves) > 10 else "tab10")
    color_of = {curve: palette(index % palette.N) for index, curve in enumerate(curves)}
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v", "P"]
    paths = {}
    kinds = [("passk", "Pass@k against k"),
             ("frontier", "Pass@1 against Pass@n: one curve per method family, points labelled by τ or T"),
             ("compute", "Pass@k against forward rows for k samples (compute-matched)")]
    for kind, title in kinds:
        figure, axes = plt.subplots(1, len(tasks), figsize=(7.4 * len(tasks), 4.6), squeeze=False)
        for axis, task in zip(axes[0], tasks):
            rows = report.scores[task]
            if kind == "frontier":
                _frontier_panel(axis, rows, color_of, markers)
            else:
                members: dict[str, int] = defaultdict(int)
                for row in rows:
                    curve = curve_of(row.method)[0]
                    member = members[curve]
                    members[curve] += 1
                    ks = sorted(row.pass_at)
                    x = ks if kind == "passk" else [k * row.rows_per_sample for k in ks]
                    axis.plot(x, [row.pass_at[k].mean for k in ks], color=color_of[curve],
                              linestyle=styles[member % len(styles)], marker=markers[member % len(markers)],
                              markersize=3, label=row.method)
                    axis.fill_between(x, [row.pass_at[k].low for k in ks], [row.pass_at[k].high for k in ks],
                                      color=color_of[curve], alpha=0.06)
                axis.set_xscale("log", base=2 if kind == "passk" else 10)
                axis.set_xlabel("k" if kind == "passk" else "forward rows for k samples")
                axis.set_ylabel("Pass@k")
            axis.set_title(task)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        figure.suptitle(title)
        figure.tight_layout()
        paths[kind] = out / f"{kind}.png"
        _save(figure, paths[kind])
    if report.paired:
        paths["paired"] = out / "paired.png"
        _save(_forest(report, color_of), paths["paired"])
    return paths


def _frontier_panel(axis, rows: list[MethodScores], color_of: dict, markers: list[str]) -> None:
    """Pass@1 (x) against Pass@n (y): a curve's points joined in order of the swept value, labelled by it."""
    n = min(r.samples for r in rows)
    by_curve: dict[str, list[tuple[float, MethodScores]]] = defaultdict(list)
    for row in rows:
        curve, _, value = curve_of(row.method)
        by_curve[curve].append((value if value is not None else 0.0, row))
    for index, (curve, points) in enumerate(by_curve.items()):
        points.sort(key=lambda point: point[0])
        symbol = curve_of(points[0][1].method)[1]
        xs = [row.pass_at[1].mean for _, row in points]
        ys = [row.pass_at[max(k for k in row.pass_at if k <= n)].mean for _, row in points]
        label = curve + (f" ({symbol} = {', '.join(f'{v:g}' for v, _ in points)})" if symbol else "")
        axis.plot(xs, ys, color=color_of[curve], marker=markers[index % len(markers)], markersize=5, label=label)
        for (value, row), x, y in zip(points, xs, ys):
            if symbol:
                axis.annotate(f"{value:g}", (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6,
                              color=color_of[curve])
            if row.on_front:
                axis.plot([x], [y], marker="*", markersize=11, markerfacecolor="none", markeredgecolor="black",
                          linestyle="none")
    axis.plot([], [], marker="*", markersize=11, markerfacecolor="none", markeredgecolor="black", linestyle="none",
              label="Pareto front")
    axis.set_xlabel("Pass@1")
    axis.set_ylabel(f"Pass@{n}")


def _forest(report: Report, color_of: dict):
    """Paired differences against the first baseline: one row of two panels (Δ Pass@1, Δ Pass@n) per task."""
    import matplotlib.pyplot as plt

    baseline = report.baselines[0]
    tasks = [task for task in report.paired if any(d.baseline == baseline for d in report.paired[task])]
    height = max(len({d.method for d in report.paired[t]}) for t in tasks) * 0.22 + 1.2
    figure, axes = plt.subplots(len(tasks), 2, figsize=(9.5, height * len(tasks)), squeeze=False)
    for row_axes, task in zip(axes, tasks):
        differences = [d for d in report.paired[task] if d.baseline == baseline]
        top = max(d.k for d in differences)
        for axis, k in zip(row_axes, (1, top)):
            shown = [d for d in differences if d.k == k]
            for y, d in enumerate(shown):
                e = d.estimate
                axis.errorbar(e.mean, y, xerr=[[e.mean - e.low], [e.high - e.mean]], fmt="o", markersize=3,
                              color=color_of[curve_of(d.method)[0]])
            axis.axvline(0.0, color="black", linewidth=0.8)
            axis.set_yticks(range(len(shown)), [d.method for d in shown], fontsize=6)
            axis.invert_yaxis()
            axis.set_xlabel(f"Δ Pass@{k} against {baseline} (95% paired bootstrap)")
            axis.set_title(task, fontsize=9)
            axis.grid(alpha=0.3, axis="x")
    figure.suptitle(f"Paired differences against {baseline}")
    figure.tight_layout()
    return figure


def _save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        _write_atomically(path, partial(figure.savefig, dpi=110, format="png", bbox_inches="tight"))
    finally:
        plt.close(figure)
