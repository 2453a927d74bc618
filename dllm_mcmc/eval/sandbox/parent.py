"""The sandbox's public API and its parent side (see `dllm_mcmc.eval.sandbox` for the design).

`SandboxLimits` and `SandboxResult`; which isolation layers this machine allows (probed once); and
running one program: its directory, the child (``child.py``'s source under ``python -I -S -B -c``),
reading capped output and the two channels (events, status) until exit or the wall-clock limit,
killing and reaping the process group, removing the directory, and the reason for the result. Nothing
that goes wrong in here escapes `run_python` as an exception: it becomes a failed result
(``"sandbox error: ..."``), except ``KeyboardInterrupt``/``SystemExit``, which are re-raised after the
cleanup.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import math
import os
import pwd
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dllm_mcmc.eval.sandbox.child import RECORD_LOST, SETUP_FAILED, remove_tree

__all__ = [
    "FULL_ISOLATION", "RECORD_LOST", "SETUP_FAILED", "SandboxLimits", "SandboxResult", "detect_isolation",
    "run_many", "run_python", "use_outer_layer",
]

#: Every layer the sandbox can apply (the label of the strongest plan for a root parent). A non-root
#: parent's strongest label has ``userns`` instead of ``nobody`` (its children are unprivileged anyway).
FULL_ISOLATION = "netns+rofs+pidns+nobody+audit"

_DRAIN_SECONDS = 1.0  # after the keeper exits, how long to wait for leftover output
_KILL_GRACE_SECONDS = 5.0  # after SIGKILL, how long to wait for the exit before reaping anyway
_LINE_BYTES = 4096  # longer lines on the events pipe are the program's noise: dropped
_KEPT_DENIALS = 64
_PROBE_SOURCE = "import collections, json, math, re\nprint('sandbox probe ok')\n"
_PROBE_STDOUT = "sandbox probe ok\n"


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use. The defaults suit HumanEval/MBPP-style unit tests.

    Attributes:
        wall_seconds: wall-clock time, enforced by the parent (the process group is killed, and with
            ``pidns`` everything the program started dies with its namespace).
        cpu_seconds: CPU time (``RLIMIT_CPU``, rounded up to whole seconds; ``SIGXCPU`` then, and
            ``SIGKILL`` one second later).
        memory_bytes: address space (``RLIMIT_AS``); allocations past it raise ``MemoryError``.
        file_bytes: largest file the program may write (``RLIMIT_FSIZE``; ``SIGXFSZ`` past it).
        max_processes: ``RLIMIT_NPROC``: processes and threads of the child's user (all of that
            user's, machine-wide, concurrent sandboxes included). The kernel ignores it for root, so
            it binds only when the child is not root (``nobody`` or ``userns`` in
            `SandboxResult.isolation`, or a non-root parent). With the default 1 the audit hook also
            refuses threads, so that the limit means the same at every isolation level. Process
            creation is refused by the audit hook whatever this says.
        output_bytes: how much of stdout and of stderr is kept (each); the rest is read and
            discarded, and the result says ``truncated``. It never changes the verdict.

    Example:
        >>> SandboxLimits(wall_seconds=2.0, cpu_seconds=1.0).memory_bytes == 1 << 30
        True
    """

    wall_seconds: float = 10.0
    cpu_seconds: float = 5.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 10 << 20
    max_processes: int = 1
    output_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        for name in ("wall_seconds", "cpu_seconds", "memory_bytes", "file_bytes", "max_processes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxLimits.{name} must be positive, got {getattr(self, name)!r}")
        if self.output_bytes < 0:
            raise ValueError(f"SandboxLimits.output_bytes must be >= 0, got {self.output_bytes!r}")


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one program.

    Attributes:
        ok: the program exited with status 0 within every limit, tried nothing the sandbox refused,
            and (when `run_python` was asked for ``require_completion``) its module body returned.
        reason: ``"ok"``, or why not: ``"timeout"`` (wall clock), ``"cpu time"``, ``"memory"``,
            ``"file size"``, ``"network"``, ``"process"`` (process or thread creation, signalling or
            re-prioritising another process, subinterpreters), ``"forbidden write"`` (file system
            changes outside the program's directory), ``"forbidden"`` (another refused operation:
            ctypes, hand-made code objects, another process's /proc entries, ...), ``"syntax error"``,
            ``"assertion"`` (an uncaught ``AssertionError``), ``"exception NAME"`` (another uncaught
            exception), ``"exit status N"``, ``"signal NAME"``, ``"incomplete"`` (status 0 but the
            module body did not return, e.g. ``sys.exit(0)`` or ``os._exit(0)`` before the tests;
            only with ``require_completion``), or ``"sandbox error: ..."`` (the sandbox could not be
            set up or supervised; the program did not run or its outcome is unknown).
        returncode: the program's exit status (negative: killed by that signal); None if it never ran.
        stdout: the first ``output_bytes`` of standard output (UTF-8, undecodable bytes replaced).
        stderr: the first ``output_bytes`` of standard error (tracebacks, refusals).
        wall_seconds: wall-clock time from start to exit (or kill).
        truncated: some stdout or stderr was discarded.
        isolation: the layers that applied, e.g. ``"netns+rofs+pidns+nobody+audit"`` or ``"audit"``
            (see the package docstring, `dllm_mcmc.eval.sandbox`).
        completed: the program's module body returned (no uncaught exception, no exit before its
            end), as reported by the child's witness hook with a secret the program cannot read.
    """

    ok: bool
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_seconds: float
    truncated: bool
    isolation: str
    completed: bool = False


def run_python(
    source: str, limits: SandboxLimits = SandboxLimits(), stdin: str = "", *, require_completion: bool = False
) -> SandboxResult:
    r"""Run the Python program ``source`` in a fresh sandbox (see the package docstring) and report.

    Args:
        source: the program text (it runs as ``__main__``).
        limits: time, memory, file-size, process and output limits.
        stdin: text fed to the program's standard input (empty: ``/dev/null``).
        require_completion: ``ok`` also requires that the module body returned (`SandboxResult.completed`):
            the way to grade "solution + tests + check(...)": a program that ends itself with status 0
            before its tests ran is then ``"incomplete"``. Nothing is added to the program's text and
            nothing depends on its output.

    Returns:
        A `SandboxResult`. Failures of the program, and of the sandbox itself, are results, not
        exceptions (``KeyboardInterrupt`` and ``SystemExit`` are re-raised after the cleanup).

    Example:
        >>> run_python("import sys\nprint(sys.stdin.read().upper())", stdin="abc").stdout
        'ABC\n'
        >>> run_python("assert 1 + 1 == 3").reason
        'assertion'
        >>> run_python("import sys\nsys.exit(0)\nassert False", require_completion=True).reason
        'incomplete'
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be str, got {type(source).__name__}")
    if not isinstance(stdin, str):
        raise TypeError(f"stdin must be str, got {type(stdin).__name__}")
    with _signal_guard():
        return _run(source, limits, stdin, _detect_plan(), require_completion, None)


