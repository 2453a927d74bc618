"""Griffe extension (mkdocs.yml, mkdocstrings ``extensions:``): show doctests as code in the API reference.

The package's docstrings put their doctests under ``Example:`` (which griffe's Google parser renders as an
admonition of Markdown text) or straight in the text. In Markdown a ``>>>`` line is a nested block quote, and
``tree["posterior"]["log_target"]`` is a reference-style link (a broken one, which fails the strict build).
This extension wraps every doctest block (a ``>>>`` line and the lines that follow it up to a blank line or a
dedent) in a ``pycon`` fence, and drops the ``# doctest:`` directives from what is shown. The docstrings
themselves, and what ``pytest --doctest-modules`` runs, are unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")


def fence_doctests(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if not stripped.startswith(">>>"):
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(stripped)]
        block = []
        while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
            block.append(DIRECTIVE.sub("", lines[i][len(indent):]))
            i += 1
        if out and out[-1].strip() and out[-1].startswith(indent) and out[-1][len(indent):len(indent) + 1] != " ":
            out.append("")  # after a paragraph at the same depth (not after a section title such as "Example:")
        out += [f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"]
        if i < len(lines) and lines[i].strip():
            out.append("")
    return "\n".join(out)


class FenceDoctests(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
