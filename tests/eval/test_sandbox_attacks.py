"""Attacks on the sandbox (issue #15), each one a test.

Every attack must be contained (nothing created or deleted outside the sandbox's directory, no
connection, no process left behind, no secret printed, the grading process unchanged), reported with a
reason, and followed by a normal program that is graded correctly. Most attacks run twice: against the
full sandbox (the audit hook refuses first and records why), and with the audit hook switched off
(`guard_off`), to show what the kernel's layers alone still hold; those runs skip where the detected
isolation lacks the layer they rely on, and assert what the detected level promises.
"""

import ast
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from sandbox_processes import processes_of

from dllm_mcmc.eval.sandbox import SandboxLimits, child, detect_isolation, parent, run_many, run_python

FAST = SandboxLimits(wall_seconds=5.0, cpu_seconds=2.0)
TOKEN = "feedfacecafebeef" * 2  # the completion secret, fixed by the `known_token` fixture
HERE = "import os as _os\nprint(_os.getcwd(), flush=True)\n"  # every attack says where it ran first


def layers() -> set[str]:
    return set(detect_isolation().split("+"))


def unprivileged() -> bool:
    """The child's uid is not root on this machine (the kernel's own limits and permissions bind)."""
    return "nobody" in layers() or ("userns" in layers() and os.geteuid() != 0) or os.geteuid() != 0


def needs(*wanted: str):
    missing = [layer for layer in wanted if layer not in layers()]
    if missing:
        pytest.skip(f"the sandbox here lacks {'+'.join(missing)} ({detect_isolation()})")


def needs_unprivileged():
    if not unprivileged():
        pytest.skip(f"the child runs as root here ({detect_isolation()})")


