"""Paired differences between two methods evaluated on the same problems.

Two methods run on the same problems are compared problem by problem: for each problem both get the
unbiased per-problem pass@k (`dllm_mcmc.eval.passk.per_problem_pass_at_k`), the difference is averaged
over the problems both were run on, and its 95% interval comes from a percentile bootstrap that
resamples **problems** with replacement, the same draw of problems for both methods (so a problem that is
hard for both moves both figures together and cancels in the difference). This interval is much narrower
than the difference of two unpaired intervals when the methods' per-problem scores are correlated, which
they are when the problems differ in difficulty (Efron & Tibshirani 1993, *An Introduction to the
Bootstrap*, ch. 13; the paired design is what makes "within noise" a measured statement).

Example:
    >>> records = [{"task": "t", "method": m, "problem": p, "sample": s, "correct": c}
    ...            for m, scores in (("a", [1, 1, 0]), ("b", [0, 1, 0]))
    ...            for p, c in zip("xyz", scores) for s in range(2)]
    >>> difference = paired_difference(records, "t", "a", "b", k=1)
    >>> difference.problems, round(difference.estimate.mean, 3)
    (3, 0.333)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from dllm_mcmc.eval.passk import Estimate, bootstrap_interval, per_problem_pass_at_k


@dataclass(frozen=True)
class PairedDifference:
    """``method`` minus ``baseline`` in pass@``k`` on ``task``, over the ``problems`` both were run on."""

    task: str
    method: str
    baseline: str
    k: int
    problems: int
    estimate: Estimate

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies entirely on one side of 0."""
        return self.estimate.low > 0 or self.estimate.high < 0

    def __str__(self) -> str:
        e = self.estimate
        return f"{e.mean:+.3f} [{e.low:+.3f}, {e.high:+.3f}]"


def correct_counts(records: list[dict], task: str, method: str) -> dict[str, tuple[int, int]]:
    """``problem -> (samples, correct samples)`` of ``method`` on ``task``."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in records:
        if record["task"] == task and record["method"] == method:
            entry = counts[record["problem"]]
            entry[0] += 1
            entry[1] += bool(record["correct"])
    return {problem: (n, c) for problem, (n, c) in counts.items()}


def paired_difference(records: list[dict], task: str, method: str, baseline: str, k: int,
                      level: float = 0.95, resamples: int = 2000, seed: int = 0) -> PairedDifference:
    """Mean pass@``k`` of ``method`` minus ``baseline`` over their common problems, with its paired bootstrap
    interval (problems resampled jointly). Refuses methods without common problems or with fewer than
    ``k`` samples on one."""
    mine, theirs = correct_counts(records, task, method), correct_counts(records, task, baseline)
    for name, counts in ((method, mine), (baseline, theirs)):
        if not counts:
            raise ValueError(f"no records of {name!r} on {task!r}")
    common = [problem for problem in mine if problem in theirs]
    if not common:
        raise ValueError(f"{method!r} and {baseline!r} share no problem on {task!r}: nothing to pair")
    for name, counts in ((method, mine), (baseline, theirs)):
        short = min(counts[p][0] for p in common)
        if short < k:
            raise ValueError(f"{name!r} on {task!r} has {short} samples on a problem: pass@{k} needs at least {k}")
    a = per_problem_pass_at_k([mine[p][0] for p in common], [mine[p][1] for p in common], k)
    b = per_problem_pass_at_k([theirs[p][0] for p in common], [theirs[p][1] for p in common], k)
    # resampling the per-problem differences is resampling the problems jointly for both methods
    estimate = bootstrap_interval([x - y for x, y in zip(a, b)], level, resamples,
                                  torch.Generator().manual_seed(seed))
    return PairedDifference(task, method, baseline, k, len(common), estimate)
