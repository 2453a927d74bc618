"""Know before you spend: can globally tempering ``p(x)^(1/T)`` raise Pass@k on this model?

`tempering_headroom` reads one *pilot*: per problem, ``n`` plain random-order samples at token temperature
``τ = 1``, each with its verdict and its recorded chain-rule ``log p(x | σ)`` along its own order (what
`dllm_mcmc.decode` returns as ``Trajectory.log_p``), optionally also ``log p`` left to right and along ``M``
other uniformly random orders. From those records alone, with no further forward pass, it estimates what the
exact tempered law would score.

**Importance reweighting.** A ``τ = 1`` random-order pilot draws ``(σ, x)`` from ``q(σ, x) = u(σ) p(x | σ)``
(``u``: uniform orders). The samplers' extended target is ``π_T(σ, x) ∝ u(σ) p(x | σ)^(1/T)``
(`dllm_mcmc.target.TemperedTarget` with the ``order`` likelihood), so a sample's importance weight is

    w = π_T / q ∝ p(x | σ)^(1/T − 1),

exact from the records. Per problem the self-normalised estimate of the tempered law's Pass@1 is
``p̂_T = Σ w c / Σ w`` (``c``: correct), its effective sample size ``(Σ w)² / Σ w²``; the figures are means
over problems, with percentile bootstrap intervals over problems (problems resampled with replacement, the
same draws for every ``T`` and statistic, so the difference against ``T = 1``, the pilot's own law, is
paired). Pass@k is the **plug-in approximation** ``1 − (1 − p̂_T)^k`` per problem: it assumes ``k``
independent draws from ``π_T`` (what the evaluation's kernels give, one chain per sample) and, being concave
in ``p̂_T``, it is biased low at small ``n`` (the report prints the pilot's unbiased Pass@k beside it at
``T = 1``).

**Why cooling helps or not.** With ``β = 1/T``, ``d/dβ E_β[c] = Cov_β(c, log p)`` (Tomihari & Sato,
arXiv 2605.04542): the reweighted covariance of reward and ``log p`` says, by its sign and size, whether
sharpening moves mass towards correct answers. It can do so only as far as ``log p`` ranks a problem's
correct answers above its wrong ones, which the within-problem AUC measures: sequence probability ranks
answers well *across* prompts but hardly *within* one (arXiv 2606.27359), so the within-problem AUC, not a
pooled one, is the number that matters here.

**Order inconsistency.** A dLLM's ``log p(x | σ)`` depends on the order; the report sets its standard
deviation across orders for one ``x`` (its own order and the ``M`` replays) against the spread between a
problem's answers. A ratio near 1 means the target weighs an answer by the order its path happened to take
about as much as by the answer.

**The verdict** (one line per task family), with the thresholds below:

- *can*: some ``T ≠ 1`` has a paired interval of ΔPass@1 (against ``T = 1``) entirely above 0 and a mean
  ESS of at least `MIN_ESS_FRACTION` of ``n``; the largest such lift is quoted;
- *cannot*: the own-order AUC is below `MIN_AUC` and no ``T`` has an interval above 0;
- *unclear*: anything else (an interval above 0 resting on too few effective samples, or an informative AUC
  with no lift clear of the noise), with the reason.

What it cannot tell: it estimates the **exact** tempered law; a real sampler approximates it at finite
compute (SMC's particles share ancestors, IMH chains stick), and the Pass@k plug-in assumes independent draws.

Example:
    >>> pilot = {"toy": [PilotProblem(correct=[True, False, True, False], log_p=[-1.0, -3.0, -2.0, -4.0])] * 5}
    >>> report = tempering_headroom(pilot, temperatures=(0.5, 1.0), resamples=200)
    >>> family = report.families[0]
    >>> family.auc_own, round(family.rows[1].pass1.mean, 3)
    (1.0, 0.5)
    >>> family.rows[0].pass1.mean > family.rows[1].pass1.mean
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

DEFAULT_TEMPERATURES = (0.25, 0.5, 0.75, 1.0, 1.5)
"""The grid of target temperatures ``T`` that `tempering_headroom` reports by default."""

MIN_ESS_FRACTION = 0.2
"""A lift counts only where the mean effective sample size per problem is at least this fraction of ``n``:
below it the self-normalised estimate rests on one or two samples per problem and its bias is not small."""

MIN_AUC = 0.6
"""Below this own-order within-problem AUC (0.5: ``log p`` carries no information about correctness), and
with no lift clear of 0, the verdict is *cannot*."""

LEVEL = 0.95
"""Coverage of the bootstrap intervals."""


@dataclass(frozen=True)
class PilotProblem:
    """One problem's pilot: ``n`` random-order samples at ``τ = 1`` and their records (plain data).

    Attributes:
        correct: ``[n]`` verdicts.
        log_p: ``[n]`` ``log p(x | σ)`` by the chain rule along the sample's own decoding order (``traj.log_p``).
        left_to_right: ``[n]`` ``log p`` along ``0..L−1`` (optional).
        orders: ``[n][M]`` ``log p(x | σ_m)`` along ``M`` further uniformly random orders, teacher-forced
            (`dllm_mcmc.replay`; optional).
        problem: the problem's id (for the reader; not used in the figures).

    >>> PilotProblem(correct=[True, False], log_p=[-1.0, -2.0]).samples
    2
    """

    correct: Sequence[bool]
    log_p: Sequence[float]
    left_to_right: Sequence[float] | None = None
    orders: Sequence[Sequence[float]] | None = None
    problem: str = ""

    def __post_init__(self) -> None:
        n = len(self.correct)
        object.__setattr__(self, "correct", tuple(bool(c) for c in self.correct))
        object.__setattr__(self, "log_p", tuple(float(v) for v in self.log_p))
        if n == 0:
            raise ValueError(f"problem {self.problem!r}: a pilot problem needs at least one sample")
        if len(self.log_p) != n:
            raise ValueError(f"problem {self.problem!r}: {n} verdicts but {len(self.log_p)} log p values")
        if not all(math.isfinite(v) for v in self.log_p):
            raise ValueError(f"problem {self.problem!r}: log_p holds a value that is not finite")
        if self.left_to_right is not None:
            object.__setattr__(self, "left_to_right", tuple(float(v) for v in self.left_to_right))
            if len(self.left_to_right) != n:
                raise ValueError(f"problem {self.problem!r}: {n} verdicts but {len(self.left_to_right)} "
                                 f"left-to-right values")
        if self.orders is not None:
            rows = tuple(tuple(float(v) for v in row) for row in self.orders)
            object.__setattr__(self, "orders", rows)
            if len(rows) != n or len({len(row) for row in rows}) > 1:
                raise ValueError(f"problem {self.problem!r}: orders must be [n][M] with n = {n}")

    @property
    def samples(self) -> int:
        """``n``."""
        return len(self.correct)

    @property
    def num_orders(self) -> int:
        """``M``, the replayed orders per sample (0 without them)."""
        return len(self.orders[0]) if self.orders else 0

    def order_matrix(self) -> np.ndarray | None:
        """``[n, M + 1]`` ``log p(x | σ)``: the own order first, then the ``M`` replays (``None`` without them)."""
        if not self.orders or not self.orders[0]:
            return None
        return np.column_stack([np.asarray(self.log_p), np.asarray(self.orders, dtype=np.float64)])


Pilot = Mapping[str, Sequence[PilotProblem]]
"""A pilot: task family name -> its problems' `PilotProblem` records."""


