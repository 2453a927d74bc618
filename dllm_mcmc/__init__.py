"""dllm-mcmc: Markov chain Monte Carlo decoding for masked diffusion language models."""

from .decoding import RULES, DecodeConfig, Trajectory, decode, replay
from .denoisers import Denoiser, ExactDenoiser, HFDenoiser

__version__ = "0.1.0"

__all__ = [
    "RULES",
    "DecodeConfig",
    "Denoiser",
    "ExactDenoiser",
    "HFDenoiser",
    "Trajectory",
    "decode",
    "replay",
]
