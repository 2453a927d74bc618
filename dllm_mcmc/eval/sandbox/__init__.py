r"""Run untrusted, model-generated Python programs, one per subprocess, with limits and no network.

Running code a model wrote is the main security risk of this library. `run_python` runs one program
in a fresh child interpreter (the parent never ``exec``\ s or ``eval``\ s model text) and says what
happened in a `SandboxResult`; `run_many` runs several on a thread pool.

What is isolated, and how:

* **Process.** The child is ``sys.executable -I -S -B`` (isolated mode, no ``site``, no bytecode
  writes) with a minimal environment (``PATH``, ``LANG``/``LC_ALL=C.UTF-8``, ``HOME`` and ``TMPDIR``
  set to its directory; nothing inherited). It runs in its own session and process group; on the
  wall-clock limit the parent kills the whole group (``SIGKILL``) and reaps it. Because of ``-S``,
  only the standard library is importable (no numpy).
* **Directory.** A fresh temporary directory per program is its working directory, ``HOME`` and
  ``TMPDIR``; it is removed afterwards. The program's source, stdin and the event log live in a
  second directory that only the parent can open.
* **Network namespace** (``netns``). Where Linux allows it (root, or unprivileged user namespaces),
  the child first enters a new network namespace: no interface but a loopback that is down, so no
  connection can leave it, whatever the code does.
* **Read-only file system** (``rofs``). With a user namespace, the child also enters a new mount
  namespace in which every mount is remounted read-only, except a bind mount of its own directory:
  the kernel refuses writes anywhere else.
* **Unprivileged user** (``nobody``). When the parent runs as root and the interpreter is readable
  by ``nobody``, the child switches to that user: file permissions confine it, it cannot signal the
  parent, and ``RLIMIT_NPROC`` is enforced (the kernel does not enforce it for root). Otherwise a
  root parent's child keeps uid 0 but inside a user namespace, without capabilities on the host.
* **Resource limits**, set in the child before the program runs: CPU time (``RLIMIT_CPU``), address
  space (``RLIMIT_AS``), file size (``RLIMIT_FSIZE``), processes and threads (``RLIMIT_NPROC``),
  no core dumps. Standard output and error are read concurrently and capped.
* **Audit hook** (``sys.addaudithook``, installed before the program is compiled, always on). It
  refuses process creation (``os.fork``, ``os.exec*``, ``os.system``, ``os.posix_spawn``,
  ``subprocess.Popen``, ``pty.spawn``, ...), signals to other processes, every socket operation and
  network client, ``ctypes``, changes to the file system outside the program's directory (``open``
  for writing, ``os.remove``, ``os.rename``, ``os.mkdir``, ``os.chmod``, ``shutil.rmtree``, sqlite
  databases, ...), links, opening directories outside it (their fds would let ``dir_fd`` calls
  write outside), ``chdir`` out of it, ``resource.setrlimit`` and the ``gc`` functions that could
  reach the hook. A refusal raises ``PermissionError("sandbox: ...")`` and is recorded, so the run
  fails (``reason`` "network", "process", "forbidden write" or "forbidden") even if the program
  catches the exception. The hook resolves paths (symbolic links included) only with functions it
  captured before the program ran, so rebinding ``os.path`` or ``builtins`` does not fool it. The
  unaudited primitives that could get round it (``os.mkfifo``, ``os.mknod``, ``os.chroot``,
  ``os.pidfd_open``, ``signal.pidfd_send_signal``, ``_posixsubprocess.fork_exec``,
  ``_imp.create_builtin``) are replaced by stubs that refuse.

`SandboxResult.isolation` says which layers applied, e.g. ``"netns+rofs+nobody+audit"`` (all),
``"netns+rofs+audit"`` or ``"audit"`` (the hook alone, where namespaces are unavailable).
`detect_isolation` tries the strongest combination first, once per process; a child that cannot set
up the planned layers exits without running the program. The audit hook is never left out.

Honest limits: an audit hook is not a security boundary. It only sees what CPython audits, and native
code (a C extension, an interpreter bug) is not bound by it; here it is one layer, beside the kernel's
namespaces, permissions and resource limits. Reading files is not restricted beyond file permissions
(the standard library must stay importable), so a program can print any file its user may read. A
program can exit with status 0 before the tests run (``os._exit(0)``): a grader should check that
its tests ran (e.g. print a secret token after them). For hostile workloads, add a container or a VM.

>>> result = run_python('print("hi")')
>>> result.ok, result.reason, result.stdout
(True, 'ok', 'hi\n')
>>> run_python("import socket\nsocket.create_connection(('example.com', 80))").reason
'network'
"""

