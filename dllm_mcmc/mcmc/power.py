"""Power sampling for dLLMs: re-mask a suffix of the decoding order and re-decode it (MH).

The dLLM analogue of Karan & Du's power sampling for autoregressive LMs (arXiv 2510.14901),
which targets ``p^α`` with moves that resample a suffix from the model. Here the state is a full
decoding trajectory ``(σ, x)`` with its per-step records, the target is
``π_T(σ, x) ∝ u(σ | x) · L(x, σ)^(1/T)`` (``α = 1/T``, `dllm_mcmc.target`), and a move

1. draws a cut ``c ~ U{0, ..., steps − 1}`` (per chain),
2. keeps the first ``c`` steps of the trajectory and re-decodes the rest with the proposal
   decoder (token temperature ``τ``), giving ``(σ', x')``,
3. accepts with probability ``min(1, r)``,

       log r = log π_T(σ', x') − log π_T(σ, x) + log q_c(old suffix) − log q_c(new suffix),

   where ``q_c(suffix) = Π_{t ≥ c} r(σ_t | state_t) q(x_σt | state_t)`` is the density of decoding
   that suffix from the kept prefix: *position-choice terms included*, for the forward and the
   reverse move. The cut is drawn independently of the state, so it cancels.

The reverse density needs no extra forward call: the old trajectory's records from step ``c`` on
are exactly the density of re-decoding the old suffix from the same prefix.

A published dLLM port of power sampling drops the position terms. With ``position_terms=False``
this kernel reproduces that error (for demonstration only): the ratio then carries an extra
``log u(σ'|x') − log u(σ|x)``, so the chain targets ``u² · L^(1/T)``, whose ``x``-marginal is
wrong whenever the order law depends on the tokens (any confidence-based rule).

Example:
    >>> from dllm_mcmc import ExactDenoiser, TemperedTarget
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> kernel = Power(TemperedTarget(toy, None, 4, target_temperature=0.5), proposal_temperature=0.5, num_chains=2)
    >>> kernel.setup(0)
    >>> kernel.sample(kernel.initial_params)["tokens"].shape
    torch.Size([2, 4])
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from dllm_mcmc._checks import boolean, positive_int
from dllm_mcmc.decoding.decode import redecode
from dllm_mcmc.decoding.trajectory import Trajectory
from dllm_mcmc.mcmc.kernel import TargetKernel
from dllm_mcmc.mcmc.spec import Cost, SamplerSpec, UnitShape
from dllm_mcmc.mh import mh_accept, where_rows
from dllm_mcmc.target import TemperedTarget


class Power(TargetKernel):
    """Re-mask-and-re-decode MH over decoding trajectories; C chains batched.

    Args:
        target: the `TemperedTarget` (its order law is the proposal's rule).
        proposal_temperature: token temperature ``τ`` of the re-decoding.
        moves_per_draw: MH moves between recorded draws.
        num_chains: ``C``.
        seed: seeds the kernel's generator.
        position_terms: keep ``True``; ``False`` drops the position-choice probabilities from the
            proposal terms (a known error, for demonstration).

    ``sample`` returns the state (``tokens``, ``order``) and the scalar sites ``log_target``,
    ``log_likelihood``, ``length`` (see `dllm_mcmc.mcmc.kernel`). After each ``sample``: ``info`` holds
    ``[C]`` float arrays ``log_target``, ``log_likelihood``, ``log_proposal`` (full-trajectory ``log q`` of the
    current state), ``log_weight``, ``accept_prob`` and ``accepted`` (means over the draw's moves), ``cut``
    (the last move's cut, in steps).
    """

    name = "power"
    _log_target: torch.Tensor  # [C] log π_T of the current states; set with them by _set_state
    _log_likelihood: torch.Tensor  # [C] L(x, σ) of the current states

    def __init__(
        self,
        target: TemperedTarget,
        *,
        proposal_temperature: float | None = None,
        moves_per_draw: int = 1,
        num_chains: int = 1,
        seed: int = 0,
        position_terms: bool = True,
    ) -> None:
        super().__init__(target, proposal_temperature=proposal_temperature, num_chains=num_chains, seed=seed)
        options = PowerOptions(moves_per_draw, position_terms)
        self.moves_per_draw = options.moves_per_draw
        self.position_terms = options.position_terms
        self.num_steps = len(self.proposal.schedule(target.gen_length))
        self._state: Trajectory | None = None

    def setup(self, warmup_steps: int = 0, *args, **kwargs) -> None:
        self.start(warmup_steps)
        start, (self._log_target, self._log_likelihood) = self.propose(1)
        self._state = start

    @property
    def initial_params(self) -> dict[str, torch.Tensor]:
        if self._state is None:
            raise RuntimeError("call setup() before reading initial_params")
        return self._params()

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        self._set_state(self.replay(params["tokens"], params["order"]))

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``moves_per_draw`` MH moves for every chain; the state is kept by the kernel."""
        if self._state is None:
            raise RuntimeError("call setup() before sample()")
        accept_probs, accepted_total = [], torch.zeros(self.num_chains, device=self._log_target.device)
        for _ in range(self.moves_per_draw):
            cut = torch.randint(0, self.num_steps, (self.num_chains,), generator=self.generator,
                                device=self._log_target.device)
            proposed = redecode(self.target.denoiser, self.target.prompt_for(self.num_chains), self._state, cut,
                                self.generator, self.proposal, max_rows=self.target.max_rows)
            proposed_log_target, proposed_log_likelihood = self.target.score(proposed)
            log_ratio = (proposed_log_target - self._log_target
                         + self._suffix_log_q(self._state, cut) - self._suffix_log_q(proposed, cut))
            accept_prob, accepted = mh_accept(log_ratio, self.generator)
            self._state = _select(accepted, proposed, self._state)
            self._log_target = torch.where(accepted, proposed_log_target, self._log_target)
            self._log_likelihood = torch.where(accepted, proposed_log_likelihood, self._log_likelihood)
            accept_probs.append(accept_prob)
            accepted_total += accepted.float()
            self.track("accepted", accepted)
        log_proposal = self._state.log_q
        self.info = {
            "log_target": self._log_target,
            "log_likelihood": self._log_likelihood,
            "log_proposal": log_proposal,
            "log_weight": self._log_target - log_proposal,
            "accept_prob": torch.stack(accept_probs).mean(0),
            "accepted": accepted_total / self.moves_per_draw,
            "cut": cut.float(),
        }
        return self._params()

    def _params(self) -> dict[str, torch.Tensor]:
        assert self._state is not None  # its callers check that setup() ran
        return self.sites(self._state.tokens, self._state.order, self._log_target, self._log_likelihood)

    def _set_state(self, trajectory: Trajectory) -> None:
        self._state = trajectory
        self._log_target, self._log_likelihood = self.target.score(trajectory)

    def _suffix_log_q(self, trajectory: Trajectory, cut: torch.Tensor) -> torch.Tensor:
        """``log q`` of the trajectory's steps from ``cut`` on (positions dropped if asked)."""
        steps = trajectory.log_q_steps
        if not self.position_terms:
            steps = steps - trajectory.log_position_steps
        after_cut = torch.arange(steps.shape[1], device=steps.device)[None] >= cut[:, None]
        return (steps * after_cut).sum(-1)


def _select(accepted: torch.Tensor, proposed: Trajectory, current: Trajectory) -> Trajectory:
    """Per chain, the proposed trajectory where accepted and the current one elsewhere."""
    fields = ("tokens", "order", "log_q_steps", "log_p_steps", "log_position_steps")
    changes: dict[str, Any] = {name: where_rows(accepted, getattr(proposed, name), getattr(current, name))
                               for name in fields}
    return replace(current, **changes)


@dataclass(frozen=True)
class PowerOptions:
    """The options of ``power``: ``moves_per_draw`` MH moves between kept draws; ``position_terms`` (keep
    ``True``: ``False`` reproduces a published port's error, for demonstration)."""

    moves_per_draw: int = 1
    position_terms: bool = True

    def __post_init__(self) -> None:
        positive_int("moves_per_draw", self.moves_per_draw)
        boolean("position_terms", self.position_terms)


def power_cost(options: PowerOptions, unit: UnitShape) -> Cost:
    """One decode at ``setup`` and ``m·(w + 1)`` re-decodes of ``s`` steps each, every one scored."""
    decodes = 1 + options.moves_per_draw * (unit.warmup + 1)
    return Cost(decodes * unit.steps, unit.samples * decodes * unit.steps, decodes, unit.samples * decodes)


POWER_SPEC = SamplerSpec("power", PowerOptions, power_cost, independent=False, kernel=Power,
                         summary="MH re-decoding a random suffix of the decoding order")
