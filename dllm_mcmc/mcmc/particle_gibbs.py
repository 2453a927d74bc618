"""`ParticleGibbs`: particle Gibbs (Andrieu, Doucet & Holenstein 2010, JRSS B 72(3)) over the tempered target.

Each chain holds a reference path ``(σ, x)``. One `sample` step runs conditional SMC
(`dllm_mcmc.decoding.smc.smc_decode` with ``reference``): ``N`` particles decoded by the target's rule at
token temperature ``τ``, slot 0 forced along the reference, incremental weights
``log w_t = log p_i(v) / T − log q_i(v)``, conditional resampling keeping slot 0's ancestor. The new
state is particle ``k`` drawn ``∝`` the final weights. The move leaves ``π_T(σ, x) ∝ u(σ | x) p(x | σ)^(1/T)``
invariant for every ``N ≥ 2`` (it is a Gibbs step on the extended target of Andrieu et al., Theorem 5);
``N`` only changes how fast the chain mixes. C chains run as one batch of ``C · N`` rows.

`sample` returns the new state (``tokens``, ``order``) and the scalar sites ``log_target``,
``log_likelihood``, ``length`` (see `dllm_mcmc.mcmc.kernel`). After each `sample`, ``info`` holds float
tensors ``[C]``: ``log_target`` (``log u(σ | x) + log p(x | σ) / T`` of the new state), ``log_likelihood``
(``log p(x | σ)``), ``leave_prob`` (``1 − W^0``, the probability that a particle other than the reference
slot is picked: not an MH acceptance probability), ``left_reference`` (1 if one was), ``nfe`` and
``forward_rows`` (rows divided by ``C``).

Example:
    >>> from dllm_mcmc import ExactDenoiser, TemperedTarget
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> kernel = ParticleGibbs(TemperedTarget(toy, None, 4, target_temperature=0.5), num_chains=2)
    >>> kernel.setup(warmup_steps=0)
    >>> params = kernel.sample(kernel.initial_params)
    >>> params["tokens"].shape, kernel.info["nfe"].tolist()
    (torch.Size([2, 4]), [4.0, 4.0])
"""

from __future__ import annotations

import torch

from dllm_mcmc.decoding.smc import SMCResult, check_position_proposal, smc_decode
from dllm_mcmc.denoisers.batching import MaxRows, resolve_max_rows
from dllm_mcmc.mcmc.kernel import TargetKernel
from dllm_mcmc.mh import gumbel_max
from dllm_mcmc.target import TemperedTarget


class ParticleGibbs(TargetKernel):
    """Particle Gibbs with ``num_particles`` particles per chain (``≥ 2``); ``proposal_temperature``
    (``None``: the target's ``T``) is the token temperature ``τ`` of the SMC proposal; ``ess_threshold``
    the adaptive resampling threshold; ``max_rows`` (``None``: the target's) caps one forward call;
    ``position_proposal="tempered_mass"`` runs the fully adapted SMC (random order, ``τ = T``; see
    `dllm_mcmc.decoding.smc`).
    Needs the ``order`` likelihood (the SMC weights are the chain rule along the decoding order)."""

    name = "pgibbs"

    def __init__(self, target: TemperedTarget, *, proposal_temperature: float | None = None, num_particles: int = 4,
                 num_chains: int = 1, seed: int = 0, ess_threshold: float = 0.5, max_rows: MaxRows = None,
                 position_proposal: str = "rule") -> None:
        tau = target.target_temperature if proposal_temperature is None else proposal_temperature
        super().__init__(target, proposal_temperature=tau, num_chains=num_chains, seed=seed)
        if target.likelihood != "order":
            raise ValueError(f"{self.name}: needs the 'order' likelihood, got {target.likelihood!r}")
        if target.rule.tokens_per_step != 1:
            raise ValueError(f"{self.name}: needs a rule with tokens_per_step=1")
        if not isinstance(num_particles, int) or num_particles < 2:
            raise ValueError(f"num_particles={num_particles}: particle Gibbs needs at least 2")
        if not 0.0 <= ess_threshold <= 1.0:
            raise ValueError(f"ess_threshold={ess_threshold}: must lie in [0, 1]")
        check_position_proposal(position_proposal, target.rule.name, tau, target.target_temperature)
        self.position_proposal = position_proposal
        self.num_particles = num_particles
        self.ess_threshold = ess_threshold
        self.max_rows = max_rows
        self._rows = (target.max_rows if max_rows is None
                      else resolve_max_rows(target.denoiser, max_rows, target.prompt_length + target.gen_length))
        self._state: dict[str, torch.Tensor] | None = None

    def setup(self, warmup_steps: int = 0, *args, **kwargs) -> None:
        self.start(warmup_steps)
        out = self._smc(None)  # the chains start at one particle of an unconditional SMC run
        self._state, _ = self._pick(out)

    @property
    def initial_params(self) -> dict[str, torch.Tensor]:
        if self._state is None:
            raise RuntimeError("call setup() before reading initial_params")
        return self._state

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        """Start the chains at given ``tokens`` and ``order`` ``[C, L]`` (the first references), scored by a
        replay (``L`` forward calls) for their scalar sites."""
        log_target, log_likelihood = self.target.score(self.replay(params["tokens"], params["order"]))
        self._state = self.sites(params["tokens"], params["order"], log_target, log_likelihood)

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One conditional-SMC step per chain from the kernel's current reference (``params`` is not read)."""
        if self._state is None:
            raise RuntimeError("call setup() before sample()")
        meter = self.target.denoiser
        nfe_before, rows_before = meter.nfe, meter.forward_rows
        out = self._smc((self._state["tokens"], self._state["order"]))
        self._state, picked = self._pick(out)
        weights = out.normalised_weights()
        left = (picked != 0).float()
        self.track("left_reference", left)
        C = self.num_chains
        self.info = {
            "log_target": self._state["log_target"],
            "log_likelihood": self._state["log_likelihood"],
            "leave_prob": (1 - weights[:, 0]).float(),
            "left_reference": left,
            "nfe": torch.full((C,), float(meter.nfe - nfe_before), device=picked.device),
            "forward_rows": torch.full((C,), (meter.forward_rows - rows_before) / C, device=picked.device),
        }
        return self._state

    def cleanup(self) -> None:
        pass

    def _smc(self, reference: tuple[torch.Tensor, torch.Tensor] | None) -> SMCResult:
        target = self.target
        return smc_decode(target.denoiser, target.prompt_for(self.num_chains) if target.per_row else target.prompt,
                          target.gen_length, rule=target.rule, temperature=self.proposal.temperature,
                          target_temperature=target.target_temperature, num_particles=self.num_particles,
                          ess_threshold=self.ess_threshold, generator=self.generator, max_rows=self._rows,
                          reference=reference, num_runs=self.num_chains, position_proposal=self.position_proposal)

    def _pick(self, out: SMCResult) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One particle per chain drawn ∝ its final weight: its params (state and scalar sites) and slot."""
        picked = gumbel_max(out.log_weight, self.generator)
        rows = torch.arange(out.tokens.shape[0], device=picked.device)
        log_target, log_likelihood = self.target.score(out)  # [R, N]; the order likelihood: no forward call
        return self.sites(out.tokens[rows, picked], out.order[rows, picked], log_target[rows, picked],
                          log_likelihood[rows, picked]), picked
