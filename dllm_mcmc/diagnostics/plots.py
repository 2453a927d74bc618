"""Diagnostic plots of a `Result` as plain matplotlib figures: trace, rank, acceptance, sequence
frequencies against an exact target, and all of them at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

# Not `arviz_stats.ess`: the package root only exports it when the `xarray` extra (xarray-einstats)
# is installed (its import error is swallowed); the array functions below need only
# numpy and scipy.
from matplotlib.figure import Figure
from scipy import stats as _scipy_stats

from dllm_mcmc.diagnostics.convert import SequenceProbs
from dllm_mcmc.diagnostics.summary import _number, stat_trace, trace_diagnostics
from dllm_mcmc.mcmc.result import MOVE_STATS, Result


def plot_trace(result: Result, stat: str = "log_target", path: str | Path | None = None) -> Figure:
    """Trace of ``stat`` per chain (one line each) with its per-chain histogram beside it.

    The title carries the stat's bulk ESS and R-hat. Non-finite draws are left out of the
    histogram.
    """
    trace = stat_trace(result, stat)
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    trace_ax, hist_ax = fig.subplots(
        1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 1]}
    )
    draws = np.arange(trace.shape[1])
    finite = trace[np.isfinite(trace)]
    bins = _bins(finite)
    for chain, values in enumerate(trace):
        color = f"C{chain % 10}"
        trace_ax.plot(draws, values, color=color, lw=0.7, alpha=0.8, label=f"chain {chain}")
        values = values[np.isfinite(values)]
        if values.size and bins is not None:
            hist_ax.hist(values, bins=bins, orientation="horizontal", histtype="step",
                         color=color, density=True)
    diag = trace_diagnostics(trace)
    fig.suptitle(
        f"{stat}: ess_bulk {_number(diag['ess_bulk'], '.0f').strip()}, "
        f"r_hat {_number(diag['r_hat'], '.3f').strip()}"
    )
    trace_ax.set_xlabel("draw")
    trace_ax.set_ylabel(stat)
    hist_ax.set_xlabel("density")
    if trace.shape[0] <= 10:
        trace_ax.legend(loc="best", fontsize="small", ncols=min(trace.shape[0], 4))
    return _save(fig, path)


def plot_rank(
    result: Result,
    stat: str = "log_target",
    path: str | Path | None = None,
    bins: int | None = None,
) -> Figure:
    """Rank histograms of ``stat``: one small histogram per chain of the pooled ranks.

    All draws of all chains are ranked together; if the chains sample the same distribution each
    chain's ranks are uniform. The dashed line is the uniform count per bin, the band its 95%
    binomial interval for independent draws (autocorrelated chains scatter more). Ties, which
    discrete traces such as ``log_target`` after rejections are full of, are broken at random
    (fixed seed) so that they do not pile up in one bin. ``bins`` defaults to one per 20 draws
    of a chain, between 1 and 20.
    """
    trace = stat_trace(result, stat)
    chains, draws = trace.shape
    ranks = _random_tie_ranks(trace.ravel()).reshape(chains, draws)
    total = chains * draws
    if bins is None:
        bins = int(np.clip(draws // 20, 1, 20))
    edges = np.linspace(0, total, bins + 1)
    expected = draws / bins
    low, high = _scipy_stats.binom.interval(0.95, draws, 1 / bins)
    ncols = min(chains, 4)
    nrows = math.ceil(chains / ncols)
    fig = Figure(figsize=(2.8 * ncols, 2.3 * nrows + 0.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    for chain, ax in enumerate(axes):
        if chain >= chains:
            ax.set_visible(False)
            continue
        if chain + ncols >= chains:
            ax.set_xlabel("rank (all chains)")
            # sharex hides tick labels above the last row, whose cells may be empty.
            ax.tick_params(labelbottom=True)
        if chain % ncols == 0:
            ax.set_ylabel("draws")
        ax.axhspan(low, high, color="0.85", zorder=0)
        ax.hist(ranks[chain], bins=edges, color=f"C{chain % 10}", alpha=0.8)
        ax.axhline(expected, color="k", ls="--", lw=1)
        ax.set_title(f"chain {chain}", fontsize="medium")
        ax.set_xlim(0, total)
    fig.suptitle(f"rank histograms of {stat}")
    return _save(fig, path)


def plot_acceptance(result: Result, path: str | Path | None = None) -> Figure:
    """Running mean of the kernel's move statistic over the draws (`Result.move_stat`, labelled with its own
    name: MH acceptance, SMC's normalised ESS, particle Gibbs' leaving of the reference...), one line per
    chain; dashed: the overall mean."""
    move = result.move_stat
    if move is None:
        raise KeyError(f"no move statistic in this result (one of {', '.join(MOVE_STATS)}); it has "
                       f"{sorted(result.stats)}")
    name, trace = move
    accepted = trace.detach().to("cpu", torch.float64).numpy()
    steps = np.arange(1, accepted.shape[1] + 1)
    running = np.cumsum(accepted, axis=1) / steps
    fig = Figure(figsize=(8, 3.5), layout="constrained")
    ax = fig.subplots()
    for chain, values in enumerate(running):
        ax.plot(steps, values, color=f"C{chain % 10}", lw=1, label=f"chain {chain}")
    if accepted.size:
        ax.axhline(accepted.mean(), color="k", ls="--", lw=1, label=f"mean {accepted.mean():.3f}")
    ax.set_ylim(0, 1)
    ax.set_xlabel("draw")
    ax.set_ylabel(f"running mean of {name}")
    ax.set_title(MOVE_STATS[name])
    if accepted.shape[0] <= 10:
        ax.legend(loc="best", fontsize="small", ncols=min(accepted.shape[0] + 1, 4))
    return _save(fig, path)


def plot_sequence_frequencies(
    result: Result,
    exact: SequenceProbs | None = None,
    top: int = 20,
    path: str | Path | None = None,
    labels: Callable[[torch.Tensor], str] | None = None,
) -> Figure:
    """Bar chart of the ``top`` most frequent distinct sequences in the pooled draws.

    Args:
        result: the run; all chains' draws are pooled.
        exact: the exact target probabilities, overlaid as markers: a callable mapping a
            LongTensor ``[n, L]`` of sequences to ``[n]`` probabilities (e.g.
            ``lambda x: denoiser.log_prob(x).exp()`` for an `ExactDenoiser` at temperature 1),
            or a mapping from a sequence's tuple of ids to its probability (missing: 0).
        top: how many sequences to show.
        path: where to save the PNG.
        labels: renders a sequence (LongTensor ``[L]``) as text; default its ids.
    """
    tokens = result.tokens.detach().to("cpu", torch.int64)
    pooled = tokens.reshape(-1, tokens.shape[-1])
    distinct, counts = torch.unique(pooled, dim=0, return_counts=True)
    order = torch.argsort(counts, descending=True, stable=True)[: max(top, 0)]
    shown, freq = distinct[order], counts[order].double() / max(pooled.shape[0], 1)
    render = labels if labels is not None else (lambda row: " ".join(map(str, row.tolist())))
    names = [render(row) for row in shown]
    fig = Figure(figsize=(8, 1.2 + 0.32 * max(len(shown), 1)), layout="constrained")
    ax = fig.subplots()
    ypos = np.arange(len(shown))
    ax.barh(ypos, freq.numpy(), color="C0", alpha=0.8, label="sampled frequency")
    if exact is not None and len(shown):
        probs = _exact_probs(exact, shown)
        ax.scatter(probs, ypos, color="C3", marker="D", s=30, zorder=3, label="exact probability")
    ax.set_yticks(ypos, names, fontfamily="monospace", fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("probability")
    ax.set_title(
        f"top {len(shown)} of {distinct.shape[0]} distinct sequences "
        f"({float(freq.sum()):.1%} of {pooled.shape[0]} draws)"
    )
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_diagnostics(
    result: Result,
    directory: str | Path,
    *,
    stat: str = "log_target",
    exact: SequenceProbs | None = None,
    labels: Callable[[torch.Tensor], str] | None = None,
) -> list[Path]:
    """Write ``trace.png``, ``rank.png``, ``acceptance.png`` and ``sequences.png`` into
    ``directory`` (created if missing); return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = ("trace.png", "rank.png", "acceptance.png", "sequences.png")
    paths = [directory / name for name in names]
    plot_trace(result, stat, paths[0])
    plot_rank(result, stat, paths[1])
    plot_acceptance(result, paths[2])
    plot_sequence_frequencies(result, exact=exact, path=paths[3], labels=labels)
    return paths


def _exact_probs(exact: SequenceProbs, sequences: torch.Tensor) -> np.ndarray:
    if isinstance(exact, Mapping):
        return np.array([float(exact.get(tuple(row.tolist()), 0.0)) for row in sequences])
    probs = exact(sequences)
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().to("cpu", torch.float64).numpy()
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    if probs.shape[0] != sequences.shape[0]:
        raise ValueError(
            f"exact returned {probs.shape[0]} probabilities for {sequences.shape[0]} sequences"
        )
    return probs


def _random_tie_ranks(values: np.ndarray) -> np.ndarray:
    keys = np.random.default_rng(0).random(int(values.shape[0]))  # int(): an Any size picks the scalar overload
    order = np.lexsort((keys, values))
    ranks = np.empty(values.shape[0], dtype=np.float64)
    ranks[order] = np.arange(values.shape[0])
    return ranks


def _bins(values: np.ndarray) -> np.ndarray | int | None:
    if values.size == 0:
        return None
    low, high = float(values.min()), float(values.max())
    # Integer-valued traces (length) get one bin per value instead of aliasing into empty bins.
    if np.all(values == np.round(values)) and high - low <= 60:
        return np.arange(low - 0.5, high + 1.5)
    return 30


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
