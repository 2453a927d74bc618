"""dllm-mcmc: Markov chain Monte Carlo decoding for masked diffusion language models."""

from dllm_mcmc.decoding import RULES, DecodeConfig, Rule, Trajectory, decode, replay, smc_decode, stepwise_decode
from dllm_mcmc.denoisers import Denoiser, ExactDenoiser, HFDenoiser
from dllm_mcmc.denoisers.load import load_model
from dllm_mcmc.denoisers.metered import MeteredDenoiser
from dllm_mcmc.mcmc import IMH, KERNELS, SMC, ParticleGibbs, Power, Stepwise
from dllm_mcmc.mcmc.result import Result
from dllm_mcmc.mcmc.runner import sample
from dllm_mcmc.target import TemperedTarget

__version__ = "0.1.0"

__all__ = [
    "RULES",
    "DecodeConfig",
    "Denoiser",
    "ExactDenoiser",
    "HFDenoiser",
    "IMH",
    "KERNELS",
    "MeteredDenoiser",
    "ParticleGibbs",
    "Power",
    "Stepwise",
    "Result",
    "SMC",
    "Rule",
    "TemperedTarget",
    "Trajectory",
    "decode",
    "load_model",
    "replay",
    "sample",
    "smc_decode",
    "stepwise_decode",
]
