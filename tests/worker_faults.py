"""A worker that kills itself once in the middle of a unit: the fault of the executor tests
(tests/eval/test_executors.py), which check that a run resumed past it loses and duplicates no record.

`KillOnce` wraps the runner's worker factory (a `UnitDrawer`). It travels to the workers by pickle, so it
lives in a module of its own that they can import: spawned local workers inherit the driver's
``sys.path`` (where pytest put ``tests/``), Ray actors get ``TESTS`` on their ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

TESTS = str(Path(__file__).resolve().parent)


@dataclass(frozen=True)
class KillOnce:
    """``drawer``'s worker, except that the worker handed the unit (``method``, ``task``, ``problem``)
    while the ``marker`` file does not exist creates it and kills itself with ``SIGKILL``: one worker death
    mid-unit, exactly once."""

    drawer: Callable[[], Callable[[tuple], list[dict]]]
    method: str
    task: str
    problem: str
    marker: str

    def __call__(self) -> Callable[[tuple], list[dict]]:
        return partial(self.draw, self.drawer())

    def draw(self, draw: Callable[[tuple], list[dict]], job: tuple) -> list[dict]:
        method, task, problems = job
        if (method, task) == (self.method, self.task) and any(p.id == self.problem for p in problems):
            try:
                Path(self.marker).open("x").close()
            except FileExistsError:  # killed once already
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return draw(job)
