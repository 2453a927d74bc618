"""What every evaluation task hands the experiment runner: problems, prompts and verdicts.

A task is anything with a ``name``, ``problems(limit)``, ``prompt_text(problem)``,
``check(problem, completion)`` and ``answer(problem, completion)`` (the extracted answer, which majority
voting counts): the bundled task families (`dllm_mcmc.eval.family_tasks`) and the paper's
benchmarks (`dllm_mcmc.eval.benchmarks`) both fit.

>>> verdict = Verdict(correct=False, answer="41", reason="wrong answer")
>>> verdict.as_record()
{'correct': False, 'answer': '41', 'reason': 'wrong answer'}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class EvalProblem:
    """One problem: a stable ``id`` (unique within its task), the raw ``question`` and task ``data``.

    ``data`` holds whatever the checker needs (reference answer, unit tests, entry point); it takes no
    part in equality.
    """

    id: str
    question: str
    data: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Verdict:
    """The checker's word on one completion: ``correct``, the extracted ``answer`` and a ``reason``.

    ``reason`` is ``"ok"`` when correct and otherwise says why not (``"wrong answer"``,
    ``"no answer"``, ``"timeout"``, ``"memory"``, ``"network"``, ...).
    """

    correct: bool
    answer: str | None
    reason: str

    def as_record(self) -> dict:
        return {"correct": self.correct, "answer": self.answer, "reason": self.reason}


@runtime_checkable
class EvalTask(Protocol):
    """A verifiable task the runner can score."""

    name: str

    def problems(self, limit: int | None = None) -> list[EvalProblem]:
        """The evaluation problems in a fixed order; the first ``limit`` when given."""
        ...

    def prompt_text(self, problem: EvalProblem) -> str:
        """The text the model is conditioned on (before any chat template)."""
        ...

    def check(self, problem: EvalProblem, completion: str) -> Verdict:
        """Grade one completion (the model's response text, without the prompt)."""
        ...

    def answer(self, problem: EvalProblem, completion: str) -> str | None:
        """The answer a completion gives (``None``: none), the key majority voting counts; no grading."""
        ...
