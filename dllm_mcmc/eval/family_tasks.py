"""The bundled task families (`dllm_mcmc.tasks`) as evaluation tasks.

>>> task = FamilyTask("arith")
>>> problem = task.problems(limit=1)[0]
>>> task.prompt_text(problem) == problem.question
True
>>> task.check(problem, problem.data["reference"] + ".").correct
True
"""

from __future__ import annotations

from dllm_mcmc.eval.problem import EvalProblem, Verdict
from dllm_mcmc.tasks import get_family

TEST_PROBLEMS = 300
"""Problems per family in an evaluation unless a limit is given: the size of the test splits."""


class FamilyTask:
    """The test split of one family: ``count`` problems drawn with ``seed`` (a fixed, ordered list)."""

    def __init__(self, family: str, split: str = "test", count: int = TEST_PROBLEMS, seed: int = 0) -> None:
        self.family = get_family(family)
        self.name, self.split, self.count, self.seed = family, split, count, seed

    def problems(self, limit: int | None = None) -> list[EvalProblem]:
        count = self.count if limit is None else limit
        return [
            EvalProblem(problem.prompt, self.family.format_prompt(problem),
                        {"problem": problem, "reference": self.family.reference_solution(problem)})
            for problem in self.family.generate(self.split, count, seed=self.seed)
        ]

    def prompt_text(self, problem: EvalProblem) -> str:
        return problem.question

    def answer(self, problem: EvalProblem, completion: str) -> str | None:
        """The family's `extract_answer` (the text before the end marker)."""
        return self.family.extract_answer(completion)

    def check(self, problem: EvalProblem, completion: str) -> Verdict:
        answer = self.family.extract_answer(completion)
        if answer is None:
            return Verdict(False, None, "no answer")
        correct = self.family.verify(problem.data["problem"], completion)
        return Verdict(correct, answer, "ok" if correct else "wrong answer")
