"""The sandbox's child program. The parent (`dllm_mcmc.eval.sandbox.parent`) reads this file's source
and runs it as ``python -I -S -B -c SOURCE CONFIG`` before the untrusted program. So it must run on its
own under ``-I -S -B``: standard library only, nothing from ``dllm_mcmc``, nothing from site-packages.
The parent imports it only for `remove_tree`; importing it defines names and runs nothing.

Three processes, one interpreter start (the later two are ``fork``\\ s, so no second start-up):

* the **keeper** (the process the parent starts): asks the kernel to send it ``SIGTERM`` when the
  parent dies (``PR_SET_PDEATHSIG``, prctl(2)); on that signal it kills the init and removes the
  program's directory, so even a ``SIGKILL``\\ ed grader leaves nothing behind. Where the plan says so
  it creates a PID namespace (and, without root, a user namespace first), then forks:
* the **init**: PID 1 of the new PID namespace (pid_namespaces(7)): when it exits, the kernel kills
  every process left in the namespace, daemons with their own session included. It enters new mount,
  network, IPC and UTS namespaces, hides ``/tmp``, ``/root``, ``/home``, ... behind empty ``tmpfs``
  mounts (the standard library is bound back), gives the program's directory a size-limited tmpfs of
  its own, mounts a ``/proc`` that shows only the namespace's processes, makes every mount read-only
  except the program's directory, sets ``PR_SET_NO_NEW_PRIVS``, then forks the program's process,
  waits for it and reports its exit status and CPU time on the status pipe, which the program never
  holds.
* the **program's process**: its own session, the unprivileged user (``setresuid``, which clears every
  capability, capabilities(7)) or, in a user namespace, no capability; ``PR_SET_PDEATHSIG``; resource
  limits; modules and primitives that bypass the audit hook removed; two audit hooks (the *guard*,
  which refuses, and the *witness*, which reports completion); then the program, as ``__main__``.

Channels to the parent: the **events pipe** (write end in the program's process only): "ready LABEL"
once the setup is done, then "deny CATEGORY EVENT" at each refusal (written before the refusal is
raised; a pipe cannot be truncated, and a refusal whose record cannot be written ends the process with
`RECORD_LOST`), "exception NAME" / "memory" / "file size" / "syntax" about an uncaught error, and
"done TOKEN" from the witness when the program's module body has returned. The TOKEN comes from the
parent over a pipe that the witness reads and closes before the program starts: it is in no file, no
argument, no environment variable and no object the program's frames lead to. The **status pipe**
(keeper and init only): setup errors and "status WAITSTATUS CPU" for the program's process.
"""

# ruff: noqa: UP031, B904  (%-formatting and plain re-raises, as the child always had)

import sys

#: Exit status of a child whose sandbox could not be set up (the program did not run).
SETUP_FAILED = 125
#: Exit status of a program's process whose refusal could not be recorded (its events pipe was closed,
#: replaced or blocked by the program): the process ends at once instead of going on unrecorded.
RECORD_LOST = 126
#: The audit event by which the harness says "the program's module body returned" (see `_make_witness`).
DONE_EVENT = "dllm.sandbox.done"

# Modules whose import is refused (by name, or by the last part of a dotted name, or by the file an
# extension module is loaded from). Subinterpreters run without this interpreter's audit hooks; the
# others reach raw memory, the C API or a terminal.
INTERPRETER_MODULES = (
    "_xxsubinterpreters", "_interpreters", "_xxinterpchannels", "_interpchannels", "_interpqueues",
    "interpreters",
)
FORBIDDEN_MODULES = (
    "ctypes", "_ctypes", "_ctypes_test", "_testcapi", "_testinternalcapi", "_testbuffer", "_testclinic",
    "_testimportmultiple", "_testmultiphase", "_testsinglephase", "_xxtestfuzz", "_testlimitedcapi", "readline", "_dbm",
    "_gdbm", "_tkinter", "_curses", "_curses_panel",
)

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWUSER, _CLONE_NEWPID, _CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_NO_NEW_PRIVS, _PR_GET_NO_NEW_PRIVS = 1, 4, 38, 39
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 1, 2, 4, 8, 32
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18


# ----------------------------------------------------------------------------------------------
# Removing a directory tree (shared with the parent)


def remove_tree(path):
    """Remove ``path`` and everything under it; never raises. True if nothing is left.

    Iterative (no recursion limit, however deep the tree), never follows a symbolic link, and never
    opens anything but directories (``O_NOFOLLOW | O_DIRECTORY``): FIFOs, sockets and device nodes are
    only unlinked. Read-only directories are made writable first. It climbs back with ``".."`` and
    checks each step against the device and inode it came from, so a directory moved meanwhile stops
    the removal instead of leading it elsewhere. Keeps one directory fd open at a time.
    """
    import os

    try:
        path = os.path.abspath(path)
        parent, name = os.path.split(path)
        if not name:
            return False  # never "/"
        try:
            parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return not os.path.lexists(path)
        try:
            _remove_entry(os, parent_fd, name)
        finally:
            os.close(parent_fd)
    except Exception:
        pass
    try:
        return not os.path.lexists(path)
    except Exception:
        return False