def run_many(
    sources: list[str], limits: SandboxLimits = SandboxLimits(), workers: int = 2, *, require_completion: bool = False
) -> list[SandboxResult]:
    r"""`run_python` over ``sources`` on ``workers`` threads (each program in its own sandbox).

    On ``KeyboardInterrupt`` (or any exception in the calling thread) the programs still queued are
    dropped, the running ones are killed, and the exception is re-raised.

    Returns:
        The results in the order of ``sources``.

    Example:
        >>> [r.stdout for r in run_many(["print(1)", "print(2)"])]
        ['1\n', '2\n']
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    sources = list(sources)
    if not sources:
        return []
    for source in sources:
        if not isinstance(source, str):
            raise TypeError(f"source must be str, got {type(source).__name__}")
    plan = _detect_plan()  # probe once, before the threads start
    batch: set[int] = set()
    cancelled = threading.Event()

    def one(source: str) -> SandboxResult:
        if cancelled.is_set():
            return SandboxResult(False, "sandbox error: cancelled", None, "", "", 0.0, False, plan.label)
        return _run(source, limits, "", plan, require_completion, batch)

    with _signal_guard():
        pool = ThreadPoolExecutor(max_workers=min(workers, len(sources)), thread_name_prefix="dllm-sandbox")
        try:
            futures = [pool.submit(one, source) for source in sources]
            return [future.result() for future in futures]
        except BaseException:
            cancelled.set()
            pool.shutdown(wait=False, cancel_futures=True)
            _kill_live(only=batch)
            raise
        finally:
            pool.shutdown(wait=True)


def detect_isolation() -> str:
    """The isolation layers `run_python` applies on this machine, e.g. ``"netns+rofs+pidns+nobody+audit"``.

    Probed once per process (a few short child runs, strongest plan first), then cached.
    """
    return _detect_plan().label


def use_outer_layer(name: str | None) -> str:
    """Run every later program inside an outer sandbox tool as well: ``"bwrap"`` (bubblewrap) or None.

    bubblewrap adds its own namespaces around the child (``--unshare-all``, ``--die-with-parent``,
    ``--new-session``, a read-only bind of ``/``, empty ``/tmp``, its own ``/dev`` and ``/proc``); the
    project's layers still run inside it where they can. The isolation is probed again; the label
    starts with ``bwrap+``. Also read once from ``DLLM_SANDBOX_OUTER`` (``bwrap``/``none``).

    Returns:
        The new `detect_isolation` label.

    Raises:
        ValueError: an unknown name.
        RuntimeError: the tool is not installed, or nothing runs in it here.
    """
    global _PLAN, _OUTER
    if name not in (None, "none", "bwrap"):
        raise ValueError(f"unknown outer sandbox {name!r}; use 'bwrap' or None")
    outer = None if name in (None, "none") else name
    if outer is not None and shutil.which(outer) is None:
        raise RuntimeError(f"the outer sandbox {outer!r} is not installed (no {outer} on PATH)")
    with _PLAN_LOCK:
        _OUTER, _PLAN = outer, None
    label = detect_isolation()
    if outer is not None and not label.startswith(outer + "+"):
        raise RuntimeError(f"nothing runs inside {outer} here; the sandbox falls back to {label}")
    return label


# ----------------------------------------------------------------------------------------------
# Which layers are available


@dataclass(frozen=True)
class _Plan:
    # "none": no namespace; "root": mount, network, IPC and UTS namespaces (and a PID namespace when
    # pidns) created with the parent's root privileges; "user": the same inside a new user namespace.
    namespaces: str
    uid: int = -1  # -1: keep the parent's user
    gid: int = -1
    pidns: bool = False
    outer: str | None = None

    @property
    def label(self) -> str:
        layers = [self.outer] if self.outer else []
        if self.namespaces in ("root", "user"):
            layers += ["netns", "rofs"]
        if self.pidns:
            layers.append("pidns")
        if self.namespaces == "user":
            layers.append("userns")
        if self.uid >= 0:
            layers.append("nobody")
        layers.append("audit")
        return "+".join(layers)


_PLAN: _Plan | None = None
_OUTER: str | None = None
_OUTER_FROM_ENV = False
_PLAN_LOCK = threading.Lock()


def _unprivileged_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _candidate_plans(outer: str | None) -> list[_Plan]:
    # Strongest first; the last is the audit hook alone.
    plans: list[_Plan] = []
    if os.geteuid() == 0 and outer is None:
        uid, gid = _unprivileged_ids()
        plans += [_Plan("root", uid, gid, pidns=True), _Plan("root", uid, gid)]
    plans += [_Plan("user", pidns=True), _Plan("user")]
    if os.geteuid() == 0 and outer is None:
        plans.append(_Plan("none", *_unprivileged_ids()))
    plans.append(_Plan("none"))
    return [_Plan(p.namespaces, p.uid, p.gid, p.pidns, outer) for p in plans]


def _detect_plan() -> _Plan:
    global _PLAN, _OUTER, _OUTER_FROM_ENV
    with _PLAN_LOCK:
        if not _OUTER_FROM_ENV:
            _OUTER_FROM_ENV = True
            wanted = os.environ.get("DLLM_SANDBOX_OUTER", "").strip().lower()
            if wanted == "bwrap" and _OUTER is None and shutil.which("bwrap"):
                _OUTER = "bwrap"
        if _PLAN is None:
            probe_limits = SandboxLimits(wall_seconds=30.0, cpu_seconds=10.0)
            for outer in [_OUTER, None] if _OUTER else [None]:
                for plan in _candidate_plans(outer):
                    result = _run(_PROBE_SOURCE, probe_limits, "", plan, True, None)
                    if result.ok and result.stdout == _PROBE_STDOUT and result.isolation == plan.label:
                        _PLAN = plan
                        break
                if _PLAN is not None:
                    break
            else:
                _PLAN = _Plan("none")  # the audit hook alone: never nothing
        return _PLAN


# ----------------------------------------------------------------------------------------------
# Live sandboxes: killed on every way out (signals, interpreter exit)


_LIVE: dict[int, str] = {}  # keeper pid (= its process group) -> the program's directory
_LIVE_LOCK = threading.Lock()


def _kill_live(only: set[int] | None = None, remove: bool = False) -> None:
    with _LIVE_LOCK:
        items = [(pid, root) for pid, root in _LIVE.items() if only is None or pid in only]
    for pid, _ in items:
        _kill_group(pid)
    if remove:
        for _, root in items:
            remove_tree(root)


def _forget_live() -> None:
    # In a forked copy of this process, the parent's sandboxes are not ours to kill at exit.
    global _LIVE_LOCK
    _LIVE_LOCK = threading.Lock()
    _LIVE.clear()


atexit.register(_kill_live, None, True)
os.register_at_fork(after_in_child=_forget_live)

_GUARD_LOCK = threading.Lock()
_GUARD_DEPTH = 0
_PREVIOUS: dict[int, Any] = {}


def _on_signal(signum: int, frame: object) -> None:
    previous = _PREVIOUS.get(signum, signal.SIG_DFL)
    if callable(previous):
        # e.g. default_int_handler: its KeyboardInterrupt unwinds run_python / run_many, whose finally
        # blocks kill and remove their own sandboxes; a handler that returns lets them go on.
        previous(signum, frame)
        return
    _kill_live(remove=True)  # SIG_DFL: the process ends now, without finally blocks
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


@contextlib.contextmanager
def _signal_guard():
    """While sandboxes run from the main thread, SIGINT and SIGTERM first kill them (chained to the
    handlers they replace, restored afterwards). Elsewhere the child's own PR_SET_PDEATHSIG covers
    the parent's death, SIGKILL included."""
    global _GUARD_DEPTH
    main = threading.current_thread() is threading.main_thread()
    if main:
        with _GUARD_LOCK:
            _GUARD_DEPTH += 1
            if _GUARD_DEPTH == 1:
                _PREVIOUS.clear()
                for number in (signal.SIGINT, signal.SIGTERM):
                    previous = signal.getsignal(number)
                    if previous in (signal.SIG_IGN, None):
                        continue  # ignored (or set from C): leave it so
                    _PREVIOUS[number] = previous
                    signal.signal(number, _on_signal)
    try:
        yield
    finally:
        if main:
            with _GUARD_LOCK:
                _GUARD_DEPTH -= 1
                if _GUARD_DEPTH == 0:
                    for signum, handler in _PREVIOUS.items():
                        if signal.getsignal(signum) is _on_signal:
                            signal.signal(signum, handler)
                    _PREVIOUS.clear()


