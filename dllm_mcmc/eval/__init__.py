"""Evaluation: unbiased pass@k, tasks and benchmarks, a sandbox for generated code, the resumable
experiment runner (``dllm-mcmc eval``) and its report (``dllm-mcmc report``). See ``docs/evaluation.md``.
"""

from dllm_mcmc.eval.passk import Estimate, bootstrap_interval, mean_pass_at_k, pass_at_k, pass_at_k_estimate
from dllm_mcmc.eval.problem import EvalProblem, EvalTask, Verdict

__all__ = [
    "Estimate",
    "EvalProblem",
    "EvalTask",
    "Verdict",
    "bootstrap_interval",
    "mean_pass_at_k",
    "pass_at_k",
    "pass_at_k_estimate",
]