@dataclass(frozen=True)
class Interval:
    """A mean over problems with its percentile bootstrap interval."""

    mean: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def signed(self) -> str:
        """``+0.013 [+0.004, +0.022]``: the form of a difference (a value that rounds to 0 shows as +0.000).

        >>> Interval(-0.0001, -0.0002, 0.01).signed()
        '+0.000 [+0.000, +0.010]'
        """
        return f"{_signed(self.mean)} [{_signed(self.low)}, {_signed(self.high)}]"

    @property
    def above_zero(self) -> bool:
        return self.low > 0


@dataclass(frozen=True)
class TemperatureRow:
    """The reweighted pilot's figures at one target temperature ``T``.

    Attributes:
        temperature: ``T``.
        pass1: Pass@1 of ``π_T`` (self-normalised importance estimate, mean over problems).
        passk: Pass@k of ``π_T`` by the plug-in ``1 − (1 − p̂_T)^k`` (**approximation**: independent draws).
        delta_pass1, delta_passk: minus the same at ``T = 1`` (paired over problems).
        ess: mean effective sample size per problem, ``(Σ w)² / Σ w²``.
        ess_fraction: mean of ``ESS / n`` over problems.
        covariance: mean over problems of ``Cov_{π_T}(c, log p)``, the derivative of Pass@1 in ``β = 1/T``.
    """

    temperature: float
    pass1: Interval
    passk: Interval
    delta_pass1: Interval
    delta_passk: Interval
    ess: float
    ess_fraction: float
    covariance: Interval