def _remove_entry(os, parent_fd, name):
    import stat

    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(name, dir_fd=parent_fd)
        return

    def open_dir(at, entry):
        try:
            return os.open(entry, flags, dir_fd=at)
        except PermissionError:  # a directory without x or r for its owner (root never gets here)
            os.chmod(entry, 0o700, dir_fd=at)
            return os.open(entry, flags, dir_fd=at)

    fd = open_dir(parent_fd, name)
    names = []  # the path from the top, as names
    ids = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino)]
    try:
        while True:
            try:
                os.fchmod(fd, 0o700)
            except OSError:
                pass
            child = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        child = entry.name
                        break
                    try:
                        os.unlink(entry.name, dir_fd=fd)
                    except FileNotFoundError:
                        pass
            if child is not None:
                child_fd = open_dir(fd, child)
                child_info = os.fstat(child_fd)
                os.close(fd)
                fd = child_fd
                names.append(child)
                ids.append((child_info.st_dev, child_info.st_ino))
                continue
            if not names:
                os.close(fd)
                fd = -1
                os.rmdir(name, dir_fd=parent_fd)
                return
            up = os.open("..", flags, dir_fd=fd)
            up_info = os.fstat(up)
            os.close(fd)
            fd = up
            ids.pop()
            if (up_info.st_dev, up_info.st_ino) != ids[-1]:
                return  # the tree changed under us: stop rather than remove elsewhere
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        if fd >= 0:
            os.close(fd)


# ----------------------------------------------------------------------------------------------
# Small system calls (ctypes, before the program runs)


def _load_libc(fail):
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
        libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
        libc.unshare.argtypes = (ctypes.c_int,)
        return libc
    except Exception as exc:
        fail("cannot load libc: %r" % (exc,))


def _errno():
    import ctypes

    return ctypes.get_errno()


def _check(result, fail, what):
    import os

    if result != 0:
        fail("%s failed: %s" % (what, os.strerror(_errno())))


def _drop_capabilities(libc, fail):
    # capset(2) with empty effective, permitted and inheritable sets (version 3: two 32-bit words each).
    import ctypes

    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), fail, "capset")


# ----------------------------------------------------------------------------------------------
# The keeper


def _keeper(config, libc, fail):
    """Runs in the process the parent started; returns only in the forked init."""
    import os
    import signal

    child = [0]
    root = config["root"]

    def abort(signum, _frame):
        # The grader died (PR_SET_PDEATHSIG) or someone asked us to stop: take everything down.
        pid = child[0]
        if pid > 0:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        remove_tree(root)
        os._exit(128 + signum)

    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGALRM):
        signal.signal(number, abort)
    # A backstop for a grader that can no longer enforce the wall clock (it normally kills us first).
    signal.alarm(int(min(config["wall"], 1e9)) + 10)
    _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0), fail, "prctl(PR_SET_PDEATHSIG)")
    # The parent died before the line above? (Inside an outer sandbox tool our parent is the tool,
    # which itself dies with the grader: --die-with-parent.)
    if not config["plan"].get("outer") and os.getppid() != config["parent"]:
        abort(signal.SIGTERM, None)

    plan = config["plan"]
    if plan["namespaces"] == "user":
        outside_uid, outside_gid = os.getuid(), os.getgid()
        flags = _CLONE_NEWUSER | (_CLONE_NEWPID if plan["pidns"] else 0)
        _check(libc.unshare(flags), fail, "unshare(CLONE_NEWUSER)")
        try:
            # Unprivileged: only our own ids can be mapped, and setgroups must be denied first
            # (user_namespaces(7)). Mapped to themselves: the program keeps a non-root uid inside.
            for name, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (outside_uid, outside_uid)),
                               ("gid_map", "%d %d 1" % (outside_gid, outside_gid))):
                with open("/proc/self/" + name, "w") as handle:
                    handle.write(text)
        except OSError as exc:
            fail("user namespace maps: %s" % (exc,))
    elif plan["namespaces"] == "root" and plan["pidns"]:
        _check(libc.unshare(_CLONE_NEWPID), fail, "unshare(CLONE_NEWPID)")
    elif plan["namespaces"] not in ("root", "none"):
        fail("unknown namespaces " + str(plan["namespaces"]))

    lifeline_read, lifeline_write = os.pipe()  # the init sees EOF on it once the keeper is gone
    pid = os.fork()
    if pid == 0:
        os.close(lifeline_write)
        signal.alarm(0)
        for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGALRM):
            signal.signal(number, signal.SIG_DFL)
        config["lifeline"] = lifeline_read
        return
    child[0] = pid
    os.close(lifeline_read)
    fds = config["fds"]
    for fd in (fds["program"], fds["token"], fds["events"], 0):
        try:
            os.close(fd)
        except OSError:
            pass
    while True:
        try:
            os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            break
    os._exit(0)


