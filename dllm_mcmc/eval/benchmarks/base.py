"""What every benchmark shares: records from ``records=``, ``path=`` or the benchmark's default source,
normalised once into problems (`EvalProblem`) whose ids must be unique."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from dllm_mcmc.eval.benchmarks.sources import load_records
from dllm_mcmc.eval.problem import EvalProblem


def _unique(problems: list[EvalProblem], benchmark: str) -> list[EvalProblem]:
    seen: set[str] = set()
    for problem in problems:
        if problem.id in seen:
            raise ValueError(f"{benchmark}: problem id {problem.id!r} occurs twice in the data")
        seen.add(problem.id)
    return problems


class _Benchmark:
    """Shared loading: records from ``records=``, ``path=``, else the benchmark's default source."""

    name = ""
    executes_code = False
    """Whether `check` runs model-generated code (the code benchmarks: only with ``allow_code_execution``)."""

    def __init__(self, path: str | Path | None = None, records: Iterable[dict] | None = None) -> None:
        if path is not None and records is not None:
            raise ValueError("give path or records, not both")
        self.path = None if path is None else Path(path)
        self._records = None if records is None else [dict(record) for record in records]
        self._problems: list[EvalProblem] | None = None

    def problems(self, limit: int | None = None) -> list[EvalProblem]:
        """The problems in data order; the first ``limit`` when given (loaded once, then cached)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be non-negative, got {limit}")
        if self._problems is None:
            if self._records is not None:
                raw, local = self._records, True
            elif self.path is not None:
                raw, local = load_records(self.path), True
            else:
                raw, local = self._default_records(), False
            self._problems = _unique(self._normalise(raw, local), self.name)
        return list(self._problems if limit is None else self._problems[:limit])

    def _default_records(self) -> list[dict]:
        raise NotImplementedError

    def _normalise(self, records: list[dict], local: bool) -> list[EvalProblem]:
        raise NotImplementedError

    def __repr__(self) -> str:
        source = self.path if self.path is not None else ("records" if self._records is not None else "default")
        return f"{type(self).__name__}(name={self.name!r}, source={str(source)!r})"