@dataclass(frozen=True)
class OrderInconsistency:
    """Mean sd of ``log p(x | σ)`` across the ``orders`` orders of one ``x`` (own + replays) against the mean
    sd, within a problem, of its answers' order-averaged ``log p``."""

    across_orders: float
    between_answers: float
    orders: int

    @property
    def ratio(self) -> float:
        return self.across_orders / self.between_answers if self.between_answers > 0 else math.inf


@dataclass(frozen=True)
class FamilyHeadroom:
    """Everything `tempering_headroom` says about one task family.

    Attributes:
        family: the task family's name.
        problems: problems in the pilot; ``samples``: mean ``n`` per problem; ``k``: the Pass@k reported.
        pilot_pass1, pilot_passk: the pilot's own Pass@1 and unbiased Pass@k (Chen et al. 2021).
        auc_own, auc_order_averaged, auc_left_to_right: within-problem AUC of ``log p`` (own order; averaged
            over the own order and the ``M`` replays; left to right), ``None`` when not given or when no problem
            has both correct and wrong samples.
        auc_problems: problems with both correct and wrong samples (those the AUCs average over).
        rows: one `TemperatureRow` per ``T``, ascending.
        order: `OrderInconsistency` (``None`` without replays).
        verdict: the one-line verdict.
    """

    family: str
    problems: int
    samples: float
    k: int
    pilot_pass1: float
    pilot_passk: float
    auc_own: float | None
    auc_order_averaged: float | None
    auc_left_to_right: float | None
    auc_problems: int
    rows: tuple[TemperatureRow, ...]
    order: OrderInconsistency | None
    verdict: str

    def row(self, temperature: float) -> TemperatureRow:
        """The row of ``temperature`` (``KeyError`` if it is not on the grid)."""
        for row in self.rows:
            if math.isclose(row.temperature, temperature):
                return row
        raise KeyError(f"T = {temperature} is not on the grid {[r.temperature for r in self.rows]}")

    def markdown(self) -> str:
        """The family's section: pilot, AUCs, order inconsistency, the table over ``T`` and the verdict."""
        n = f"{self.samples:g}"
        lines = [f"### {self.family}", "",
                 f"{self.problems} problems, n = {n} random-order samples each at τ = 1: the pilot's own Pass@1 "
                 f"{self.pilot_pass1:.3f}, Pass@{self.k} {self.pilot_passk:.3f} (unbiased estimator).", ""]
        aucs = [f"own order {_fmt(self.auc_own)}"]
        if self.auc_order_averaged is not None or self.order is not None:
            count = self.order.orders if self.order is not None else "M + 1"
            aucs.append(f"order-averaged ({count} orders) {_fmt(self.auc_order_averaged)}")
        if self.auc_left_to_right is not None:
            aucs.append(f"left to right {_fmt(self.auc_left_to_right)}")
        lines += [f"Within-problem AUC of log p (a correct sample above a wrong one of the same problem; "
                  f"{self.auc_problems} problems with both): " + ", ".join(aucs) + ".", ""]
        if self.order is not None:
            o = self.order
            lines += [f"Order inconsistency: sd of log p(x | σ) across {o.orders} orders of one answer "
                      f"{o.across_orders:.2f} nats, between a problem's answers {o.between_answers:.2f} nats "
                      f"(ratio {o.ratio:.2f}).", ""]
        k = self.k
        lines += [f"| T | Pass@1 [95%] | Δ Pass@1 vs T = 1 | Pass@{k} plug-in* [95%] | Δ Pass@{k} vs T = 1 | "
                  f"ESS of {n} | Cov(c, log p) |",
                  "|---:|---|---|---|---|---:|---|"]
        for r in self.rows:
            lines.append(f"| {r.temperature:g} | {r.pass1} | {r.delta_pass1.signed()} | {r.passk} | "
                         f"{r.delta_passk.signed()} | {r.ess:.1f} ({r.ess_fraction:.0%}) | {r.covariance.signed()} |")
        lines += ["", f"\\* plug-in 1 − (1 − p̂_T)^{k} per problem, an **approximation**: it assumes {k} independent "
                      f"draws from π_T and is biased low at small n (at T = 1 compare the pilot's unbiased "
                      f"{self.pilot_passk:.3f}).", "", f"**Verdict**: {self.verdict}"]
        return "\n".join(lines)