# ----------------------------------------------------------------------------------------------
# Running one program (the child side, its setup order and its channels: ``child.py``)


@functools.cache
def _child_source() -> str:
    """The child program (``child.py`` beside this file), read once; it runs as ``python -c`` source."""
    return Path(__file__).with_name("child.py").read_text(encoding="utf-8")


def _data_fd(name: str, data: bytes) -> int:
    """An fd to an anonymous file holding ``data``, positioned at 0: no path to find it by."""
    try:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        with tempfile.TemporaryFile() as handle:  # O_TMPFILE or unlinked at once
            fd = os.dup(handle.fileno())
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _outer_command(outer: str | None, root: str) -> list[str]:
    if outer != "bwrap":
        return []
    tool = shutil.which("bwrap") or "bwrap"
    return [
        tool, "--die-with-parent", "--new-session", "--unshare-all", "--ro-bind", "/", "/",
        "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--bind", root, root, "--chdir", root, "--",
    ]  # fmt: skip


def _run(
    source: str, limits: SandboxLimits, stdin: str, plan: _Plan, require_completion: bool, batch: set[int] | None
) -> SandboxResult:
    try:
        return _run_unguarded(source, limits, stdin, plan, require_completion, batch)
    except Exception as exc:  # anything unexpected is a failed result, never a crash of the grader
        return SandboxResult(False, f"sandbox error: {type(exc).__name__}: {exc}", None, "", "", 0.0, False,
                             plan.label)


