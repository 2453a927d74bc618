"""Countdown: combine three numbers with ``+``, ``-`` and ``*`` to reach a target.

The prompt lists three numbers from 1 to 9 (sorted) and the target; the answer is one expression
without parentheses that uses each number exactly once, evaluated with the usual precedence.
Usually several answers are correct, so ``Problem.answer`` is ``None``.

>>> family = CountdownFamily()
>>> problem = family.make_problem((2, 3, 7), 13)
>>> problem.prompt
'2 3 7>13:'
>>> family.verify(problem, "2*3+7."), family.verify(problem, "7+3*2."), family.verify(problem, "2*3+8.")
(True, True, False)
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from dllm_mcmc.tasks.base import Problem, TaskFamily

OPERATORS = "+-*"
NUMBER_RANGE = range(1, 10)


class ExpressionError(ValueError):
    """The text is not an expression of digits, ``+``, ``-`` and ``*``."""


class _Parser:
    """Recursive descent over ``expr := term (("+"|"-") term)*``, ``term := number ("*" number)*``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.numbers: list[int] = []

    def parse(self) -> int:
        value = self.expr()
        if self.pos != len(self.text):
            raise ExpressionError(f"unexpected {self.text[self.pos]!r} at {self.pos} in {self.text!r}")
        return value

    def expr(self) -> int:
        value = self.term()
        while self.pos < len(self.text) and self.text[self.pos] in "+-":
            op = self.text[self.pos]
            self.pos += 1
            right = self.term()
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> int:
        value = self.number()
        while self.pos < len(self.text) and self.text[self.pos] == "*":
            self.pos += 1
            value *= self.number()
        return value

    def number(self) -> int:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in "0123456789":
            self.pos += 1
        digits = self.text[start : self.pos]
        if not digits:
            found = repr(self.text[start]) if start < len(self.text) else "end of text"
            raise ExpressionError(f"expected a number at {start} in {self.text!r}, found {found}")
        if len(digits) > 1 and digits[0] == "0":
            raise ExpressionError(f"number with a leading zero: {digits!r}")
        self.numbers.append(int(digits))
        return int(digits)


def parse_expression(text: str, max_chars: int = 64) -> tuple[int, list[int]]:
    """The value of ``text`` and the numbers it uses, in order of appearance.

    >>> parse_expression("3*4+2")
    (14, [3, 4, 2])
    >>> parse_expression("3*(4+2)")
    Traceback (most recent call last):
    ...
    dllm_mcmc.tasks.countdown.ExpressionError: expected a number at 2 in '3*(4+2)', found '('
    """
    if len(text) > max_chars:
        raise ExpressionError(f"expression longer than {max_chars} characters")
    parser = _Parser(text)
    value = parser.parse()
    return value, parser.numbers


def solutions(numbers: tuple[int, ...], target: int) -> list[str]:
    """Every parenthesis-free expression using each number once that evaluates to ``target``, sorted.

    >>> solutions((2, 3, 7), 13)
    ['2*3+7', '3*2+7', '7+2*3', '7+3*2']
    """
    found = set()
    for order in itertools.permutations(numbers):
        for ops in itertools.product(OPERATORS, repeat=len(numbers) - 1):
            text = str(order[0]) + "".join(op + str(n) for op, n in zip(ops, order[1:]))
            if parse_expression(text)[0] == target:
                found.add(text)
    return sorted(found)


class CountdownFamily(TaskFamily):
    """Reach a target from three numbers 1-9 with ``+ - *``; prompt ``"2 3 7>13:"``, answer ``"2*3+7"``."""

    name = "countdown"
    alphabet = "0123456789 >:+-*"
    # Only ~1,400 problems exist: a larger test share keeps >= 300 test problems.
    test_percent = 25
    validation_percent = 10

    def make_problem(self, numbers: tuple[int, ...], target: int) -> Problem:
        """The problem for these numbers (any order) and target; raises ``ValueError`` if unreachable."""
        numbers = tuple(sorted(numbers))
        found = solutions(numbers, target)
        if not found:
            raise ValueError(f"{target} cannot be reached from {numbers}")
        prompt = " ".join(map(str, numbers)) + f">{target}:"
        data = {"numbers": numbers, "target": target, "solutions": tuple(found)}
        return Problem(self.name, prompt, None, data)

    def enumerate_problems(self) -> Iterator[Problem]:
        """Every multiset of three numbers 1-9 with every reachable target >= 1."""
        for numbers in itertools.combinations_with_replacement(NUMBER_RANGE, 3):
            reachable = set()
            for order in itertools.permutations(numbers):
                for ops in itertools.product(OPERATORS, repeat=2):
                    text = f"{order[0]}{ops[0]}{order[1]}{ops[1]}{order[2]}"
                    reachable.add(parse_expression(text)[0])
            for target in sorted(t for t in reachable if t >= 1):
                yield self.make_problem(numbers, target)

    def check_answer(self, problem: Problem, answer: str) -> bool:
        try:
            value, used = parse_expression(answer)
        except ExpressionError:
            return False
        return sorted(used) == sorted(problem.data["numbers"]) and value == problem.data["target"]

    def reference_solution(self, problem: Problem) -> str:
        return problem.data["solutions"][0]
