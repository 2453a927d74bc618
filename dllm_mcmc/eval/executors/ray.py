"""The Ray executor: workers are Ray actors on a local or multi-machine cluster (optional extra ``ray``).

``run`` joins the cluster at ``address`` (or starts a local one, or uses the one this process already
joined), then starts the actors: one per GPU with ``num_gpus=1`` when the model runs on ``"cuda"`` (Ray
gives each its own device), else ``workers`` CPU actors of ``num_cpus=threads`` (default: the cluster's
CPUs divided by ``threads``). Each actor sets its torch threads and builds its ``draw`` once (loading the
model); the driver keeps every actor busy with one job and collects results with ``ray.wait``. An actor
that dies (``SIGKILL``, a lost machine) is replaced, and its job runs again elsewhere (`Retried`); a job
that raises is `Failed`. The driver stays the only writer of the results file.

Ray is imported only here, when this executor runs: ``pip install 'dllm-mcmc[ray]'``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections import Counter, deque
from collections.abc import Generator, Sequence
from typing import Any

from dllm_mcmc._checks import positive_int
from dllm_mcmc.eval.executors.events import (
    MAX_ATTEMPTS,
    Done,
    Event,
    Retried,
    WorkerFactory,
    failure,
    gave_up,
)
from dllm_mcmc.eval.executors.threads import use_threads

INSTALL = "pip install 'dllm-mcmc[ray]'"


def require_ray() -> None:
    """``ValueError`` naming the extra to install when Ray is missing."""
    if importlib.util.find_spec("ray") is None:
        raise ValueError(f"the ray executor needs Ray, which is not installed: {INSTALL}")


class RayExecutor:
    """Ray actors as workers: ``workers`` (default: one per GPU, else CPUs / ``threads``), ``address`` of
    the cluster (``None``: ``RAY_ADDRESS`` or a new local one), ``gpus``: one GPU per actor."""

    name = "ray"

    def __init__(self, workers: int | None = None, threads: int = 1, address: str | None = None,
                 gpus: bool = False) -> None:
        require_ray()
        self.threads = positive_int("threads", threads)
        self.requested = None if workers is None else positive_int("workers", workers)
        self.workers = self.requested or 1  # the cluster decides the default in run()
        self.address, self.gpus = address, gpus

    def run(self, jobs: Sequence[Any], factory: WorkerFactory) -> Generator[Event, None, None]:
        if not jobs:
            return
        import ray

        joined = not ray.is_initialized()
        if joined:
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING)
        actors: list[Any] = []
        try:
            options = self._actor_options(ray.cluster_resources())
            remote: Any = ray.remote(_Actor).options(max_restarts=0, max_task_retries=0, **options)
            queue, attempts = deque(range(len(jobs))), Counter[int]()
            running: dict[Any, tuple[Any, int | None]] = {}  # future -> (actor, job index; None: loading)
            idle: list[Any] = []

            def start() -> None:
                actor = remote.remote(factory, self.threads)
                actors.append(actor)
                running[actor.ready.remote()] = (actor, None)

            self.workers = min(self.workers, len(jobs))
            for _ in range(self.workers):
                start()
            finished, deaths_while_loading = 0, 0
            while finished < len(jobs):
                while idle and queue:
                    worker, next_job = idle.pop(), queue.popleft()
                    attempts[next_job] += 1
                    running[worker.run.remote(next_job, jobs[next_job])] = (worker, next_job)
                (future,), _ = ray.wait(list(running), num_returns=1)
                actor, index = running.pop(future)
                try:
                    kind, payload = ray.get(future)
                except ray.exceptions.RayTaskError as error:  # raised outside draw(): the worker's own bug
                    raise error.as_instanceof_cause() from None
                except ray.exceptions.RayError as error:  # the actor died (RayActorError) or its node went
                    reason = f"Ray actor died ({type(error).__name__})"
                    ray.kill(actor, no_restart=True)
                    actors.remove(actor)
                    if index is None:
                        deaths_while_loading += 1
                        if deaths_while_loading >= MAX_ATTEMPTS * self.workers:
                            raise RuntimeError(f"Ray workers keep dying while loading the model ({reason})") from error
                    elif attempts[index] >= MAX_ATTEMPTS:
                        finished += 1
                        yield gave_up(index, reason)
                    else:
                        queue.appendleft(index)
                        yield Retried(index, reason)
                    if queue:
                        start()
                    continue
                if kind == "setup-error":
                    raise payload
                idle.append(actor)
                if kind == "ready":
                    continue
                assert index is not None  # a job's answer, not the actor's "ready"
                finished += 1
                yield Done(index, payload) if kind == "done" else payload
        finally:
            for actor in actors:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # already gone
                    pass
            if joined:
                ray.shutdown()

    def _actor_options(self, resources: dict) -> dict:
        """``num_gpus``/``num_cpus`` of each actor, and the default number of actors, from the cluster."""
        gpus = int(resources.get("GPU", 0))
        if self.gpus:
            if gpus < 1:
                raise ValueError("the model's device is 'cuda' but the Ray cluster has no GPU")
            self.workers = self.requested or gpus
            return {"num_gpus": 1, "num_cpus": self.threads}
        self.workers = self.requested or max(1, int(resources.get("CPU", 1)) // self.threads)
        return {"num_cpus": self.threads}


class _Actor:
    """One Ray worker: threads set and ``draw`` built once, in its own process."""

    def __init__(self, factory: WorkerFactory, threads: int) -> None:
        self.error: BaseException | None = None
        try:
            use_threads(threads)
            self.draw = factory()
        except Exception as error:  # reported by ready(): the run stops with it
            self.error = error

    def ready(self) -> tuple[str, Any]:
        return ("ready", None) if self.error is None else ("setup-error", self.error)

    def run(self, index: int, job: Any) -> tuple[str, Any]:
        event: Any
        try:
            event = self.draw(job)
        except Exception as error:
            return "failed", failure(index, error)
        return "done", event

