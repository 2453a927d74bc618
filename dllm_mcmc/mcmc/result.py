"""`Result`: the draws of a sampling run, its per-draw statistics, cost and configuration; as an ArviZ
``DataTree`` (`to_datatree`) and as a netCDF file (`save` / `load`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # xarray is imported by the conversion only (lazily), not with the package
    import xarray as xr

MOVE_STATS = {
    "accepted": "MH acceptance",
    "accept_prob": "MH acceptance probability",
    "selection_accept_rate": "candidate selection acceptance",
    "selection_ess": "candidate ESS / K",
    "left_reference": "reference left",
    "leave_prob": "probability of leaving the reference",
    "ess": "SMC ESS / N",
}
"""The per-draw statistics that say how a kernel moved, in the order `Result.move_stat` looks for them, with
the label diagnostics show them under (never one statistic under another's name)."""


@dataclass(frozen=True)
class Result:
    """What `dllm_mcmc.sample` returns.

    Attributes:
        tokens: ``[C, S, L]`` response ids of each chain's draws (warm-up removed).
        stats: float32 arrays ``[C, S]`` per draw. Every run of a built-in kernel has ``log_target``
            (unnormalised log target of the current state), ``log_likelihood`` (its ``L(x, σ)``),
            ``accept_prob`` and ``length`` (tokens before the first EOS, or ``L``); the MH kernels (``imh``,
            ``power``) add ``log_proposal`` (the state's log proposal density), ``log_weight`` (their
            difference) and ``accepted`` (0/1, or the mean over a draw's moves); ``stepwise`` adds ``nfe``
            and ``forward_rows`` per draw; other kernels may add more.
        nfe: sequential forward calls over the whole run (warm-up included).
        forward_rows: rows pushed through the model over the whole run.
        wall_time: seconds.
        config: every option of the run (plain ints, floats, strings, bools, ``None``, lists), the seed
            (``config["seed"]``) among them.
        order: ``[C, S, L]`` decoding order of each draw (``order[c, s, t]``: the position committed
            ``t``-th), or ``None`` (a kernel whose params carry no ``"order"``).

    Example:
        >>> from dllm_mcmc import ExactDenoiser, sample
        >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
        >>> result = sample(toy, None, 4, target_temperature=0.5, num_chains=2, num_samples=5, warmup=2,
        ...                 progress=False)
        >>> result.tokens.shape, result.order.shape, result.stats["log_target"].shape
        (torch.Size([2, 5, 4]), torch.Size([2, 5, 4]), torch.Size([2, 5]))
        >>> sorted(result.to_datatree().children)
        ['posterior', 'sample_stats', 'tokens']
    """

    tokens: torch.Tensor
    stats: dict[str, torch.Tensor]
    nfe: int
    forward_rows: int
    wall_time: float
    config: dict = field(default_factory=dict)
    order: torch.Tensor | None = None

    @property
    def num_chains(self) -> int:
        return self.tokens.shape[0]

    @property
    def num_samples(self) -> int:
        return self.tokens.shape[1]

    @property
    def acceptance_rate(self) -> torch.Tensor:
        """``[C]`` mean acceptance per chain (of `acceptance_trace`)."""
        return self.acceptance_trace.float().mean(-1)

    @property
    def acceptance_trace(self) -> torch.Tensor:
        """``[C, S]`` MH acceptance per draw: the ``accepted`` stat (0/1, or the mean over a draw's moves),
        else ``accept_prob``. Only MH kernels (``imh``, ``power``) have one: see `move_stat` for the others.

        Raises:
            KeyError: the result has neither (a kernel that is not MH, or a result converted from Pyro's
                ``MCMC`` without a `dllm_mcmc.mcmc.pyro_mcmc.StatsRecorder`).
        """
        for name in ("accepted", "accept_prob"):
            if name in self.stats:
                return self.stats[name]
        move = self.move_stat
        raise KeyError("no MH acceptance stat ('accepted' or 'accept_prob') in this result"
                       + (f": its kernel reports {move[0]!r} instead (Result.move_stat)" if move else
                          f"; it has {sorted(self.stats)}"))

    @property
    def move_stat(self) -> tuple[str, torch.Tensor] | None:
        """``(name, [C, S] trace)`` of the statistic that says how a kernel moved, under its own name (the
        first of `MOVE_STATS` present): MH acceptance (``accepted``, ``accept_prob``), the stepwise candidate
        selection's (``selection_accept_rate``, ``selection_ess``), particle Gibbs' leaving of the reference
        (``left_reference``, ``leave_prob``) or SMC's normalised ESS (``ess``); ``None`` without any."""
        for name in MOVE_STATS:
            if name in self.stats:
                return name, self.stats[name]
        return None

    # -- conversion and files ---------------------------------------------------------------------

    def to_datatree(self) -> xr.DataTree:
        """The run as an ArviZ ``xarray.DataTree``: scalar traces in ``posterior``, the other stats in
        ``sample_stats``, ``tokens`` and ``order`` in the group ``tokens``, config and cost in the root's
        attributes (see `dllm_mcmc.mcmc.datatree`)."""
        from dllm_mcmc.mcmc.datatree import to_datatree

        return to_datatree(self)

    @classmethod
    def from_datatree(cls, tree: xr.DataTree) -> Result:
        """The `Result` a tree made by `to_datatree` came from (also one of the older layout, with
        ``tokens`` in ``posterior``)."""
        from dllm_mcmc.mcmc.datatree import datatree_fields

        return cls(**datatree_fields(tree))

    def save(self, path: str | Path, *, engine: str = "h5netcdf") -> Path:
        """Write the result to one netCDF-4 file (its `to_datatree`): tokens, order, every stat, the cost
        (``nfe``, ``forward_rows``, ``wall_time``) and the config (seed included). Needs ``h5netcdf`` and
        ``h5py`` (or ``engine="netcdf4"`` with ``netCDF4``). Returns the path.

        Example:
            >>> import tempfile, torch
            >>> result = Result(torch.tensor([[[1, 2]]]), {"log_target": torch.tensor([[-1.5]])}, 2, 2, 0.25,
            ...                 {"seed": 3, "rule": "random"})
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     back = Result.load(result.save(f"{folder}/run.nc"))
            >>> back.equals(result), back.config
            (True, {'seed': 3, 'rule': 'random'})
        """
        from dllm_mcmc.mcmc.datatree import save_datatree

        return save_datatree(self.to_datatree(), path, engine=engine)

    @classmethod
    def load(cls, path: str | Path, *, engine: str | None = None) -> Result:
        """Read a result written by `save` (tensors on the CPU; ``engine=None``: xarray picks one).

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: the file is not a readable netCDF file (truncated, another format) or holds no
                dllm_mcmc result.
        """
        from dllm_mcmc.mcmc.datatree import load_datatree

        return cls.from_datatree(load_datatree(path, engine=engine))

    def equals(self, other: Result) -> bool:
        """Every field equal: tensors (values, dtypes and shapes; NaN equal to NaN), the stats in the same
        order, the cost and the config."""
        def same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
            if a is None or b is None:
                return a is b
            a, b = a.detach().cpu(), b.detach().cpu()
            return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a.nan_to_num(), b.nan_to_num())
                                                                      and torch.equal(a.isnan(), b.isnan()))

        return (same(self.tokens, other.tokens) and same(self.order, other.order)
                and list(self.stats) == list(other.stats)
                and all(same(value, other.stats[name]) for name, value in self.stats.items())
                and (self.nfe, self.forward_rows) == (other.nfe, other.forward_rows)
                and (self.wall_time == other.wall_time or (math.isnan(self.wall_time) and math.isnan(other.wall_time)))
                and self.config == other.config)

    def texts(self, decoder: Callable[[Sequence[int]], str] | Any) -> list[list[str]]:
        """``[C][S]`` response texts: ``decoder`` is the model's `TextCodec` (``load_model(...)[1]``), a
        tokenizer, or any object with a ``decode(ids) -> str`` method, or such a function itself.

        Example:
            >>> result = Result(torch.tensor([[[0, 1], [1, 1]]]), {}, 0, 0, 0.0)
            >>> result.texts(lambda ids: "".join("ab"[i] for i in ids))
            [['ab', 'bb']]
        """
        decode = getattr(decoder, "decode", decoder)
        if not callable(decode):
            raise TypeError(f"decoder: a codec, a tokenizer or a function ids -> str, got {type(decoder).__name__}")
        return [[decode(row.tolist()) for row in chain] for chain in self.tokens.detach().cpu()]
