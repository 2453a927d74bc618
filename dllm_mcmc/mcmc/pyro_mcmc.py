"""From a ``pyro.infer.MCMC`` run of a dllm_mcmc kernel to a `Result` (and so to ArviZ and to a file).

Pyro sees one chain per ``num_chains`` it runs (usually 1), each holding the ``C`` chains a kernel
batches: ``get_samples(group_by_chain=True)[site]`` is ``[P, S, C, ...]``. `result_from_pyro` makes
those ``P · C`` chains the `Result`'s chains, the scalar sites (``log_target``, ``log_likelihood``,
``length``) its stats, and turns the token ids back into int64 (Pyro stores every saved site of a
draw in one float tensor once one site is float). Per-draw kernel statistics (``accept_prob``,
``accepted``, ...) are not sample sites: pass a `StatsRecorder` as the run's ``hook_fn`` to keep them.

Example:
    >>> from pyro.infer import MCMC
    >>> from dllm_mcmc import ExactDenoiser, Power, TemperedTarget
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> kernel = Power(TemperedTarget(toy, None, 4, target_temperature=0.5), num_chains=2)
    >>> recorder = StatsRecorder()
    >>> mcmc = MCMC(kernel, num_samples=30, warmup_steps=5, hook_fn=recorder, disable_progbar=True)
    >>> mcmc.run()
    >>> result = result_from_pyro(mcmc, recorder)
    >>> result.tokens.shape, result.tokens.dtype, sorted(result.stats)[:4]
    (torch.Size([2, 30, 4]), torch.int64, ['accept_prob', 'accepted', 'cut', 'length'])
    >>> result.nfe == kernel.cost[0], result.config["kernel"], result.config["warmup"]
    (True, 'power', 5)
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from dllm_mcmc.mcmc.kernel import response_length
from dllm_mcmc.mcmc.result import Result
from dllm_mcmc.mcmc.runner import _target_config
from dllm_mcmc.target import TemperedTarget

STATE_SITES = ("tokens", "order")


class StatsRecorder:
    """A Pyro ``hook_fn`` that keeps each kept draw's ``kernel.info`` (the per-draw statistics `sample`
    puts in `Result.stats`), the cost per Pyro chain and the sampling time.

    ``MCMC(kernel, ..., hook_fn=StatsRecorder())``; then `result_from_pyro` (or
    `dllm_mcmc.diagnostics.from_pyro_mcmc`) reads it. Pyro calls the hook in the process that runs a
    chain: it sees nothing of chains Pyro runs in worker processes (``num_chains > 1`` with enough
    CPUs); batch chains inside the kernel instead (its ``num_chains``).

    Attributes:
        infos: one dict of ``[C]`` tensors per kept draw, Pyro's chains one after the other.
        costs: ``(nfe, forward_rows)`` of each Pyro chain (the kernel's ``cost`` at its last step).
        seconds: time from the first to the last step seen (``nan`` before any).
    """

    def __init__(self) -> None:
        self.infos: list[dict[str, torch.Tensor]] = []
        self.costs: dict[str, tuple[int, int]] = {}
        self._first: float | None = None
        self._last: float | None = None

    def __call__(self, kernel: Any, params: dict[str, torch.Tensor], stage: str, i: int) -> None:
        now = time.perf_counter()
        self._first = now if self._first is None else self._first
        self._last = now
        chain = stage.partition(" ")[2]  # Pyro's stage: "Warmup", "Sample", or "Sample [k]" for chain k
        cost = getattr(kernel, "cost", None)
        if cost is not None:
            self.costs[chain] = (int(cost[0]), int(cost[1]))
        if stage.startswith("Sample"):
            info = getattr(kernel, "info", None)
            if info is None:
                raise ValueError("StatsRecorder: the kernel has no info after sample(); a kernel must set its "
                                 "per-chain info")
            self.infos.append({name: value.detach().clone() for name, value in info.items()})

    @property
    def seconds(self) -> float:
        return math.nan if self._first is None or self._last is None else self._last - self._first

    @property
    def cost(self) -> tuple[int, int]:
        """``(nfe, forward_rows)`` summed over Pyro's chains."""
        return (sum(nfe for nfe, _ in self.costs.values()), sum(rows for _, rows in self.costs.values()))


def result_from_pyro(mcmc: Any, recorder: StatsRecorder | None = None) -> Result:
    """The `Result` of a finished ``pyro.infer.MCMC`` run of a dllm_mcmc kernel.

    Chains: Pyro's ``P`` chains times the kernel's ``C`` batched ones, chain ``p · C + c``. ``tokens``
    (and ``order``) come back as int64; every float site shaped like a per-chain scalar becomes a stat
    (``length`` is computed from the tokens when the run did not save it); with ``recorder`` (the run's
    ``hook_fn``) each draw's ``kernel.info`` is added, and the cost and time are the recorder's;
    without it the cost is the kernel's (its last Pyro chain's) and ``wall_time`` is ``nan``. The config
    holds the kernel's name, seed and target settings, the run's sizes and ``pyro_num_chains``.

    Raises:
        ValueError: the run saved no ``tokens`` site (``save_params`` without it), or the recorder saw a
            different number of draws (chains run in worker processes).
    """
    samples = mcmc.get_samples(group_by_chain=True)
    if "tokens" not in samples:
        raise ValueError(f"the run saved no 'tokens' site (its sites: {sorted(samples)}); run MCMC without "
                         f"save_params, or with 'tokens' among them, to convert it")
    kernel = mcmc.kernel
    pyro_chains, num_samples, kernel_chains = samples["tokens"].shape[:3]

    def chains_first(site: torch.Tensor) -> torch.Tensor:  # [P, S, C, ...] -> [P * C, S, ...]
        site = site.movedim(2, 1)
        return site.reshape(pyro_chains * kernel_chains, num_samples, *site.shape[3:])

    tokens = chains_first(samples["tokens"])
    tokens = tokens if not tokens.is_floating_point() else tokens.round()
    order = chains_first(samples["order"]).round().long() if "order" in samples else None
    stats = {name: chains_first(value).float() for name, value in samples.items()
             if name not in STATE_SITES and value.shape == (pyro_chains, num_samples, kernel_chains)}
    target = getattr(kernel, "target", None)
    denoiser = getattr(target, "denoiser", None)
    if "length" not in stats:
        stats["length"] = response_length(tokens, getattr(denoiser, "eos_id", None)).float()
    nfe, forward_rows = getattr(kernel, "cost", (0, 0))
    wall_time = math.nan
    if recorder is not None:
        if len(recorder.infos) != pyro_chains * num_samples:
            raise ValueError(f"the recorder kept {len(recorder.infos)} draws, the run {pyro_chains} x {num_samples}: "
                             f"pass it as this run's hook_fn (Pyro's chains in worker processes are not seen)")
        if recorder.infos:
            for name in recorder.infos[0]:
                if name not in stats:
                    per_draw = torch.stack([info[name] for info in recorder.infos])  # [P * S, C]
                    stats[name] = chains_first(per_draw.reshape(pyro_chains, num_samples, kernel_chains)).float()
        nfe, forward_rows = recorder.cost
        wall_time = recorder.seconds
    config: dict[str, Any] = {
        "kernel": getattr(kernel, "name", type(kernel).__name__),
        "num_chains": pyro_chains * kernel_chains,
        "num_samples": num_samples,
        "warmup": mcmc.warmup_steps,
        "seed": getattr(kernel, "seed", None),
        "pyro_num_chains": pyro_chains,
    }
    if isinstance(target, TemperedTarget):
        config.update(gen_length=target.gen_length, prompt_length=target.prompt_length,
                      denoiser=type(getattr(target.denoiser, "inner", target.denoiser)).__name__)
    config.update(_target_config(target, getattr(kernel, "proposal", None)))
    return Result(tokens=tokens.long(), stats=stats, nfe=int(nfe), forward_rows=int(forward_rows),
                  wall_time=float(wall_time), config=config, order=order)
