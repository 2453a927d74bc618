r"""Pulling the answer out of a model's response: boxed LaTeX, a trailing number, or a code block.

Pure string functions, no third-party imports, so every checker can share them and they can be
tested without a model.

>>> math_answer(r"so $x = \frac{1}{2}$, that is \boxed{\frac{1}{2}}.")
'\\frac{1}{2}'
>>> math_answer("The total is 1,250 dollars.")
'1250'
>>> fenced_code("Here you go:\n```python\ndef f():\n    return 1\n```\n")
'def f():\n    return 1\n'
"""

from __future__ import annotations

import re

__all__ = ["BOX_COMMANDS", "fenced_blocks", "fenced_code", "last_boxed", "last_number", "math_answer"]

BOX_COMMANDS = ("\\boxed", "\\fbox")

# Info strings that count as Python; the empty one is included because models often open a bare ```.
_PYTHON_INFO = {"", "python", "py", "python3", "py3"}


def _balanced_group(text: str, start: int) -> int | None:
    """Index just past the ``}`` closing the ``{`` at ``start``; None when it never closes.

    A backslash escapes the next character, so ``\\{`` and ``\\}`` are literal braces (as in
    ``\\{1, 2\\}``) while ``\\\\}`` is a line break followed by a real closing brace.
    """
    depth = 0
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _box_content(text: str, after: int) -> str | None:
    """The argument of a box command whose name ends at ``after``; None when there is none."""
    rest = text[after:]
    stripped = rest.lstrip()
    if stripped.startswith("{"):
        start = after + len(rest) - len(stripped)
        end = _balanced_group(text, start)
        return None if end is None else text[start + 1:end - 1]
    if rest[:1].isalpha():
        return None  # a longer command such as \boxedsomething, not a box
    # TeX also accepts an unbraced argument ("\boxed 5"), which some MATH solutions use.
    match = re.match(r"\s+([^\s$]+)", rest)
    return match.group(1) if match else None


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` (or ``\\fbox{...}``), whitespace stripped.

    Braces are matched, so nested groups survive whole; a box whose braces never close (a response
    cut off mid-answer) is skipped in favour of the complete one before it.

    >>> last_boxed(r"first \\boxed{1}, finally \\boxed{\\frac{3}{\\sqrt{2}}}")
    '\\\\frac{3}{\\\\sqrt{2}}'
    >>> last_boxed(r"\\boxed{\\{1, 2\\}}")
    '\\\\{1, 2\\\\}'
    >>> last_boxed(r"\\fbox{ 7 } and then \\boxed{8")
    '7'
    >>> last_boxed("no box here") is None
    True
    """
    pattern = "|".join(re.escape(command) for command in BOX_COMMANDS)
    for match in reversed(list(re.finditer(pattern, text))):
        content = _box_content(text, match.end())
        if content is not None:
            return content.strip()
    return None


# One number: an optional sign (only where it cannot be a binary minus), then a LaTeX fraction,
# a plain fraction, or a decimal with optional thousands separators.
_NUMBER = re.compile(
    r"""
    (?<![\w.)\]}])(?P<sign>-)?\s*
    (?:
        \\[dt]?frac\s*\{\s*(?P<fnum>\d+)\s*\}\s*\{\s*(?P<fden>\d+)\s*\}
      | (?P<num>\d+)\s*/\s*(?P<den>\d+)(?![\d.])
      | (?P<dec>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)
    )
    """,
    re.VERBOSE,
)


def last_number(text: str) -> str | None:
    """The last number in ``text`` (integer, decimal or fraction), thousands separators removed.

    A ``-`` counts as a sign only where it cannot be subtraction (not after a letter, digit or
    closing bracket), so ``"7-5"`` ends in ``5`` while ``"x = -5"`` ends in ``-5``.

    >>> last_number("It costs $1,000.")
    '1000'
    >>> last_number("between 2 and 3.5")
    '3.5'
    >>> last_number("so x = -3/4 here")
    '-3/4'
    >>> last_number(r"which gives \\frac{5}{8}")
    '5/8'
    >>> last_number("7-5"), last_number("no digits") is None
    ('5', True)
    """
    last = None
    for match in _NUMBER.finditer(text):
        last = match
    if last is None:
        return None
    sign = "-" if last.group("sign") else ""
    if last.group("fnum") is not None:
        return f"{sign}{last.group('fnum')}/{last.group('fden')}"
    if last.group("num") is not None:
        return f"{sign}{last.group('num')}/{last.group('den')}"
    return sign + last.group("dec").replace(",", "")


def math_answer(text: str) -> str | None:
    """The final answer of a maths response: the last box, else the last number, else None.

    >>> math_answer(r"\\boxed{x^2 + 1}"), math_answer("so 42."), math_answer("I give up") is None
    ('x^2 + 1', '42', True)
    """
    boxed = last_boxed(text)
    if boxed:
        return boxed
    return last_number(text)


_OPEN_FENCE = re.compile(r"(?P<fence>`{3,})(?P<info>[^`\n]*)\n")


def fenced_blocks(text: str, language: str | None = "python") -> list[str]:
    """Every fenced code block in ``text`` whose info string matches ``language``, in order.

    ``language="python"`` accepts the info strings ``python``, ``py``, ``python3``, ``py3`` and the
    empty one; ``language=None`` accepts any block. A final fence that never closes contributes the
    rest of the text, since a fixed-length decode often stops before the closing fence. Fences may
    open mid-line (``Here:```python``), which diffusion models produce more often than chat models.

    >>> fenced_blocks("```py\\na = 1\\n```\\n```bash\\nls\\n```\\n```\\nb = 2\\n")
    ['a = 1\\n', 'b = 2\\n']
    >>> fenced_blocks("```bash\\nls\\n```", language=None)
    ['ls\\n']
    """
    wanted = None if language is None else (_PYTHON_INFO if language.lower() in _PYTHON_INFO
                                             else {language.lower()})
    blocks: list[str] = []
    position = 0
    while True:
        opening = _OPEN_FENCE.search(text, position)
        if opening is None:
            break
        fence = opening.group("fence")
        words = opening.group("info").strip().split()
        info = words[0].lower() if words else ""
        body_start = opening.end()
        # The next run of at least as many backticks closes the block, wherever it stands: models
        # glue it to the last code line ("return x```") as often as they put it on its own line.
        closing = re.compile(fence + "`*").search(text, body_start)
        body_end = len(text) if closing is None else closing.start()
        if wanted is None or info in wanted:
            blocks.append(text[body_start:body_end])
        if closing is None:
            break
        position = closing.end()
    return blocks


def fenced_code(text: str, language: str | None = "python", pick: str = "last") -> str | None:
    """One fenced code block of ``text``: the ``"last"`` (default) or ``"first"`` matching block.

    The last block is the default because a response that revises its code ends with the revision,
    and because a cut-off final block (taken to the end of the text) is always the last. Responses
    that end with a usage example instead are why the benchmark checkers prefer the last block that
    defines the function under test (`fenced_blocks` gives them every candidate). None when the
    text holds no matching fence at all.

    >>> fenced_code("```python\\nx = 1\\n```\\nthen\\n```python\\nx = 2\\n```")
    'x = 2\\n'
    >>> fenced_code("```python\\nx = 1\\n```\\nthen\\n```python\\nx = 2\\n```", pick="first")
    'x = 1\\n'
    >>> fenced_code("plain text, no code") is None
    True
    """
    if pick not in ("first", "last"):
        raise ValueError(f"pick must be 'first' or 'last', got {pick!r}")
    blocks = fenced_blocks(text, language)
    if not blocks:
        return None
    return blocks[-1] if pick == "last" else blocks[0]
