"""Conditional SMC (Andrieu, Doucet & Holenstein 2010, "Particle Markov chain Monte Carlo methods", JRSS B
72(3)): the move of particle Gibbs, composed from the plain SMC step and a `ReferencePath`.

Given a reference path ``(σ*, x*)``, slot 0 of every system follows it: at step ``t`` its position is
``σ*_t`` and its token ``x*_{σ*_t}`` instead of the proposal's draws, its weight is computed by the same
formula as the other slots' (so its ``log w_t`` is the reference's incremental weight), and resampling is
conditional: slot 0 keeps ancestor 0 and slots ``1..N−1`` draw their ancestors i.i.d. ``∝ W``
(`dllm_mcmc.decoding.smc.resampling.conditional_resample`). Every other part (the forward pass, the proposal
of the free slots, the reweighting, the record) is the plain step's. Drawing one particle ``∝`` its final
weight is then a Gibbs step on the extended target of Andrieu et al. (Theorem 5): it leaves ``π_T`` invariant
for any ``N ≥ 2`` (`dllm_mcmc.mcmc.particle_gibbs.ParticleGibbs`), and for any tempering schedule whose last
exponent is ``1/T``.

`dllm_mcmc.decoding.smc.smc_decode` runs conditional SMC when given ``reference=(tokens, order)``; a system
without a reference uses `FreePath`, whose hooks leave the draws alone.

Example:
    >>> import torch
    >>> path = ReferencePath((torch.tensor([2, 0]), torch.tensor([1, 0])), num_runs=1, num_particles=3,
    ...                      gen_length=2, device=torch.device("cpu"))
    >>> path.position(0, 0, torch.tensor([[0], [0], [0]])).tolist()   # slot 0 takes the reference's position 1
    [[1], [0], [0]]
"""

from __future__ import annotations

import torch

from dllm_mcmc.decoding.smc.resampling import CONDITIONAL_RESAMPLER, Resampler


class FreePath:
    """No reference: every slot keeps its own draws; resampling by ``resampler``."""

    def __init__(self, resampler: Resampler) -> None:
        self.resampler = resampler

    def position(self, step: int, start: int, chosen: torch.Tensor) -> torch.Tensor:
        return chosen

    def token(self, position: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return tokens


class ReferencePath:
    """Slot 0 of each of the ``R`` systems forced along the reference ``(tokens, order)`` (``[L]``, shared, or
    ``[R, L]``, one per system); conditional multinomial resampling."""

    def __init__(self, reference: tuple[torch.Tensor, torch.Tensor], num_runs: int, num_particles: int,
                 gen_length: int, device: torch.device) -> None:
        if num_particles < 2:
            raise ValueError("conditional SMC (reference) needs num_particles >= 2")
        self.resampler: Resampler = CONDITIONAL_RESAMPLER
        self.tokens, self.order = (t.to(device).reshape(-1, gen_length).expand(num_runs, gen_length)
                                   for t in reference)
        self.num_particles = num_particles
        self.slot0 = (torch.arange(num_runs * num_particles, device=device) % num_particles == 0)[:, None]

    def position(self, step: int, start: int, chosen: torch.Tensor) -> torch.Tensor:
        """Block-relative positions ``chosen [RN, 1]`` with slot 0's replaced by the reference's ``σ*_step``."""
        forced = (self.order[:, step] - start).repeat_interleave(self.num_particles)[:, None]
        return torch.where(self.slot0, forced, chosen)

    def token(self, position: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[RN]`` with slot 0's replaced by the reference's token at its (forced) ``position``."""
        R, N = self.tokens.shape[0], self.num_particles
        forced = self.tokens.gather(1, (position.view(R, N)[:, :1])).repeat_interleave(N)
        return torch.where(self.slot0[:, 0], forced, tokens)
