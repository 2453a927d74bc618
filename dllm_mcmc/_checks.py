"""Argument validation in one place: every public entry point and config field checks its values
here, so every message names the argument and the bad value the same way.

Example:
    >>> positive_int("num_chains", 0)
    Traceback (most recent call last):
        ...
    ValueError: num_chains must be a positive integer, got 0
    >>> one_of("rule", "fast", ("random", "entropy"))
    Traceback (most recent call last):
        ...
    ValueError: rule='fast' is unknown; choose one of random, entropy
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def positive_int(name: str, value: Any) -> int:
    """``value`` if it is an int ``>= 1`` (not a bool), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def nonnegative_int(name: str, value: Any) -> int:
    """``value`` if it is an int ``>= 0`` (not a bool), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def positive_float(name: str, value: Any) -> float:
    """``float(value)`` if it is a finite real number ``> 0`` (not a bool), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is unknown; choose one of {', '.join(map(str, choices))}")
    return value


def boolean(name: str, value: Any) -> bool:
    """``value`` if it is ``True`` or ``False``, else ``ValueError``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value
