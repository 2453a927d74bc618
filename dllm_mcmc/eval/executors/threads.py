"""Setting torch's thread count on purpose.

torch's default (one intra-op thread per core) oversubscribes a machine as soon as two processes, or a
busy neighbour, share its cores: on the 2-core project machine under load, the default made the demo 4×
and an eval 6× slower than one thread. The command line therefore sets one thread unless told otherwise
(``--threads``), and every worker of a parallel run sets its own count (one by default).

>>> previous = use_threads(1)
>>> import torch; torch.get_num_threads()
1
>>> _ = use_threads(previous)
"""

from __future__ import annotations

import torch

from dllm_mcmc._checks import positive_int


def use_threads(threads: int) -> int:
    """Set torch's intra-op threads to ``threads`` (and its inter-op threads, where that is still allowed);
    return the previous intra-op count."""
    positive_int("threads", threads)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != threads:
        try:  # allowed once per process, before any inter-op work: later calls raise, and are harmless to skip
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass
    return previous
