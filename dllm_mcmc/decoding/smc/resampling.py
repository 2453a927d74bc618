"""Resampling: pure functions of the log weights ``[R, N]`` (``R`` independent particle systems of ``N``
particles each) and a `torch.Generator`, returning the ancestor indices ``[R, N]`` (child ``j`` copies
particle ``a_j`` of its own system), and for `chopthin_resample` the children's new log weights.

Every scheme is **unbiased**: with normalised weights ``W_i`` and ``C_i`` the number of children of particle
``i``, ``E[C_i] = N W_i`` (the equal-weight schemes), or ``E[Σ_{j: a_j = i} w'_j] = N W_i`` in units of the
mean weight before resampling (chopthin), so ``Σ_j w'_j f(x_{a_j}) / N`` is an unbiased estimate of
``Σ_i W_i f(x_i)`` and SMC's normalising-constant estimate stays unbiased (Douc, Cappé & Moulines 2005,
"Comparison of resampling schemes for particle filtering", ISPA; Chopin & Papaspiliopoulos 2020, "An
Introduction to Sequential Monte Carlo", ch. 9). They differ in variance:

- `multinomial_resample`: ``N`` i.i.d. draws ``a_j ~ W`` (the largest variance, ``Var C_i = N W_i (1 − W_i)``).
- `stratified_resample`: one uniform per stratum, ``a_j = F⁻¹((j + U_j) / N)``, ``U_j ~ U[0, 1)`` i.i.d.
- `systematic_resample`: one uniform for all strata, ``a_j = F⁻¹((j + U) / N)`` (Kitagawa 1996): each
  ``C_i ∈ {⌊N W_i⌋, ⌈N W_i⌉}``.
- `residual_resample`: ``⌊N W_i⌋`` copies of each particle, the remaining ``N − Σ_i ⌊N W_i⌋`` drawn
  multinomially ``∝ N W_i − ⌊N W_i⌋`` (Liu & Chen 1998, JASA 93(443)).
- `chopthin_resample`: chopthin (Gandy & Lau 2016), which keeps the particles weighted; see its docstring.
- `conditional_resample`: conditional multinomial resampling of conditional SMC (slot 0 keeps ancestor 0).

``F⁻¹`` is the inverse of the cumulative normalised weights. `RESAMPLERS` maps the names of the option
``resampling=`` of `dllm_mcmc.decoding.smc.smc_decode` to a function ``(log_weight, generator) ->
(ancestors, log_weight_after)``, where ``log_weight_after`` is ``None`` for the equal-weight schemes (the
weights are reset to equal) and chopthin's new log weights otherwise. `effective_sample_size` is Kish's ESS,
the resampling trigger.

Example:
    >>> import torch
    >>> log_weight = torch.tensor([[0.0, float("-inf"), 0.0, 0.0]])
    >>> systematic_resample(log_weight, torch.Generator().manual_seed(0)).tolist()
    [[0, 2, 3, 3]]
    >>> effective_sample_size(log_weight).tolist()
    [3.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from dllm_mcmc.mh import gumbel_max

CHOPTHIN_ETA = 3 + math.sqrt(8)
"""Chopthin's default bound ``η = 3 + √8 ≈ 5.83`` on the ratio of the largest to the smallest weight after
resampling: the smallest ``η`` whose ESS bound ``4η / (1 + η)² · N`` is ``N / 2``."""

Resampler = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor | None]]
"""``(log_weight [R, N], generator) -> (ancestors [R, N], log_weight_after [R, N] or None)``; ``None``: the
weights are reset to equal."""


def effective_sample_size(log_weight: torch.Tensor) -> torch.Tensor:
    """Kish's effective sample size ``(Σ w)² / Σ w² ∈ [1, N]`` of unnormalised weights ``exp(log_weight [..., N])``.

    >>> effective_sample_size(torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, -1e9, -1e9, -1e9]])).tolist()
    [4.0, 1.0]
    """
    return (2 * log_weight.logsumexp(-1) - (2 * log_weight).logsumexp(-1)).exp()


def systematic_resample(log_weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Systematic resampling (Kitagawa 1996, "Monte Carlo filter and smoother for non-Gaussian nonlinear state
    space models", JCGS 5(1)): ``N`` ancestor indices per row of ``log_weight [R, N]``.

    One uniform ``u ~ U[0, 1)`` per row; ancestor ``n`` is the index of the normalised-weight cumulative sum
    interval that contains ``(u + n) / N``. Each index ``i`` is drawn ``⌊N W_i⌋`` or ``⌈N W_i⌉`` times
    (so within ±1 of ``N W_i``), with expected count exactly ``N W_i``; indices come out sorted.

    >>> systematic_resample(torch.tensor([[0.0, float("-inf"), 0.0, 0.0]]), torch.Generator().manual_seed(0)).tolist()
    [[0, 2, 3, 3]]
    """
    num_rows, num_particles = log_weight.shape
    cumulative = _cumulative(log_weight)
    uniform = torch.rand(num_rows, 1, generator=generator, device=log_weight.device, dtype=torch.float64)
    points = (uniform + torch.arange(num_particles, device=log_weight.device, dtype=torch.float64)) / num_particles
    return _inverse(cumulative, points)


