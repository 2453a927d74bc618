r"""Answer checkers for the paper's benchmarks: symbolic maths, AIME integers and generated code.

Maths answers go to ``math_verify`` in a worker process: sympy can spin for minutes or eat all memory
on an adversarial answer (``\boxed{9^{9^{9^{9}}}}``), and a hard per-call timeout is only possible
when the work can be killed from outside. Code goes through the sandbox
(`dllm_mcmc.eval.sandbox`). The AIME check is plain string work and runs in process.

>>> check_integer(r"\boxed{033}", 33), check_integer("1,000", "1000"), check_integer("2.5", 2)
(True, True, False)
>>> with MathChecker(workers=1) as checker:              # doctest: +SKIP
...     checker.check(r"\frac{1}{2}", "0.5")
True

Running a model's code is never implicit: the code benchmarks grade only when built with
``allow_code_execution=True`` (`CodeExecutionNotAllowed` otherwise), and the runner needs
``--allow-code-execution`` or ``allow_code_execution = true``. `isolation_is_full` tells whether the
sandbox's isolation level (``SandboxResult.isolation``) is the strongest it offers; `isolation_notice`
words it, and `WeakIsolationWarning` is what a weaker level warns with.

>>> isolation_is_full("netns+rofs+pidns+nobody+audit"), isolation_is_full("audit")
(True, False)
>>> isolation_is_full("netns+rofs+pidns+userns+audit", parent_is_root=False)  # a non-root parent's child
True
"""

from __future__ import annotations

import atexit
import importlib.util
import math
import multiprocessing
import os
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from dllm_mcmc.eval.checking.extract import last_boxed

if TYPE_CHECKING:  # the sandbox is imported lazily so this module loads without it
    from dllm_mcmc.eval.sandbox import SandboxLimits, SandboxResult

__all__ = [
    "CODE_EXECUTION_HINT",
    "EVAL_EXTRA_HINT",
    "CodeExecutionNotAllowed",
    "MathChecker",
    "WeakIsolationWarning",
    "check_code",
    "check_integer",
    "check_math",
    "default_math_checker",
    "integer_value",
    "isolation_is_full",
    "isolation_notice",
    "missing_isolation",
]

EVAL_EXTRA_HINT = "pip install 'dllm-mcmc[eval]'"


# --------------------------------------------------------------------------------------------------
# AIME: exact integers


