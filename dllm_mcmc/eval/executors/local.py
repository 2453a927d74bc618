"""The local executor: worker processes on this machine, no Ray (the laptop or single-server case).

Each worker is a process started with the *spawn* method (forking a process that already ran torch can
deadlock), talking to the driver over its own pipe, so the death of one worker leaves the others and
their loaded models alone. A worker sets its torch threads, builds its ``draw`` once (loading the model),
says it is ready, then draws the jobs it is sent, one at a time. A worker that dies (``SIGKILL``, out of
memory) is replaced and the job it held is queued again (`Retried`); a job that raises is `Failed`.

When the model runs on ``"cuda"`` each worker sees one GPU (``CUDA_VISIBLE_DEVICES``), round-robin
over the visible ones; by default there is one worker per GPU, else one per ``threads`` cores.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import Counter, deque
from collections.abc import Generator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from dllm_mcmc._checks import positive_int
from dllm_mcmc.eval.executors.events import (
    MAX_ATTEMPTS,
    Done,
    Event,
    Failed,
    Retried,
    WorkerFactory,
    failure,
    gave_up,
)
from dllm_mcmc.eval.executors.threads import use_threads


def visible_gpus() -> list[str]:
    """The GPU ids a child process may be pinned to: ``CUDA_VISIBLE_DEVICES``'s, else every device's."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device.strip() for device in visible.split(",") if device.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


class LocalExecutor:
    """``workers`` processes of ``threads`` torch threads each; ``gpus``: pin each worker to one GPU."""

    name = "local"

    def __init__(self, workers: int | None = None, threads: int = 1, gpus: bool = False) -> None:
        self.threads = positive_int("threads", threads)
        self.devices: list[str | None] = list(visible_gpus()) if gpus else []
        if gpus and not self.devices:
            raise ValueError("the model's device is 'cuda' but this machine shows no GPU")
        default = len(self.devices) if self.devices else max(1, (os.cpu_count() or 1) // self.threads)
        self.workers = positive_int("workers", workers) if workers is not None else default

    def run(self, jobs: Sequence[Any], factory: WorkerFactory) -> Generator[Event, None, None]:
        if not jobs:
            return
        context = multiprocessing.get_context("spawn")
        queue, attempts = deque(range(len(jobs))), Counter[int]()
        self.workers = min(self.workers, len(jobs))
        slots = {slot: self._start(context, factory, slot) for slot in range(self.workers)}
        finished, deaths_while_loading = 0, 0
        try:
            while finished < len(jobs):
                for worker in slots.values():
                    if worker.ready and worker.job is None and queue:
                        worker.job = queue.popleft()
                        attempts[worker.job] += 1
                        try:
                            worker.connection.send((worker.job, jobs[worker.job]))
                        except OSError:  # it has just died: its sentinel says so below, and the job goes back
                            pass
                waitables: dict[Any, _Worker] = {}
                for worker in slots.values():
                    waitables[worker.connection] = waitables[worker.process.sentinel] = worker
                for worker in {waitables[ready] for ready in wait(list(waitables))}:
                    message = worker.receive()
                    if message is not None:
                        kind, payload = message
                        if kind == "setup-error":
                            raise payload
                        if kind == "ready":
                            worker.ready = True
                            continue
                        finished += 1
                        worker.job = None
                        yield Done(payload[0], payload[1]) if kind == "done" else payload
                        continue
                    if worker.process.is_alive():
                        continue  # woken without a message: nothing to do yet
                    # the worker died: queue its job again (or give up on it) and start a replacement
                    reason = worker.death()
                    if worker.job is None:
                        deaths_while_loading += not worker.ready
                        if deaths_while_loading >= MAX_ATTEMPTS * self.workers:
                            raise RuntimeError(f"local workers keep dying while loading the model ({reason})")
                    elif attempts[worker.job] >= MAX_ATTEMPTS:
                        finished += 1
                        yield gave_up(worker.job, reason)
                    else:
                        queue.appendleft(worker.job)
                        yield Retried(worker.job, reason)
                    del slots[worker.slot]
                    if queue:  # work is left: replace the worker (else the others finish what is in flight)
                        slots[worker.slot] = self._start(context, factory, worker.slot)
            for worker in slots.values():
                worker.stop()
        finally:
            for worker in slots.values():
                worker.kill()

    def _start(self, context: Any, factory: WorkerFactory, slot: int) -> _Worker:
        device = self.devices[slot % len(self.devices)] if self.devices else None
        return _Worker(context, factory, self.threads, device, slot)


class _Worker:
    """The driver's handle on one worker process: its pipe, whether it is ready, and the job it holds."""

    def __init__(self, context: Any, factory: WorkerFactory, threads: int, device: str | None, slot: int) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, factory, threads, device),
                                       name=f"dllm-mcmc-worker-{slot}")
        self.process.start()
        child.close()
        self.slot, self.ready = slot, False
        self.job: int | None = None

    def receive(self) -> tuple[str, Any] | None:
        """The worker's next message, or ``None`` when there is none (or only a torn one: it died writing)."""
        try:
            return self.connection.recv() if self.connection.poll() else None
        except Exception:  # EOF, a broken pipe, a half-written pickle
            return None

    def death(self) -> str:
        """Reap the dead process and say how it ended."""
        self.kill()
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"worker process killed by {signal.Signals(-code).name}"
        return f"worker process exited with code {code}"

    def stop(self) -> None:
        try:
            self.connection.send(None)
        except OSError:
            pass
        self.process.join(timeout=10)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.connection.close()


def _serve(connection: Connection, factory: WorkerFactory, threads: int, device: str | None) -> None:
    """A worker process's life: set threads (and its GPU), build ``draw``, then draw what the driver sends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops the workers
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device  # before anything touches CUDA in this process
    try:
        use_threads(threads)
        draw = factory()
    except BaseException as error:
        try:
            connection.send(("setup-error", error))
        except Exception:  # an exception that does not pickle: send its text
            connection.send(("setup-error", RuntimeError(failure(-1, error).error)))
        return
    connection.send(("ready", None))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # the driver is gone
            return
        if message is None:
            return
        index, job = message
        event: tuple[int, Any] | Failed
        try:
            event = (index, draw(job))
        except Exception as error:
            event = failure(index, error)
        connection.send(("done", event) if isinstance(event, tuple) else ("failed", event))
