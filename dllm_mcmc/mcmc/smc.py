"""`SMC`: `dllm_mcmc.decoding.smc.smc_decode` as a kernel for `sample` (independent draws).

Every `sample` call runs one SMC system of ``N`` particles per chain (all chains in one batch of ``C · N``
rows) and returns, per chain, one particle drawn ``∝`` its final weight (sampling-importance-resampling
from the particle approximation). Draws are independent but only **approximately** from ``π_T``: the
bias of the weighted particle law is ``O(1/N)``; `ParticleGibbs` is the exact kernel built on the same
SMC. `sample` returns the draws (``tokens``, ``order``) and the scalar sites ``log_target``,
``log_likelihood``, ``length`` (see `dllm_mcmc.mcmc.kernel`). After each `sample`, ``info`` holds float
tensors ``[C]``: ``log_target`` and ``log_likelihood`` of the draw, ``ess`` (the normalised ESS of the
final weights, ``ESS / N``), ``log_normalizer`` (``log Ẑ``), ``nfe`` and ``forward_rows`` (rows divided by
``C``).

Example:
    >>> from dllm_mcmc import ExactDenoiser, sample
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> result = sample(toy, None, 4, kernel="smc", target_temperature=0.5, proposal_temperature=0.5,
    ...                 num_chains=2, num_samples=3, progress=False, num_particles=8)
    >>> result.tokens.shape, result.config["warmup"]
    (torch.Size([2, 3, 4]), 0)
"""

from __future__ import annotations

import torch

from dllm_mcmc.denoisers.batching import MaxRows
from dllm_mcmc.mcmc.particle_gibbs import ParticleGibbs
from dllm_mcmc.mh import effective_sample_size
from dllm_mcmc.target import TemperedTarget


class SMC(ParticleGibbs):
    """Independent SMC draws (options as `ParticleGibbs`; ``num_particles`` defaults to 16)."""

    name = "smc"
    needs_warmup = False  # every draw is a fresh SMC run

    def __init__(self, target: TemperedTarget, *, proposal_temperature: float | None = None, num_particles: int = 16,
                 num_chains: int = 1, seed: int = 0, ess_threshold: float = 0.5, max_rows: MaxRows = None,
                 position_proposal: str = "rule") -> None:
        super().__init__(target, proposal_temperature=proposal_temperature, num_particles=num_particles,
                         num_chains=num_chains, seed=seed, ess_threshold=ess_threshold, max_rows=max_rows,
                         position_proposal=position_proposal)

    def setup(self, warmup_steps: int = 0, *args, **kwargs) -> None:
        self.start(warmup_steps)
        self._state = None
        self._ready = True

    @property
    def initial_params(self) -> dict[str, torch.Tensor]:
        """One particle per chain of an SMC run, made when first read (Pyro's `MCMC` reads it;
        `dllm_mcmc.sample` does not, so its draws cost one SMC run each)."""
        if not getattr(self, "_ready", False):
            raise RuntimeError("call setup() before reading initial_params")
        if self._state is None:
            self._state, _ = self._pick(self._smc(None))
        return self._state

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        """Accepted for Pyro's API (draws never depend on the current state); the state is scored by a
        replay (``L`` forward calls) for its scalar sites."""
        log_target, log_likelihood = self.target.score(self.replay(params["tokens"], params["order"]))
        self._state = self.sites(params["tokens"], params["order"], log_target, log_likelihood)

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``C`` new independent draws by one batched SMC run (``params`` is not read)."""
        if not getattr(self, "_ready", False):
            raise RuntimeError("call setup() before sample()")
        meter = self.target.denoiser
        nfe_before, rows_before = meter.nfe, meter.forward_rows
        out = self._smc(None)
        self._state, picked = self._pick(out)
        ess = (effective_sample_size(out.log_weight) / self.num_particles).float()
        self.track("ess", ess)
        C = self.num_chains
        self.info = {
            "log_target": self._state["log_target"],
            "log_likelihood": self._state["log_likelihood"],
            "ess": ess,
            "log_normalizer": out.log_normalizer.float(),
            "nfe": torch.full((C,), float(meter.nfe - nfe_before), device=picked.device),
            "forward_rows": torch.full((C,), (meter.forward_rows - rows_before) / C, device=picked.device),
        }
        return self._state
