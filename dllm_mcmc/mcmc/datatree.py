"""A `Result` as an ArviZ ``xarray.DataTree`` (arviz-base 0.8 / ArviZ 1.x API) and as a netCDF file.

Groups of the tree:

- ``posterior``: the scalar traces of `POSTERIOR_STATS` that the result has (``log_target``,
  ``log_likelihood``, ``log_proposal``, ``length``), dims ``chain, draw``: what ArviZ's ``summary``,
  ``ess`` and ``rhat`` (which read ``posterior`` by default) diagnose;
- ``sample_stats``: every other stat (``accept_prob``, ``accepted``, ``log_weight``, ...);
- ``tokens`` (`TOKEN_GROUP`): the draws themselves, ``tokens`` (int64, dims ``chain, draw, position``)
  and, where recorded, ``order`` (int64, dims ``chain, draw, commit``: the position committed ``t``-th).
  Token ids are categorical, so they are kept out of ``posterior``: an ESS of "token 3" depends on an
  arbitrary coding of the vocabulary, and their ties break rank statistics. Not ``posterior_predictive``
  either: ArviZ reads that group as replicated observations to compare with ``observed_data``.

Root attributes: each config entry under its own name (values that are not ``int``, ``float``,
``bool`` or ``str`` as their ``str``, ``None`` as ``"None"``), ``nfe``, ``forward_rows``,
``wall_time``, and three for a faithful way back: ``dllm_mcmc_config`` (the config as JSON),
``dllm_mcmc_stats`` (the stat names in order, JSON) and ``dllm_mcmc_format`` (`FORMAT_VERSION`).

`Result` calls these functions (``Result.to_datatree``, ``from_datatree``, ``save``, ``load``);
`dllm_mcmc.diagnostics` re-exports the conversion.

Example:
    >>> import torch
    >>> from dllm_mcmc.mcmc.result import Result
    >>> result = Result(torch.zeros(2, 3, 4, dtype=torch.long), {"log_target": torch.zeros(2, 3)}, 0, 0, 0.0)
    >>> sorted(to_datatree(result).children)
    ['posterior', 'tokens']
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import xarray as xr
from arviz_base import from_dict

POSTERIOR_STATS = ("log_target", "log_likelihood", "log_proposal", "length")
"""Scalar traces stored in the ``posterior`` group; other stats go to ``sample_stats``."""

TOKEN_GROUP = "tokens"
"""The group holding the draws (``tokens`` and ``order``), out of ArviZ's default ``posterior``."""

COST_ATTRS = ("nfe", "forward_rows", "wall_time")
CONFIG_ATTR, STATS_ATTR, FORMAT_ATTR = "dllm_mcmc_config", "dllm_mcmc_stats", "dllm_mcmc_format"
FORMAT_VERSION = 1
RESERVED_ATTRS = (*COST_ATTRS, CONFIG_ATTR, STATS_ATTR, FORMAT_ATTR)

# The order `from_datatree` restores stats in when a tree carries no `dllm_mcmc_stats` (older trees).
_STAT_ORDER = ("log_target", "log_likelihood", "log_proposal", "log_weight", "accept_prob", "accepted", "length")
_NONE = "None"


class ResultLike(Protocol):
    """The fields of a `dllm_mcmc.mcmc.result.Result` that the conversion reads."""

    @property
    def tokens(self) -> torch.Tensor: ...

    @property
    def stats(self) -> dict[str, torch.Tensor]: ...

    @property
    def nfe(self) -> int: ...

    @property
    def forward_rows(self) -> int: ...

    @property
    def wall_time(self) -> float: ...

    @property
    def config(self) -> dict: ...

    @property
    def order(self) -> torch.Tensor | None: ...


def to_datatree(result: ResultLike) -> xr.DataTree:
    """The run as an ArviZ ``xarray.DataTree`` (groups and attributes: see the module docstring).

    Raises:
        ValueError: a config key is one of `RESERVED_ATTRS` (``nfe``, ``forward_rows``, ``wall_time``,
            ``dllm_mcmc_*``).
    """
    clash = sorted(set(result.config) & set(RESERVED_ATTRS))
    if clash:
        raise ValueError(f"config keys {clash} clash with the attributes {RESERVED_ATTRS} of the tree")
    draws = {"tokens": _numpy(result.tokens, torch.int64)}
    if result.order is not None:
        draws["order"] = _numpy(result.order, torch.int64)
    posterior: dict[str, np.ndarray] = {}
    sample_stats: dict[str, np.ndarray] = {}
    for name, value in result.stats.items():
        group = posterior if name in POSTERIOR_STATS else sample_stats
        group[name] = _numpy(value, torch.float32)
    root_attrs: dict[str, Any] = {key: _attr_value(value) for key, value in result.config.items()}
    root_attrs.update({
        "nfe": int(result.nfe),
        "forward_rows": int(result.forward_rows),
        "wall_time": float(result.wall_time),
        CONFIG_ATTR: json.dumps(result.config, default=_json_default),
        STATS_ATTR: json.dumps(list(result.stats)),
        FORMAT_ATTR: FORMAT_VERSION,
    })
    data: dict[str, dict[str, np.ndarray]] = {}
    if posterior:
        data["posterior"] = posterior
    if sample_stats:
        data["sample_stats"] = sample_stats
    data[TOKEN_GROUP] = draws
    group_attrs = _library_attrs()
    attrs: dict[str, Mapping[str, Any]] = {"/": root_attrs, **{group: dict(group_attrs) for group in data}}
    return from_dict(data, dims={"tokens": ["position"], "order": ["commit"]}, attrs=attrs)


