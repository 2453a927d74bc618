"""MCMC kernels: Pyro `MCMCKernel`s that run C chains as a batch dimension."""

from .base import ChainState, StepInfo, independent_log_ratio, independent_mh_step, mh_accept, select
from .imh import IMH
from .power import Power
from .stepwise import Stepwise

KERNELS = {"imh": IMH, "power": Power, "stepwise": Stepwise}

__all__ = ["IMH", "KERNELS", "Power", "Stepwise", "ChainState", "StepInfo", "independent_log_ratio", "independent_mh_step", "mh_accept", "select"]
