"""Verifiable task families for small character-level masked diffusion LMs.

Each family generates short problems (prompt and answer of at most 24 characters) over a small
alphabet, with train/validation/test splits that are disjoint by construction, a reference solution
for training and a verifier for model completions. A completion is the text after the prompt; the
answer ends at the first :data:`END_MARKER` (``"."``), and a training sequence is
``prompt + reference_solution + END_MARKER``.

>>> family = get_family("countdown")
>>> problem = family.generate("test", 1, seed=0)[0]
>>> family.verify(problem, family.reference_solution(problem) + END_MARKER)
True
>>> sorted(FAMILIES)
['arith', 'countdown', 'program']
"""

from __future__ import annotations

from dllm_mcmc.tasks.arith import ArithFamily
from dllm_mcmc.tasks.base import END_MARKER, SPLITS, Problem, TaskFamily, extract_answer
from dllm_mcmc.tasks.countdown import CountdownFamily
from dllm_mcmc.tasks.program import ProgramFamily

FAMILIES: dict[str, TaskFamily] = {
    "countdown": CountdownFamily(),
    "arith": ArithFamily(),
    "program": ProgramFamily(),
}

ALPHABET: str = "".join(sorted(set(END_MARKER).union(*(f.alphabet for f in FAMILIES.values()))))
"""Every character of any prompt, reference answer or end marker, sorted (for a character tokenizer)."""


def get_family(name: str) -> TaskFamily:
    """The registered family called ``name``.

    >>> get_family("sudoku")
    Traceback (most recent call last):
    ...
    ValueError: unknown task family 'sudoku'; available: arith, countdown, program
    """
    try:
        return FAMILIES[name]
    except KeyError:
        available = ", ".join(sorted(FAMILIES))
        raise ValueError(f"unknown task family {name!r}; available: {available}") from None


__all__ = [
    "ALPHABET",
    "END_MARKER",
    "FAMILIES",
    "SPLITS",
    "ArithFamily",
    "CountdownFamily",
    "ProgramFamily",
    "Problem",
    "TaskFamily",
    "extract_answer",
    "get_family",
]
