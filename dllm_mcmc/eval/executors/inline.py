"""The inline executor: every job in this process, one after the other (the default, and the reference
the other executors must match record for record)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from dllm_mcmc.eval.executors.events import Done, Event, WorkerFactory, failure
from dllm_mcmc.eval.executors.threads import use_threads


class InlineExecutor:
    """Build the worker here and run the jobs in order; ``threads``: torch threads for the run (``None``:
    leave the process's setting), restored afterwards."""

    name = "inline"

    def __init__(self, threads: int | None = None) -> None:
        self.workers, self.threads = 1, threads

    def run(self, jobs: Sequence[Any], factory: WorkerFactory) -> Generator[Event, None, None]:
        if not jobs:
            return
        previous = None if self.threads is None else use_threads(self.threads)
        try:
            draw = factory()  # an error here (no such model...) is the run's, not a job's: it propagates
            for index, job in enumerate(jobs):
                try:
                    result = draw(job)
                except Exception as error:
                    yield failure(index, error)
                else:
                    yield Done(index, result)
        finally:
            if previous is not None:
                use_threads(previous)
