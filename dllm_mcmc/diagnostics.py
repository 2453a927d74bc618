"""Convergence diagnostics and plots for a sampling `Result`, on the ArviZ 1.x API.

The run converts to an ArviZ ``xarray.DataTree`` (``posterior``: the token ids and the scalar
traces ``log_target``, ``log_proposal``, ``length``; ``sample_stats``: the kernel's statistics),
`summary` reports acceptance and the rank-normalised ESS / R-hat of the scalar traces, and the
plots are plain matplotlib figures.

Token ids are not diagnosed directly: they are categorical, so "ESS of token 3" has no meaning,
and their massive ties break rank statistics. The scalar traces (``log_target`` above all) are
the quantities whose mixing is checked.

Example:
    >>> from dllm_mcmc.diagnostics import format_summary, plot_diagnostics, summary
    >>> print(format_summary(summary(result)))            # doctest: +SKIP
    4 chains x 1000 draws, nfe 16000, ...
    >>> tree = result.to_datatree()                       # doctest: +SKIP
    >>> tree["posterior"]["log_target"].dims              # doctest: +SKIP
    ('chain', 'draw')
    >>> plot_diagnostics(result, "runs/figures")          # doctest: +SKIP
    [PosixPath('runs/figures/trace.png'), ...]
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Callable, Mapping, Sequence
from numbers import Number
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from arviz_base import from_dict

# Not `arviz_stats.ess`: the package root only exports it when the `xarray` extra (xarray-einstats)
# is installed (its import error is swallowed); the array functions below need only
# numpy and scipy.
from arviz_stats.sampling_diagnostics import ess as _ess
from arviz_stats.sampling_diagnostics import rhat as _rhat
from matplotlib.figure import Figure
from scipy import stats as _scipy_stats

from .result import STAT_NAMES, Result

__all__ = [
    "DIAGNOSED_STATS",
    "POSTERIOR_STATS",
    "format_summary",
    "from_datatree",
    "plot_acceptance",
    "plot_diagnostics",
    "plot_rank",
    "plot_sequence_frequencies",
    "plot_trace",
    "summary",
    "to_datatree",
    "trace_diagnostics",
]

POSTERIOR_STATS = ("log_target", "log_proposal", "length")
"""Scalar traces stored in the ``posterior`` group next to ``tokens``; other stats go to
``sample_stats``."""

DIAGNOSED_STATS = ("log_target", "log_proposal", "log_weight", "length")
"""Scalar traces `summary` reports ESS and R-hat for."""

COST_ATTRS = ("nfe", "forward_rows", "wall_time")

# Tail ESS as defined by Vehtari et al. (2021): the 5% and 95% quantiles. arviz-stats' xarray
# path would default to rcParams["stats.ci_prob"] (0.89) and its array path requires it.
_TAIL_PROB = (0.05, 0.95)

# The conventional thresholds of Vehtari et al. (2021), used only to flag rows in the text table.
RHAT_THRESHOLD = 1.01
ESS_PER_CHAIN_THRESHOLD = 100

_NONE = "None"

SequenceProbs = Callable[[torch.Tensor], Any] | Mapping[tuple[int, ...], float]


# --------------------------------------------------------------------------------------------
# DataTree conversion
# --------------------------------------------------------------------------------------------


def to_datatree(result: Result) -> xr.DataTree:
    """The run as an ArviZ ``xarray.DataTree``.

    Groups:
        ``posterior``: ``tokens`` (int64, dims ``chain, draw, position``) and the scalar traces
        of `POSTERIOR_STATS` (dims ``chain, draw``).
        ``sample_stats``: every other entry of ``result.stats`` (``accept_prob``, ``accepted``,
        ``log_weight``, and whatever a kernel adds).

    Root attributes: each ``config`` entry under its own name (values that are not ``int``,
    ``float``, ``bool`` or ``str`` are stored as their ``str``, ``None`` as ``"None"``, so the
    tree serialises), plus ``nfe``, ``forward_rows`` and ``wall_time``.

    Raises:
        ValueError: a config key is one of ``nfe``, ``forward_rows``, ``wall_time``.
    """
    clash = sorted(set(result.config) & set(COST_ATTRS))
    if clash:
        raise ValueError(f"config keys {clash} clash with the cost attributes {COST_ATTRS}")
    posterior = {"tokens": result.tokens.detach().to("cpu", torch.int64).numpy()}
    sample_stats = {}
    for name, value in result.stats.items():
        group = posterior if name in POSTERIOR_STATS else sample_stats
        group[name] = value.detach().to("cpu", torch.float32).numpy()
    root_attrs = {key: _attr_value(value) for key, value in result.config.items()}
    root_attrs.update(
        nfe=int(result.nfe),
        forward_rows=int(result.forward_rows),
        wall_time=float(result.wall_time),
    )
    data = {"posterior": posterior}
    if sample_stats:
        data["sample_stats"] = sample_stats
    group_attrs = _library_attrs()
    attrs = {"/": root_attrs, **{group: dict(group_attrs) for group in data}}
    return from_dict(data, dims={"tokens": ["position"]}, attrs=attrs)


def from_datatree(tree: xr.DataTree) -> Result:
    """The `Result` a tree made by `to_datatree` came from.

    Stats come back as float32, tokens as int64; config values stored as ``str`` stay ``str``
    (except ``"None"``, which becomes ``None``).
    """
    posterior = tree["posterior"].to_dataset()
    # torch.tensor copies: arrays read back from a file can be read-only.
    tokens = torch.tensor(
        posterior["tokens"].transpose("chain", "draw", ...).values, dtype=torch.int64
    )
    found: dict[str, torch.Tensor] = {}
    groups = [posterior]
    if "sample_stats" in tree.children:
        groups.append(tree["sample_stats"].to_dataset())
    for dataset in groups:
        for name, variable in dataset.data_vars.items():
            if name == "tokens":
                continue
            values = variable.transpose("chain", "draw", ...).values
            found[str(name)] = torch.tensor(values, dtype=torch.float32)
    # The canonical stats first, in `Result`'s order, so a round trip keeps the dict order.
    stats = {name: found.pop(name) for name in STAT_NAMES if name in found}
    stats.update(found)
    attrs = dict(tree.attrs)
    config = {
        key: None if isinstance(value, str) and value == _NONE else _python_scalar(value)
        for key, value in attrs.items()
        if key not in COST_ATTRS
    }
    return Result(
        tokens=tokens,
        stats=stats,
        nfe=int(attrs.get("nfe", 0)),
        forward_rows=int(attrs.get("forward_rows", 0)),
        wall_time=float(attrs.get("wall_time", 0.0)),
        config=config,
    )


def _attr_value(value: Any) -> int | float | bool | str:
    value = _python_scalar(value)
    if value is None:
        return _NONE
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _python_scalar(value: Any) -> Any:
    # netCDF/zarr writers and equality checks want Python scalars, not 0-d numpy/torch values.
    if isinstance(value, (np.generic, torch.Tensor)) and np.ndim(value) == 0:
        return value.item()
    return value


def _library_attrs() -> dict[str, str]:
    try:
        version = importlib.metadata.version("dllm-mcmc")
    except importlib.metadata.PackageNotFoundError:
        return {"inference_library": "dllm_mcmc"}
    return {"inference_library": "dllm_mcmc", "inference_library_version": version}


# --------------------------------------------------------------------------------------------
# Numerical summary
# --------------------------------------------------------------------------------------------


def summary(result: Result, stats: Sequence[str] = DIAGNOSED_STATS) -> dict[str, Any]:
    """Acceptance and rank-normalised convergence diagnostics of the scalar traces.

    For each stat in ``stats`` present in ``result.stats`` (a ``[chain, draw]`` trace): its
    mean, bulk ESS, tail ESS (5% / 95% quantiles) and rank-normalised split R-hat, from
    ``arviz_stats`` (Vehtari et al. 2021). A trace that is constant (every draw equal, as
    ``length`` is when no draw stops early) has no defined ESS or R-hat, and gets NaN for all
    three; so does any quantity ArviZ cannot compute (one chain gives NaN R-hat, fewer than 4
    draws NaN everywhere).

    Token ids are not diagnosed: they are categorical, and their ties break rank statistics.

    Returns:
        ``{"num_chains", "num_draws", "nfe", "forward_rows", "wall_time",
        "acceptance": {"per_chain": [float] * C, "mean": float},
        "diagnostics": {stat: {"mean", "ess_bulk", "ess_tail", "r_hat"}}}``, all plain Python
        numbers.
    """
    acceptance = result.stats["accepted"].detach().to("cpu", torch.float64)
    diagnostics = {}
    for name in stats:
        if name in result.stats:
            diagnostics[name] = trace_diagnostics(_trace(result, name))
    return {
        "num_chains": result.num_chains,
        "num_draws": result.num_samples,
        "nfe": int(result.nfe),
        "forward_rows": int(result.forward_rows),
        "wall_time": float(result.wall_time),
        "acceptance": {
            "per_chain": [float(rate) for rate in acceptance.mean(-1)],
            "mean": float(acceptance.mean()) if acceptance.numel() else math.nan,
        },
        "diagnostics": diagnostics,
    }


def trace_diagnostics(trace: np.ndarray) -> dict[str, float]:
    """``mean``, ``ess_bulk``, ``ess_tail``, ``r_hat`` of one ``[chain, draw]`` trace.

    NaN where undefined: a constant trace (ArviZ would report ESS equal to the number of draws
    and R-hat NaN, which reads as "perfect mixing"), or too few chains / draws.
    """
    trace = np.asarray(trace, dtype=np.float64)
    if trace.ndim != 2:
        raise ValueError(f"a trace is [chain, draw], got shape {trace.shape}")
    mean = float(trace.mean()) if trace.size else math.nan
    if trace.size == 0 or np.all(trace == trace.flat[0]):
        return {"mean": mean, "ess_bulk": math.nan, "ess_tail": math.nan, "r_hat": math.nan}
    # Degenerate traces (chains stuck at distinct values, two-valued traces) make ArviZ divide
    # by a zero variance: the inf / NaN that follows is the answer, not worth a warning.
    with np.errstate(divide="ignore", invalid="ignore"):
        ess_bulk = float(_ess(trace, method="bulk"))
        ess_tail = float(_ess(trace, method="tail", prob=_TAIL_PROB))
        r_hat = float(_rhat(trace, method="rank"))
    return {"mean": mean, "ess_bulk": ess_bulk, "ess_tail": ess_tail, "r_hat": r_hat}


def format_summary(summary_dict: Mapping[str, Any]) -> str:
    """`summary`'s output as a text table.

    A row is flagged ``!`` when R-hat exceeds 1.01 or either ESS is below 100 per chain (the
    thresholds of Vehtari et al. 2021).
    """
    chains = summary_dict["num_chains"]
    lines = [
        f"{chains} chains x {summary_dict['num_draws']} draws, nfe {summary_dict['nfe']}, "
        f"forward rows {summary_dict['forward_rows']}, wall time {summary_dict['wall_time']:.2f} s",
    ]
    acceptance = summary_dict["acceptance"]
    per_chain = " ".join(f"{rate:.3f}" for rate in acceptance["per_chain"])
    lines.append(f"acceptance {acceptance['mean']:.3f} (per chain: {per_chain})")
    rows = summary_dict["diagnostics"]
    if rows:
        width = max(len("stat"), *(len(name) for name in rows))
        lines.append("")
        lines.append(
            f"{'stat':<{width}}  {'mean':>10}  {'ess_bulk':>9}  {'ess_tail':>9}  {'r_hat':>7}"
        )
        flagged = False
        for name, row in rows.items():
            flag = _flag(row, chains)
            flagged |= bool(flag)
            lines.append(
                f"{name:<{width}}  {_number(row['mean'], '10.4g')}  "
                f"{_number(row['ess_bulk'], '9.1f')}  {_number(row['ess_tail'], '9.1f')}  "
                f"{_number(row['r_hat'], '7.3f')}{flag}"
            )
        if flagged:
            lines.append(
                f"! r_hat > {RHAT_THRESHOLD} or ess < {ESS_PER_CHAIN_THRESHOLD} per chain"
            )
    return "\n".join(lines)


def _flag(row: Mapping[str, float], chains: int) -> str:
    ess_floor = ESS_PER_CHAIN_THRESHOLD * max(chains, 1)
    # NaN compares False, so undefined diagnostics (constant traces) are not flagged.
    if row["r_hat"] > RHAT_THRESHOLD or row["ess_bulk"] < ess_floor or row["ess_tail"] < ess_floor:
        return " !"
    return ""


def _number(value: float, spec: str) -> str:
    width = spec.split(".")[0]
    if value is None or (isinstance(value, Number) and math.isnan(value)):
        return f"{'nan':>{width}}"
    return format(value, spec)


def _trace(result: Result, name: str) -> np.ndarray:
    if name not in result.stats:
        raise KeyError(f"no stat {name!r}; the result has {sorted(result.stats)}")
    return result.stats[name].detach().to("cpu", torch.float64).numpy()


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def plot_trace(result: Result, stat: str = "log_target", path: str | Path | None = None) -> Figure:
    """Trace of ``stat`` per chain (one line each) with its per-chain histogram beside it.

    The title carries the stat's bulk ESS and R-hat. Non-finite draws are left out of the
    histogram.
    """
    trace = _trace(result, stat)
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
    trace = _trace(result, stat)
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
    """Running mean acceptance over the draws, one line per chain; dashed: the overall mean."""
    accepted = result.stats["accepted"].detach().to("cpu", torch.float64).numpy()
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
    ax.set_ylabel("running acceptance")
    ax.set_title("acceptance rate")
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
    keys = np.random.default_rng(0).random(values.shape[0])
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