# ----------------------------------------------------------------------------------------------
# The init: namespaces, file system, and waiting for the program's process


def _unescape(field):
    # /proc/self/mountinfo writes space, tab, newline and backslash as octal escapes.
    out = bytearray()
    i = 0
    while i < len(field):
        digits = field[i + 1 : i + 4]
        if field[i] == 92 and len(digits) == 3 and digits.isdigit():
            out.append(int(digits, 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return bytes(out)


def _under(path, folder):
    slash = b"/" if isinstance(path, bytes) else "/"
    return path == folder or path.startswith(folder.rstrip(slash) + slash)


def _isolate_files(libc, fail, root, masks, keep, new_proc, owner, quota):
    """In the new mount namespace (mount(2), mount_namespaces(7)): hide ``masks`` behind empty tmpfs
    mounts with ``keep`` bound back at their own paths, give the program a tmpfs of its own at ``root``
    (owned by ``owner``, at most ``quota`` bytes and 65536 inodes, gone with the namespace: it cannot
    fill the disk or its inodes), mount a fresh /proc when ``new_proc``, then make every mount
    read-only except ``root``. Only bind remounts (``MS_BIND | MS_REMOUNT``) are used for that: they
    change this namespace's mounts, never a file system's own (superblock) flags."""
    import os

    def mount(source, target, fstype, flags, data, what):
        encode = (lambda s: None if s is None else s.encode("utf-8", "surrogateescape"))
        if libc.mount(encode(source), encode(target), encode(fstype), flags, encode(data)) != 0:
            fail("%s failed: %s" % (what, os.strerror(_errno())))

    def make_path(mask, path):
        current = mask
        for part in path[len(mask.rstrip("/")) + 1 :].split("/"):
            current = current.rstrip("/") + "/" + part
            try:
                os.mkdir(current, 0o755)
            except FileExistsError:
                pass

    # First of all, nothing we do may propagate back to the parent's namespace.
    mount(None, "/", None, _MS_REC | _MS_PRIVATE, None, "mount --make-rprivate /")
    # Bind the outermost folders only (lib-dynload lies inside the standard library's folder).
    keep = [path for path in keep if not any(other != path and _under(path, other) for other in keep)]
    held = {}
    for path in keep:
        try:
            held[path] = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            fail("cannot open %s: %s" % (path, exc))
    hidden = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    for mask in masks:
        mount("tmpfs", mask, "tmpfs", hidden, "mode=755,size=64k", "tmpfs on " + mask)
        for path, fd in held.items():
            if path != mask and _under(path, mask):
                make_path(mask, path)
                mount("/proc/self/fd/%d" % fd, path, None, _MS_BIND | _MS_REC, None, "bind mount of " + path)
        if root != mask and _under(root, mask):
            make_path(mask, root)
    for fd in held.values():
        os.close(fd)
    options = "mode=700,uid=%d,gid=%d,size=%d,nr_inodes=65536" % (owner[0], owner[1], quota)
    mount("tmpfs", root, "tmpfs", hidden, options, "tmpfs for the sandbox directory")
    if new_proc:
        # The new PID namespace's own /proc: only its processes are there.
        mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None, "mount of /proc")
    kept = {
        b"nosuid": _MS_NOSUID, b"nodev": _MS_NODEV, b"noexec": _MS_NOEXEC, b"noatime": 1024,
        b"nodiratime": 2048, b"relatime": 1 << 21, b"strictatime": 1 << 24,
    }  # per-mount flags that must be kept (a user namespace locks them)
    own = root.encode("utf-8", "surrogateescape")
    with open("/proc/self/mountinfo", "rb") as handle:
        lines = handle.read().splitlines()
    for line in lines:
        fields = line.split(b" ")
        point = _unescape(fields[4])
        if point == own or point.startswith(own + b"/"):
            continue
        flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY
        for option in fields[5].split(b","):
            flags |= kept.get(option, 0)
        if libc.mount(None, point, None, flags, None) != 0:
            errno = _errno()
            if errno in (2, 13):  # ENOENT, EACCES: a mount point hidden by another or unreachable
                continue
            if errno == 1 and any(_under(point, kernel) for kernel in (b"/proc", b"/sys", b"/dev/pts", b"/dev/mqueue")):
                continue  # EPERM: kernel files locked by an outer sandbox (bwrap, a container); not data
            fail("read-only remount of %r failed: %s" % (point, os.strerror(errno)))
    os.chdir(root)  # the working directory must be on the new, writable mount


def _init(config, libc, fail):
    """Runs in the forked init; returns only in the forked program's process."""
    import os
    import signal

    _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), fail, "prctl(PR_SET_PDEATHSIG)")
    lifeline = config.pop("lifeline")
    os.set_blocking(lifeline, False)
    try:
        if os.read(lifeline, 1) == b"":
            os._exit(1)  # the keeper is already gone
    except BlockingIOError:
        pass
    plan = config["plan"]
    if plan["namespaces"] in ("root", "user"):
        _check(libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS), fail,
               "unshare(mount, network, IPC, UTS)")
        owner = (plan["uid"], plan["gid"]) if plan["uid"] >= 0 else (os.getuid(), os.getgid())
        quota = max(4 * config["limits"]["fsize"], 64 << 20)
        _isolate_files(libc, fail, config["root"], config["masks"], config["stdlib"], plan["pidns"], owner, quota)
    if plan["namespaces"] == "user":
        _drop_capabilities(libc, fail)  # the mounts are done: neither the init nor the program needs any
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), fail, "prctl(PR_SET_NO_NEW_PRIVS)")
    _check(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), fail, "prctl(PR_SET_DUMPABLE)")  # no ptrace of the init

    pid = os.fork()
    if pid == 0:
        config["init_pid"] = os.getppid()
        return
    fds = config["fds"]
    for fd in (fds["program"], fds["token"], fds["events"], lifeline):
        try:
            os.close(fd)
        except OSError:
            pass
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)  # the output pipes reach EOF when the program's side closes them
    status, cpu = None, 0.0
    while True:
        try:
            done, raw, usage = os.wait4(-1, 0)  # as PID 1, orphans are ours to reap too
        except InterruptedError:
            continue
        except ChildProcessError:
            break
        if done == pid:
            status, cpu = raw, usage.ru_utime + usage.ru_stime
            break
    if status is not None:
        try:
            os.write(fds["status"], ("status\t%d\t%.6f\n" % (status, cpu)).encode())
        except OSError:
            pass
    os._exit(0)  # in a PID namespace, the kernel now kills whatever the program left behind


