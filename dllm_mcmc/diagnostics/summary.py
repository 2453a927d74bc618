"""Numerical convergence summary of a `Result` (arviz-stats): acceptance, rank-normalised ESS and
R-hat of the scalar traces, and a text table that flags what fails the usual thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Number
from typing import Any

import numpy as np
import torch

# Not `arviz_stats.ess`: the package root only exports it when the `xarray` extra (xarray-einstats)
# is installed (its import error is swallowed); the array functions below need only
# numpy and scipy.
from arviz_stats.sampling_diagnostics import ess as _ess
from arviz_stats.sampling_diagnostics import rhat as _rhat

from dllm_mcmc.diagnostics.convert import (
    _TAIL_PROB,
    DIAGNOSED_STATS,
    ESS_PER_CHAIN_THRESHOLD,
    RHAT_THRESHOLD,
)
from dllm_mcmc.mcmc.result import MOVE_STATS, Result


def summary(result: Result, stats: Sequence[str] = DIAGNOSED_STATS) -> dict[str, Any]:
    """Acceptance and rank-normalised convergence diagnostics of the scalar traces.

    For each stat in ``stats`` present in ``result.stats`` (a ``[chain, draw]`` trace): its
    mean, bulk ESS, tail ESS (5% / 95% quantiles) and rank-normalised split R-hat, from
    ``arviz_stats`` (Vehtari et al. 2021). A trace that is constant (every draw equal, as
    ``length`` is when no draw stops early) has no defined ESS or R-hat, and gets NaN for all
    three; so does any quantity ArviZ cannot compute (one chain gives NaN R-hat, fewer than 4
    draws NaN everywhere).

    Token ids are not diagnosed: they are categorical, and their ties break rank statistics.
    ``acceptance`` is MH acceptance only (``accepted`` / ``accept_prob``; NaN for a kernel that is not MH or
    a result without the stat); ``move`` is the kernel's own move statistic under its own name
    (`dllm_mcmc.mcmc.result.Result.move_stat`: MH acceptance, SMC's normalised ESS, particle Gibbs' leaving
    of the reference, the stepwise selection's), ``None`` without one.

    Returns:
        ``{"num_chains", "num_draws", "nfe", "forward_rows", "wall_time",
        "acceptance": {"per_chain": [float] * C, "mean": float},
        "move": {"stat": str, "label": str, "per_chain": [float] * C, "mean": float} or None,
        "diagnostics": {stat: {"mean", "ess_bulk", "ess_tail", "r_hat"}}}``, all plain Python
        numbers.
    """
    if "accepted" in result.stats or "accept_prob" in result.stats:
        acceptance = result.acceptance_trace.detach().to("cpu", torch.float64)
    else:  # not an MH kernel, or a result without stats (Pyro's MCMC without a StatsRecorder): NaN
        acceptance = torch.full((result.num_chains, result.num_samples), math.nan, dtype=torch.float64)
    move = result.move_stat
    diagnostics = {}
    for name in stats:
        if name in result.stats:
            diagnostics[name] = trace_diagnostics(stat_trace(result, name))
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
        "move": None if move is None else {"stat": move[0], "label": MOVE_STATS[move[0]],
                                           **_means(move[1].detach().to("cpu", torch.float64))},
        "diagnostics": diagnostics,
    }


def _means(trace: torch.Tensor) -> dict[str, Any]:
    return {"per_chain": [float(value) for value in trace.mean(-1)],
            "mean": float(trace.mean()) if trace.numel() else math.nan}


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
    move = summary_dict.get("move")
    if move is None:  # no move statistic: the MH acceptance line says NaN
        move = {"label": "acceptance", **summary_dict["acceptance"]}
    per_chain = " ".join(f"{rate:.3f}" for rate in move["per_chain"])
    lines.append(f"{move['label']} {move['mean']:.3f} (per chain: {per_chain})")
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


def stat_trace(result: Result, name: str) -> np.ndarray:
    if name not in result.stats:
        raise KeyError(f"no stat {name!r}; the result has {sorted(result.stats)}")
    return result.stats[name].detach().to("cpu", torch.float64).numpy()
