"""The sandbox's child program. The parent (`dllm_mcmc.eval.sandbox.parent`) reads this file's source
and runs it as ``python -I -S -B -c SOURCE ARGS...`` before the untrusted program; the library never
imports it. So it must run on its own under ``-I -S -B``: standard library only, nothing from
``dllm_mcmc``, nothing from site-packages.
"""

# ruff: noqa: UP031, B904  (moved verbatim from a string literal that ruff never linted; kept as it was)

# Order: import what the setup needs; read the program from its fd; enter the namespaces and/or
# switch to the unprivileged user (a root-only network namespace before switching, user namespaces
# after); make the file system read-only but for the program's directory; set the resource limits;
# pre-import the builtin modules and replace the unaudited primitives; install the audit hook;
# compile and run the program as ``__main__``. A step that fails ends the child with SETUP_FAILED (125)
# and an "error" line in the events file: the program never runs with less isolation than planned.
#
# The events file (an inherited fd) gets one line per fact, tab-separated: "iso LABEL",
# "deny CATEGORY EVENT", "exception NAME", "memory", "file size", "syntax", "error MESSAGE".
# The program can write to it too, but only to its own cost: nothing there can turn a failure into
# success.
#
# The hook refers only to names local to ``_make_hook`` (captured before the program runs; no
# globals, no builtins looked up at call time), so a program cannot change what it calls.

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

    SandboxDenied: type[PermissionError] = type(
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

    replaced: dict[int, tuple] = {}  # id(original) -> (original, stub)
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
        exec(code, main.__dict__)
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


if __name__ == "__main__":  # true under ``python -c``; an import (pytest's doctests) only defines names
    _sandbox_main(sys.argv[1:])
