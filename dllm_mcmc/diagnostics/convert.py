"""A sampling `Result` to and from an ArviZ ``xarray.DataTree`` (arviz-base), and a Pyro ``MCMC`` run to one.

The layout (`dllm_mcmc.mcmc.datatree`): ``posterior`` holds the scalar traces ``log_target``,
``log_likelihood``, ``log_proposal``, ``length``; ``sample_stats`` the kernel's other statistics; the group
``tokens`` the token ids and decoding orders (kept out of ``posterior``, so ArviZ's ``summary``/``ess``/``rhat``
never summarise token ids); attributes the cost and config.

Example:
    >>> from dllm_mcmc import ExactDenoiser, sample
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> result = sample(toy, None, 4, target_temperature=0.5, num_chains=2, num_samples=20, warmup=5,
    ...                 progress=False)
    >>> tree = to_datatree(result)
    >>> sorted(tree["posterior"].data_vars), tree["tokens"]["tokens"].dims
    (['length', 'log_likelihood', 'log_proposal', 'log_target'], ('chain', 'draw', 'position'))
    >>> from_datatree(tree).equals(result)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import xarray as xr

from dllm_mcmc.mcmc.datatree import COST_ATTRS, POSTERIOR_STATS, TOKEN_GROUP
from dllm_mcmc.mcmc.pyro_mcmc import StatsRecorder, result_from_pyro
from dllm_mcmc.mcmc.result import Result

__all__ = ["COST_ATTRS", "DIAGNOSED_STATS", "POSTERIOR_STATS", "TOKEN_GROUP", "from_datatree", "from_pyro_mcmc",
           "to_datatree"]

DIAGNOSED_STATS = ("log_target", "log_likelihood", "log_proposal", "log_weight", "length")
"""Scalar traces `summary` reports ESS and R-hat for."""

# Tail ESS as defined by Vehtari et al. (2021): the 5% and 95% quantiles. arviz-stats' xarray
# path would default to rcParams["stats.ci_prob"] (0.89) and its array path requires it.
_TAIL_PROB = (0.05, 0.95)

# The conventional thresholds of Vehtari et al. (2021), used only to flag rows in the text table.
RHAT_THRESHOLD = 1.01
ESS_PER_CHAIN_THRESHOLD = 100

SequenceProbs = Callable[[torch.Tensor], Any] | Mapping[tuple[int, ...], float]


def to_datatree(result: Result) -> xr.DataTree:
    """The run as an ArviZ ``xarray.DataTree`` (`Result.to_datatree`).

    Groups:
        ``posterior``: the scalar traces of `POSTERIOR_STATS` (dims ``chain, draw``).
        ``sample_stats``: every other entry of ``result.stats`` (``accept_prob``, ``accepted``,
        ``log_weight``, and whatever a kernel adds).
        ``tokens``: ``tokens`` (int64, dims ``chain, draw, position``) and ``order`` (int64, dims
        ``chain, draw, commit``) where the result has it.

    Root attributes: each ``config`` entry under its own name (values that are not ``int``,
    ``float``, ``bool`` or ``str`` are stored as their ``str``, ``None`` as ``"None"``, so the
    tree serialises), ``nfe``, ``forward_rows``, ``wall_time``, and the JSON copies
    ``dllm_mcmc_config`` / ``dllm_mcmc_stats`` that `from_datatree` reads back exactly.

    Raises:
        ValueError: a config key is one of ``nfe``, ``forward_rows``, ``wall_time`` or ``dllm_mcmc_*``.
    """
    return result.to_datatree()


def from_datatree(tree: xr.DataTree) -> Result:
    """The `Result` a tree made by `to_datatree` came from (`Result.from_datatree`).

    Stats come back as float32, tokens and order as int64, the config from its JSON copy (tuples as
    lists). Trees of the older layout (tokens in ``posterior``) load too.
    """
    return Result.from_datatree(tree)


def from_pyro_mcmc(mcmc: Any, recorder: StatsRecorder | None = None) -> xr.DataTree:
    """A finished ``pyro.infer.MCMC`` run of a dllm_mcmc kernel as an ArviZ ``DataTree``.

    ArviZ 1.x (arviz-base) has no Pyro converter; this is one for our kernels (`result_from_pyro`, then
    `to_datatree`). The ``C`` chains a kernel batches are ArviZ's ``chain`` dimension (times Pyro's
    ``num_chains``); the scalar sites go to ``posterior``, token ids and orders to the group ``tokens``,
    and, with the ``recorder`` passed as the run's ``hook_fn``, each draw's ``kernel.info`` to
    ``sample_stats``.

    Example:
        >>> from pyro.infer import MCMC
        >>> from dllm_mcmc import IMH, ExactDenoiser, TemperedTarget
        >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
        >>> kernel = IMH(TemperedTarget(toy, None, 4, target_temperature=0.5), num_chains=4)
        >>> recorder = StatsRecorder()
        >>> mcmc = MCMC(kernel, num_samples=50, warmup_steps=10, hook_fn=recorder, disable_progbar=True)
        >>> mcmc.run()
        >>> tree = from_pyro_mcmc(mcmc, recorder)
        >>> dict(tree["posterior"].sizes), "accept_prob" in tree["sample_stats"]
        ({'chain': 4, 'draw': 50}, True)
    """
    return result_from_pyro(mcmc, recorder).to_datatree()