def integer_value(value: Any) -> int | None:
    r"""The integer an answer spells, or None when it is not one.

    Strips whitespace, ``$``, a ``\boxed{}``, ``\text{}``, thousands separators (``1,000``,
    ``1{,}000``, ``1\,000``) and leading zeros; ``12.0`` counts as 12, ``12.5`` and ``x`` do not.

    >>> integer_value(r"$\boxed{ 070 }$"), integer_value("1{,}024"), integer_value(7.0)
    (70, 1024, 7)
    >>> integer_value("3/4") is None, integer_value(True) is None
    (True, True)
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    text = str(value).strip().replace("$", "")
    boxed = last_boxed(text)
    if boxed is not None:
        text = boxed
    text = re.sub(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\{,\}|\\[,!;: ]|~|\s", "", text).replace(",", "")
    match = re.fullmatch(r"([+-]?\d+)(?:\.0+)?", text)
    return int(match.group(1)) if match else None


def check_integer(answer: Any, reference: Any) -> bool:
    """Exact integer match, as AIME grades: both sides must spell an integer (see `integer_value`).

    >>> check_integer("  0204", "204"), check_integer(None, 5), check_integer("5", "five")
    (True, False, False)
    """
    got, want = integer_value(answer), integer_value(reference)
    return got is not None and want is not None and got == want


# --------------------------------------------------------------------------------------------------
# Maths: math_verify in a killable worker process


def require_math_verify() -> None:
    """Raise ImportError with the install hint when ``math_verify`` is not installed."""
    if importlib.util.find_spec("math_verify") is None:
        raise ImportError(f"checking maths answers needs math-verify: {EVAL_EXTRA_HINT}")


def _as_latex(text: str) -> str:
    # math_verify extracts from LaTeX environments; a box is its highest-priority anchor and, unlike
    # $...$, survives answers that contain a dollar sign themselves.
    return text if "\\boxed" in text else "\\boxed{" + text + "}"


def _worker_setup(memory_mb: int | None) -> None:
    """Runs once in each worker: import math_verify up front and cap the address space."""
    import logging

    import math_verify  # noqa: F401  (paid once here, not inside the first call's timeout)

    # A timed-out comparison already grades as wrong; its warning would only flood a long run's log.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    if not memory_mb:
        return
    try:
        import os
        import resource

        # The cap is relative to what the worker already maps (interpreter, sympy, and whatever the
        # package import pulled in), so it bounds what a single answer can allocate.
        with open("/proc/self/statm") as handle:
            mapped = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = mapped + memory_mb * 2**20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        pass  # not Linux: the wall-clock timeout still bounds every call


def _noop() -> None:
    return None


def _verify_in_worker(answer: str, reference: str, seconds: int) -> bool:
    from math_verify import parse, verify

    # math_verify's own alarms (signal.alarm, fine in a worker's main thread) catch most slow
    # comparisons cheaply; the parent's timeout is the backstop for work that ignores signals.
    gold = parse(_as_latex(reference), parsing_timeout=seconds)
    predicted = parse(_as_latex(answer), parsing_timeout=seconds)
    if not gold or not predicted:
        return False
    return bool(verify(gold, predicted, timeout_seconds=seconds))


def _normalised(text: str) -> str:
    return re.sub(r"\s+", "", text)


class MathChecker:
    r"""Checks maths answers against references with ``math_verify`` in ``workers`` processes.

    Each call waits at most ``timeout`` seconds (``check`` may lower or raise it per call); a worker
    that overruns is killed and the pool is rebuilt on the next call, so one pathological answer
    costs one timeout, not the run. Workers are started with ``spawn`` (a fork of a process holding
    torch threads can deadlock) on first use; ``startup_timeout`` bounds that start, which is not
    charged to any call's timeout. ``memory_mb`` caps what a worker may allocate beyond its start
    (Linux; None for no cap). Thread-safe: at most ``workers`` calls run at once and the rest wait
    for a slot before their clock starts.

    >>> with MathChecker(workers=1, timeout=5.0) as checker:     # doctest: +SKIP
    ...     checker.check(r"\frac12", "0.5"), checker.check("3", "4")
    (True, False)
    """

    def __init__(self, workers: int = 1, timeout: float = 5.0, memory_mb: int | None = 2048,
                 startup_timeout: float = 180.0) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.workers = workers
        self.timeout = float(timeout)
        self.memory_mb = memory_mb
        self.startup_timeout = float(startup_timeout)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(workers)
        self.restarts = 0
        """How many times a hung or dead pool was replaced (a diagnostic for long runs)."""

    # -- public API --------------------------------------------------------------------------------

    def check(self, answer: str | None, reference: str, timeout: float | None = None) -> bool:
        """Whether ``answer`` equals ``reference`` mathematically; False on timeout or error."""
        return self.judge(answer, reference, timeout)[0]

    def judge(self, answer: str | None, reference: str,
              timeout: float | None = None) -> tuple[bool, str]:
        """``(correct, reason)``; reason is ``ok``, ``wrong answer``, ``no answer``, ``timeout``,
        ``memory`` or ``error``."""
        if answer is None or not str(answer).strip():
            return False, "no answer"
        answer, reference = str(answer), str(reference)
        if _normalised(answer) == _normalised(reference):
            return True, "ok"  # the common case needs no sympy and no process round trip
        seconds = self.timeout if timeout is None else float(timeout)
        inner = max(1, math.floor(seconds) - 1)
        self._ensure_pool()  # outside the try: a missing package or a failed start must raise
        try:
            correct = self._call(_verify_in_worker, (answer, reference, inner), seconds)
        except FutureTimeout:
            return False, "timeout"
        except MemoryError:
            return False, "memory"
        except (BrokenExecutor, Exception):  # noqa: BLE001 - a checker must grade, not crash the run
            return False, "error"
        return (True, "ok") if correct else (False, "wrong answer")

    def close(self) -> None:
        """Stop the workers (idempotent); the checker restarts them if used again."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> MathChecker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- pool management ---------------------------------------------------------------------------

    def _ensure_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is not None:
                return self._pool
            require_math_verify()
            pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_worker_setup, initargs=(self.memory_mb,))
            # Start every worker now so that interpreter start-up and the sympy import are not
            # mistaken for a hung comparison by the first calls' timeouts.
            warmups = [pool.submit(_noop) for _ in range(self.workers)]
            try:
                for future in warmups:
                    future.result(timeout=self.startup_timeout)
            except BaseException as error:
                self._terminate(pool)
                if isinstance(error, (BrokenExecutor, FutureTimeout)):
                    raise RuntimeError(
                        "the math checker's worker processes did not start; they are spawned, so a "
                        "script that checks answers must guard its entry point with "
                        "`if __name__ == '__main__':`") from error
                raise
            self._pool = pool
            return pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
                self.restarts += 1
        self._terminate(pool)

    @staticmethod
    def _terminate(pool: ProcessPoolExecutor) -> None:
        # ProcessPoolExecutor has no public way to stop a busy worker (3.14 adds one); its process
        # table is the only handle on a worker stuck in C code that ignores signals.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            if process.is_alive():
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=5)

    def _call(self, function: Callable[..., Any], args: tuple, timeout: float) -> Any:
        """Run ``function(*args)`` in a worker within ``timeout`` seconds, or raise FutureTimeout."""
        with self._slots:
            for attempt in range(2):
                pool = self._ensure_pool()
                try:
                    future = pool.submit(function, *args)
                    return future.result(timeout=timeout)
                except FutureTimeout:
                    self._discard(pool)
                    raise
                except BrokenExecutor:
                    # Another call's timeout killed the pool under us, or a worker died (a crash, the
                    # OOM killer): retry once on a fresh pool before giving up.
                    self._discard(pool)
                    if attempt == 1:
                        raise
        raise AssertionError("unreachable")