# ----------------------------------------------------------------------------------------------
# The program's process: credentials, limits, scrubbing, hooks


def _become_program(config, libc, fail):
    import os
    import resource
    import signal

    fds = config["fds"]
    os.close(fds["status"])
    plan = config["plan"]
    if plan["pidns"]:
        os.setsid()  # kill(0, ...) then reaches only its own processes
    uid, gid = plan["uid"], plan["gid"]
    if uid >= 0:
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)  # from root: clears every capability (capabilities(7))
        except OSError as exc:
            fail("could not switch to uid %d: %s" % (uid, exc))
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
            fail("could not switch to uid %d" % uid)
    # Set after the switch, which clears it (prctl(2)); the init cannot have died unseen before it.
    _check(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), fail, "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != config["init_pid"]:
        os._exit(1)
    if libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1:
        fail("PR_SET_NO_NEW_PRIVS is not set")
    if os.getcwd() != config["root"]:
        fail("unexpected working directory " + os.getcwd())

    def limit(kind, soft, hard):
        _, current = resource.getrlimit(kind)
        if current != resource.RLIM_INFINITY:
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(kind, (soft, hard))

    limits = config["limits"]
    try:
        limit(resource.RLIMIT_CORE, 0, 0)
        limit(resource.RLIMIT_CPU, limits["cpu"], limits["cpu"] + 1)
        limit(resource.RLIMIT_FSIZE, limits["fsize"], limits["fsize"])
        limit(resource.RLIMIT_NPROC, limits["nproc"], limits["nproc"])
    except (OSError, ValueError) as exc:
        fail("setrlimit failed: %r" % (exc,))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # CPython ignores it; let the kernel say "file size"
    # Nobody interrupts the program; with the default disposition asyncio.run does not try to install
    # its own SIGINT handler (which the scrubbed signal.signal would refuse).
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _Quitter:
    # exit() and quit() (normally added by the site module, which -S skips).
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "Use %s() or Ctrl-D (i.e. EOF) to exit" % self.name

    def __call__(self, code=None):
        raise SystemExit(code)


