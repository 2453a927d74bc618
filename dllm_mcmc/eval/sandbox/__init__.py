r"""Run untrusted, model-generated Python programs, one per sandbox, with limits and no network.

Running code a model wrote is the main security risk of this library. `run_python` runs one program
in a fresh sandbox (the parent never ``exec``\ s or ``eval``\ s model text) and says what happened in
a `SandboxResult`; `run_many` runs several on a thread pool. ``require_completion=True`` makes a
program pass only if its module body returned (`SandboxResult.completed`): the way to grade
"solution + tests + ``check(...)``" without a token in the program or a look at its output.

Processes (``child.py``: one interpreter start, then two ``fork``\ s): the **keeper** (started by the
parent with ``python -I -S -B -c``; it dies with the parent, ``PR_SET_PDEATHSIG``, and then kills the
rest and removes the directory), the **init** (PID 1 of a new PID namespace: when it exits the kernel
kills everything left in it, daemons included) and the **program's process**.

Layers, strongest first (`SandboxResult.isolation` names those that applied, e.g.
``"netns+rofs+pidns+nobody+audit"``; `detect_isolation` probes once per process which this machine
allows; a child that cannot set up the planned layers exits before the program runs):

* ``netns``: a new network namespace (no interface but a loopback that is down).
* ``rofs``: a new mount namespace: ``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run``, ``/root``,
  ``/home`` (and the parent's temporary directory) hidden behind empty tmpfs mounts, the standard
  library bound back, the program's directory a size- and inode-limited tmpfs of its own, every mount
  read-only except that one.
* ``pidns``: a new PID namespace with its own ``/proc``: the program sees and can signal only its own
  processes; the parent's pid, environment and command line are not there.
* ``nobody`` (root parent): the program's process switches to ``nobody`` (no capability, so file
  permissions confine it and ``RLIMIT_NPROC`` binds); ``userns`` (non-root parent): the namespaces are
  made inside a user namespace and the program keeps its non-root uid without any capability.
* ``audit``, always: two audit hooks. The *guard* refuses process and thread creation, signals and
  priority changes aimed at other processes, sockets and network clients, writes outside the
  program's directory, links, directory fds outside it, other processes' ``/proc`` entries and this
  one's ``fd``/``mem``, memory and disk devices, ``ctypes``, subinterpreters, native code from outside
  the standard library, hand-made code objects (``code.__new__``, ``marshal`` except genuine
  standard-library ``.pyc`` files), ``gc`` introspection, tracing, signal handlers, more audit hooks.
  A refusal raises ``PermissionError("sandbox: ...")`` and is sent to the parent at once, so the run
  fails even if the program catches it. The *witness* reports completion with a secret token that the
  program cannot read. Plus: ``PR_SET_NO_NEW_PRIVS``, resource limits (CPU, address space, file size,
  processes, no core dumps), a minimal environment, its own session.
* optionally ``bwrap`` (`use_outer_layer`): bubblewrap around all of it.

Layout: ``parent.py`` holds the public API, plans the layers, starts the child, reads its channels and
supervises it; ``child.py`` is the child program, whose source the parent passes to
``python -I -S -B -c`` (the parent imports it only for its ``remove_tree``).

Honest limits (details in docs/sandbox.md): an audit hook is not a security boundary (the kernel's
layers are); code that defeats the tests inside their own process (an object whose ``__eq__`` is
always true, monkeypatching the checker) passes, whatever the sandbox; reading world-readable files
outside the hidden folders is allowed.

>>> result = run_python('print("hi")')
>>> result.ok, result.reason, result.stdout
(True, 'ok', 'hi\n')
>>> run_python("import socket\nsocket.create_connection(('example.com', 80))").reason
'network'
>>> run_python("import os\nos._exit(0)\nassert False", require_completion=True).reason
'incomplete'
"""

from dllm_mcmc.eval.sandbox.parent import FULL_ISOLATION as FULL_ISOLATION
from dllm_mcmc.eval.sandbox.parent import RECORD_LOST as RECORD_LOST
from dllm_mcmc.eval.sandbox.parent import SETUP_FAILED as SETUP_FAILED
from dllm_mcmc.eval.sandbox.parent import (
    SandboxLimits,
    SandboxResult,
    detect_isolation,
    run_many,
    run_python,
    use_outer_layer,
)

__all__ = [
    "FULL_ISOLATION", "SandboxLimits", "SandboxResult", "detect_isolation", "run_many", "run_python",
    "use_outer_layer",
]
