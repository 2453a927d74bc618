"""Denoisers: the `Denoiser` protocol and adapters for real and toy models."""

from .base import Denoiser, check_logits, denoiser_device
from .exact import ExactDenoiser
from .hf import HFDenoiser

__all__ = ["Denoiser", "ExactDenoiser", "HFDenoiser", "check_logits", "denoiser_device"]
