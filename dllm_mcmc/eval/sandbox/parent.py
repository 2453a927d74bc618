"""The sandbox's public API and its parent side (see `dllm_mcmc.eval.sandbox` for the design).

`SandboxLimits` and `SandboxResult`; which isolation layers this machine allows (probed once); and
running one program: its private files, the child interpreter (``child.py``'s source under ``python
-I -S -B -c``), reading capped output until exit or the wall-clock limit, killing and reaping the
process group, and the reason for the result, from the child's events file and exit status.
"""

from __future__ import annotations

import functools
import math
import os
import pwd
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

__all__ = ["SETUP_FAILED", "SandboxLimits", "SandboxResult", "detect_isolation", "run_many", "run_python"]

#: Exit status of a child whose sandbox could not be set up (the program did not run).
SETUP_FAILED = 125

_DRAIN_SECONDS = 1.0  # after the child exits, how long to wait for leftover output
_KILL_GRACE_SECONDS = 5.0  # after SIGKILL, how long to wait for the exit before reaping anyway
_MARKER_BYTES = 64 << 10
_PROBE_SOURCE = "import collections, json, math, re\nprint('sandbox probe ok')\n"
_PROBE_STDOUT = "sandbox probe ok\n"


@dataclass(frozen=True)
class SandboxLimits:
    """What one program may use. The defaults suit HumanEval/MBPP-style unit tests.

    Attributes:
        wall_seconds: wall-clock time, enforced by the parent (the process group is killed).
        cpu_seconds: CPU time (``RLIMIT_CPU``, rounded up to whole seconds; ``SIGXCPU`` then, and
            ``SIGKILL`` one second later).
        memory_bytes: address space (``RLIMIT_AS``); allocations past it raise ``MemoryError``.
        file_bytes: largest file the program may write (``RLIMIT_FSIZE``; ``SIGXFSZ`` past it).
        max_processes: ``RLIMIT_NPROC``: processes and threads of the child's user. The kernel
            ignores it for root, so it binds only when the child is not root (``nobody`` in
            `SandboxResult.isolation`, or a non-root parent); then the default 1 also refuses
            threads. Process creation is refused by the audit hook whatever this says.
        output_bytes: how much of stdout and of stderr is kept (each); the rest is read and
            discarded, and the result says ``truncated``.

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
        ok: the program exited with status 0 within every limit and tried nothing the sandbox refused.
        reason: ``"ok"``, or why not: ``"timeout"`` (wall clock), ``"cpu time"``, ``"memory"``,
            ``"file size"``, ``"network"``, ``"process"`` (process creation or signalling another
            process), ``"forbidden write"`` (file system changes outside the program's directory),
            ``"forbidden"`` (another refused operation: ctypes, setrlimit, ...), ``"syntax error"``,
            ``"assertion"`` (an uncaught ``AssertionError``), ``"exception NAME"`` (another uncaught
            exception), ``"exit status N"``, ``"signal NAME"``, or ``"sandbox error: ..."`` (the
            sandbox could not be set up; the program did not run).
        returncode: the child's exit status (negative: killed by that signal); None if it never ran.
        stdout: the first ``output_bytes`` of standard output (UTF-8, undecodable bytes replaced).
        stderr: the first ``output_bytes`` of standard error (tracebacks, refusals).
        wall_seconds: wall-clock time from start to exit (or kill).
        truncated: some stdout or stderr was discarded.
        isolation: the layers that applied, e.g. ``"netns+rofs+audit"`` or ``"audit"`` (see the
            package docstring, `dllm_mcmc.eval.sandbox`).
    """

    ok: bool
    reason: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_seconds: float
    truncated: bool
    isolation: str


def run_python(source: str, limits: SandboxLimits = SandboxLimits(), stdin: str = "") -> SandboxResult:
    r"""Run the Python program ``source`` in a fresh sandbox (see the package docstring) and report.

    Args:
        source: the program text (it runs as ``__main__``).
        limits: time, memory, file-size, process and output limits.
        stdin: text fed to the program's standard input (empty: ``/dev/null``).

    Returns:
        A `SandboxResult`. Failures of the program are results, not exceptions.

    Example:
        >>> run_python("import sys\nprint(sys.stdin.read().upper())", stdin="abc").stdout
        'ABC\n'
        >>> run_python("assert 1 + 1 == 3").reason
        'assertion'
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be str, got {type(source).__name__}")
    if not isinstance(stdin, str):
        raise TypeError(f"stdin must be str, got {type(stdin).__name__}")
    return _run(source, limits, stdin, _detect_plan())


def run_many(
    sources: list[str], limits: SandboxLimits = SandboxLimits(), workers: int = 2
) -> list[SandboxResult]:
    r"""`run_python` over ``sources`` on ``workers`` threads (each program in its own sandbox).

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
    _detect_plan()  # probe once, before the threads start
    with ThreadPoolExecutor(max_workers=min(workers, len(sources))) as pool:
        return list(pool.map(lambda source: run_python(source, limits), sources))


