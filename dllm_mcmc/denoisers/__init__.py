"""Denoisers: the `Denoiser` protocol and adapters for real and toy models."""

from dllm_mcmc.denoisers.base import Denoiser, check_logits, denoiser_device
from dllm_mcmc.denoisers.exact import ExactDenoiser
from dllm_mcmc.denoisers.hf import HFDenoiser

__all__ = ["Denoiser", "ExactDenoiser", "HFDenoiser", "check_logits", "denoiser_device"]