def _scrub(threads_allowed):
    """Pre-import the builtin modules, remove the modules that get round the audit hook and replace the
    unaudited primitives by refusing stubs. A function of its own, so that no frame the program can
    reach still refers to an original."""
    import _imp
    import _posixsubprocess
    import _thread
    import os
    import posix
    import signal
    import warnings

    refused_names = set(INTERPRETER_MODULES) | set(FORBIDDEN_MODULES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. deprecated builtin modules
        for name in sys.builtin_module_names:
            if name not in sys.modules and name not in refused_names:
                try:
                    __import__(name)
                except Exception:
                    pass
    # Popped, not poisoned: importing them again raises the "import" event, which the guard refuses
    # and records. The setup's own ctypes goes too (its classes stay reachable through
    # object.__subclasses__, but every foreign call, load and raw-memory access raises a "ctypes.*"
    # event, which the guard refuses).
    for name in list(sys.modules):
        if name.partition(".")[0] in refused_names or name.rpartition(".")[2] in refused_names:
            del sys.modules[name]

    audit = sys.audit

    def refuser(event):
        # Stands in for a removed function: raises an audit event (which the guard refuses and
        # records), and never calls the original, which it does not hold.
        def refused(*args, **kwargs):
            audit(event)
            raise PermissionError("sandbox: " + event + " denied")

        refused.__name__ = refused.__qualname__ = event.rpartition(".")[2]
        return refused

    removed = ("mkfifo", "mknod", "chroot", "pidfd_open", "setpriority", "sched_setaffinity",
               "sched_setscheduler", "sched_setparam", "setns", "unshare")
    stubs = [
        (posix, "os.", removed),
        (os, "os.", removed),
        # Python-level signal handlers run wherever the main thread happens to be, the witness's
        # frame included: no handler of the program's (the defaults stay).
        (sys.modules["_signal"], "signal.", ("pidfd_send_signal", "signal")),
        (signal, "signal.", ("pidfd_send_signal",)),
        (_posixsubprocess, "_posixsubprocess.", ("fork_exec",)),
        (_imp, "_imp.", ("create_builtin",)),
    ]
    if not threads_allowed:
        stubs.append((_thread, "_thread.", ("start_new_thread", "start_new", "start_joinable_thread")))
        threading = sys.modules.get("threading")
        if threading is not None:
            stubs.append((threading, "_thread.", ("_start_new_thread", "_start_joinable_thread")))
    replaced: dict = {}  # id(original) -> (original, stub)
    for module, prefix, names in stubs:
        for name in names:
            original = module.__dict__.get(name)
            if original is not None:
                stub = replaced.get(id(original))
                if stub is None:
                    stub = replaced[id(original)] = (original, refuser(prefix + name.lstrip("_")))
                module.__dict__[name] = stub[1]
    for registry in ("supports_dir_fd", "supports_fd", "supports_follow_symlinks", "supports_effective_ids"):
        functions = getattr(os, registry, None)
        if isinstance(functions, set):
            for original, stub in replaced.values():
                if original in functions:
                    functions.discard(original)
                    functions.add(stub)


def _close_other_fds(keep):
    import os

    for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


# ----------------------------------------------------------------------------------------------
# The audit hooks


def _make_witness(token_fd, events_fd, runner_code, done_line):
    """The hook that reports completion: on `DONE_EVENT` raised at ``done_line`` of the genuine runner
    frame (the frame chain below it is the setup's own, captured now, down to the bottom), it writes
    "done TOKEN" to the events pipe. It reads the token here, once, and closes its pipe: the token
    lives only in this closure, which no frame of the program leads to (audit hooks cannot be listed,
    the "sys.addaudithook", "gc.*", "/proc/*/mem" routes are refused, and this hook never calls code
    the program could have replaced). The program cannot raise the event from that frame and line
    without its module body having returned."""
    import posix

    chunks = []
    while True:
        chunk = posix.read(token_fd, 256)
        if not chunk:
            break
        chunks.append(chunk)
    posix.close(token_fd)
    line = b"\ndone\t" + b"".join(chunks) + b"\n"
    info = posix.fstat(events_fd)
    device, inode = info.st_dev, info.st_ino
    getframe = sys._getframe
    write = posix.write
    fstat = posix.fstat
    event_name = DONE_EVENT
    import gc

    gc_enabled, gc_disable, gc_enable = gc.isenabled, gc.disable, gc.enable
    chain = []
    current = getframe(1)  # the caller, which runs the program next: its chain down to the bottom
    while True:
        chain.append(current.f_code)
        down = current.f_back
        if down is None:
            break
        current = down
    below = tuple(chain)
    del current, down, chain, chunks

    def witness(event, args):
        # Every event passes here: the first test allocates nothing and calls nothing, so no code of
        # the program (a finalizer run by the garbage collector; signal handlers are refused) can run
        # while this frame, whose free variables include the token, is on the stack.
        if event != event_name:
            return
        was_enabled = gc_enabled()
        gc_disable()  # the checks below allocate: no collection, so no finalizer of the program
        try:
            frame = getframe(1)
            if frame.f_code is not runner_code or frame.f_lineno != done_line:
                return
            for code in below:
                back = frame.f_back
                if back is None or back.f_code is not code:
                    return
                frame = back
            if frame.f_back is not None:
                return
            state = fstat(events_fd)
            if state.st_dev == device and state.st_ino == inode:
                write(events_fd, line)
        finally:
            if was_enabled:
                gc_enable()

    return witness


def _run_program(code, namespace, audit, event):
    exec(code, namespace)
    audit(event)  # this line is _make_witness's done_line: co_firstlineno + 2


def _make_guard(root, events_fd, own_pid, stdlib, dynload, compile_bytecode, coroutine, threads_allowed):
    """The hook that refuses: process creation, signals to other processes, network, files outside
    ``root``, native code from outside the standard library, subinterpreters, hand-made code objects,
    ``/proc`` entries of other processes and this one's fd/mem entries, ... Each refusal is written to
    the events pipe before ``PermissionError`` is raised. It refers only to names local to this
    factory (captured before the program runs), so a program cannot change what it calls."""
    import posix

    _type = type
    _str = str
    _bytes = bytes
    _int = int
    _memoryview = memoryview
    _len = len
    _issubclass = issubclass
    _Exception = Exception
    _lstat = posix.lstat
    _readlink = posix.readlink
    _getcwd = posix.getcwd
    _write = posix.write
    _fstat = posix.fstat
    _open = posix.open
    _read = posix.read
    _close = posix.close
    _exit = posix._exit
    _fspath = posix.fspath
    _getframe = sys._getframe
    _sjoin = "".join
    _bjoin = b"".join
    _prefix = root + "/"
    _own_pid = _str(own_pid)
    _record_lost = RECORD_LOST
    _events_info = posix.fstat(events_fd)
    _events_id = (_events_info.st_dev, _events_info.st_ino)
    _rdonly = posix.O_RDONLY | posix.O_CLOEXEC
    _write_flags = posix.O_WRONLY | posix.O_RDWR | posix.O_CREAT | posix.O_TRUNC | posix.O_APPEND
    _allowed_files = ("/dev/null", "/dev/stdin", "/dev/stdout", "/dev/stderr")
    _readable_devices = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
    _stdlib = tuple(path.rstrip("/") + "/" for path in stdlib)
    _dynload = tuple(path.rstrip("/") + "/" for path in dynload)
    _proc_private = ("fd", "mem", "map_files", "fdinfo", "pagemap")
    _path_events = {
        "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
        "os.link": (0, 1), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,),
        "os.utime": (0,), "os.chflags": (0,), "os.lchflags": (0,), "os.setxattr": (0,),
        "os.removexattr": (0,), "shutil.rmtree": (0,),
    }
    _process_events = {
        "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn", "os.system",
        "subprocess.Popen", "pty.spawn", "os.startfile", "webbrowser.open",
        "_posixsubprocess.fork_exec", "os.pidfd_open", "signal.pidfd_send_signal", "os.setpriority",
        "os.sched_setaffinity", "os.sched_setscheduler", "os.sched_setparam", "os.setns", "os.unshare",
        "_thread.start_new_thread", "_thread.start_new", "_thread.start_joinable_thread",
        "cpython.PyInterpreterState_New",
    }
    _write_events = {"os.symlink", "os.mkfifo", "os.mknod"}
    _network_prefixes = (
        "socket.", "urllib.", "http.client.", "ftplib.", "smtplib.", "poplib.", "imaplib.",
        "nntplib.", "telnetlib.", "syslog.",
    )
    _forbidden_events = {
        "gc.get_objects", "gc.get_referrers", "gc.get_referents", "resource.setrlimit",
        "resource.prlimit", "sqlite3.enable_load_extension", "sqlite3.load_extension",
        "os.chroot", "_imp.create_builtin", "sys.addaudithook", "marshal.load",
        "sys.settrace", "sys.setprofile", "sys._current_frames", "sys._current_exceptions",
        "mmap.__new__", "sys.remote_exec", "signal.signal",
    }
    _process_modules = ("_posixsubprocess",) + INTERPRETER_MODULES
    _forbidden_modules = FORBIDDEN_MODULES
    _reported = [0]

    SandboxDenied: type[PermissionError] = type(
        "SandboxDenied",
        (PermissionError,),
        {"__module__": "sandbox", "__doc__": "An operation the sandbox refuses."},
    )

    def record(data):
        # The events pipe must still be the one the parent reads; else this process ends here.
        try:
            info = _fstat(events_fd)
            if (info.st_dev, info.st_ino) == _events_id and _write(events_fd, data) == _len(data):
                return
        except _Exception:
            pass
        try:
            _write(2, b"sandbox: a refusal could not be recorded (events pipe closed or replaced)\n")
        finally:
            _exit(_record_lost)

    def deny(category, event, detail):
        if _reported[0] < 64:
            _reported[0] += 1
            record(("\ndeny\t" + category + "\t" + event + "\n").encode("utf-8", "replace"))
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
        parts: list[str] = []
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
                    deny("forbidden", "resolve", ": too many symbolic links")
                if private_proc(current):
                    return current  # a /proc/PID/fd/N link: judged as itself, never followed
                target = _readlink(current)
                parts.pop()
                if target.startswith("/"):
                    parts.clear()
                more = target.split("/")
                more.reverse()
                todo.extend(more)
        return "/" + "/".join(parts)

    def private_proc(real):
        # /proc/PID/...: another process's entries, or this one's fd, mem, map_files (reopening the
        # events pipe through /proc/self/fd would give a read end; mem would show the witness's token).
        if not real.startswith("/proc/"):
            return False
        parts = real.split("/")
        if _len(parts) < 3 or not parts[2].isdigit():
            return False
        if parts[2] != _own_pid:
            return True
        rest = parts[3:]
        if _len(rest) >= 2 and rest[0] == "task":
            rest = rest[2:]
        return _len(rest) >= 1 and rest[0] in _proc_private

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
        if private_proc(real):
            deny("forbidden", event, ": " + real)
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
        if path in _allowed_files:
            return
        if relative_up(path):
            deny("forbidden", event, ": relative path with '..': " + path)
        real = resolve(path)
        if private_proc(real) or real == "/proc/kcore":
            deny("forbidden", event, ": " + real)
        if inside(real):
            return
        try:
            kind = _lstat(real)[0] & 0o170000
        except _Exception:
            return
        if kind == 0o040000:  # a directory fd would let *at() calls write outside
            deny("forbidden", event, ": directory outside the sandbox: " + real)
        if (kind == 0o020000 or kind == 0o060000) and real not in _readable_devices:
            deny("forbidden", event, ": device file " + real)  # /dev/mem and the like (memory, disks)

    def in_any(path, folders):
        for folder in folders:
            if path.startswith(folder):
                return True
        return False

    def check_import(args):
        name = text(args[0])
        filename = args[1]
        short = name.rpartition(".")[2]
        if filename is not None:  # an extension module loaded from a file (_imp.create_dynamic)
            real = resolve(text(filename))
            base = real.rpartition("/")[2].partition(".")[0]
            if base in _process_modules or base in _forbidden_modules:
                short = base
            elif not in_any(real, _dynload):
                deny("forbidden", "import", ": native code from outside the standard library: " + real)
        if name in _process_modules or short in _process_modules:
            deny("process", "import", ": " + name)
        if name in _forbidden_modules or short in _forbidden_modules:
            deny("forbidden", "import", ": " + name)

    def check_marshal(caller, data):
        # Only the import system may turn bytes into code, and only bytes that are a standard-library
        # .pyc on disk (a hand-made code object can corrupt the interpreter's memory).
        if caller is None or caller.f_code is not compile_bytecode:
            deny("forbidden", "marshal.loads", ": code objects from data")
        local = caller.f_locals
        path = local.get("bytecode_path")
        view = local.get("data")
        if _type(path) is not _str or _type(view) is not _memoryview or _type(view.obj) is not _bytes:
            deny("forbidden", "marshal.loads", ": code objects from data")
        real = resolve(path)
        if not (in_any(real, _stdlib) and real.endswith(".pyc")):
            deny("forbidden", "marshal.loads", ": bytecode from outside the standard library: " + real)
        fd = _open(real, _rdonly)
        try:
            chunks = []
            while True:
                chunk = _read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            _close(fd)
        if _bjoin(chunks)[16:] != data:
            deny("forbidden", "marshal.loads", ": bytecode that is not the file's: " + real)

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
            if threads_allowed and event.startswith("_thread."):
                return
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
            check_import(args)

    def hook(event, args):
        try:
            if event == "marshal.loads":
                check_marshal(_getframe(1), args[0])
            elif event == "code.__new__":
                # New bytecode can corrupt the interpreter's memory. The standard library's one use,
                # types.coroutine, only sets a flag on an existing generator's code.
                if _getframe(1).f_code is not coroutine:
                    deny("forbidden", event, ": hand-made code objects")
            else:
                check(event, args)
        except SandboxDenied:
            raise
        except _Exception:
            deny("forbidden", event, ": the sandbox could not check this call")

    return hook


