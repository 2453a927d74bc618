"""The maths benchmarks, MATH500 and AIME 2024 / 2025: the last boxed answer (else the last number),
checked symbolically with ``math_verify`` (MATH500) or as an exact integer (AIME).
"""

# This submodule's name shadows nothing: imports are absolute, so ``import math`` is still the standard library.

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dllm_mcmc.eval.benchmarks.base import _Benchmark
from dllm_mcmc.eval.benchmarks.sources import HubSource, _first, _lower_keys, hub_records
from dllm_mcmc.eval.checking.checkers import (
    MathChecker,
    check_integer,
    default_math_checker,
    integer_value,
)
from dllm_mcmc.eval.checking.extract import math_answer
from dllm_mcmc.eval.problem import EvalProblem, Verdict

__all__ = ["AIME", "MATH500", "MATH_INSTRUCTION"]

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The instruction appended to every MATH500 and AIME problem (the usual one for these benchmarks)."""


class _MathBenchmark(_Benchmark):
    """A benchmark whose answer is the last box of the completion, else its last number."""

    def answer(self, problem: EvalProblem, completion: str) -> str | None:
        """The final answer (`math_answer`: the last box, else the last number)."""
        return math_answer(completion)


class MATH500(_MathBenchmark):
    """MATH500: the 500-problem test subset of MATH (Hendrycks et al.) chosen by Lightman et al.

    ``path=None`` loads ``HuggingFaceH4/MATH-500`` (split ``test``); a local file holds records
    with ``problem``, ``answer`` and optionally ``unique_id``, ``subject``, ``level``, ``solution``.
    The answer is the last ``\\boxed{}`` of the response (else its last number), compared with
    ``math_verify`` in a worker process (``checker``; the shared `default_math_checker` when None)
    under a ``timeout`` per answer.
    """

    name = "math500"

    def __init__(self, path: str | Path | None = None, *, checker: MathChecker | None = None,
                 timeout: float = 5.0, records: Iterable[dict] | None = None) -> None:
        super().__init__(path, records)
        self.checker, self.timeout = checker, timeout

    def _default_records(self) -> list[dict]:
        return hub_records("MATH500", [[HubSource("HuggingFaceH4/MATH-500", "test")]],
                           "problem, answer (optional: unique_id, subject, level)")

    def _normalise(self, records: list[dict], local: bool) -> list[EvalProblem]:
        problems = []
        for index, record in enumerate(map(_lower_keys, records)):
            question, answer = _first(record, "problem", "question"), _first(record, "answer")
            if question is None or answer is None:
                raise ValueError(f"math500: record {index} lacks problem or answer")
            data = {"answer": str(answer), "subject": record.get("subject"), "level": record.get("level"),
                    "solution": record.get("solution")}
            problem_id = str(_first(record, "unique_id", "id", default=f"math500-{index}"))
            problems.append(EvalProblem(problem_id, str(question), data))
        return problems

    def prompt_text(self, problem: EvalProblem) -> str:
        return f"{problem.question}\n{MATH_INSTRUCTION}"

    def check(self, problem: EvalProblem, completion: str) -> Verdict:
        answer = self.answer(problem, completion)
        if answer is None:
            return Verdict(False, None, "no answer")
        checker = self.checker if self.checker is not None else default_math_checker()
        correct, reason = checker.judge(answer, problem.data["answer"], timeout=self.timeout)
        return Verdict(correct, answer, reason)


class AIME(_MathBenchmark):
    """AIME 2024 or 2025: 30 competition problems whose answers are integers from 0 to 999.

    ``path=None`` loads ``HuggingFaceH4/aime_2024`` (split ``train``) for 2024 and ``math-ai/aime25``
    (split ``test``; ``opencompass/AIME2025`` as a fallback) for 2025. A local file holds records
    with ``problem`` (or ``question``), ``answer`` and optionally ``id``; field names are matched
    without regard to case. A file covering several years is filtered on its ``year`` field. The
    answer is the last box (else the last number) and must equal the reference as an integer.
    """

    SOURCES = {
        2024: [[HubSource("HuggingFaceH4/aime_2024", "train")], [HubSource("Maxwell-Jia/AIME_2024", "train")]],
        2025: [[HubSource("math-ai/aime25", "test")],
               [HubSource("opencompass/AIME2025", "test", "AIME2025-I"),
                HubSource("opencompass/AIME2025", "test", "AIME2025-II")]],
    }

    def __init__(self, year: int = 2024, path: str | Path | None = None, *,
                 records: Iterable[dict] | None = None) -> None:
        if year not in self.SOURCES:
            raise ValueError(f"AIME year must be one of {sorted(self.SOURCES)}, got {year!r}")
        super().__init__(path, records)
        self.year = year
        self.name = f"aime{year % 100:02d}"

    def _default_records(self) -> list[dict]:
        return hub_records(f"AIME {self.year}", self.SOURCES[self.year],
                           "problem (or question), answer (optional: id, year)")

    def _normalise(self, records: list[dict], local: bool) -> list[EvalProblem]:
        problems = []
        for index, record in enumerate(map(_lower_keys, records)):
            year = record.get("year")
            if year is not None and str(year).strip()[:4].isdigit() and int(str(year).strip()[:4]) != self.year:
                continue
            question, answer = _first(record, "problem", "question"), _first(record, "answer")
            if question is None or answer is None:
                raise ValueError(f"{self.name}: record {index} lacks problem/question or answer")
            value = integer_value(answer)
            if value is None:
                raise ValueError(f"{self.name}: record {index} has a non-integer answer {answer!r}")
            if "id" in record and record["id"] is not None:
                problem_id = str(record["id"])
            elif "_source" in record and not local:
                problem_id = f"{record['_source']}-{record['_index'] + 1}"
            else:
                problem_id = f"{self.name}-{index}"
            problems.append(EvalProblem(problem_id, str(question), {"answer": str(value), "year": self.year}))
        if records and not problems:
            raise ValueError(f"{self.name}: no record of {self.year} in the data (filtered on 'year')")
        return problems

    def prompt_text(self, problem: EvalProblem) -> str:
        return f"{problem.question}\n{MATH_INSTRUCTION} The answer is an integer from 0 to 999."

    def check(self, problem: EvalProblem, completion: str) -> Verdict:
        answer = self.answer(problem, completion)
        if answer is None:
            return Verdict(False, None, "no answer")
        correct = check_integer(answer, problem.data["answer"])
        return Verdict(correct, answer, "ok" if correct else "wrong answer")