_default_checker: MathChecker | None = None
_default_lock = threading.Lock()


def default_math_checker() -> MathChecker:
    """The shared checker behind `check_math` (one worker), created on first use."""
    global _default_checker
    with _default_lock:
        if _default_checker is None:
            require_math_verify()
            _default_checker = MathChecker(workers=1)
            atexit.register(_default_checker.close)
        return _default_checker


def check_math(answer: str | None, reference: str, timeout: float = 5.0) -> bool:
    r"""Whether ``answer`` equals ``reference`` mathematically (``math_verify``, hard ``timeout``).

    Both sides are LaTeX without delimiters, e.g. the content of a ``\boxed{}``.

    >>> check_math(r"\frac{1}{2}", "0.5")          # doctest: +SKIP
    True
    """
    return default_math_checker().check(answer, reference, timeout=timeout)


# --------------------------------------------------------------------------------------------------
# Code: the opt-in, the sandbox and its isolation level

CODE_EXECUTION_HINT = ("pass --allow-code-execution to dllm-mcmc eval, or set allow_code_execution = true in "
                       "the config")
"""How a user of the command line or of a config allows code tasks to run the model's code."""


class CodeExecutionNotAllowed(ValueError):
    """A task would run model-generated code to grade it, and nobody asked for that.

    The code benchmarks refuse to grade unless built with ``allow_code_execution=True``; the runner
    refuses a config with code tasks, before any model is loaded, unless ``allow_code_execution`` is
    true (``--allow-code-execution``)."""


class WeakIsolationWarning(UserWarning):
    """The sandbox runs code here with fewer isolation layers than it offers (`isolation_is_full`)."""


