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

Layout: ``parent.py`` holds the public API, plans the layers, starts the child and supervises it;
``child.py`` is the child program, whose source the parent passes to ``python -I -S -B -c`` (the
library never imports it).

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

from dllm_mcmc.eval.sandbox.parent import SETUP_FAILED as SETUP_FAILED
from dllm_mcmc.eval.sandbox.parent import SandboxLimits, SandboxResult, detect_isolation, run_many, run_python

__all__ = ["SandboxLimits", "SandboxResult", "detect_isolation", "run_many", "run_python"]
