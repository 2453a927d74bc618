"""Convergence diagnostics and plots for a sampling `Result`, on the ArviZ 1.x API.

The run converts to an ArviZ ``xarray.DataTree`` (``posterior``: the scalar traces ``log_target``,
``log_likelihood``, ``log_proposal``, ``length``; ``sample_stats``: the kernel's statistics; ``tokens``:
the token ids and decoding orders), `summary` reports acceptance and the rank-normalised ESS / R-hat of
the scalar traces, and the plots are plain matplotlib figures. A ``pyro.infer.MCMC`` run of our kernels
converts with `from_pyro_mcmc`.

`tempering_headroom` is the check before any sampler runs: from a pilot of plain random-order samples it
estimates, by importance reweighting, what the tempered law ``p(x)^(1/T)`` would score (``dllm-mcmc headroom``).

Token ids are not diagnosed directly: they are categorical, so "ESS of token 3" has no meaning,
and their massive ties break rank statistics. The scalar traces (``log_target`` above all) are
the quantities whose mixing is checked; the token ids sit in their own group, so ArviZ's own
``summary``/``ess``/``rhat`` on the tree (which read ``posterior``) never touch them.

Example:
    >>> from dllm_mcmc.diagnostics import format_summary, plot_diagnostics, summary, to_datatree
    >>> print(format_summary(summary(result)))            # doctest: +SKIP
    4 chains x 1000 draws, nfe 16000, ...
    >>> tree = to_datatree(result)                       # doctest: +SKIP
    >>> tree["posterior"]["log_target"].dims              # doctest: +SKIP
    ('chain', 'draw')
    >>> plot_diagnostics(result, "runs/figures")          # doctest: +SKIP
    [PosixPath('runs/figures/trace.png'), ...]
"""

from dllm_mcmc.diagnostics.convert import (
                                           DIAGNOSED_STATS,
                                           POSTERIOR_STATS,
                                           TOKEN_GROUP,
                                           from_datatree,
                                           from_pyro_mcmc,
                                           to_datatree,
)
from dllm_mcmc.diagnostics.headroom import FamilyHeadroom, HeadroomReport, PilotProblem, tempering_headroom
from dllm_mcmc.diagnostics.plots import (
                                         plot_acceptance,
                                         plot_diagnostics,
                                         plot_rank,
                                         plot_sequence_frequencies,
                                         plot_trace,
)
from dllm_mcmc.diagnostics.summary import format_summary, summary, trace_diagnostics
from dllm_mcmc.mcmc.pyro_mcmc import StatsRecorder

__all__ = [
    "DIAGNOSED_STATS",
    "FamilyHeadroom",
    "HeadroomReport",
    "POSTERIOR_STATS",
    "PilotProblem",
    "TOKEN_GROUP",
    "StatsRecorder",
    "format_summary",
    "from_datatree",
    "from_pyro_mcmc",
    "plot_acceptance",
    "plot_diagnostics",
    "plot_rank",
    "plot_sequence_frequencies",
    "plot_trace",
    "summary",
    "tempering_headroom",
    "to_datatree",
    "trace_diagnostics",
]
