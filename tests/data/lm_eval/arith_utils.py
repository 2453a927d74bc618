"""Grading of the dllm_arith_pass lm-eval task: the arith family's verifier and unbiased pass@k."""

import re

from dllm_mcmc.eval.passk import pass_at_k
from dllm_mcmc.tasks.arith import ArithFamily

FAMILY = ArithFamily()


def correct(question: str, completion: str) -> bool:
    """Whether ``completion`` (cut at the stop ``.``) is valid work for ``question`` (``"7+5*3="``)."""
    numbers = tuple(int(n) for n in re.findall(r"\d+", question))
    operators = tuple(re.findall(r"[-+*]", question))
    return FAMILY.verify(FAMILY.make_problem(numbers, operators), completion + ".")


def process_results(doc: dict, results: list) -> dict:
    samples = results[0]  # take_first_k: the request's n completions
    hits = sum(correct(doc["question"], text) for text in samples)
    return {"pass@1": pass_at_k(len(samples), hits, 1), "pass@4": pass_at_k(len(samples), hits, 4)}