def stratified_resample(log_weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Stratified resampling (Kitagawa 1996): ancestor ``n`` is ``F⁻¹((n + U_n) / N)`` with one uniform
    ``U_n ~ U[0, 1)`` per stratum ``[n/N, (n+1)/N)``. ``E[C_i] = N W_i``; ``C_i`` lies within ±2 of ``N W_i``
    (the strata that cut particle ``i``'s interval at either end may or may not fall in it); indices come out
    sorted.

    >>> stratified_resample(torch.tensor([[0.0, float("-inf"), 0.0, 0.0]]), torch.Generator().manual_seed(0)).shape
    torch.Size([1, 4])
    """
    num_rows, num_particles = log_weight.shape
    cumulative = _cumulative(log_weight)
    uniform = torch.rand(num_rows, num_particles, generator=generator, device=log_weight.device, dtype=torch.float64)
    points = (uniform + torch.arange(num_particles, device=log_weight.device, dtype=torch.float64)) / num_particles
    return _inverse(cumulative, points)


def multinomial_resample(log_weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Multinomial resampling: ``N`` i.i.d. ancestors ``a_n = F⁻¹(U_n)``, ``U_n ~ U[0, 1)``, i.e. ``a_n ~ W``;
    the counts are ``Multinomial(N, W)`` (``E[C_i] = N W_i``, ``Var C_i = N W_i (1 − W_i)``).

    >>> multinomial_resample(torch.tensor([[0.0, float("-inf")]]), torch.Generator().manual_seed(0)).tolist()
    [[0, 0]]
    """
    num_rows, num_particles = log_weight.shape
    uniform = torch.rand(num_rows, num_particles, generator=generator, device=log_weight.device, dtype=torch.float64)
    return _inverse(_cumulative(log_weight), uniform)


def residual_resample(log_weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Residual resampling (Liu & Chen 1998, "Sequential Monte Carlo methods for dynamic systems", JASA
    93(443)): ``⌊N W_i⌋`` children of particle ``i`` for sure, the remaining ``K = N − Σ_i ⌊N W_i⌋`` slots
    drawn i.i.d. ``∝ r_i = N W_i − ⌊N W_i⌋``. ``E[C_i] = ⌊N W_i⌋ + K r_i / Σ_k r_k = N W_i`` (``Σ_k r_k = K``);
    ``C_i ≥ ⌊N W_i⌋``. ``N`` uniforms are drawn per row whatever ``K`` is, so the random stream does not
    depend on the weights.

    >>> residual_resample(torch.tensor([[0.5, 0.25, 0.0, 0.25]]).log(), torch.Generator().manual_seed(0)).tolist()
    [[0, 0, 1, 3]]
    """
    num_rows, num_particles = log_weight.shape
    expected = num_particles * _normalised(log_weight)
    whole = expected.floor()
    residual = expected - whole
    slots = torch.arange(num_particles, device=log_weight.device).expand(num_rows, num_particles)
    certain = _inverse(whole.cumsum(-1), slots.double())  # slot n: the particle whose cumulative count passes n
    residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, torch.ones_like(residual))
    uniform = torch.rand(num_rows, num_particles, generator=generator, device=log_weight.device, dtype=torch.float64)
    drawn = _inverse(_cumulative(residual.log()), uniform)
    return torch.where(slots < whole.sum(-1, keepdim=True), certain, drawn)


def chopthin_resample(log_weight: torch.Tensor, generator: torch.Generator,
                      eta: float = CHOPTHIN_ETA) -> tuple[torch.Tensor, torch.Tensor]:
    """Chopthin resampling (Gandy & Lau 2016, "The chopthin algorithm for resampling", IEEE Trans. Signal
    Processing 64(16)): ``N`` weighted children whose largest-to-smallest weight ratio is at most ``η ≥ 4``.

    In units of the mean weight, ``w_i = N W_i`` (``Σ_i w_i = N``), pick the threshold ``a > 0`` with
    ``Σ_i h_i(a) = N``, ``b = η a / 2``, where ``h_i`` is particle ``i``'s expected number of children:

        h_i = w_i / a  if w_i < a     (thinned: kept with probability w_i / a, its child weighs a)
        h_i = 1        if a ≤ w_i ≤ b (kept once with its weight)
        h_i = w_i / b  if w_i > b     (chopped into C_i ∈ {⌊h_i⌋, ⌈h_i⌉} children of weight w_i / C_i)

    ``Σ_i h_i(a)`` is continuous and non-increasing in ``a`` and piecewise of the form ``c₁ / a + c₀``
    between the breakpoints ``{w_i, 2 w_i / η}``, so ``a`` is found exactly on the bracketing piece. The
    counts are drawn systematically from the ``h_i`` (one uniform per row: ``E[C_i] = h_i``, and
    ``C_i = 1`` exactly where ``h_i = 1``). Each child weighs in ``[a, η a]``: thinned ``a``; kept
    ``w_i ∈ [a, b]``; chopped ``w_i / C_i ∈ (b/2, 2b) ⊂ [a, η a]`` for ``η ≥ 4``. So the weight ratio after
    resampling is at most ``η`` and the ESS at least ``4η / (1 + η)² · N`` (``N / 2`` at the default
    ``η = 3 + √8``), without resetting the weights to equal. Unbiased: the children of particle ``i`` weigh
    ``w_i`` in all (chopped or kept) or ``a`` with probability ``w_i / a`` (thinned), so
    ``E[Σ_{j: a_j = i} w'_j] = w_i = N W_i``.

    Returns ``(ancestors [R, N] sorted, log_weight_after [R, N])`` with the new weights in those units (their
    sum is ``N`` in expectation).

    >>> ancestors, log_after = chopthin_resample(torch.tensor([[0.0, 0.0, 0.0, 0.0]]), torch.Generator().manual_seed(0))
    >>> ancestors.tolist(), log_after.tolist()   # equal weights: every particle kept once, weights unchanged
    ([[0, 1, 2, 3]], [[0.0, 0.0, 0.0, 0.0]])
    """
    if not eta >= 4:
        raise ValueError(f"eta={eta}: chopthin needs eta >= 4")
    num_rows, num_particles = log_weight.shape
    weight = num_particles * _normalised(log_weight)  # mean 1
    a = _chopthin_threshold(weight, eta)  # [R, 1]
    b = eta * a / 2
    thinned = weight < a
    expected = torch.where(thinned, weight / a, torch.where(weight > b, weight / b, torch.ones_like(weight)))
    cumulative = expected.cumsum(-1)
    cumulative[:, -1] = num_particles  # rounding must never leave a point past the last interval
    uniform = torch.rand(num_rows, 1, generator=generator, device=log_weight.device, dtype=torch.float64)
    points = uniform + torch.arange(num_particles, device=log_weight.device, dtype=torch.float64)
    ancestors = _inverse(cumulative, points)
    counts = torch.zeros_like(weight).scatter_add_(1, ancestors, torch.ones_like(weight))
    after = torch.where(thinned.gather(1, ancestors), a.expand_as(weight),
                        weight.gather(1, ancestors) / counts.gather(1, ancestors))
    return ancestors, after.log()


def conditional_resample(log_weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Conditional multinomial resampling (Andrieu, Doucet & Holenstein 2010, conditional SMC): slot 0 (the
    reference) keeps ancestor 0; slots ``1..N−1`` draw their ancestors i.i.d. ``∝ exp(log_weight [R, N])``.

    >>> conditional_resample(torch.tensor([[-1e9, 0.0, -1e9]]), torch.Generator().manual_seed(0)).tolist()
    [[0, 1, 1]]
    """
    num_rows, num_particles = log_weight.shape
    free = gumbel_max(log_weight[:, None, :].expand(num_rows, num_particles - 1, num_particles), generator)
    return torch.cat([torch.zeros(num_rows, 1, dtype=torch.long, device=log_weight.device), free], dim=1)


def _equal_weights(resample: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> Resampler:
    def resampler(log_weight: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, None]:
        return resample(log_weight, generator), None

    resampler.__name__ = resample.__name__
    resampler.__doc__ = resample.__doc__
    return resampler


RESAMPLERS: dict[str, Resampler] = {
    "systematic": _equal_weights(systematic_resample),
    "stratified": _equal_weights(stratified_resample),
    "multinomial": _equal_weights(multinomial_resample),
    "residual": _equal_weights(residual_resample),
    "chopthin": chopthin_resample,
}
"""The schemes of the option ``resampling=``, by name: ``(log_weight, generator) -> (ancestors, log_weight_after
or None)`` (``None``: weights reset to equal)."""

CONDITIONAL_RESAMPLER: Resampler = _equal_weights(conditional_resample)
"""Conditional SMC's resampler in the `RESAMPLERS` form (`conditional_resample`, weights reset to equal)."""


def _normalised(log_weight: torch.Tensor) -> torch.Tensor:
    """``W = exp(log_weight) / Σ exp(log_weight)`` per row, in float64."""
    return (log_weight.double() - log_weight.double().logsumexp(-1, keepdim=True)).exp()


def _cumulative(log_weight: torch.Tensor) -> torch.Tensor:
    """``F``: the cumulative normalised weights per row, the last set to exactly 1."""
    cumulative = _normalised(log_weight).cumsum(-1)
    cumulative[:, -1] = 1.0  # rounding must never leave a point past the last interval
    return cumulative


def _inverse(cumulative: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``F⁻¹(points)``: per row, the index of the interval ``[F_{i−1}, F_i)`` that holds each point."""
    return torch.searchsorted(cumulative, points, right=True).clamp(max=cumulative.shape[-1] - 1)


def _chopthin_threshold(weight: torch.Tensor, eta: float) -> torch.Tensor:
    """Chopthin's ``a [R, 1]`` solving ``Σ_i h_i(a) = N`` for the weights ``weight [R, N]`` (mean 1).

    ``h(a) = Σ_i h_i(a)`` is non-increasing; on each piece between consecutive breakpoints (sorted
    ``{w_i, 2 w_i / η}`` over the positive weights) the sets of thinned, kept and chopped particles are fixed and
    ``h(a) = (Σ_thinned w_i + (2/η) Σ_chopped w_i) / a + #kept``. The root lies on the piece that starts at the
    last breakpoint with ``h ≥ N`` (at the smallest one, ``2 w_min / η``, every positive weight is kept or
    chopped and ``h = N / w_min ≥ N``)."""
    num_particles = weight.shape[-1]
    positive = weight > 0
    smallest = torch.where(positive, weight, torch.full_like(weight, float("inf"))).amin(-1, keepdim=True)
    breaks = torch.cat([weight, 2 * weight / eta], -1)
    breaks = torch.where(torch.cat([positive, positive], -1), breaks, 2 * smallest / eta).sort(-1).values
    total = _expected_children(weight[:, None, :], breaks[:, :, None], eta)  # [R, 2N]
    last = ((total >= num_particles).sum(-1, keepdim=True) - 1).clamp(min=0)
    low = breaks.gather(1, last)
    high = breaks.gather(1, (last + 1).clamp(max=breaks.shape[-1] - 1))
    high = torch.where(last + 1 < breaks.shape[-1], high, torch.full_like(high, float("inf")))
    inside = torch.where(torch.isinf(high), 2 * low, (low + high) / 2)
    thinned = weight < inside
    chopped = weight > eta * inside / 2
    kept = (~thinned & ~chopped).sum(-1, keepdim=True).double()
    mass = (weight * thinned).sum(-1, keepdim=True) + (2 / eta) * (weight * chopped).sum(-1, keepdim=True)
    a = torch.where(kept < num_particles, mass / (num_particles - kept).clamp(min=1), low)
    return torch.minimum(torch.maximum(a, low), high)


def _expected_children(weight: torch.Tensor, a: torch.Tensor, eta: float) -> torch.Tensor:
    """``Σ_i h_i(a)`` (broadcast over ``weight [..., N]`` and ``a [..., 1]``)."""
    b = eta * a / 2
    children = torch.where(weight < a, weight / a, torch.where(weight > b, weight / b, torch.ones_like(weight)))
    return children.sum(-1)