def detect_isolation() -> str:
    """The isolation layers `run_python` applies on this machine, e.g. ``"netns+rofs+audit"``.

    Probed once per process (a few short child runs), then cached.
    """
    return _detect_plan().label


# ----------------------------------------------------------------------------------------------
# Which layers are available


@dataclass(frozen=True)
class _Plan:
    # "none"; "net": a network namespace, entered as root before switching user; "user+net": a user
    # and a network namespace, entered after switching user; "user+net+ro": the same and a mount
    # namespace in which every mount but the program's directory is read-only.
    namespaces: str
    uid: int = -1  # -1: keep the parent's user
    gid: int = -1

    @property
    def label(self) -> str:
        layers = []
        if self.namespaces != "none":
            layers.append("netns")
        if self.namespaces == "user+net+ro":
            layers.append("rofs")
        if self.uid >= 0:
            layers.append("nobody")
        layers.append("audit")
        return "+".join(layers)


_PLAN: _Plan | None = None
_PLAN_LOCK = threading.Lock()


def _unprivileged_ids() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _candidate_plans() -> list[_Plan]:
    # Strongest first; the last is the audit hook alone.
    if os.geteuid() == 0:
        uid, gid = _unprivileged_ids()
        return [
            _Plan("user+net+ro", uid, gid),
            _Plan("net", uid, gid),
            _Plan("user+net+ro"),
            _Plan("user+net"),
            _Plan("none", uid, gid),
            _Plan("none"),
        ]
    return [_Plan("user+net+ro"), _Plan("user+net"), _Plan("none")]


def _detect_plan() -> _Plan:
    global _PLAN
    with _PLAN_LOCK:
        if _PLAN is None:
            probe_limits = SandboxLimits(wall_seconds=30.0, cpu_seconds=10.0)
            *candidates, fallback = _candidate_plans()
            for plan in candidates:
                result = _run(_PROBE_SOURCE, probe_limits, "", plan)
                if result.ok and result.stdout == _PROBE_STDOUT and result.isolation == plan.label:
                    _PLAN = plan
                    break
            else:
                _PLAN = fallback  # the audit hook alone: never nothing
        return _PLAN


# ----------------------------------------------------------------------------------------------
# Running one program (the child side, its setup order and its events file: ``child.py``)


@functools.cache
def _child_source() -> str:
    """The child program (``child.py`` beside this file), read once; it runs as ``python -c`` source."""
    return Path(__file__).with_name("child.py").read_text(encoding="utf-8")


def _run(source: str, limits: SandboxLimits, stdin: str, plan: _Plan) -> SandboxResult:
    if not sys.platform.startswith("linux"):
        raise RuntimeError("sandbox: only Linux is supported (namespaces, /proc, waitid)")
    if not sys.executable:
        raise RuntimeError("sandbox: sys.executable is unknown; cannot start a Python child")
    control = tempfile.mkdtemp(prefix="dllm-sandbox-ctl-")  # parent-only: program, stdin, events
    root = os.path.realpath(tempfile.mkdtemp(prefix="dllm-sandbox-"))  # the program's directory
    fds: list[int] = []
    try:
        if plan.uid >= 0:
            os.chown(root, plan.uid, plan.gid)
        program = source.encode("utf-8", "surrogatepass")
        program_fd = _private_file(os.path.join(control, "program.py"), program)
        fds.append(program_fd)
        marker_path = os.path.join(control, "events")
        marker_fd = os.open(marker_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fds.append(marker_fd)
        if stdin:
            stdin_fd = _private_file(os.path.join(control, "stdin"), stdin.encode("utf-8", "surrogatepass"))
            fds.append(stdin_fd)
        else:
            stdin_fd = subprocess.DEVNULL
        argv = [
            sys.executable, "-I", "-S", "-B", "-c", _child_source(),
            root, str(program_fd), str(marker_fd), plan.namespaces, str(plan.uid), str(plan.gid),
            str(max(1, math.ceil(limits.cpu_seconds))), str(int(limits.memory_bytes)),
            str(int(limits.file_bytes)), str(int(limits.max_processes)), plan.label,
        ]  # fmt: skip
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": root,
            "TMPDIR": root,
        }
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=stdin_fd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=root,
                env=env,
                pass_fds=(program_fd, marker_fd),
                start_new_session=True,
            )
        except OSError as exc:
            return SandboxResult(False, f"sandbox error: {exc}", None, "", "", 0.0, False, plan.label)
        for fd in fds:
            os.close(fd)
        fds.clear()
        outcome = _supervise(proc, start, limits)
        with open(marker_path, "rb") as handle:
            events = handle.read(_MARKER_BYTES).decode("utf-8", "replace")
        return _result(outcome, events, limits, plan)
    finally:
        for fd in fds:
            os.close(fd)
        _remove_tree(root)
        _remove_tree(control)