from __future__ import annotations

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

__all__ = ["SandboxLimits", "SandboxResult", "detect_isolation", "run_many", "run_python"]

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
            module docstring).
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
    r"""Run the Python program ``source`` in a fresh sandbox (see the module docstring) and report.

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
# Running one program


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
            sys.executable, "-I", "-S", "-B", "-c", _BOOTSTRAP,
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
        proc.stdout.close()
        proc.stderr.close()
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


# ----------------------------------------------------------------------------------------------
# The child side: run by ``python -I -S -B -c _BOOTSTRAP ARGS...`` before the untrusted program.
#
# Order: import what the setup needs; read the program from its fd; enter the namespaces and/or
# switch to the unprivileged user (a root-only network namespace before switching, user namespaces
# after); make the file system read-only but for the program's directory; set the resource limits;
# pre-import the builtin modules and replace the unaudited primitives; install the audit hook;
# compile and run the program as ``__main__``. A step that fails ends the child with SETUP_FAILED
# and an "error" line in the events file: the program never runs with less isolation than planned.
#
# The events file (an inherited fd) gets one line per fact, tab-separated: "iso LABEL",
# "deny CATEGORY EVENT", "exception NAME", "memory", "file size", "syntax", "error MESSAGE".
# The program can write to it too, but only to its own cost: nothing there can turn a failure into
# success.
#
# The hook refers only to names local to ``_make_hook`` (captured before the program runs; no
# globals, no builtins looked up at call time), so a program cannot change what it calls.

_BOOTSTRAP = r'''
import sys


def _make_hook(root, marker_fd, own_pid):
    import posix

    _type = type
    _str = str
    _bytes = bytes
    _int = int
    _issubclass = issubclass
    _Exception = Exception
    _lstat = posix.lstat
    _readlink = posix.readlink
    _getcwd = posix.getcwd
    _write = posix.write
    _fspath = posix.fspath
    _sjoin = "".join
    _bjoin = b"".join
    _prefix = root + "/"
    _write_flags = posix.O_WRONLY | posix.O_RDWR | posix.O_CREAT | posix.O_TRUNC | posix.O_APPEND
    _allowed_files = ("/dev/null", "/dev/stdout", "/dev/stderr")
    _path_events = {
        "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
        "os.link": (0, 1), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,),
        "os.utime": (0,), "os.chflags": (0,), "os.lchflags": (0,), "os.setxattr": (0,),
        "os.removexattr": (0,), "shutil.rmtree": (0,),
    }
    _process_events = {
        "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn", "os.system",
        "subprocess.Popen", "pty.spawn", "os.startfile", "webbrowser.open",
        "_posixsubprocess.fork_exec", "os.pidfd_open", "signal.pidfd_send_signal",
    }
    _write_events = {"os.symlink", "os.mkfifo", "os.mknod"}
    _network_prefixes = (
        "socket.", "urllib.", "http.client.", "ftplib.", "smtplib.", "poplib.", "imaplib.",
        "nntplib.", "telnetlib.", "syslog.",
    )
    _forbidden_events = {
        "gc.get_objects", "gc.get_referrers", "gc.get_referents", "resource.setrlimit",
        "resource.prlimit", "sqlite3.enable_load_extension", "sqlite3.load_extension",
        "os.chroot", "_imp.create_builtin",
    }
    _process_modules = ("_posixsubprocess",)
    _forbidden_modules = ("readline", "_dbm", "_gdbm")
    _reported = [0]

    SandboxDenied = type(
        "SandboxDenied",
        (PermissionError,),
        {"__module__": "sandbox", "__doc__": "An operation the sandbox refuses."},
    )

    def deny(category, event, detail):
        if _reported[0] < 64:
            _reported[0] += 1
            try:
                _write(marker_fd, ("deny\t" + category + "\t" + event + "\n").encode("utf-8", "replace"))
            except _Exception:
                pass
        raise SandboxDenied("sandbox: " + event + " denied (" + category + detail + ")")

    def text(path):
        kind = _type(path)
        if kind is _str:
            return path
        if kind is _bytes:
            return path.decode("utf-8", "surrogateescape")
        if not (_issubclass(kind, _str) or _issubclass(kind, _bytes)):
            path = _fspath(path)  # a path-like object: called once, then only the copy is used
            kind = _type(path)
        if _issubclass(kind, _str):
            return _sjoin((path,))
        return _bjoin((path,)).decode("utf-8", "surrogateescape")

    def fd_target(fd):
        return _readlink("/proc/self/fd/" + _str(fd))

    def resolve(path):
        # The absolute path, with "." and ".." removed and symbolic links followed (like realpath).
        if not path.startswith("/"):
            path = _getcwd() + "/" + path
        todo = path.split("/")
        todo.reverse()
        parts = []
        hops = 0
        while todo:
            part = todo.pop()
            if part == "" or part == ".":
                continue
            if part == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(part)
            current = "/" + "/".join(parts)
            try:
                mode = _lstat(current)[0]
            except _Exception:
                continue
            if mode & 0o170000 == 0o120000:
                hops += 1
                if hops > 40:
                    deny("forbidden write", "resolve", ": too many symbolic links")
                target = _readlink(current)
                parts.pop()
                if target.startswith("/"):
                    parts.clear()
                more = target.split("/")
                more.reverse()
                todo.extend(more)
        return "/" + "/".join(parts)

    def inside(path):
        return path == root or path.startswith(_prefix)

    def relative_up(path):
        # A relative path with "..": its meaning depends on a dir_fd the "open" event does not show.
        return not path.startswith("/") and ".." in path.split("/")

    def check_write(event, value):
        if _type(value) is _int:
            if event == "os.truncate":
                return  # ftruncate needs an fd open for writing, which was checked
            path = fd_target(value)
            if not path.startswith("/"):
                deny("forbidden write", event, ": fd " + _str(value))
        else:
            path = text(value)
        if path in _allowed_files:
            return
        if relative_up(path):
            deny("forbidden write", event, ": relative path with '..': " + path)
        real = resolve(path)
        if not inside(real):
            deny("forbidden write", event, ": " + real)
        try:
            kind = _lstat(real)[0] & 0o170000
        except _Exception:
            return
        if kind == 0o020000 or kind == 0o060000:
            deny("forbidden write", event, ": device file " + real)

    def check_read(event, value):
        path = text(value)
        if relative_up(path):
            deny("forbidden", event, ": relative path with '..': " + path)
        real = resolve(path)
        if inside(real):
            return
        try:
            kind = _lstat(real)[0] & 0o170000
        except _Exception:
            return
        if kind == 0o040000:  # a directory fd would let *at() calls write outside
            deny("forbidden", event, ": directory outside the sandbox: " + real)

    def check(event, args):
        if event == "open":
            path = args[0]
            flags = args[2]
            if _type(path) is _int:
                return  # wraps an fd the program already has
            if _type(flags) is not _int or flags & _write_flags:
                check_write(event, path)
            else:
                check_read(event, path)
        elif event in _path_events:
            for index in _path_events[event]:
                check_write(event, args[index])
        elif event in _write_events:
            deny("forbidden write", event, ": links, fifos and device nodes are not allowed")
        elif event == "os.chdir":
            value = args[0]
            path = fd_target(value) if _type(value) is _int else text(value)
            if not inside(resolve(path)):
                deny("forbidden", event, ": outside the sandbox: " + path)
        elif event == "sqlite3.connect":
            kind = _type(args[0])
            if not (_issubclass(kind, _str) or _issubclass(kind, _bytes)):
                # sqlite converts a path-like object again after this event: it could change.
                deny("forbidden write", event, ": a path-like database name")
            database = text(args[0])
            if database.startswith("file:"):
                deny("forbidden write", event, ": sqlite URI " + database)
            if database != "" and database != ":memory:":
                check_write(event, database)
        elif event in _process_events:
            deny("process", event, "")
        elif event == "os.kill":
            if args[0] != own_pid and args[0] != 0:
                deny("process", event, ": pid " + _str(args[0]))
        elif event == "os.killpg":
            if args[0] != own_pid:
                deny("process", event, ": process group " + _str(args[0]))
        elif event.startswith(_network_prefixes):
            deny("network", event, "")
        elif event.startswith("ctypes.") or event in _forbidden_events:
            deny("forbidden", event, "")
        elif event == "import":
            name = text(args[0])
            if name in _process_modules:
                deny("process", event, ": " + name)
            if name in _forbidden_modules:
                deny("forbidden", event, ": " + name)

    def hook(event, args):
        try:
            check(event, args)
        except SandboxDenied:
            raise
        except _Exception:
            deny("forbidden", event, ": the sandbox could not check this call")

    return hook


class _Quitter:
    # exit() and quit() (normally added by the site module, which -S skips).
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "Use %s() or Ctrl-D (i.e. EOF) to exit" % self.name

    def __call__(self, code=None):
        raise SystemExit(code)


def _scrub(_imp, _posixsubprocess, os, posix, signal):
    # Pre-import every builtin module, then replace the primitives the audit hook cannot see. A
    # function of its own, so that no frame the program can reach still refers to them.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. deprecated builtin modules
        for name in sys.builtin_module_names:
            if name not in sys.modules:
                try:
                    __import__(name)
                except Exception:
                    pass

    def refuser(event):
        # Stands in for a removed function: raises an audit event (which the hook refuses and
        # records), and never calls the original.
        def refused(*args, **kwargs):
            sys.audit(event)
            raise PermissionError("sandbox: " + event + " denied")

        refused.__name__ = refused.__qualname__ = event.rpartition(".")[2]
        return refused

    replaced = {}
    for module, prefix, names in (
        (posix, "os.", ("mkfifo", "mknod", "chroot", "pidfd_open")),
        (os, "os.", ("mkfifo", "mknod", "chroot", "pidfd_open")),
        (sys.modules["_signal"], "signal.", ("pidfd_send_signal",)),
        (signal, "signal.", ("pidfd_send_signal",)),
        (_posixsubprocess, "_posixsubprocess.", ("fork_exec",)),
        (_imp, "_imp.", ("create_builtin",)),
    ):
        for name in names:
            original = module.__dict__.get(name)
            if original is not None:
                stub = replaced.get(id(original))
                if stub is None:
                    stub = replaced[id(original)] = (original, refuser(prefix + name))
                module.__dict__[name] = stub[1]
    for registry in ("supports_dir_fd", "supports_fd", "supports_follow_symlinks", "supports_effective_ids"):
        functions = getattr(os, registry, None)
        if isinstance(functions, set):
            for original, stub in replaced.values():
                if original in functions:
                    functions.discard(original)
                    functions.add(stub)


def _sandbox_main(argv):
    import posix

    (root, program_fd, marker_fd, namespaces, uid, gid, cpu, memory, fsize, nproc, label) = argv
    program_fd, marker_fd, uid, gid = int(program_fd), int(marker_fd), int(uid), int(gid)
    cpu, memory, fsize, nproc = int(cpu), int(memory), int(fsize), int(nproc)

    def note(line):
        try:
            posix.write(marker_fd, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        except Exception:
            pass

    def fail(message):
        note("error\t" + message)
        try:
            sys.stderr.write("sandbox: setup failed: " + message + "\n")
            sys.stderr.flush()
        finally:
            posix._exit(125)

    # Everything the setup needs is imported now: after switching user, the standard library may
    # not be readable.
    import _imp
    import _posixsubprocess
    import os
    import resource
    import signal
    import warnings  # noqa: F401  (used by _scrub)

    if namespaces not in ("none", "net", "user+net", "user+net+ro"):
        fail("unknown namespaces " + namespaces)
    if namespaces != "none":
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
        except Exception as exc:
            fail("cannot call unshare: %r" % (exc,))

    chunks = []
    while True:
        chunk = posix.read(program_fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    posix.close(program_fd)
    source = b"".join(chunks).decode("utf-8", "surrogatepass")
    if posix.getcwd() != root:
        fail("unexpected working directory " + posix.getcwd())

    def enter_namespaces(flags):
        if libc.unshare(flags) != 0:
            fail("unshare failed: " + posix.strerror(ctypes.get_errno()))

    def unescape(field):
        # /proc/self/mountinfo writes space, tab, newline and backslash as octal escapes.
        out = bytearray()
        i = 0
        while i < len(field):
            if field[i] == 92 and field[i + 1 : i + 4].isdigit() and len(field[i + 1 : i + 4]) == 3:
                out.append(int(field[i + 1 : i + 4], 8))
                i += 4
            else:
                out.append(field[i])
                i += 1
        return bytes(out)

    def read_only_except(directory):
        # In the new mount namespace: every mount read-only, except a bind mount of ``directory``.
        # MS_BIND with MS_REMOUNT changes only this namespace's mount, never the file system; and
        # in a user namespace the kernel refuses anything else anyway.
        ms_rdonly, ms_remount, ms_bind, ms_rec, ms_private = 1, 32, 4096, 16384, 1 << 18
        kept = {
            b"nosuid": 2, b"nodev": 4, b"noexec": 8, b"noatime": 1024, b"nodiratime": 2048,
            b"relatime": 1 << 21, b"strictatime": 1 << 24,
        }  # flags locked by the user namespace must be kept
        mount = libc.mount
        mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
        own = directory.encode("utf-8", "surrogateescape")
        if mount(None, b"/", None, ms_rec | ms_private, None) != 0:
            fail("mount --make-rprivate / failed: " + posix.strerror(ctypes.get_errno()))
        if mount(own, own, None, ms_bind | ms_rec, None) != 0:
            fail("bind mount of the sandbox directory failed: " + posix.strerror(ctypes.get_errno()))
        with open("/proc/self/mountinfo", "rb") as handle:
            lines = handle.read().splitlines()
        for line in lines:
            fields = line.split(b" ")
            point = unescape(fields[4])
            if point == own or point.startswith(own + b"/"):
                continue
            flags = ms_bind | ms_remount | ms_rdonly
            for option in fields[5].split(b","):
                flags |= kept.get(option, 0)
            if mount(None, point, None, flags, None) != 0:
                errno = ctypes.get_errno()
                if errno not in (2, 13):  # ENOENT, EACCES: a mount point this process cannot reach
                    fail("read-only remount of %r failed: %s" % (point, posix.strerror(errno)))
        posix.chdir(directory)  # the working directory must be on the new, writable mount

    clone_newnet, clone_newuser, clone_newns = 0x40000000, 0x10000000, 0x00020000
    if namespaces == "net":
        enter_namespaces(clone_newnet)
    if uid >= 0:
        try:
            posix.setgroups([])
            posix.setresgid(gid, gid, gid)
            posix.setresuid(uid, uid, uid)
        except OSError as exc:
            fail("could not switch to uid %d: %s" % (uid, exc))
        if posix.getresuid() != (uid, uid, uid) or posix.getresgid() != (gid, gid, gid):
            fail("could not switch to uid %d" % uid)
    if namespaces == "user+net":
        enter_namespaces(clone_newuser | clone_newnet)
    elif namespaces == "user+net+ro":
        enter_namespaces(clone_newuser | clone_newns | clone_newnet)
        read_only_except(root)
    if namespaces != "none":
        del libc, ctypes
        for name in ("ctypes", "ctypes._endian"):
            sys.modules.pop(name, None)

    def limit(kind, soft, hard):
        _, current = resource.getrlimit(kind)
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(kind, (soft, hard))

    try:
        limit(resource.RLIMIT_CORE, 0, 0)
        limit(resource.RLIMIT_CPU, cpu, cpu + 1)
        limit(resource.RLIMIT_FSIZE, fsize, fsize)
        limit(resource.RLIMIT_NPROC, nproc, nproc)
    except (OSError, ValueError) as exc:
        fail("setrlimit failed: %r" % (exc,))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # CPython ignores it; let the kernel say "file size"

    _scrub(_imp, _posixsubprocess, os, posix, signal)
    del _imp, _posixsubprocess
    limit(resource.RLIMIT_AS, memory, memory)
    sys.addaudithook(_make_hook(root, marker_fd, posix.getpid()))
    note("iso\t" + label)

    # The program runs as a fresh __main__ module.
    import builtins

    SystemExit_, BaseException_, MemoryError_, OSError_ = SystemExit, BaseException, MemoryError, OSError
    main = type(sys)("__main__")
    main.__dict__["__builtins__"] = builtins
    builtins.exit, builtins.quit = _Quitter("exit"), _Quitter("quit")
    sys.modules["__main__"] = main
    sys.argv[:] = ["<program>"]

    def report(exc, tb):
        try:
            import linecache
            import traceback

            linecache.cache["<program>"] = (len(source), None, source.splitlines(True), "<program>")
            traceback.print_exception(type(exc), exc, tb)
        except BaseException_:
            try:
                sys.__excepthook__(type(exc), exc, tb)
            except BaseException_:
                pass
        try:
            sys.stderr.flush()
        except BaseException_:
            pass

    try:
        code = compile(source, "<program>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        note("syntax")
        report(exc, None)
        raise SystemExit_(1)
    try:
        exec(code, main.__dict__)
    except SystemExit_:
        raise
    except BaseException_ as exc:
        kind = type(exc)
        if issubclass(kind, MemoryError_):
            note("memory")
        elif issubclass(kind, OSError_) and exc.errno == 27:  # EFBIG
            note("file size")
        note("exception\t" + str(kind.__name__))
        report(exc, exc.__traceback__.tb_next)
        raise SystemExit_(1)


_sandbox_main(sys.argv[1:])
'''