def _run_unguarded(
    source: str, limits: SandboxLimits, stdin: str, plan: _Plan, require_completion: bool, batch: set[int] | None
) -> SandboxResult:
    if not sys.platform.startswith("linux"):
        raise RuntimeError("only Linux is supported (namespaces, /proc, waitid)")
    if not sys.executable:
        raise RuntimeError("sys.executable is unknown; cannot start a Python child")
    root = os.path.realpath(tempfile.mkdtemp(prefix="dllm-sandbox-"))  # the program's directory
    parent_fds: list[int] = []
    child_fds: list[int] = []
    proc: subprocess.Popen | None = None
    try:
        if plan.uid >= 0:
            os.chown(root, plan.uid, plan.gid)
        program_fd = _data_fd("dllm-sandbox-program", source.encode("utf-8", "surrogatepass"))
        child_fds.append(program_fd)
        stdin_fd: int = subprocess.DEVNULL
        if stdin:
            stdin_fd = _data_fd("dllm-sandbox-stdin", stdin.encode("utf-8", "surrogatepass"))
            child_fds.append(stdin_fd)
        token = secrets.token_hex(16).encode("ascii")
        token_read, token_write = os.pipe()
        child_fds.append(token_read)
        try:
            os.write(token_write, token)  # 32 bytes: fits the pipe, never blocks
        finally:
            os.close(token_write)
        events_read, events_write = os.pipe()
        parent_fds.append(events_read)
        child_fds.append(events_write)
        status_read, status_write = os.pipe()
        parent_fds.append(status_read)
        child_fds.append(status_write)
        config = {
            "root": root,
            "parent": os.getpid(),
            "plan": {"namespaces": plan.namespaces, "pidns": plan.pidns, "uid": plan.uid, "gid": plan.gid,
                     "label": plan.label, "outer": plan.outer},
            "fds": {"program": program_fd, "token": token_read, "events": events_write, "status": status_write},
            "wall": limits.wall_seconds,
            "limits": {"cpu": max(1, math.ceil(limits.cpu_seconds)), "memory": int(limits.memory_bytes),
                       "fsize": int(limits.file_bytes), "nproc": int(limits.max_processes)},
        }
        argv = [*_outer_command(plan.outer, root), sys.executable, "-I", "-S", "-B", "-c", _child_source(),
                json.dumps(config)]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": root,
               "TMPDIR": root}
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=stdin_fd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=root,
                env=env,
                pass_fds=(program_fd, token_read, events_write, status_write),
                start_new_session=True,
            )
        except OSError as exc:
            return SandboxResult(False, f"sandbox error: {exc}", None, "", "", 0.0, False, plan.label)
        with _LIVE_LOCK:
            _LIVE[proc.pid] = root
        if batch is not None:
            batch.add(proc.pid)
        _close_all(child_fds)
        outcome = _supervise(proc, start, limits, events_read, status_read, token)
        return _result(outcome, limits, plan, require_completion)
    finally:
        _close_all(child_fds)
        _close_all(parent_fds)
        if proc is not None:
            _reap(proc)
        remove_tree(root)


