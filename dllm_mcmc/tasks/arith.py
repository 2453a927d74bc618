"""Arithmetic with shown work: evaluate ``a op b op c`` one operation at a time.

The prompt is an expression of three numbers 1-9 and two operators among ``+ - *``; the answer is a
comma-separated list of steps ``x op y=z``, each replacing two neighbouring numbers by their result,
with ``*`` before ``+``/``-`` and ``-`` never grouping its right side. Any order that respects
precedence is accepted, and ``+``/``*`` steps may swap their operands. Numbers in the work are
non-negative (problems are chosen so that the left-to-right work is).

>>> family = ArithFamily()
>>> problem = family.make_problem((7, 5, 3), ("+", "*"))
>>> problem.prompt, problem.answer, family.reference_solution(problem)
('7+5*3=', '22', '5*3=15,7+15=22')
>>> family.verify(problem, "3*5=15,15+7=22."), family.verify(problem, "7+5=12,12*3=36.")
(True, False)
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

from dllm_mcmc.tasks.base import Problem, TaskFamily

OPERATORS = "+-*"
NUMBER_RANGE = range(1, 10)
_STEP = re.compile(r"(0|[1-9][0-9]*)([-+*])(0|[1-9][0-9]*)=(0|[1-9][0-9]*)")
_MAX_ANSWER_CHARS = 64

State = tuple[tuple[int, ...], tuple[str, ...]]


def apply(op: str, x: int, y: int) -> int:
    """``x op y`` for ``op`` in ``+ - *``."""
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return x * y
    raise ValueError(f"unknown operator {op!r}")


def reducible(ops: tuple[str, ...], i: int) -> bool:
    """Whether operation ``i`` may be done now without changing the value of the expression.

    >>> reducible(("+", "*"), 0), reducible(("+", "*"), 1), reducible(("-", "+"), 1)
    (False, True, False)
    """
    if ops[i] == "*":
        return True
    before_ok = i == 0 or ops[i - 1] == "+"
    after_ok = i + 1 == len(ops) or ops[i + 1] != "*"
    return before_ok and after_ok


def reduce_at(state: State, i: int) -> tuple[State, str]:
    """Do operation ``i``: the new state and the step text."""
    nums, ops = state
    x, y = nums[i], nums[i + 1]
    z = apply(ops[i], x, y)
    new_state = (nums[:i] + (z,) + nums[i + 2 :], ops[:i] + ops[i + 1 :])
    return new_state, f"{x}{ops[i]}{y}={z}"


def reference_work(nums: tuple[int, ...], ops: tuple[str, ...]) -> list[str]:
    """Steps doing the leftmost ``*`` first, then the rest left to right.

    >>> reference_work((7, 5, 3), ("+", "*"))
    ['5*3=15', '7+15=22']
    """
    state: State = (nums, ops)
    steps = []
    while state[1]:
        ops_now = state[1]
        i = ops_now.index("*") if "*" in ops_now else 0
        state, step = reduce_at(state, i)
        steps.append(step)
    return steps


def check_work(nums: tuple[int, ...], ops: tuple[str, ...], answer: str) -> int | None:
    """The final value if ``answer`` is valid work for the expression, else ``None``.

    >>> check_work((7, 5, 3), ("+", "*"), "5*3=15,7+15=22")
    22
    >>> check_work((7, 5, 3), ("+", "*"), "5*3=16,7+16=23") is None
    True
    """
    if len(answer) > _MAX_ANSWER_CHARS:
        return None
    states: set[State] = {(nums, ops)}
    for step in answer.split(","):
        match = _STEP.fullmatch(step)
        if match is None:
            return None
        x, op, y, z = int(match[1]), match[2], int(match[3]), int(match[4])
        if apply(op, x, y) != z:
            return None
        next_states = set()
        for state_nums, state_ops in states:
            for i, state_op in enumerate(state_ops):
                pair = (state_nums[i], state_nums[i + 1])
                same = pair == (x, y) or (op in "+*" and pair == (y, x))
                if state_op == op and same and reducible(state_ops, i):
                    next_states.add(reduce_at((state_nums, state_ops), i)[0])
        if not next_states:
            return None
        states = next_states
    finals = {state_nums[0] for state_nums, state_ops in states if not state_ops}
    return finals.pop() if len(finals) == 1 else None


class ArithFamily(TaskFamily):
    """Three-number arithmetic with work; prompt ``"7+5*3="``, answer ``"5*3=15,7+15=22"``."""

    name = "arith"
    alphabet = "0123456789+-*=,"

    def make_problem(self, nums: tuple[int, ...], ops: tuple[str, ...]) -> Problem:
        """The problem ``nums[0] ops[0] nums[1] ...``; ``ValueError`` if its work goes negative."""
        if len(nums) != len(ops) + 1 or any(op not in OPERATORS for op in ops):
            raise ValueError(f"malformed expression {nums} {ops}")
        steps = reference_work(tuple(nums), tuple(ops))
        if any("-" in step.split("=")[1] for step in steps):
            raise ValueError("the work has a negative number")
        prompt = str(nums[0]) + "".join(op + str(n) for op, n in zip(ops, nums[1:])) + "="
        value = int(steps[-1].split("=")[1])
        data = {"numbers": tuple(nums), "operators": tuple(ops), "value": value, "work": ",".join(steps)}
        return Problem(self.name, prompt, str(value), data)

    def enumerate_problems(self) -> Iterator[Problem]:
        """Every expression of three numbers 1-9 and two operators whose work stays non-negative."""
        for nums in itertools.product(NUMBER_RANGE, repeat=3):
            for ops in itertools.product(OPERATORS, repeat=2):
                try:
                    yield self.make_problem(nums, ops)
                except ValueError:
                    continue

    def check_answer(self, problem: Problem, answer: str) -> bool:
        value = check_work(problem.data["numbers"], problem.data["operators"], answer)
        return value is not None and str(value) == problem.answer

    def reference_solution(self, problem: Problem) -> str:
        return problem.data["work"]
