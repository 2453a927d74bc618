"""MCMC kernels: Pyro `MCMCKernel`s that run C chains as a batch dimension."""

from .base import ChainState, StepInfo, independent_mh_step, mh_accept, select
from .imh import IMH

KERNELS = {"imh": IMH}

__all__ = ["IMH", "KERNELS", "ChainState", "StepInfo", "independent_mh_step", "mh_accept", "select"]