def datatree_fields(tree: xr.DataTree) -> dict[str, Any]:
    """The keyword arguments of the `Result` a tree made by `to_datatree` came from.

    Tokens and order come back as int64, stats as float32, in their original order; the config from
    its JSON copy (tuples come back as lists; values JSON cannot hold, as their ``str``). A tree of the
    older layout (``tokens`` in ``posterior``, no JSON attributes) is read too: its config from the
    individual attributes (``"None"`` becomes ``None``; other strings stay strings).

    Raises:
        ValueError: the tree holds no ``tokens`` (not a dllm_mcmc result).
    """
    groups = {name: tree[name].to_dataset() for name in tree.children}
    draws = groups.get(TOKEN_GROUP)
    if draws is None or "tokens" not in draws.data_vars:
        draws = groups.get("posterior")  # the layout before the tokens group
    if draws is None or "tokens" not in draws.data_vars:
        raise ValueError(f"not a dllm_mcmc result: no 'tokens' variable in the groups {sorted(groups)}")
    # torch.tensor copies: arrays read back from a file can be read-only.
    tokens = torch.tensor(draws["tokens"].transpose("chain", "draw", ...).values, dtype=torch.int64)
    order = (torch.tensor(draws["order"].transpose("chain", "draw", ...).values, dtype=torch.int64)
             if "order" in draws.data_vars else None)
    found: dict[str, torch.Tensor] = {}
    for group in ("posterior", "sample_stats"):
        dataset = groups.get(group)
        for name, variable in (dataset.data_vars.items() if dataset is not None else ()):
            if name in ("tokens", "order"):
                continue
            values = variable.transpose("chain", "draw", ...).values
            found[str(name)] = torch.tensor(values, dtype=torch.float32)
    attrs = {key: _python_scalar(value) for key, value in tree.attrs.items()}
    names = json.loads(attrs[STATS_ATTR]) if STATS_ATTR in attrs else []
    names = [name for name in (*names, *_STAT_ORDER) if name in found]
    stats = {name: found.pop(name) for name in dict.fromkeys(names)}
    stats.update(found)
    if CONFIG_ATTR in attrs:
        config = json.loads(attrs[CONFIG_ATTR])
    else:
        config = {key: None if value == _NONE else value for key, value in attrs.items()
                  if key not in RESERVED_ATTRS}
    return {
        "tokens": tokens,
        "stats": stats,
        "nfe": int(attrs.get("nfe", 0)),
        "forward_rows": int(attrs.get("forward_rows", 0)),
        "wall_time": float(attrs.get("wall_time", math.nan)),
        "config": config,
        "order": order,
    }


def save_datatree(tree: xr.DataTree, path: str | Path, engine: str = "h5netcdf") -> Path:
    """Write ``tree`` to a netCDF-4 file at ``path`` (groups need netCDF-4/HDF5: ``h5netcdf`` or ``netcdf4``).

    Boolean attributes are written as 0/1 (netCDF has no booleans; the JSON config keeps the real
    ones). The parent folder must exist; an existing file is replaced.
    """
    _require_engine(engine)
    path = Path(path)
    tree = tree.copy()
    for node in tree.subtree:
        node.attrs = {key: int(value) if isinstance(value, (bool, np.bool_)) else value
                      for key, value in node.attrs.items()}
    tree.to_netcdf(path, engine=engine)  # type: ignore[call-overload]  # xarray's overloads list engines as literals
    return path


def load_datatree(path: str | Path, engine: str | None = None) -> xr.DataTree:
    """Read a whole tree written by `save_datatree` into memory (the file is closed afterwards).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` is not a readable netCDF file, or holds no dllm_mcmc result.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no result file at {str(path)!r}")
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a file (a result is one netCDF file, written by Result.save)")
    if engine is not None:
        _require_engine(engine)
    try:
        tree = xr.open_datatree(path, engine=engine)
    except Exception as error:  # noqa: BLE001  # each backend raises its own kind (OSError, ValueError, ...)
        raise ValueError(f"{str(path)!r} is not a readable netCDF file (is it truncated or of another format?): "
                         f"{type(error).__name__}: {error}") from error
    try:
        tree = tree.load()
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"{str(path)!r}: could not read its data (is the file truncated?): "
                         f"{type(error).__name__}: {error}") from error
    finally:
        tree.close()
    if FORMAT_ATTR not in tree.attrs:
        raise ValueError(f"{str(path)!r} is a netCDF file but not a dllm_mcmc result (no {FORMAT_ATTR!r} "
                         f"attribute; groups: {sorted(tree.children)})")
    if int(tree.attrs[FORMAT_ATTR]) > FORMAT_VERSION:
        raise ValueError(f"{str(path)!r} was written in result format {tree.attrs[FORMAT_ATTR]}, newer than this "
                         f"dllm_mcmc reads ({FORMAT_VERSION}): upgrade dllm_mcmc")
    return tree


def _require_engine(engine: str) -> None:
    needs = {"h5netcdf": ("h5netcdf", "h5py"), "netcdf4": ("netCDF4",)}.get(engine, ())
    missing = [module for module in needs if importlib.util.find_spec(module) is None]
    if missing:
        raise ImportError(f"netCDF engine {engine!r} needs {' and '.join(missing)}: "
                          f"pip install {' '.join(m.lower() if m == 'netCDF4' else m for m in missing)}")


def _numpy(tensor: torch.Tensor, dtype: torch.dtype) -> np.ndarray:
    return tensor.detach().to("cpu", dtype).numpy()


def _attr_value(value: Any) -> int | float | bool | str:
    value = _python_scalar(value)
    if value is None:
        return _NONE
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _json_default(value: Any) -> Any:
    """JSON for what `json` cannot write itself: tensors and numpy values as numbers or lists, the rest as str."""
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return value.tolist()
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
