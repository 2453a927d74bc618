"""dllm-mcmc: Markov chain Monte Carlo decoding for masked diffusion language models."""

from dllm_mcmc.decoding import RULES, DecodeConfig, Rule, Trajectory, decode, replay, smc_decode, stepwise_decode
from dllm_mcmc.denoisers import Denoiser, ExactDenoiser, HFDenoiser
from dllm_mcmc.denoisers.load import load_model
from dllm_mcmc.denoisers.metered import MeteredDenoiser
from dllm_mcmc.mcmc import IMH, SMC, ParticleGibbs, Power, SamplerSpec, Stepwise, TargetKernel, get_sampler, samplers
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
    "MeteredDenoiser",
    "ParticleGibbs",
    "Power",
    "Stepwise",
    "Result",
    "SMC",
    "SamplerSpec",
    "TargetKernel",
    "Rule",
    "TemperedTarget",
    "Trajectory",
    "decode",
    "get_sampler",
    "load_model",
    "replay",
    "sample",
    "samplers",
    "smc_decode",
    "stepwise_decode",
]