@dataclass(frozen=True)
class HeadroomReport:
    """`tempering_headroom`'s answer: one `FamilyHeadroom` per family and the settings behind the figures."""

    families: tuple[FamilyHeadroom, ...]
    temperatures: tuple[float, ...]
    k: int | None
    level: float = LEVEL
    resamples: int = 2000
    seed: int = 0
    notes: tuple[str, ...] = field(default=())

    def family(self, name: str) -> FamilyHeadroom:
        """The `FamilyHeadroom` of ``name``."""
        for family in self.families:
            if family.family == name:
                return family
        raise KeyError(f"no family {name!r} in the report ({', '.join(f.family for f in self.families)})")

    def verdict_lines(self) -> list[str]:
        """``"verdict <family>: <verdict>"``, one per family."""
        return [f"verdict {family.family}: {family.verdict}" for family in self.families]

    def markdown(self) -> str:
        """The whole report: how the figures were made, then each family's section, then the verdicts."""
        head = ["## Tempering headroom", "",
                "Importance reweighting of a τ = 1 random-order pilot towards π_T(σ, x) ∝ u(σ) p(x | σ)^(1/T) "
                "(weights p(x | σ)^(1/T − 1), self-normalised per problem); means over problems with "
                f"{self.level:.0%} percentile bootstrap intervals over problems ({self.resamples} resamples, "
                f"seed {self.seed}), Δ paired against T = 1. Cov(c, log p) under π_T is d Pass@1 / d(1/T) "
                "(Tomihari & Sato, arXiv 2605.04542). Verdict thresholds: a lift needs a Δ Pass@1 interval above "
                f"0 with mean ESS ≥ {MIN_ESS_FRACTION:.0%} of n; 'cannot' needs own-order AUC < {MIN_AUC} and no "
                "such interval.", *(f"\n{note}" for note in self.notes), ""]
        body = [family.markdown() + "\n" for family in self.families]
        tail = ["### Verdicts", "", *(f"- {line}" for line in self.verdict_lines())]
        return "\n".join(head + body + tail) + "\n"


def within_problem_auc(scores: Sequence[float], correct: Sequence[bool]) -> float | None:
    """P(a random correct sample scores higher than a random wrong one of the same problem), ties one half;
    ``None`` when the problem lacks one of the two classes.

    >>> within_problem_auc([3.0, 1.0, 2.0, 2.0], [True, False, True, False])
    0.875
    >>> within_problem_auc([1.0, 2.0], [True, True]) is None
    True
    """
    values = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(correct, dtype=bool)
    good, bad = values[labels], values[~labels]
    if good.size == 0 or bad.size == 0:
        return None
    difference = good[:, None] - bad[None, :]
    return float((difference > 0).mean() + 0.5 * (difference == 0).mean())


def mean_auc(problems: Sequence[tuple[Sequence[float], Sequence[bool]]]) -> tuple[float | None, int]:
    """The within-problem AUC averaged over the problems that have both classes, and their count.

    >>> mean_auc([([2.0, 1.0], [True, False]), ([1.0, 2.0], [True, False]), ([1.0], [True])])
    (0.5, 2)
    """
    values = [a for scores, correct in problems if (a := within_problem_auc(scores, correct)) is not None]
    return (float(np.mean(values)) if values else None), len(values)


def reweighted(log_p: Sequence[float], correct: Sequence[bool], temperature: float) -> tuple[float, float, float]:
    """One problem's ``(p̂_T, ESS, Cov_{π_T}(c, log p))`` from a ``τ = 1`` random-order pilot: weights
    ``p(x | σ)^(1/T − 1)``, self-normalised.

    >>> p, ess, cov = reweighted([-1.0, -2.0], [True, False], 1.0)
    >>> p, ess, cov
    (0.5, 2.0, 0.25)
    """
    values = np.asarray(log_p, dtype=np.float64)
    reward = np.asarray(correct, dtype=np.float64)
    log_w = (1.0 / temperature - 1.0) * values
    w = np.exp(log_w - log_w.max())
    w_norm = w / w.sum()
    p = float(w_norm @ reward)
    mean_log_p = float(w_norm @ values)
    covariance = float(w_norm @ (reward * values)) - p * mean_log_p
    return p, float(1.0 / (w_norm @ w_norm)), covariance