def _close_all(fds: list[int]) -> None:
    while fds:
        try:
            os.close(fds.pop())
        except OSError:
            pass


def _reap(proc: subprocess.Popen) -> None:
    """Kill the keeper's group and reap the keeper, unless that was done; never raises."""
    try:
        if proc.returncode is None:
            _kill_group(proc.pid)
            with _LIVE_LOCK:
                _LIVE.pop(proc.pid, None)
            proc.wait(timeout=_KILL_GRACE_SECONDS)
    except Exception:
        pass
    with _LIVE_LOCK:
        _LIVE.pop(proc.pid, None)
    for stream in (proc.stdout, proc.stderr):
        try:
            if stream is not None:
                stream.close()
        except Exception:
            pass


class _Events:
    """The events pipe, parsed as it comes (see ``child.py``): lines before "ready" come from the
    setup; after it the program may write anything, so only the witness's "done TOKEN" can say
    "completed", and the rest can only make its own result worse."""

    def __init__(self, token: bytes) -> None:
        self.token = token
        self.buffer = bytearray()
        self.skipping = False
        self.ready: str | None = None
        self.errors: list[str] = []
        self.denials: list[str] = []
        self.notes: set[str] = set()
        self.exception: str | None = None
        self.completed = False

    def feed(self, chunk: bytes) -> None:
        *lines, rest = chunk.split(b"\n")
        for line in lines:
            if self.buffer:
                line, self.buffer = bytes(self.buffer) + line, bytearray()
            if self.skipping:  # the end of an overlong line
                self.skipping = False
            elif line:
                self.line(line)
        self.buffer += rest
        if len(self.buffer) > _LINE_BYTES:
            self.buffer.clear()
            self.skipping = True

    def line(self, raw: bytes) -> None:
        kind, _, rest = raw.partition(b"\t")
        if self.ready is None:
            if kind == b"ready":
                self.ready = rest.decode("utf-8", "replace")
            elif kind == b"error":
                self.errors.append(rest.decode("utf-8", "replace"))
            return
        if kind == b"done":
            if secrets.compare_digest(rest, self.token):
                self.completed = True
        elif kind == b"deny":
            if len(self.denials) < _KEPT_DENIALS:
                self.denials.append(rest.partition(b"\t")[0].decode("utf-8", "replace"))
        elif kind == b"exception":
            if self.exception is None:
                self.exception = rest.decode("utf-8", "replace")
        elif kind in (b"memory", b"file size", b"syntax"):
            self.notes.add(kind.decode())


