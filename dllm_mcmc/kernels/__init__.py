"""MCMC kernels: Pyro `MCMCKernel`s that run C chains as a batch dimension."""

from .base import ChainState, StepInfo, independent_mh_step, mh_accept, select
from .imh import IMH
from .power import Power

KERNELS = {"imh": IMH, "power": Power}

__all__ = ["IMH", "KERNELS", "Power", "ChainState", "StepInfo", "independent_mh_step", "mh_accept", "select"]