# ----------------------------------------------------------------------------------------------
# The whole sequence


def _file_plan(root):
    """The standard library's folders (real paths of this interpreter's ``sys.path``: under ``-I -S``
    only the standard library and its extension modules), and the folders to hide: temporary
    directories (other sandboxes, other users' files), home directories and /run (secrets, sockets).
    """
    import os

    stdlib = []
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            real = os.path.realpath(entry)
            if real not in stdlib:
                stdlib.append(real)
    masks = []
    for candidate in ("/tmp", "/var/tmp", "/dev/shm", "/run", "/root", "/home", os.path.dirname(root)):
        real = os.path.realpath(candidate)
        if real != "/" and os.path.isdir(real) and real not in masks:
            masks.append(real)
    masks = [mask for mask in masks if not any(other != mask and _under(mask, other) for other in masks)]
    return stdlib, masks


def _main(argv):
    import json
    import os

    config = json.loads(argv[0])
    fds = config["fds"]

    def fail(message):
        # Before the program runs, the events pipe (program side) or the status pipe (keeper, init)
        # carries the reason; either way the program never runs with less isolation than planned.
        line = ("error\t" + message.replace("\n", " ") + "\n").encode("utf-8", "replace")
        for fd in (fds["status"], fds["events"]):
            try:
                os.write(fd, line)
                break
            except OSError:
                continue
        try:
            sys.stderr.write("sandbox: setup failed: " + message + "\n")
            sys.stderr.flush()
        finally:
            os._exit(SETUP_FAILED)

    # Everything the setup needs is imported now: after the switch of user and the mounts, the
    # standard library may not be where it was.
    import _imp  # noqa: F401
    import _posixsubprocess  # noqa: F401
    import _thread  # noqa: F401
    import linecache  # noqa: F401
    import resource  # noqa: F401
    import signal  # noqa: F401
    import traceback  # noqa: F401
    import warnings  # noqa: F401

    config["stdlib"], config["masks"] = _file_plan(config["root"])
    libc = _load_libc(fail)
    _keeper(config, libc, fail)  # returns in the init
    _init(config, libc, fail)  # returns in the program's process
    _become_program(config, libc, fail)
    libc = None
    _execute(config, fail)


