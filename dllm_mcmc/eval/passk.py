"""Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", eq. 1).

With ``n`` samples of which ``c`` are correct, the probability that a random ``k``-subset holds at least
one correct sample is ::

    pass@k = 1 − C(n − c, k) / C(n, k) = 1 − ∏_{i = n−c+1}^{n} (1 − k / i)

The product form never builds a binomial coefficient, so it stays exact in floating point for any
``n`` (``C(200, 100)`` already overflows a float64).

>>> pass_at_k(16, 4, 1), round(pass_at_k(16, 4, 4), 4), pass_at_k(16, 13, 4)
(0.25, 0.728, 1.0)
>>> mean_pass_at_k([16, 16], [0, 16], 4)
0.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dllm_mcmc._checks import nonnegative_int


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem: ``c`` correct among ``n`` samples, ``1 <= k <= n``."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        nonnegative_int(name, value)
    if c > n:
        raise ValueError(f"c={c} correct samples cannot exceed n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in 1..n={n}, got {k}")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    failure = 1.0
    for i in range(n - c + 1, n + 1):
        failure *= 1.0 - k / i
    return 1.0 - failure


def per_problem_pass_at_k(samples: Sequence[int], correct: Sequence[int], k: int) -> list[float]:
    """pass@k of each problem; ``samples[i]`` and ``correct[i]`` count problem ``i``'s samples."""
    if len(samples) != len(correct):
        raise ValueError(f"samples and correct differ in length ({len(samples)} vs {len(correct)})")
    return [pass_at_k(n, c, k) for n, c in zip(samples, correct)]


def mean_pass_at_k(samples: Sequence[int], correct: Sequence[int], k: int) -> float:
    """pass@k averaged over problems (each problem weighs the same)."""
    values = per_problem_pass_at_k(samples, correct, k)
    if not values:
        raise ValueError("no problems to average")
    return sum(values) / len(values)


@dataclass(frozen=True)
class Estimate:
    """A mean over problems with a percentile bootstrap interval (problems resampled with replacement)."""

    mean: float
    low: float
    high: float
    level: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_interval(values: Sequence[float], level: float = 0.95, resamples: int = 2000,
                       generator: torch.Generator | None = None) -> Estimate:
    """The mean of per-problem ``values`` and its percentile bootstrap interval over problems.

    The interval answers "how much would this figure move on another draw of problems from the same
    family", which is the noise that separates two methods evaluated on the same problems less well
    than a paired comparison would; it is what a table of averages should carry.

    >>> estimate = bootstrap_interval([0.0, 1.0] * 50, generator=torch.Generator().manual_seed(0))
    >>> estimate.mean, 0.38 < estimate.low < 0.5 < estimate.high < 0.62
    (0.5, True)
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    data = torch.as_tensor(list(values), dtype=torch.float64)
    if data.numel() == 0:
        raise ValueError("no values to bootstrap")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    picks = torch.randint(0, data.numel(), (resamples, data.numel()), generator=generator)
    means = data[picks].mean(-1)
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return Estimate(float(data.mean()), low, high, level)


def pass_at_k_estimate(samples: Sequence[int], correct: Sequence[int], k: int, level: float = 0.95,
                       resamples: int = 2000, generator: torch.Generator | None = None) -> Estimate:
    """Mean pass@k over problems with a bootstrap interval over problems.

    >>> pass_at_k_estimate([4] * 3, [0, 2, 4], 1).mean
    0.5
    """
    return bootstrap_interval(per_problem_pass_at_k(samples, correct, k), level, resamples, generator)
