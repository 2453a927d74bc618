"""MCMC towards the tempered target: Pyro `MCMCKernel`s that run C chains as a batch dimension
(`imh`, `power`, `stepwise`, `pgibbs`, `smc`), the registry of every sampler (`registry`: kernels and the
evaluation's batch samplers `decoders`, `particles`), their driver `sample` (`runner`) and its `Result`
(with its ArviZ ``DataTree`` and netCDF file, `datatree`), and the bridge from a ``pyro.infer.MCMC`` run
to a `Result` (`pyro_mcmc`)."""

from dllm_mcmc.mcmc.imh import IMH, independent_mh_step
from dllm_mcmc.mcmc.kernel import SCALAR_SITES, KernelProtocol, TargetKernel
from dllm_mcmc.mcmc.particle_gibbs import ParticleGibbs
from dllm_mcmc.mcmc.power import Power
from dllm_mcmc.mcmc.pyro_mcmc import StatsRecorder, result_from_pyro
from dllm_mcmc.mcmc.registry import get_sampler, samplers
from dllm_mcmc.mcmc.result import Result
from dllm_mcmc.mcmc.runner import sample
from dllm_mcmc.mcmc.smc import SMC
from dllm_mcmc.mcmc.spec import SamplerSpec
from dllm_mcmc.mcmc.states import ChainState, StepInfo
from dllm_mcmc.mcmc.stepwise import Stepwise

__all__ = ["IMH", "SCALAR_SITES", "SMC", "ChainState", "KernelProtocol", "ParticleGibbs", "Power", "SamplerSpec",
           "get_sampler", "samplers",
           "Result", "StatsRecorder", "StepInfo", "Stepwise", "TargetKernel", "independent_mh_step",
           "result_from_pyro", "sample"]
