"""Sequential Monte Carlo decoding towards the globally tempered target, in parts (BlackJAX's shape).

Target (see `dllm_mcmc.target`, ``order`` likelihood): the path law

    π_T(σ, x) ∝ u(σ | x) · p(x | σ)^(1/T),   u(σ | x) = Π_t r(σ_t | state_t),  p(x | σ) = Π_t p_t(x_σt),

built up one commit at a time, so SMC applies with the decoding steps as its time index
(Del Moral, Doucet & Jasra 2006, "Sequential Monte Carlo samplers", JRSS B 68(3)). ``N`` particles
(rows) are decoded together, one batched forward call per step (the cost of ``N`` plain decodes).
At step ``t`` every particle chooses a position ``i`` by the rule (probability ``r``, exactly as
`decode`), draws ``v ~ q_i ∝ p_i^(1/τ)`` and multiplies its weight by the incremental weight

    w_t = [r(i) p_i(v)^(1/T)] / [r(i) q_i(v)],     log w_t = log p_i(v) / T − log q_i(v)

(the position terms cancel: the target's order law is the rule itself; this is the default ``"fixed"``
tempering, `tempering` has the general formula). With ``τ = T``, ``log w_t = log Σ_u p_i(u)^(1/T)``, known
before the draw. When the effective sample size of the normalised weights falls below ``ess_threshold · N``
the particles are resampled (systematic by default, `resampling`) and their weights reset to equal. The
normalising constant is estimated the standard way,

    log Ẑ = Σ_t log Σ_n W_{t−1}^n w_t^n,      W_{t−1}: the normalised weights before step t,

which is unbiased, ``E[Ẑ] = Z = Σ_{σ,x} u(σ | x) p(x | σ)^(1/T)`` (for a consistent model
``Z = Σ_x p(x)^(1/T)``), and the final weighted particles estimate ``π_T`` consistently as ``N → ∞``.

The parts, one idea a module:

- `resampling`: the schemes (systematic, stratified, multinomial, residual, chopthin, conditional), pure
  functions of the log weights, and the effective sample size;
- `tempering`: the schedule of the target exponent ``β_t`` (``"fixed"`` ``1/T``; ``"ramp"`` from 1 to ``1/T``)
  and the incremental weight it gives;
- `step`: the batched particle system and one reweight–resample–propagate step (the ``log Ẑ`` update);
- `conditional`: conditional SMC, the move of particle Gibbs (slot 0 forced along a reference path,
  conditional resampling);
- `driver`: `smc_decode`, composing them, and its `SMCResult`.

**Fully adapted positions** (``position_proposal="tempered_mass"``, random order, ``τ = T``): the
proposal picks position ``i`` with probability ``∝ Z_i = Σ_v p_i(v)^(1/T)`` (its tempered mass) and the
token from ``p_i^(1/T) / Z_i``, so it proposes exactly the target's one-step conditional. The incremental
weight is then ``(1/m) Σ_j Z_j`` (``m`` masked positions), the same whatever is drawn: it is computed from
the forward pass **before** the draw, the particles are resampled on it, and only then do they choose a
position and a token (the fully adapted auxiliary particle filter, Pitt & Shephard 1999, "Filtering via
simulation: auxiliary particle filters", JASA 94(446)). The target is unchanged (the uniform order law is
restored by the weights), the proposal becomes a soft easy-first rule for ``T < 1`` (peaked positions have
the larger tempered mass), and resampled copies of one particle diverge at once instead of a step later.

``reference`` gives conditional SMC (`conditional`; Andrieu, Doucet & Holenstein 2010, "Particle Markov chain
Monte Carlo methods", JRSS B 72(3)): picking one particle ``∝`` its final weight is then a particle Gibbs move
that leaves ``π_T`` invariant for any ``N ≥ 2`` (`dllm_mcmc.mcmc.particle_gibbs`).

``num_runs`` independent SMC systems (one per prompt of a list) run as one batch of ``R · N`` rows;
row ``r · N + n`` is particle ``n`` of run ``r``.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> out = smc_decode(toy, None, 4, temperature=0.5, target_temperature=0.5, num_particles=8,
    ...                  generator=torch.Generator().manual_seed(0))
    >>> out.tokens.shape, out.log_weight.shape, out.nfe, out.forward_rows
    (torch.Size([1, 8, 4]), torch.Size([1, 8]), 4, 32)
    >>> out = smc_decode(toy, None, 4, temperature=1.0, target_temperature=0.5, num_particles=8,
    ...                  resampling="chopthin", tempering=Ramp(steps=2), generator=torch.Generator().manual_seed(0))
    >>> out.tokens.shape
    torch.Size([1, 8, 4])
"""

from dllm_mcmc.decoding.smc.conditional import FreePath, ReferencePath
from dllm_mcmc.decoding.smc.driver import POSITION_PROPOSALS, SMCResult, check_position_proposal, smc_decode
from dllm_mcmc.decoding.smc.resampling import (
    CHOPTHIN_ETA,
    RESAMPLERS,
    chopthin_resample,
    conditional_resample,
    effective_sample_size,
    multinomial_resample,
    residual_resample,
    stratified_resample,
    systematic_resample,
)
from dllm_mcmc.decoding.smc.step import Particles, check_ess_threshold, propagate, resample, reweight
from dllm_mcmc.decoding.smc.tempering import TEMPERING, Fixed, Ramp, Tempering, incremental_log_weight, tempering_of

__all__ = ["CHOPTHIN_ETA", "POSITION_PROPOSALS", "RESAMPLERS", "TEMPERING", "Fixed", "FreePath", "Particles", "Ramp",
           "ReferencePath",
           "SMCResult", "Tempering", "check_ess_threshold", "check_position_proposal", "chopthin_resample",
           "conditional_resample", "effective_sample_size", "incremental_log_weight", "multinomial_resample",
           "propagate", "resample", "residual_resample", "reweight", "smc_decode", "stratified_resample",
           "systematic_resample", "tempering_of"]