class _Status:
    """The status pipe (keeper and init only; the program never holds it)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.errors: list[str] = []
        self.wait_status: int | None = None
        self.cpu_seconds = 0.0

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        if len(self.buffer) > 1 << 16:
            del self.buffer[: len(self.buffer) - (1 << 16)]
        *lines, rest = self.buffer.split(b"\n")
        self.buffer = bytearray(rest)
        for raw in lines:
            kind, _, value = raw.decode("utf-8", "replace").partition("\t")
            if kind == "error":
                self.errors.append(value)
            elif kind == "status" and self.wait_status is None:
                status, _, cpu = value.partition("\t")
                try:
                    self.wait_status, self.cpu_seconds = int(status), float(cpu)
                except ValueError:
                    pass


@dataclass
class _Outcome:
    keeper_status: int | None  # None: lost (reaped elsewhere)
    keeper_cpu: float
    events: _Events
    status: _Status
    stdout: bytes
    stderr: bytes
    truncated: bool
    timed_out: bool
    wall_seconds: float


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _has_exited(pid: int) -> bool:
    """Whether ``pid`` has exited, without reaping it (its process group id stays reserved)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _supervise(
    proc: subprocess.Popen, start: float, limits: SandboxLimits, events_fd: int, status_fd: int, token: bytes
) -> _Outcome:
    """Read stdout/stderr (capped) and both channels until the keeper exits or the wall limit, kill its
    group, reap it."""
    pid = proc.pid
    deadline = start + limits.wall_seconds
    cap = limits.output_bytes
    events, status = _Events(token), _Status()
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    selector = selectors.DefaultSelector()
    buffers = {"stdout": bytearray(), "stderr": bytearray()}
    sinks = {"events": events.feed, "status": status.feed}
    for name in buffers:
        stream = getattr(proc, name)
        assert stream is not None  # both are pipes (see _run)
        os.set_blocking(stream.fileno(), False)
        selector.register(stream.fileno(), selectors.EVENT_READ, name)
    for name, fd in (("events", events_fd), ("status", status_fd)):
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ, name)
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ, "exit")
    open_streams = 4
    truncated = timed_out = False
    exited_at = killed_at = None
    try:
        while True:
            now = time.monotonic()
            if exited_at is None and pidfd is None and _has_exited(pid):
                exited_at = now
                _kill_group(pid)  # anything it left behind (the exited leader keeps the group id)
            if exited_at is None and killed_at is None and now >= deadline:
                timed_out = True
                killed_at = now
                _kill_group(pid)
            if exited_at is not None and (open_streams == 0 or now >= exited_at + _DRAIN_SECONDS):
                break
            if killed_at is not None and exited_at is None and now >= killed_at + _KILL_GRACE_SECONDS:
                break  # reap below (blocking): a SIGKILLed process does die
            if exited_at is not None:
                timeout = exited_at + _DRAIN_SECONDS - now
            elif killed_at is not None:
                timeout = killed_at + _KILL_GRACE_SECONDS - now
            else:
                timeout = deadline - now
            if pidfd is None:
                timeout = min(timeout, 0.02)
            for key, _ in selector.select(max(timeout, 0.0)):
                if key.data == "exit":
                    exited_at = time.monotonic()
                    selector.unregister(key.fd)
                    _kill_group(pid)
                    continue
                try:
                    chunk = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    selector.unregister(key.fd)
                    open_streams -= 1
                    continue
                if key.data in sinks:
                    sinks[key.data](chunk)
                    continue
                buffer = buffers[key.data]
                room = cap - len(buffer)
                if room > 0:
                    buffer += chunk[:room]
                if len(chunk) > room:
                    truncated = True
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)
    end = exited_at if exited_at is not None else time.monotonic()
    _kill_group(pid)  # safe: not reaped yet, so the group id is still this keeper's
    with _LIVE_LOCK:
        _LIVE.pop(pid, None)  # from now on nobody may kill this group id: once reaped it can be reused
    try:
        _, raw, usage = os.wait4(pid, 0)
    except ChildProcessError:  # reaped by someone else (e.g. a SIGCHLD handler): status unknown
        raw, usage = None, None
    proc.returncode = os.waitstatus_to_exitcode(raw) if raw is not None else -signal.SIGKILL
    return _Outcome(
        keeper_status=proc.returncode if raw is not None else None,
        keeper_cpu=usage.ru_utime + usage.ru_stime if usage is not None else 0.0,
        events=events,
        status=status,
        stdout=bytes(buffers["stdout"]),
        stderr=bytes(buffers["stderr"]),
        truncated=truncated,
        timed_out=timed_out,
        wall_seconds=end - start,
    )