def _execute(config, fail):
    import os
    import posix

    fds = config["fds"]
    events = fds["events"]
    label = config["plan"]["label"]

    def note(line):
        try:
            posix.write(events, ("\n" + line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
        except Exception:
            pass

    chunks = []
    while True:
        chunk = posix.read(fds["program"], 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    source = b"".join(chunks).decode("utf-8", "surrogatepass")
    del chunks
    threads_allowed = config["limits"]["nproc"] > 1
    _scrub(threads_allowed)
    _close_other_fds({0, 1, 2, events, fds["token"]})
    import resource

    try:
        memory = config["limits"]["memory"]
        _, current = resource.getrlimit(resource.RLIMIT_AS)
        if current != resource.RLIM_INFINITY:
            memory = min(memory, current)
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (OSError, ValueError) as exc:
        fail("setrlimit(RLIMIT_AS) failed: %r" % (exc,))
    stdlib = config["stdlib"]
    dynload = [path for path in stdlib if path.rstrip("/").endswith("lib-dynload")]
    import types

    compile_bytecode = sys.modules["_frozen_importlib_external"]._compile_bytecode.__code__
    coroutine = types.coroutine.__code__
    runner = _run_program.__code__
    # The witness first: hooks run in the order they were added, and the guard, added second, refuses
    # every later sys.addaudithook.
    sys.addaudithook(_make_witness(fds["token"], events, runner, runner.co_firstlineno + 2))
    sys.addaudithook(_make_guard(config["root"], events, os.getpid(), stdlib, dynload, compile_bytecode,
                                 coroutine, threads_allowed))
    del compile_bytecode, coroutine, stdlib, dynload
    note("ready\t" + label)

    # The program runs as a fresh __main__ module.
    import builtins

    SystemExit_, BaseException_, MemoryError_, OSError_ = SystemExit, BaseException, MemoryError, OSError
    main = type(sys)("__main__")
    main.__dict__["__builtins__"] = builtins
    # typeshed types these as site's Quitter, which -S never installs; this stand-in takes its place.
    builtins.exit, builtins.quit = _Quitter("exit"), _Quitter("quit")  # type: ignore[assignment]
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
        _run_program(code, main.__dict__, sys.audit, DONE_EVENT)
    except SystemExit_:
        raise
    except BaseException_ as exc:
        kind = type(exc)
        if issubclass(kind, MemoryError_):
            note("memory")
        # mypy does not narrow exc from issubclass(type(exc), ...); type() is used on purpose (__class__ can lie).
        elif issubclass(kind, OSError_) and exc.errno == 27:  # type: ignore[attr-defined]  # EFBIG
            note("file size")
        note("exception\t" + str(kind.__name__))
        tb = exc.__traceback__  # never None for a caught exception; checked so that a None cannot crash here
        report(exc, tb.tb_next if tb is not None else None)
        raise SystemExit_(1)


if __name__ == "__main__":  # true under ``python -c``; an import (the parent, pytest) only defines names
    _main(sys.argv[1:])
