"""One step of SMC over the batched particles: reweight, resample, propagate.

``R`` systems of ``N`` particles are rows ``r · N + n`` of one batch (`Particles`). With ``ℓ_t^n`` the log
weight of particle ``n`` after step ``t``, ``W_t^n = e^{ℓ_t^n} / Σ_m e^{ℓ_t^m}`` its normalised weight and
``log w_t^n`` the step's incremental weight (`dllm_mcmc.decoding.smc.tempering`; the fully adapted proposal's
predictive weight), a step is

    reweight:   ℓ_t^n = ℓ_{t−1}^n + log w_t^n,      log Ẑ_t = log Ẑ_{t−1} + log Σ_n W_{t−1}^n w_t^n,
                ESS_t = (Σ_n e^{ℓ_t^n})² / Σ_n e^{2 ℓ_t^n};
    resample:   where ESS_t < κ N (κ = ``ess_threshold``): ancestors a ~ the resampler on ℓ_t, every row copied
                from its ancestor's, and ℓ_t^n ← 0 (equal weights) or, for chopthin, ℓ_t^n ← log w'_n with
                log Ẑ_t += log(Σ_n w'_n / N) (w' in units of the mean weight before, so E[Σ_n w'_n] = N);
    propagate:  each particle commits one token ``v`` at position ``i``: ``log p += log p_i(v)``,
                ``log u += log r(i)``, ``x_i = v``.

The estimate ``Ẑ = Π_t Σ_n W_{t−1}^n w_t^n`` (times the chopthin factors) is unbiased for ``Z`` whenever
every resampling is unbiased (``E[Σ_{j: a_j = n} w'_j] = N W^n``; Del Moral 2004, "Feynman-Kac formulae",
Springer, Thm 7.4.2), and the random stream is drawn for every system whether or not it resamples, so the
draws of one system do not depend on the others' weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from dllm_mcmc.decoding.smc.resampling import Resampler, effective_sample_size


def check_ess_threshold(ess_threshold: object) -> float:
    """``float(ess_threshold)`` if it is a number in ``[0, 1]`` (not a bool), else ``ValueError``: resample
    when ``ESS < ess_threshold · N`` (0: never; 1: whenever the weights are not all equal). The one check of
    the option, shared by `smc_decode`, the particle kernels and the evaluation's samplers.

    >>> check_ess_threshold(0.5)
    0.5
    >>> check_ess_threshold(1.5)
    Traceback (most recent call last):
        ...
    ValueError: ess_threshold must lie in [0, 1], got 1.5
    """
    if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, int | float) or not 0 <= ess_threshold <= 1:
        raise ValueError(f"ess_threshold must lie in [0, 1], got {ess_threshold!r}")
    return float(ess_threshold)


@dataclass
class Particles:
    """The particle system: per row (``R · N`` rows) the ``canvas [RN, P + L]``, the committed positions
    ``order [RN, L]`` (filled step by step), the path's chain rule ``log_p [RN]`` and position law
    ``log_position [RN]``; per system the log weights ``log_weight [R, N]`` and ``log_normalizer [R]``."""

    canvas: torch.Tensor
    order: torch.Tensor
    log_p: torch.Tensor
    log_position: torch.Tensor
    log_weight: torch.Tensor
    log_normalizer: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        """``(R, N)``."""
        R, N = self.log_weight.shape
        return R, N


def reweight(particles: Particles, increment: torch.Tensor) -> tuple[Particles, torch.Tensor]:
    """Multiply the weights by ``exp(increment [R, N])`` and update ``log Ẑ``; returns the particles and the
    ESS ``[R]`` of the new weights."""
    previous = particles.log_weight
    log_weight = previous + increment
    # log Σ_n W_{t-1}^n w_t^n with W_{t-1} the normalised previous weights
    log_normalizer = particles.log_normalizer + log_weight.logsumexp(-1) - previous.logsumexp(-1)
    return replace(particles, log_weight=log_weight, log_normalizer=log_normalizer), effective_sample_size(log_weight)


def resample(particles: Particles, ess: torch.Tensor, ess_threshold: float, resampler: Resampler,
             generator: torch.Generator, *rows: torch.Tensor
             ) -> tuple[Particles, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """Resample the systems whose ``ess [R]`` is below ``ess_threshold · N`` (the others keep their particles
    and weights): returns the particles, the flags ``[R]``, the ancestors ``[R, N]`` (the identity where not
    resampled) and the further per-row tensors ``rows`` (``[RN, ...]``) copied from the ancestors too. The
    ancestors are drawn for every system, so the random stream does not depend on the flags."""
    R, N = particles.shape
    flags = ess < ess_threshold * N
    drawn, after = resampler(particles.log_weight, generator)
    identity = torch.arange(N, device=drawn.device).expand_as(drawn)
    ancestors = torch.where(flags[:, None], drawn, identity)
    if after is None:  # reset to equal weights
        log_weight = torch.where(flags[:, None], torch.zeros_like(particles.log_weight), particles.log_weight)
        log_normalizer = particles.log_normalizer
    else:  # weighted children (chopthin): Ẑ keeps the mass they carry, E[Σ_n w'_n] = N
        log_weight = torch.where(flags[:, None], after, particles.log_weight)
        change = after.logsumexp(-1) - math.log(N)
        log_normalizer = particles.log_normalizer + torch.where(flags, change, torch.zeros_like(change))
    source = (ancestors + (torch.arange(R, device=drawn.device) * N)[:, None]).reshape(-1)
    moved = replace(particles, canvas=particles.canvas[source], order=particles.order[source],
                    log_p=particles.log_p[source], log_position=particles.log_position[source],
                    log_weight=log_weight, log_normalizer=log_normalizer)
    return moved, flags, ancestors, tuple(row[source] for row in rows)


def propagate(particles: Particles, step: int, prompt_length: int, position: torch.Tensor, tokens: torch.Tensor,
              log_p_v: torch.Tensor, log_u: torch.Tensor) -> Particles:
    """Commit ``tokens [RN]`` at ``position [RN]`` (response-relative) as step ``step`` of every particle's
    path, adding ``log p_i(v)`` and ``log r(i)`` (``log_u``) to its path densities. Writes the canvas in
    place."""
    rows = torch.arange(position.shape[0], device=position.device)
    particles.canvas[rows, prompt_length + position] = tokens
    particles.order[:, step] = position
    return replace(particles, log_p=particles.log_p + log_p_v, log_position=particles.log_position + log_u)


def degenerate(log_weight: torch.Tensor) -> torch.Tensor:
    """A 0-d flag: a NaN weight, or a system whose every particle has weight zero."""
    return torch.isnan(log_weight).any() | torch.isneginf(log_weight.amax(-1)).any()