def _result(outcome: _Outcome, limits: SandboxLimits, plan: _Plan, require_completion: bool) -> SandboxResult:
    events, status = outcome.events, outcome.status
    code: int | None = None
    cpu = outcome.keeper_cpu
    if status.wait_status is not None:
        code = os.waitstatus_to_exitcode(status.wait_status)
        cpu = status.cpu_seconds
    elif outcome.keeper_status is not None and (outcome.timed_out or outcome.keeper_status < 0):
        code = outcome.keeper_status  # killed with its whole tree (timeout): the keeper's own status
    errors = status.errors + events.errors
    if errors:
        reason = f"sandbox error: {errors[0]}"
        code = outcome.keeper_status
    elif events.ready is None and not outcome.timed_out:
        reason = f"sandbox error: the sandbox did not start (exit status {outcome.keeper_status})"
    elif events.ready is not None and events.ready != plan.label:
        reason = f"sandbox error: the child set up {events.ready!r}, not {plan.label!r}"
    elif events.denials:
        reason = events.denials[0]
    elif outcome.timed_out:
        reason = "timeout"
    elif code is None:
        reason = "sandbox error: the program's exit status was lost"
    elif code < 0:
        reason = _signal_reason(-code, cpu, limits)
    elif code != 0:
        if "syntax" in events.notes:
            reason = "syntax error"
        elif "memory" in events.notes or (events.exception is None and b"MemoryError" in outcome.stderr):
            reason = "memory"
        elif "file size" in events.notes:
            reason = "file size"
        elif events.exception == "AssertionError":
            reason = "assertion"
        elif events.exception is not None:
            reason = f"exception {events.exception}"
        else:
            reason = f"exit status {code}"
    elif require_completion and not events.completed:
        reason = "incomplete"
    else:
        reason = "ok"
    return SandboxResult(
        ok=reason == "ok",
        reason=reason,
        returncode=code,
        stdout=outcome.stdout.decode("utf-8", "replace"),
        stderr=outcome.stderr.decode("utf-8", "replace"),
        wall_seconds=outcome.wall_seconds,
        truncated=outcome.truncated,
        isolation=plan.label,
        completed=events.completed,
    )


def _signal_reason(number: int, cpu_seconds: float, limits: SandboxLimits) -> str:
    if number == signal.SIGXCPU:
        return "cpu time"
    if number == signal.SIGXFSZ:
        return "file size"
    if number == signal.SIGKILL and cpu_seconds >= max(1, math.ceil(limits.cpu_seconds)) - 0.05:
        return "cpu time"  # the hard CPU limit (one second after SIGXCPU, if that was handled)
    try:
        return f"signal {signal.Signals(number).name}"
    except ValueError:
        return f"signal {number}"
