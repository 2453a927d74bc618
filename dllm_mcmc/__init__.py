"""dllm-mcmc: Markov chain Monte Carlo decoding for masked diffusion language models."""

from .decoding import RULES, DecodeConfig, Trajectory, decode, replay
from .denoisers import Denoiser, ExactDenoiser, HFDenoiser
from .denoisers.metered import MeteredDenoiser
from .kernels import IMH, KERNELS, Power, Stepwise
from .models import load_model
from .result import Result
from .runner import sample
from .target import TemperedTarget

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
    "Power",
    "Stepwise",
    "Result",
    "TemperedTarget",
    "Trajectory",
    "decode",
    "load_model",
    "replay",
    "sample",
]