_LAYER_MEANING = {
    "netns": "no network namespace, so only the audit hook keeps the code off the network",
    "rofs": "no read-only file system, so only the audit hook and file permissions stop writes outside the "
            "program's directory",
    "nobody": "the code runs as root (this process is root and the user nobody cannot run the interpreter), "
              "so file permissions do not confine it and RLIMIT_NPROC is not enforced",
    "pidns": "no PID namespace, so a process the code starts is not killed with it by the kernel and the "
             "grader's process is visible to it",
    "userns": "a user namespace without the user nobody: the code is uid 0 inside it, without capabilities on "
              "the host",
    "audit": "no audit hook",
}


def _full_layers(parent_is_root: bool | None) -> tuple[str, ...]:
    # The sandbox says which layers it offers (`dllm_mcmc.eval.sandbox.FULL_ISOLATION`, "a+b+..."):
    # "full" follows it when it gains layers. nobody is wanted only when this process is root.
    from dllm_mcmc.eval import sandbox

    layers = sandbox.FULL_ISOLATION.split("+")
    if parent_is_root is None:
        parent_is_root = os.geteuid() == 0
    return tuple(layer for layer in layers if parent_is_root or layer != "nobody")


def missing_isolation(level: str, *, parent_is_root: bool | None = None) -> list[str]:
    """The layers of the sandbox's ``FULL_ISOLATION`` that ``level`` (``"netns+rofs+audit"``) lacks.

    ``parent_is_root`` (default: whether this process runs as root) decides whether ``nobody`` is wanted.

    >>> missing_isolation("netns+audit", parent_is_root=True)
    ['rofs', 'pidns', 'nobody']
    """
    present = set(level.split("+"))
    return [layer for layer in _full_layers(parent_is_root) if layer not in present]


def isolation_is_full(level: str, *, parent_is_root: bool | None = None) -> bool:
    """Whether ``level`` (a `SandboxResult.isolation`) holds every layer the sandbox offers here.

    Full is the sandbox's `dllm_mcmc.eval.sandbox.FULL_ISOLATION`, without ``nobody`` when this process is
    not root (its children are not root either).
    """
    return not missing_isolation(level, parent_is_root=parent_is_root)


def isolation_notice(level: str, tasks: Iterable[str] = (), *,
                     parent_is_root: bool | None = None) -> tuple[str, bool]:
    """``(line, full)``: one line saying at which isolation level the code of ``tasks`` runs and, when it
    is weaker than full, which layers are missing and what that leaves open.

    >>> isolation_notice("netns+rofs+pidns+nobody+audit", ["humaneval"], parent_is_root=True)
    ('code of humaneval runs in the sandbox with isolation netns+rofs+pidns+nobody+audit (full)', True)
    """
    names = ", ".join(tasks)
    where = f"code of {names} runs" if names else "code runs"
    missing = missing_isolation(level, parent_is_root=parent_is_root)
    if not missing:
        return f"{where} in the sandbox with isolation {level} (full)", True
    why = "; ".join(f"{layer}: {_LAYER_MEANING.get(layer, 'missing')}" for layer in missing)
    return (f"{where} in the sandbox with isolation {level}, weaker than full "
            f"({'+'.join(_full_layers(parent_is_root))}): {why}. See docs/sandbox.md; for hostile code add "
            "a container or a VM"), False


def check_code(program_source: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Run a complete program (solution plus its tests) in the sandbox; ``result.ok`` means it passed.

    The program passes when it exits with status 0 within the limits **and its module body returned**
    (``require_completion``: a program that ends itself with status 0 before its tests ran is
    ``"incomplete"``; the sandbox reports completion on a channel the program cannot reach, so nothing is
    added to its text and its output size does not matter). ``result.reason`` says why it did not pass
    (``timeout``, ``memory``, ``incomplete``, an error, ...), and ``result.isolation`` is the isolation
    level it ran at. Calling it is the opt-in: it runs ``program_source`` (the code benchmarks call it only
    when allowed, see `CodeExecutionNotAllowed`).

    >>> check_code("assert 1 + 1 == 2").ok          # doctest: +SKIP
    True
    """
    from dllm_mcmc.eval.sandbox import SandboxLimits, run_python

    return run_python(program_source, SandboxLimits() if limits is None else limits, require_completion=True)
