"""A sampling `Result` to and from an ArviZ ``xarray.DataTree`` (arviz-base), the way ArviZ's
``arviz_base`` converts: ``posterior`` holds the token ids and the scalar traces ``log_target``,
``log_proposal``, ``length``; ``sample_stats`` the kernel's statistics; attributes the cost and config.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr
from arviz_base import from_dict

# Not `arviz_stats.ess`: the package root only exports it when the `xarray` extra (xarray-einstats)
# is installed (its import error is swallowed); the array functions below need only
# numpy and scipy.
from dllm_mcmc.mcmc.result import STAT_NAMES, Result

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
    sample_stats: dict[str, np.ndarray] = {}
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
    attrs: dict[str, Mapping[str, Any]] = {"/": root_attrs, **{group: dict(group_attrs) for group in data}}
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