def plug_in_pass_at_k(p: float | np.ndarray, k: int) -> float | np.ndarray:
    """**Approximation**: ``1 − (1 − p)^k``, Pass@k of ``k`` independent draws that are each correct with
    probability ``p`` (the per-problem plug-in of a reweighted ``p̂_T``; concave, so biased low at small ``n``).

    >>> plug_in_pass_at_k(0.5, 2)
    0.75
    """
    return 1.0 - (1.0 - p) ** k


def unbiased_pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al.'s unbiased ``1 − C(n − c, k) / C(n, k)`` (as `dllm_mcmc.eval.passk.pass_at_k`, which this
    room may not import).

    >>> unbiased_pass_at_k(16, 4, 1), unbiased_pass_at_k(16, 13, 4)
    (0.25, 1.0)
    """
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def tempering_headroom(
    pilot: Pilot,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    k: int | None = None,
    level: float = LEVEL,
    resamples: int = 2000,
    seed: int = 0,
    notes: Sequence[str] = (),
) -> HeadroomReport:
    """What tempering ``p(x)^(1/T)`` would buy on the pilot's model: see the module docstring for the method.

    Args:
        pilot: family name -> its problems' `PilotProblem` records: ``n`` random-order samples at ``τ = 1``
            each (order law ``u`` uniform, as the ``random`` rule; with blocks, uniform within blocks).
        temperatures: the grid of ``T`` (``T = 1``, the pilot's law, is added when missing: the differences
            are taken against it).
        k: the Pass@k reported (default: the smallest ``n`` of the pilot).
        level: coverage of the bootstrap intervals.
        resamples: bootstrap resamples (problems drawn with replacement, jointly for every figure).
        seed: seeds the bootstrap (a ``numpy.random.Generator``), so the report is reproducible.
        notes: lines printed under the report's heading (the command, the pilot's settings).

    Returns:
        A `HeadroomReport` (frozen) with ``markdown()`` and ``verdict_lines()``.

    Example:
        >>> pilot = {"t": [PilotProblem([True, False], [-1.0, -2.0]), PilotProblem([False, True], [-1.0, -2.0])]}
        >>> report = tempering_headroom(pilot, temperatures=(1.0,), resamples=100)
        >>> report.families[0].auc_own, report.families[0].rows[0].covariance.mean
        (0.5, 0.0)
    """
    grid = sorted({float(t) for t in temperatures} | {1.0})
    for t in grid:
        if not (t > 0 and math.isfinite(t)):
            raise ValueError(f"temperatures must be positive and finite, got {t}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples}")
    if not pilot:
        raise ValueError("the pilot holds no task family")
    smallest = min((problem.samples for problems in pilot.values() for problem in problems), default=0)
    if k is None:
        k = smallest
    if k < 1 or (smallest and k > smallest):
        raise ValueError(f"k must lie in 1..{smallest} (the smallest n of the pilot), got {k}")
    rng = np.random.default_rng(seed)
    families = tuple(_family(name, list(problems), grid, k, level, resamples, rng) for name, problems in pilot.items())
    return HeadroomReport(families, tuple(grid), k, level, resamples, seed, tuple(notes))


def _family(name: str, problems: list[PilotProblem], grid: list[float], k: int, level: float, resamples: int,
            rng: np.random.Generator) -> FamilyHeadroom:
    if not problems:
        raise ValueError(f"family {name!r}: the pilot holds no problem")
    count = len(problems)
    picks = rng.integers(0, count, size=(resamples, count))
    tail = (1 - level) / 2

    def interval(values: np.ndarray) -> Interval:
        means = values[picks].mean(-1)
        low, high = np.quantile(means, [tail, 1 - tail])
        return Interval(float(values.mean()), float(low), float(high))

    sizes = np.array([p.samples for p in problems])
    stats = np.array([[reweighted(p.log_p, p.correct, t) for p in problems] for t in grid])  # [T, P, 3]
    base = stats[grid.index(1.0), :, 0]
    rows = []
    for index, t in enumerate(grid):
        p_hat, ess, covariance = stats[index, :, 0], stats[index, :, 1], stats[index, :, 2]
        pass_k = np.asarray(plug_in_pass_at_k(p_hat, k))
        rows.append(TemperatureRow(
            temperature=t, pass1=interval(p_hat), passk=interval(pass_k), delta_pass1=interval(p_hat - base),
            delta_passk=interval(pass_k - np.asarray(plug_in_pass_at_k(base, k))), ess=float(ess.mean()),
            ess_fraction=float((ess / sizes).mean()), covariance=interval(covariance)))
    auc_own, both = mean_auc([(p.log_p, p.correct) for p in problems])
    matrices = [p.order_matrix() for p in problems]
    auc_averaged = order = None
    if all(m is not None for m in matrices):
        full = [m for m in matrices if m is not None]
        auc_averaged, _ = mean_auc([(m.mean(1), p.correct) for m, p in zip(full, problems)])
        across = np.concatenate([m.std(1, ddof=1) for m in full])
        between = [m.mean(1).std(ddof=1) for m in full if m.shape[0] > 1]
        order = OrderInconsistency(float(across.mean()), float(np.mean(between)) if between else math.nan,
                                   full[0].shape[1])
    auc_l2r = None
    if all(p.left_to_right is not None for p in problems):
        auc_l2r, _ = mean_auc([(p.left_to_right or (), p.correct) for p in problems])
    correct = np.array([sum(p.correct) for p in problems])
    pilot_passk = float(np.mean([unbiased_pass_at_k(int(n), int(c), k) for n, c in zip(sizes, correct)]))
    rows_tuple = tuple(rows)
    return FamilyHeadroom(
        family=name, problems=count, samples=float(sizes.mean()), k=k, pilot_pass1=float((correct / sizes).mean()),
        pilot_passk=pilot_passk, auc_own=auc_own, auc_order_averaged=auc_averaged, auc_left_to_right=auc_l2r,
        auc_problems=both, rows=rows_tuple, order=order,
        verdict=verdict(rows_tuple, auc_own, float(sizes.mean())))


def verdict(rows: Sequence[TemperatureRow], auc_own: float | None, samples: float) -> str:
    """The one-line verdict from the rows over ``T`` and the own-order AUC (thresholds `MIN_ESS_FRACTION`,
    `MIN_AUC`; see the module docstring).

    >>> lift = Interval(0.13, 0.10, 0.16)
    >>> row = TemperatureRow(0.25, lift, lift, lift, lift, ess=4.0, ess_fraction=0.25, covariance=lift)
    >>> verdict([row], 0.8, 16)
    'can: tempering can lift Pass@1 by about +0.130 [+0.100, +0.160] at T = 0.25 (mean ESS 4.0 of 16)'
    """
    others = [r for r in rows if not math.isclose(r.temperature, 1.0)]
    lifting = [r for r in others if r.delta_pass1.above_zero]
    trusted = [r for r in lifting if r.ess_fraction >= MIN_ESS_FRACTION]
    n = f"{samples:g}"
    if trusted:
        best = max(trusted, key=lambda r: r.delta_pass1.mean)
        return (f"can: tempering can lift Pass@1 by about {best.delta_pass1.signed()} at T = {best.temperature:g} "
                f"(mean ESS {best.ess:.1f} of {n})")
    if auc_own is None:
        return ("unclear: no problem has both correct and wrong samples, so nothing says whether log p ranks "
                "answers; draw more samples per problem or use problems of middling difficulty")
    if not lifting and auc_own < MIN_AUC:
        return f"cannot: log p does not rank answers within a problem (AUC {auc_own:.2f}) and no T lifts Pass@1"
    if lifting:
        best = max(lifting, key=lambda r: r.delta_pass1.mean)
        return (f"unclear: Pass@1 rises by {best.delta_pass1.signed()} at T = {best.temperature:g}, but on a mean "
                f"ESS of {best.ess:.1f} of {n} (below {MIN_ESS_FRACTION:.0%}): draw more samples per problem")
    top = max(others, key=lambda r: r.delta_pass1.mean) if others else None
    shown = f"; the best, T = {top.temperature:g}, gives {top.delta_pass1.signed()}" if top is not None else ""
    return (f"unclear: log p ranks answers within a problem (AUC {auc_own:.2f}) but no T lifts Pass@1 clear of "
            f"the noise{shown}")


def _signed(value: float) -> str:
    text = f"{value:+.3f}"
    return "+0.000" if text == "-0.000" else text


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