def _private_file(path: str, data: bytes) -> int:
    """Write ``data`` to a new file only the parent can open by name; an fd open for reading."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), "wb") as handle:
        handle.write(data)
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _remove_tree(path: str) -> None:
    def make_writable_and_retry(function, failed_path, _excinfo) -> None:
        try:
            os.chmod(os.path.dirname(failed_path), 0o700)
            if os.path.isdir(failed_path) and not os.path.islink(failed_path):
                os.chmod(failed_path, 0o700)
            function(failed_path)
        except OSError:
            pass

    shutil.rmtree(path, onerror=make_writable_and_retry)


@dataclass
class _Outcome:
    status: int | None  # None: lost (the child was reaped elsewhere)
    cpu_seconds: float
    stdout: bytes
    stderr: bytes
    truncated: bool
    timed_out: bool
    wall_seconds: float


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _has_exited(pid: int) -> bool:
    """Whether ``pid`` has exited, without reaping it (its process group id stays reserved)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _supervise(proc: subprocess.Popen, start: float, limits: SandboxLimits) -> _Outcome:
    """Read stdout/stderr (capped) until the child exits or the wall limit, kill its group, reap it."""
    pid = proc.pid
    deadline = start + limits.wall_seconds
    cap = limits.output_bytes
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    selector = selectors.DefaultSelector()
    buffers = {"stdout": bytearray(), "stderr": bytearray()}
    for name in buffers:
        fd = getattr(proc, name).fileno()
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ, name)
    if pidfd is not None:
        selector.register(pidfd, selectors.EVENT_READ, "exit")
    open_streams = 2
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
        for stream in (proc.stdout, proc.stderr):  # both pipes (see _run), so never None
            if stream is not None:
                stream.close()
    end = exited_at if exited_at is not None else time.monotonic()
    _kill_group(pid)
    try:
        _, status, usage = os.wait4(pid, 0)
    except ChildProcessError:  # reaped by someone else (e.g. a SIGCHLD handler): status unknown
        status, usage = None, None
    proc.returncode = os.waitstatus_to_exitcode(status) if status is not None else -signal.SIGKILL
    return _Outcome(
        status=proc.returncode if status is not None else None,
        cpu_seconds=usage.ru_utime + usage.ru_stime if usage is not None else 0.0,
        stdout=bytes(buffers["stdout"]),
        stderr=bytes(buffers["stderr"]),
        truncated=truncated,
        timed_out=timed_out,
        wall_seconds=end - start,
    )


def _result(outcome: _Outcome, events: str, limits: SandboxLimits, plan: _Plan) -> SandboxResult:
    error = isolation = exception = None
    denials: list[str] = []
    notes: set[str] = set()
    for line in events.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "deny":
            denials.append(rest.partition("\t")[0])
        elif kind == "error" and error is None:
            error = rest
        elif kind == "iso" and isolation is None:
            isolation = rest
        elif kind == "exception" and exception is None:
            exception = rest
        elif kind in ("memory", "file size", "syntax"):
            notes.add(kind)
    code = outcome.status
    if error is not None:
        reason = f"sandbox error: {error}"
    elif code is None:
        reason = "sandbox error: the child's exit status was lost"
    elif denials:
        reason = denials[0]
    elif outcome.timed_out:
        reason = "timeout"
    elif code < 0:
        reason = _signal_reason(-code, outcome.cpu_seconds, limits)
    elif code != 0:
        if "syntax" in notes:
            reason = "syntax error"
        elif "memory" in notes or (exception is None and b"MemoryError" in outcome.stderr):
            reason = "memory"
        elif "file size" in notes:
            reason = "file size"
        elif exception == "AssertionError":
            reason = "assertion"
        elif exception is not None:
            reason = f"exception {exception}"
        else:
            reason = f"exit status {code}"
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
        isolation=isolation if isolation is not None else plan.label,
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
