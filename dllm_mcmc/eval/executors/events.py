"""What an executor reports back to the driver, one event per thing that happened to a job.

An executor runs *jobs* (the runner's units) on workers. A worker is built once per worker process by
calling a picklable *factory* (``factory() -> draw``; loading the model happens there), then
``draw(job)`` runs each job it is handed. The executor yields:

- `Done` with the job's result (the driver is the only writer: it stores the result);
- `Failed` when ``draw`` raised (a bug, a bad problem) or when workers died `MAX_ATTEMPTS` times on the job;
  nothing is stored for it and the run goes on;
- `Retried` when the worker running the job died (``SIGKILL``, out of memory): the job goes back in the
  queue and runs again on another worker, from its own seed, so nothing is lost or duplicated.

>>> event = failure(3, ValueError("bad problem"))
>>> event.index, event.error
(3, 'ValueError: bad problem')
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

MAX_ATTEMPTS = 3
"""Times a job is started before workers dying on it make it `Failed` (a job that always kills its worker)."""

WorkerFactory = Callable[[], Callable[[Any], Any]]
"""Picklable; called once in each worker process: loads what the jobs need and returns ``draw(job)``."""


@dataclass(frozen=True)
class Done:
    """Job ``index`` (its position in the submitted list) finished with ``result``."""

    index: int
    result: Any


@dataclass(frozen=True)
class Failed:
    """Job ``index`` raised ``error`` (one line, ``Type: message``; ``details``: the traceback)."""

    index: int
    error: str
    details: str = ""


@dataclass(frozen=True)
class Retried:
    """The worker running job ``index`` died (``reason``); the job is queued again."""

    index: int
    reason: str


Event = Done | Failed | Retried


class Executor(Protocol):
    """Runs jobs on ``workers`` workers of ``threads`` torch threads each, yielding events as they happen."""

    @property
    def name(self) -> str: ...

    @property
    def workers(self) -> int:
        """Workers used (for Ray, known once ``run`` has joined the cluster)."""
        ...

    @property
    def threads(self) -> int | None:
        """torch threads per worker (``None``: the process's setting)."""
        ...

    def run(self, jobs: Sequence[Any], factory: WorkerFactory) -> Generator[Event, None, None]:
        """Yield exactly one `Done` or `Failed` per job (any order), with `Retried` events in between."""
        ...


def failure(index: int, error: BaseException) -> Failed:
    """The `Failed` event of ``error`` raised by job ``index``, with its traceback."""
    message = " ".join(str(error).split())
    return Failed(index, f"{type(error).__name__}: {message}" if message else type(error).__name__,
                  "".join(traceback.format_exception(error)))


def gave_up(index: int, reason: str) -> Failed:
    """The `Failed` event of a job whose workers died `MAX_ATTEMPTS` times."""
    return Failed(index, f"workers died {MAX_ATTEMPTS} times running it (last: {reason})")
