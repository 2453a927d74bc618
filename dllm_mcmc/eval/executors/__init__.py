"""Where the runner's units are drawn: in this process, in worker processes, or on Ray actors.

========  ==========================================================================================
inline    this process, one unit after the other (the default)
local     ``workers`` processes on this machine (spawned; one per GPU when the model is on ``cuda``)
ray       Ray actors on a local or multi-machine cluster (one per GPU, or CPU actors); extra ``ray``
========  ==========================================================================================

Every executor yields the same events (`dllm_mcmc.eval.executors.events`), and the driver, the only
writer, stores them; a unit's records do not depend on the executor that drew them.

>>> make_executor("local", workers=2, threads=1).workers
2
"""

from __future__ import annotations

from dllm_mcmc._checks import one_of, positive_int
from dllm_mcmc.eval.executors.events import Done, Event, Executor, Failed, Retried, WorkerFactory
from dllm_mcmc.eval.executors.inline import InlineExecutor
from dllm_mcmc.eval.executors.local import LocalExecutor

EXECUTORS = ("inline", "local", "ray")


def make_executor(name: str, workers: int | None = None, threads: int | None = None, address: str | None = None,
                  gpus: bool = False) -> Executor:
    """The executor called ``name``: ``workers`` workers (local, ray) of ``threads`` torch threads each
    (default 1; inline: ``None`` leaves the process's setting), ``address`` of a Ray cluster, ``gpus``:
    one GPU per worker."""
    one_of("executor", name, EXECUTORS)
    if threads is not None:
        positive_int("threads", threads)
    if name == "inline":
        return InlineExecutor(threads)
    if name == "local":
        return LocalExecutor(workers, threads or 1, gpus)
    from dllm_mcmc.eval.executors.ray import RayExecutor

    return RayExecutor(workers, threads or 1, address, gpus)


__all__ = ["EXECUTORS", "Done", "Event", "Executor", "Failed", "Retried", "WorkerFactory", "make_executor"]