def assert_no_trace(directory: str, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while (processes_of(directory) or os.path.exists(directory)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(directory) == [], f"processes left behind in {directory}"
    assert not os.path.exists(directory), f"{directory} was not removed"


def grader_state():
    return os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0)


def attack(program: str, limits: SandboxLimits = FAST, **kwargs):
    """Run ``program`` (after the line that prints its directory); check that it left no process and no
    directory, that this process is unchanged, and that a normal program still passes."""
    before = grader_state()
    result = run_python(HERE + textwrap.dedent(program), limits, **kwargs)
    lines = result.stdout.splitlines()
    assert lines and lines[0].startswith("/"), result
    directory = lines[0]
    assert_no_trace(directory)
    assert grader_state() == before, "the program changed the grading process"
    assert TOKEN not in result.stdout + result.stderr
    fine = run_python("print(sum(range(10)))\n", FAST, require_completion=True)
    assert (fine.ok, fine.stdout, fine.completed) == (True, "45\n", True), fine
    return result


@pytest.fixture(autouse=True)
def known_token(monkeypatch):
    """The completion secret is TOKEN during these tests, so that no output may contain it."""
    monkeypatch.setattr(parent.secrets, "token_hex", lambda n=16: TOKEN)


@pytest.fixture
def guard_off(monkeypatch):
    """The child without its refusing audit hook (the witness stays): the kernel's layers alone."""
    source = parent._child_source()
    patched = source.replace("    sys.addaudithook(_make_guard(", "    (lambda hook: None)(_make_guard(")
    # and no stub for thread creation either: RLIMIT_NPROC alone
    patched = patched.replace('threads_allowed = config["limits"]["nproc"] > 1', "threads_allowed = True")
    assert patched.count("(lambda hook: None)") == 1 and "threads_allowed = True" in patched
    monkeypatch.setattr(parent, "_child_source", lambda: patched)


@pytest.fixture
def canary(tmp_path):
    """Files outside the sandbox that must stay as they are: (victim, a path that must not appear)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    outside = Path(f"/tmp/dllm-attack-{uuid.uuid4().hex}")
    yield victim, outside
    assert victim.read_text() == "original"
    assert sorted(os.listdir(tmp_path)) == ["victim.txt"]
    assert not outside.exists()


# ----------------------------------------------------------------------------------------------
# Processes: subinterpreters, forks, daemons, threads


SUBINTERPRETER = """
    import importlib.util, os, sys
    for name in ("_xxsubinterpreters", "_interpreters"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        interpreter = module.create()
        module.run_string(interpreter, "import os\\nfor _ in range(50): os.fork()")
"""

SUBINTERPRETER_BY_LOADER = """
    import importlib.util, os, sys
    for folder in sys.path:
        if os.path.isdir(folder):
            for name in os.listdir(folder):
                if name.startswith(("_xxsubinterpreters.", "_interpreters.")):
                    spec = importlib.util.spec_from_file_location("innocent._xxsubinterpreters",
                                                                  os.path.join(folder, name))
                    try:
                        module = importlib.util.module_from_spec(spec)
                    except PermissionError:
                        print("refused")
                        continue
                    interpreter = module.create()
                    module.run_string(interpreter, "import os\\nos.fork()")
"""


@pytest.mark.parametrize("program", [SUBINTERPRETER, SUBINTERPRETER_BY_LOADER], ids=["import", "loader"])
def test_subinterpreters_are_refused(program):
    result = attack(program)
    assert (result.ok, result.reason) == (False, "process"), result


def test_subinterpreter_without_the_hook_still_cannot_fork(guard_off):
    needs("pidns")
    needs_unprivileged()
    inner = (  # (3.11 refuses os.fork in a subinterpreter; posix_spawn and os.system are not refused)
        "import os\nmade = 0\nfor _ in range(20):\n    try:\n"
        "        os.posix_spawn('/bin/sleep', ['sleep', '30'], {})\n        made += 1\n"
        "    except OSError:\n        pass\nprint('forked', made)\n"
    )
    program = f"import _xxsubinterpreters as sub\nsub.run_string(sub.create(), {inner!r})\n"
    result = attack(program)
    assert "forked 0" in result.stdout, result  # RLIMIT_NPROC binds for an unprivileged user


FORK_BOMB = """
    import os, time
    made = 0
    try:
        for _ in range(50):
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            made += 1
    except OSError as error:
        print("refused", error.errno)
    print("forked", made)
"""


def test_fork_bomb_is_refused():
    result = attack(FORK_BOMB)
    assert (result.ok, result.reason) == (False, "process"), result


def test_fork_bomb_without_the_hook_meets_rlimit_nproc(guard_off):
    needs_unprivileged()
    result = attack(FORK_BOMB)
    assert "forked 0" in result.stdout, result


DAEMON = """
    import os, time
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)
    print("daemon started", flush=True)
"""


def test_daemon_with_its_own_session_is_refused():
    result = attack(DAEMON)
    assert (result.ok, result.reason) == (False, "process"), result


def test_daemon_without_the_hook_dies_with_the_pid_namespace(guard_off):
    needs("pidns")
    result = attack(DAEMON, SandboxLimits(wall_seconds=5.0, cpu_seconds=2.0, max_processes=16))
    assert "daemon started" in result.stdout, result  # it did start: only the namespace's end kills it
    # attack() found no process left with the sandbox's HOME


def test_threads_are_refused_with_one_process():
    result = attack("import threading\nthreading.Thread(target=print).start()\n")
    assert (result.ok, result.reason) == (False, "process"), result


def test_threads_without_the_hook_meet_rlimit_nproc(guard_off):
    needs_unprivileged()
    program = """
        import threading
        try:
            threading.Thread(target=print).start()
        except RuntimeError as error:
            print("no thread:", error)
    """
    result = attack(program)
    assert "no thread" in result.stdout, result


def test_child_is_unprivileged_and_cannot_gain_privileges():
    needs_unprivileged()
    program = """
        import os
        print(os.getuid(), os.geteuid())
        print(open("/proc/self/status").read())
    """
    result = attack(program)
    uid, euid = result.stdout.splitlines()[1].split()
    assert uid != "0" and euid != "0"
    status = dict(line.split(":", 1) for line in result.stdout.splitlines()[2:] if ":" in line)
    assert status["NoNewPrivs"].strip() == "1"
    assert int(status["CapEff"].strip(), 16) == 0 and int(status["CapPrm"].strip(), 16) == 0


# ----------------------------------------------------------------------------------------------
# The grading process: signals, priority, affinity, /proc


def test_signal_to_the_parent_is_refused():
    result = attack("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
    assert (result.ok, result.reason) == (False, "process"), result


def test_renice_and_affinity_of_the_parent_are_refused():
    program = """
        import os
        for call in (lambda: os.setpriority(os.PRIO_PROCESS, os.getppid(), 19),
                     lambda: os.sched_setaffinity(os.getppid(), {0})):
            try:
                call()
            except PermissionError:
                print("refused")
    """
    result = attack(program)
    assert (result.ok, result.reason) == (False, "process"), result
    assert result.stdout.count("refused") == 2


def test_without_the_hook_the_parent_is_out_of_reach(guard_off):
    needs("pidns")
    needs_unprivileged()
    grader = os.getpid()
    program = f"""
        import os, signal
        done = []
        targets = [os.getppid(), 1, {grader}]
        for pid in targets:
            for name, call in (("kill", lambda: os.kill(pid, signal.SIGSTOP)),
                               ("renice", lambda: os.setpriority(os.PRIO_PROCESS, pid, 19)),
                               ("pin", lambda: os.sched_setaffinity(pid, {{0}}))):
                try:
                    call()
                    done.append((name, pid))
                except (OSError, AttributeError):
                    pass
        for which in (os.PRIO_PGRP, os.PRIO_USER):
            try:
                os.setpriority(which, 0, 19)
            except OSError:
                pass
        print("done", done)
    """
    result = attack(program)
    # The pids the program can name are its namespace's: the init (1, which ignores what it is sent
    # from inside) and itself; the grader's pid does not exist there.
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("done ")]
    assert all(pid in (1, 2) for _, pid in ast.literal_eval(line[5:])), result


def test_parent_environment_and_command_line_are_out_of_reach(monkeypatch):
    monkeypatch.setenv("DLLM_ATTACK_SECRET", "s3cr3t-in-the-grader")
    program = """
        import os
        seen = []
        for pid in sorted({os.getppid(), 1, 2}):
            for name in ("environ", "cmdline"):
                try:
                    seen.append(open(f"/proc/{pid}/{name}", "rb").read())
                except OSError as error:
                    print("refused", pid, name, type(error).__name__)
        print(b"".join(seen))
    """
    result = attack(program)
    assert "s3cr3t-in-the-grader" not in result.stdout
    assert (result.ok, result.reason) == (False, "forbidden"), result


def test_without_the_hook_parent_secrets_stay_hidden(monkeypatch, guard_off):
    needs("pidns")
    needs_unprivileged()
    monkeypatch.setenv("DLLM_ATTACK_SECRET", "s3cr3t-in-the-grader")
    program = """
        import os
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                for name in ("environ", "cmdline"):
                    try:
                        print(open(f"/proc/{pid}/{name}", "rb").read())
                    except OSError:
                        pass
    """
    result = attack(program)
    assert "s3cr3t-in-the-grader" not in result.stdout


# ----------------------------------------------------------------------------------------------
# Files: writes and deletions outside, links, races, root-only files, deep trees


def test_write_and_delete_outside_are_refused(canary):
    victim, outside = canary
    program = f"""
        import os
        for action in (lambda: open({str(outside)!r}, "w").write("pwned"),
                       lambda: os.remove({str(victim)!r}),
                       lambda: os.mkdir({str(outside)!r})):
            try:
                action()
            except OSError as error:
                print("refused", type(error).__name__)
    """
    result = attack(program)
    assert (result.ok, result.reason) == (False, "forbidden write"), result


def test_without_the_hook_the_file_system_is_read_only_outside(canary, guard_off):
    needs("rofs")
    victim, outside = canary
    program = f"""
        import os
        for action in (lambda: open({str(outside)!r}, "w").write("pwned"),
                       lambda: os.remove({str(victim)!r}),
                       lambda: open("/etc/dllm-attack", "w"),
                       lambda: os.mkdir("/var/dllm-attack")):
            try:
                action()
                print("DONE")
            except OSError as error:
                print("refused", type(error).__name__)
        open("inside.txt", "w").write("fine")
    """
    result = attack(program)
    assert "DONE" not in result.stdout, result
    assert not os.path.exists("/etc/dllm-attack") and not os.path.exists("/var/dllm-attack")


def test_symlink_race_is_refused(canary):
    _, outside = canary
    program = """
        import os
        os.mkdir("inner")
        os.symlink("inner", "link")
    """
    result = attack(program)
    assert (result.ok, result.reason) == (False, "forbidden write"), result


def test_without_the_hook_a_symlink_race_cannot_write_outside(canary, guard_off):
    needs("rofs")
    _, outside = canary
    program = f"""
        import os, threading
        os.mkdir("inner")
        os.symlink("inner", "link")
        stop = False

        def flip():
            while not stop:
                for target in ({str(outside.parent)!r}, "inner"):
                    try:
                        os.unlink("link")
                        os.symlink(target, "link")
                    except OSError:
                        pass

        try:
            threading.Thread(target=flip, daemon=True).start()
        except RuntimeError:
            pass
        wrote = 0
        for _ in range(2000):
            try:
                with open("link/{outside.name}", "w") as handle:
                    handle.write("pwned")
                wrote += 1
            except OSError:
                pass
        stop = True
        print("wrote inside", wrote)
    """
    attack(program, SandboxLimits(wall_seconds=10.0, cpu_seconds=5.0, max_processes=8))
    # the canary fixture checks that nothing appeared outside


def test_disk_space_and_inodes_are_bounded():
    needs("rofs")
    program = """
        import errno
        for prefix, size in (("big", 1 << 20), ("empty", 0)):
            made = 0
            try:
                while True:
                    with open(f"{prefix}{made}", "wb") as handle:
                        handle.write(b"x" * size)
                    made += 1
            except OSError as error:
                print(prefix, made, errno.errorcode[error.errno])
    """
    result = attack(program, SandboxLimits(wall_seconds=20.0, cpu_seconds=10.0, file_bytes=1 << 20))
    big, empty = (line.split() for line in result.stdout.splitlines()[1:3])
    assert big[2] == "ENOSPC" and int(big[1]) <= 64, result  # a tmpfs of max(4 x file_bytes, 64 MiB)
    assert empty[2] == "ENOSPC" and int(empty[1]) <= 65536, result


def test_root_only_files_are_unreadable(tmp_path):
    needs_unprivileged()
    secret = tmp_path / "planted"
    secret.write_text("planted-secret-0600")
    secret.chmod(0o600)
    program = f"""
        for path in ("/etc/shadow", {str(secret)!r}, "/root/.bash_history"):
            try:
                print(open(path).read())
            except OSError as error:
                print("unreadable", path, type(error).__name__)
    """
    result = attack(program)
    assert "planted-secret-0600" not in result.stdout
    assert "unreadable /etc/shadow" in result.stdout or not os.path.exists("/etc/shadow")
    if os.access("/etc/shadow", os.R_OK):
        root_hash = [line for line in Path("/etc/shadow").read_text().splitlines() if line.startswith("root:")]
        assert not root_hash or root_hash[0] not in result.stdout


def test_deep_directories_do_not_break_the_grader():
    program = """
        import os
        fd = os.open(".", os.O_RDONLY)
        for _ in range(3000):
            os.mkdir("d", dir_fd=fd)
            deeper = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = deeper
        os.mkdir("locked")
        open("locked/file", "w").close()
        os.chmod("locked", 0o500)
        print("deep")
    """
    result = attack(program, SandboxLimits(wall_seconds=20.0, cpu_seconds=10.0))
    assert result.ok and "deep" in result.stdout, result


def test_remove_tree_handles_deep_fifo_read_only_and_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    top = tmp_path / "tree"
    top.mkdir()
    fd = os.open(top, os.O_RDONLY)
    for _ in range(3000):
        os.mkdir("d", dir_fd=fd)
        deeper = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    os.mkfifo("fifo", dir_fd=fd)
    os.symlink(str(outside), "link", dir_fd=fd)
    os.close(fd)
    (top / "ro").mkdir()
    (top / "ro" / "f").write_text("x")
    os.symlink(str(outside / "keep.txt"), top / "ro" / "file-link")
    (top / "ro").chmod(0o500)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(top / "sock"))
    server.close()
    assert child.remove_tree(str(top)) is True
    assert not top.exists()
    assert (outside / "keep.txt").read_text() == "keep"
    assert child.remove_tree(str(top)) is True  # already gone: fine, no exception


@pytest.fixture
def private_temp(tmp_path, monkeypatch):
    """Sandboxes of this test get their directories here (other processes may grade meanwhile)."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(parent.tempfile, "tempdir", str(temp))
    return temp


def test_a_crash_inside_grading_is_a_result(monkeypatch, private_temp):
    def broken(*args, **kwargs):
        raise RuntimeError("supervisor exploded")

    parent._detect_plan()
    monkeypatch.setattr(parent, "_supervise", broken)
    result = run_python("import time\ntime.sleep(30)\n", FAST)
    assert (result.ok, result.reason) == (False, "sandbox error: RuntimeError: supervisor exploded"), result
    assert os.listdir(private_temp) == []
    with parent._LIVE_LOCK:
        assert parent._LIVE == {}


# ----------------------------------------------------------------------------------------------
# Network


def test_connection_to_a_loopback_listener_is_refused():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = attack(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n")
        assert (result.ok, result.reason) == (False, "network"), result
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_without_the_hook_there_is_no_network(guard_off):
    needs("netns")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        program = f"""
            import socket
            try:
                socket.create_connection(('127.0.0.1', {port}), timeout=1)
                print("CONNECTED")
            except OSError as error:
                print("no network", type(error).__name__)
        """
        result = attack(program)
        assert "CONNECTED" not in result.stdout, result
        with pytest.raises(BlockingIOError):
            listener.accept()


# ----------------------------------------------------------------------------------------------
# Native code and the interpreter's internals


@pytest.mark.parametrize(
    "program",
    [
        "import ctypes\n",
        # ctypes' classes outlive its module (the setup used it): reaching CDLL through them
        "def walk(cls, seen):\n"
        "    for sub in type.__subclasses__(cls):\n"
        "        if sub not in seen:\n"
        "            seen.add(sub); walk(sub, seen)\n"
        "seen = set(); walk(object, seen)\n"
        "CDLL = [c for c in seen if c.__name__ == 'CDLL']\n"
        "if CDLL:\n"
        "    CDLL[0](None).getpid()\n"
        "else:\n"
        "    __import__('_ctypes')\n",
        "import types\n(lambda: 0).__code__.replace(co_code=b'\\x00\\x00')\n",
        "import marshal\nmarshal.loads(marshal.dumps(compile('1', 'x', 'eval')))\n",
        "import mmap\nmmap.mmap(-1, 4096)\n",
        "import sys\nsys.addaudithook(lambda *a: None)\n",
        "import gc\ngc.get_referrers(print)\n",
        "import sys\nsys.settrace(lambda *a: None)\n",
        # a handler could run while the witness's frame is on the stack and read its closure
        "import signal\nsignal.signal(signal.SIGALRM, lambda *a: None)\n",
        "open('/proc/self/mem', 'rb')\n",
        "open('/proc/thread-self/mem', 'rb')\n",
    ],
    ids=["ctypes", "ctypes-subclasses", "code-replace", "marshal", "mmap", "addaudithook", "gc", "settrace",
         "signal-handler", "proc-mem", "thread-mem"],
)
def test_routes_around_the_hook_are_refused(program):
    result = attack(program)
    assert (result.ok, result.reason) == (False, "forbidden"), result


def test_memory_and_disk_devices_are_refused():
    program = """
        import os, stat
        candidates = ["/dev/mem", "/dev/kmem", "/proc/kcore"]
        candidates += [os.path.join("/dev", name) for name in sorted(os.listdir("/dev"))]
        for path in candidates:
            try:
                mode = os.stat(path).st_mode
            except OSError:
                continue
            if path == "/proc/kcore" or stat.S_ISBLK(mode) or path in ("/dev/mem", "/dev/kmem"):
                print("trying", path, flush=True)
                open(path, "rb")
        print("nothing to try")
    """
    result = attack(program)
    if "nothing to try" in result.stdout:
        pytest.skip("no memory or disk device visible here")
    assert (result.ok, result.reason) == (False, "forbidden"), result


def test_crafted_pyc_is_refused():
    # marshal.dumps is allowed; the refusal comes when bytes become code: a sourceless .pyc import
    program = """
        import importlib.util, importlib.machinery, os, sys
        payload = importlib.util.MAGIC_NUMBER + bytes(12)
        code = compile("print('crafted code ran')", "evil.py", "exec")
        import marshal
        with open("evil.pyc", "wb") as handle:
            handle.write(payload + marshal.dumps(code))
        loader = importlib.machinery.SourcelessFileLoader("evil", os.path.abspath("evil.pyc"))
        spec = importlib.util.spec_from_loader("evil", loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    """
    result = attack(program)
    assert (result.ok, result.reason) == (False, "forbidden"), result
    assert "crafted code ran" not in result.stdout


def test_extension_modules_from_outside_the_standard_library_are_refused():
    # Any extension module of an installed package (never on the child's sys.path, which -S keeps to
    # the standard library).
    candidates = [path for entry in sys.path if entry.endswith("site-packages")
                  for pattern in ("*.so", "*/*.so") for path in Path(entry).glob(pattern)][:1]
    if not candidates:
        pytest.skip("no extension module outside the standard library to try")
    path = str(candidates[0])
    name = Path(path).name.partition(".")[0]
    program = f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location({name!r}, {path!r})
        importlib.util.module_from_spec(spec)
    """
    result = attack(program)
    assert (result.ok, result.reason) == (False, "forbidden"), result


# ----------------------------------------------------------------------------------------------
# Faked passes: the completion secret, the events pipe, exits before the tests


WRONG = "def add(x, y):\n    return x - y\n"
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)\n"


@pytest.mark.parametrize(
    "cheat",
    [
        "import sys\nsys.exit(0)\n",
        "import os\nos._exit(0)\n",
        # the old token lived in the program's own code object
        "import os, sys\nprint(sys._getframe().f_code.co_consts)\nos._exit(0)\n",
        # the done event, raised by the program itself, or through the harness's own runner
        "import os, sys\nsys.audit('dllm.sandbox.done')\nos._exit(0)\n",
        "import os, sys\nrunner = sys._getframe(1).f_globals['_run_program']\n"
        "runner(compile('pass', 'x', 'exec'), {}, sys.audit, 'dllm.sandbox.done')\nos._exit(0)\n",
    ],
    ids=["sys.exit", "os._exit", "co_consts", "audit-event", "runner"],
)
def test_exit_before_the_tests_is_incomplete(cheat):
    result = attack(WRONG + cheat + TESTS, require_completion=True)
    assert (result.ok, result.reason, result.completed) == (False, "incomplete", False), result


FORGER = """
    import gc, os, sys
    # Everything a frame walk reaches: locals, globals, closures, constants.
    found = set()
    frame = sys._getframe()
    while frame is not None:
        for space in (frame.f_locals, frame.f_globals):
            for value in list(space.values()):
                cells = getattr(value, "__closure__", None) or ()
                for item in [value, *(c.cell_contents for c in cells if c.cell_contents is not None)]:
                    if isinstance(item, (str, bytes)) and 8 <= len(item) <= 200:
                        found.add(item if isinstance(item, bytes) else item.encode())
        found.update(c.encode() for c in frame.f_code.co_consts if isinstance(c, str))
        frame = frame.f_back
    for path in ("/proc/1/cmdline", "/proc/self/cmdline", "/proc/self/environ"):
        try:
            found.update(open(path, "rb").read().replace(b"\\0", b" ").split())
        except OSError:
            pass
    for folder in ("..", "/tmp"):
        try:
            print(folder, os.listdir(folder))
        except OSError:
            pass
    for fd in range(3, 64):
        for guess in found:
            try:
                os.write(fd, b"\\ndone\\t" + guess + b"\\n")
            except OSError:
                break
    os._exit(0)
"""


def test_forging_completion_fails():
    result = attack(WRONG + FORGER + TESTS, require_completion=True)
    assert not result.ok and not result.completed, result


def test_forging_completion_fails_without_the_hook(guard_off):
    result = attack(WRONG + FORGER + TESTS, require_completion=True)
    assert not result.ok and not result.completed, result


@pytest.mark.parametrize(
    "erase",
    [
        "for fd in range(3, 64):\n    try:\n        os.ftruncate(fd, 0)\n    except OSError:\n        pass\n",
        "for fd in range(3, 64):\n    try:\n        os.close(fd)\n    except OSError:\n        pass\n",
        "null = os.open('/dev/null', os.O_WRONLY)\nfor fd in range(3, 64):\n    if fd != null:\n"
        "        try:\n            os.dup2(null, fd)\n        except OSError:\n            pass\n",
        "for fd in range(3, 64):\n    try:\n        os.set_blocking(fd, False)\n"
        "        os.write(fd, b'x' * (1 << 20))\n    except OSError:\n        pass\n",
    ],
    ids=["ftruncate", "close", "dup2", "flood"],
)
def test_a_refusal_cannot_be_erased(erase):
    program = "import os, socket\n" + erase + (
        "try:\n    socket.socket()\nexcept OSError:\n    pass\nprint('carried on')\n"
    )
    result = attack(program)
    assert not result.ok, result
    assert result.reason == "network" or result.returncode == child.RECORD_LOST, result


def test_reopening_the_events_pipe_is_refused():
    program = """
        import os
        for fd in range(3, 64):
            try:
                os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
            except FileNotFoundError:
                pass
    """
    result = attack(program)
    assert (result.ok, result.reason) == (False, "forbidden"), result


def test_huge_output_does_not_change_a_correct_verdict():
    right = "def add(x, y):\n    return x + y\n"
    program = right + "print('x' * (4 << 20))\n" + TESTS
    result = attack(program, require_completion=True)
    assert (result.ok, result.reason, result.completed, result.truncated) == (True, "ok", True, True), result


def test_what_no_sandbox_can_catch():
    """Documented in docs/sandbox.md: code that defeats the tests inside their own process passes."""
    cheat = "class Yes:\n    def __eq__(self, other):\n        return True\n\ndef add(x, y):\n    return Yes()\n"
    result = attack(cheat + TESTS, require_completion=True)
    assert result.ok, result


# ----------------------------------------------------------------------------------------------
# The grader's own death: SIGINT, SIGTERM, SIGKILL


GRADER = """
import sys, types
# The sandbox without the rest of the library (which imports torch): the parent packages are stubs.
for name, path in (("dllm_mcmc", "{package}"), ("dllm_mcmc.eval", "{package}/eval")):
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module
from dllm_mcmc.eval.sandbox import parent, SandboxLimits, run_python, run_many
parent._PLAN = parent._Plan(**{plan})
program = "import os, time\\nprint(os.getcwd(), flush=True)\\ntime.sleep(60)\\n"
limits = SandboxLimits(wall_seconds=60.0, cpu_seconds=60.0)
print("grading", flush=True)
if {many}:
    run_many([program] * 2, limits, workers=2)
else:
    run_python(program, limits)
print("graded", flush=True)
"""


@pytest.mark.parametrize(
    ("signum", "many"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGKILL, False), (signal.SIGINT, True)],
    ids=["SIGINT", "SIGTERM", "SIGKILL", "SIGINT-run_many"],
)
def test_grader_death_leaves_nothing(tmp_path, signum, many):
    plan = parent._detect_plan()
    spec = {"namespaces": plan.namespaces, "uid": plan.uid, "gid": plan.gid, "pidns": plan.pidns}
    temp = tmp_path / "temp"
    temp.mkdir()
    package = Path(parent.__file__).parents[2]
    script = GRADER.format(package=package, plan=spec, many=many)
    env = {**os.environ, "TMPDIR": str(temp)}
    grader = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        directories: list[str] = []
        while time.monotonic() < deadline:
            directories = [str(temp / name) for name in os.listdir(temp) if name.startswith("dllm-sandbox-")]
            if len(directories) == (2 if many else 1) and all(processes_of(d) for d in directories):
                break
            time.sleep(0.05)
        assert directories, grader.stderr.read1() if grader.poll() is not None else "no sandbox started"
        time.sleep(0.3)  # the program is asleep
        grader.send_signal(signum)
        grader.wait(timeout=10)
        for directory in directories:
            assert_no_trace(directory, timeout=5.0)
        assert os.listdir(temp) == []
        assert b"graded" not in grader.stdout.read()
    finally:
        if grader.poll() is None:
            grader.kill()
            grader.wait()


def test_keyboard_interrupt_in_run_many_kills_and_reraises(private_temp):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach only the main thread")
    parent._detect_plan()
    before = signal.getsignal(signal.SIGINT)
    program = HERE + "import time\ntime.sleep(60)\n"
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_many([program] * 4, SandboxLimits(wall_seconds=60.0, cpu_seconds=60.0), workers=2)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 10
    assert signal.getsignal(signal.SIGINT) is before  # restored
    assert os.listdir(private_temp) == []


# ----------------------------------------------------------------------------------------------
# The optional outer layer


def test_outer_layer_bwrap_when_installed(canary):
    import shutil

    with pytest.raises(ValueError):
        parent.use_outer_layer("nsjail-or-anything")
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    _, outside = canary
    try:
        try:
            label = parent.use_outer_layer("bwrap")
        except RuntimeError as error:
            pytest.skip(f"bwrap cannot run here: {error}")
        assert label.startswith("bwrap+") and label.endswith("+audit")
        assert attack(FORK_BOMB).reason == "process"
        assert attack(f"open({str(outside)!r}, 'w').write('pwned')\n").reason == "forbidden write"
        assert attack("import socket\nsocket.socket()\n").reason == "network"
        fine = run_python("print(1)\n", FAST, require_completion=True)
        assert fine.ok and fine.isolation == label, fine
    finally:
        parent.use_outer_layer(None)
    assert not detect_isolation().startswith("bwrap")


def test_the_standard_library_still_works():
    """The refusals above must not catch ordinary programs: imports after the start (their .pyc files
    are checked), extension modules, types.coroutine (the one code.replace the library makes)."""
    program = """
        import bisect, collections, dataclasses, datetime, decimal, fractions, functools, hashlib, heapq
        import itertools, json, math, random, re, statistics, string, types, typing, unicodedata, zlib

        @types.coroutine
        def steps():
            yield 1

        @dataclasses.dataclass
        class Point:
            x: int

        print(list(steps()), Point(1), collections.namedtuple("T", "a")(2), decimal.Decimal("1.1") + 1,
              fractions.Fraction(1, 3), statistics.median([1, 3, 2]), hashlib.sha256(b"x").hexdigest()[:8])
    """
    result = attack(program, require_completion=True)
    assert (result.ok, result.completed) == (True, True), result
    assert "[1] Point(x=1) T(a=2) 2.1 1/3 2 2d711642" in result.stdout
