"""Answer extraction and checkers for the paper's benchmarks: `extract` pulls the answer out of a
response (the last ``\\boxed{}``, the last number, fenced code blocks) with plain string work, and
`checkers` judges it (symbolic maths with ``math_verify`` in a worker process, AIME integers in
process, code through the sandbox, only when allowed: `CodeExecutionNotAllowed`, `isolation_is_full`).
See ``docs/benchmarks.md``.
"""

from dllm_mcmc.eval.checking.checkers import (
    CODE_EXECUTION_HINT,
    EVAL_EXTRA_HINT,
    CodeExecutionNotAllowed,
    MathChecker,
    WeakIsolationWarning,
    check_code,
    check_integer,
    check_math,
    default_math_checker,
    integer_value,
    isolation_is_full,
    isolation_notice,
    missing_isolation,
)
from dllm_mcmc.eval.checking.extract import fenced_blocks, fenced_code, last_boxed, last_number, math_answer

__all__ = [
    "CODE_EXECUTION_HINT",
    "EVAL_EXTRA_HINT",
    "CodeExecutionNotAllowed",
    "MathChecker",
    "WeakIsolationWarning",
    "check_code",
    "check_integer",
    "check_math",
    "default_math_checker",
    "fenced_blocks",
    "fenced_code",
    "integer_value",
    "isolation_is_full",
    "isolation_notice",
    "last_boxed",
    "last_number",
    "math_answer",
    "missing_isolation",
]
