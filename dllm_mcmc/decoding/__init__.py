"""Decoding: rules, the batched decoding loop, and its `Trajectory` record."""

from dllm_mcmc.decoding.config import POSITION_SCORES, RULE_OPTIONS, RULES, DecodeConfig, Rule
from dllm_mcmc.decoding.decode import decode, redecode, replay
from dllm_mcmc.decoding.smc import SMCResult, smc_decode
from dllm_mcmc.decoding.stepwise import StepwiseDraw, stepwise_decode
from dllm_mcmc.decoding.suffix import exact_log_suffix, mean_field_log_suffix
from dllm_mcmc.decoding.trajectory import Trajectory

__all__ = ["DecodeConfig", "POSITION_SCORES", "RULES", "RULE_OPTIONS", "Rule", "SMCResult", "StepwiseDraw",
           "Trajectory", "decode", "exact_log_suffix", "mean_field_log_suffix", "redecode", "replay", "smc_decode",
           "stepwise_decode"]
