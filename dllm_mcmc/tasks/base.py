"""Shared pieces of the verifiable task families: problems, splits and the family base class.

A problem is shown to the model as ``format_prompt(problem)``; the model writes an answer followed by
:data:`END_MARKER`. Training text is ``prompt + reference_solution + END_MARKER``:

>>> from dllm_mcmc.tasks import get_family
>>> family = get_family("arith")
>>> problem = family.generate("train", 1, seed=0)[0]
>>> text = family.training_text(problem)
>>> text.endswith(END_MARKER) and family.verify(problem, text[len(family.format_prompt(problem)):])
True
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field

from dllm_mcmc._checks import nonnegative_int

END_MARKER = "."
"""Ends an answer. Everything a model writes after the first marker is ignored."""

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Problem:
    """One problem of a task family.

    ``answer`` is the unique final answer when there is one (the value of an arithmetic expression or a
    program) and ``None`` when many different answers are correct (countdown). ``data`` holds the
    structured problem for analysis; it takes no part in equality or hashing.

    >>> Problem("arith", "1+2*3=", "7", {"value": 7}) == Problem("arith", "1+2*3=", "7", {})
    True
    """

    family: str
    prompt: str
    answer: str | None
    data: dict = field(default_factory=dict, compare=False, hash=False)


def stable_bucket(key: str, buckets: int = 100) -> int:
    """A bucket in ``range(buckets)`` that depends only on ``key`` (not on PYTHONHASHSEED or the platform).

    >>> stable_bucket("1+2*3=") == stable_bucket("1+2*3=")
    True
    """
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def extract_answer(text: str) -> str | None:
    """The answer in a model completion: the text before the first :data:`END_MARKER`, stripped.

    Without a marker the whole completion counts, so a model that fills its answer window exactly is
    still graded. An empty answer is ``None``.

    >>> extract_answer("2*3+7.junk")
    '2*3+7'
    >>> extract_answer(" 22 ")
    '22'
    >>> extract_answer(".22") is None
    True
    """
    answer = text.split(END_MARKER, 1)[0].strip()
    return answer or None


class TaskFamily(ABC):
    """A family of generated problems with a verifier.

    Splits are disjoint by construction: a problem belongs to the split chosen by a stable hash of its
    canonical key (by default its prompt), so no seed or count can put a test problem into train.

    Subclasses set ``name`` and ``alphabet`` (every character their prompts and answers may use), and
    implement ``check_answer`` and ``reference_solution``, plus either ``enumerate_problems`` (small
    problem spaces, listed in full) or ``sample_problem`` (large ones, sampled by rejection).
    """

    name: str
    alphabet: str
    test_percent: int = 20
    validation_percent: int = 10
    max_prompt_chars: int = 24
    max_answer_chars: int = 24

    def __init__(self) -> None:
        self._space: dict[str, list[Problem]] | None = None

    # ----- splits -------------------------------------------------------------------------------
    def canonical_key(self, problem: Problem) -> str:
        """The identity of a problem for the split partition."""
        return problem.prompt

    def split_of(self, problem: Problem) -> str:
        """The split this problem belongs to (``"train"``, ``"validation"`` or ``"test"``)."""
        bucket = stable_bucket(f"{self.name}:{self.canonical_key(problem)}")
        if bucket < self.test_percent:
            return "test"
        if bucket < self.test_percent + self.validation_percent:
            return "validation"
        return "train"

    # ----- generation ---------------------------------------------------------------------------
    def enumerate_problems(self) -> Iterable[Problem] | None:
        """Every problem of the family in a fixed order, or ``None`` when the space is too large."""
        return None

    def sample_problem(self, rng: random.Random) -> Problem | None:
        """One random problem (``None`` to reject a draw); used when the space is not enumerated."""
        raise NotImplementedError(f"{type(self).__name__} must enumerate or sample problems")

    def problem_space(self, split: str) -> list[Problem]:
        """All problems of one split, for families whose space is enumerated."""
        _check_split(split)
        if self._space is None:
            problems = self.enumerate_problems()
            if problems is None:
                raise NotImplementedError(f"the {self.name} problem space is sampled, not enumerated")
            space: dict[str, list[Problem]] = {s: [] for s in SPLITS}
            for problem in problems:
                space[self.split_of(problem)].append(problem)
            self._space = space
        return list(self._space[split])

    def generate(self, split: str, count: int, seed: int) -> list[Problem]:
        """``count`` distinct problems of ``split``, the same ones for the same seed.

        Raises ``ValueError`` when the split holds fewer than ``count`` problems.
        """
        _check_split(split)
        nonnegative_int("count", count)
        # A string seed is hashed with SHA-512 by random.Random, so it is stable across processes.
        rng = random.Random(f"{self.name}/{split}/{seed}")
        if self.enumerate_problems() is not None:
            pool = self.problem_space(split)
            if count > len(pool):
                raise ValueError(f"{self.name} {split} has {len(pool)} problems; asked for {count}")
            return rng.sample(pool, count)
        return self._sample_distinct(split, count, rng)

    def _sample_distinct(self, split: str, count: int, rng: random.Random) -> list[Problem]:
        problems: list[Problem] = []
        seen: set[str] = set()
        attempts = 0
        max_attempts = 1000 + 200 * count
        while len(problems) < count:
            attempts += 1
            if attempts > max_attempts:
                raise ValueError(f"could not draw {count} distinct {self.name} {split} problems")
            problem = self.sample_problem(rng)
            if problem is None or self.split_of(problem) != split:
                continue
            key = self.canonical_key(problem)
            if key not in seen:
                seen.add(key)
                problems.append(problem)
        return problems

    # ----- model interface ----------------------------------------------------------------------
    def format_prompt(self, problem: Problem) -> str:
        """The text the model is conditioned on."""
        return problem.prompt

    def extract_answer(self, text: str) -> str | None:
        """The answer in a model completion (see :func:`extract_answer`)."""
        return extract_answer(text)

    def verify(self, problem: Problem, completion_text: str) -> bool:
        """Whether a model completion (the text after the prompt) answers the problem correctly."""
        answer = self.extract_answer(completion_text)
        return answer is not None and self.check_answer(problem, answer)

    def training_text(self, problem: Problem) -> str:
        """Prompt, reference solution and end marker: one training sequence."""
        return self.format_prompt(problem) + self.reference_solution(problem) + END_MARKER

    @abstractmethod
    def check_answer(self, problem: Problem, answer: str) -> bool:
        """Whether an extracted answer (no end marker) is correct."""

    @abstractmethod
    def reference_solution(self, problem: Problem) -> str:
        """One correct answer, without the end marker."""


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
