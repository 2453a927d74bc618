"""Sequence-level Independent Metropolis–Hastings with the dLLM's own decoder as proposal.

Target (see `dllm_mcmc.target`): ``π_T(σ, x) ∝ u(σ | x) · L(x, σ)^(1/T)``. Proposal: a full decode
``(σ, x) ~ q`` with the target's order law and token temperature ``τ``, whose density ``q`` the
decoder records exactly. The proposal never reads the chain's state, so the move is the
independence sampler (Tierney 1994, Ann. Statist. 22(4); used for dLLMs by Fang et al.,
arXiv 2604.00375): accept ``y`` over ``x`` with probability

    α = min(1, exp(w(y) − w(x))),      w(σ, x) = log π_T(σ, x) − log q(σ, x).

For the ``order`` likelihood the position terms cancel and ``w = Σ_t [log p_t / T − log q_t]`` over
the committed tokens: local tempering (``τ``) is corrected to global tempering (``T``).

C chains are a batch dimension: one batched decode of ``C × proposal_batch`` rows serves the next
``proposal_batch`` steps of every chain (proposals are independent of the state, so decoding them
ahead changes nothing in distribution).

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser
    >>> from dllm_mcmc.target import TemperedTarget
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> kernel = IMH(TemperedTarget(toy, None, 4, target_temperature=0.5), proposal_temperature=0.5, num_chains=2)
    >>> kernel.setup(warmup_steps=0)
    >>> params = kernel.sample(kernel.initial_params)
    >>> params["tokens"].shape, kernel.info["accept_prob"].shape
    (torch.Size([2, 4]), torch.Size([2]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dllm_mcmc._checks import positive_int
from dllm_mcmc.mcmc.kernel import TargetKernel
from dllm_mcmc.mcmc.spec import Cost, SamplerSpec, UnitShape
from dllm_mcmc.mcmc.states import ChainState, StepInfo
from dllm_mcmc.mh import independent_log_ratio, mh_accept, select
from dllm_mcmc.target import TemperedTarget


def independent_mh_step(
    current: ChainState, proposed: ChainState, generator: torch.Generator
) -> tuple[ChainState, StepInfo]:
    """One independent MH step (Tierney 1994): accept ``y`` over ``x`` with probability

        min(1, [π(y) q(x)] / [π(x) q(y)]) = min(1, exp(w(y) − w(x))),  w = log π − log q.

    A current state of weight ``-inf`` accepts any proposal of finite weight.
    """
    accept_prob, accepted = mh_accept(independent_log_ratio(current.log_weight, proposed.log_weight), generator)
    return select(accepted, proposed, current), StepInfo(accept_prob, accepted, proposed.log_weight)


class IMH(TargetKernel):
    """Independent MH over whole decoded responses; C chains batched.

    Args:
        target: the `TemperedTarget` (its order law is the proposal's).
        proposal_temperature: token temperature ``τ`` of the proposal decoder; ``None`` (the default): the
            target's ``T``. A colder proposal (τ < T) warns (`ColdProposalWarning`).
        num_chains: ``C``.
        proposal_batch: proposals decoded per chain in one batched decode (its ``C × proposal_batch``
            rows are split into forward calls of at most the target's ``max_rows``).
        seed: seeds the kernel's generator (proposals and accept/reject draws).

    Lifecycle (Pyro's): ``setup`` → ``initial_params`` → ``sample`` repeatedly → ``cleanup``.
    ``sample`` returns the state (``tokens``, ``order``) and the scalar sites ``log_target``,
    ``log_likelihood``, ``length`` (see `dllm_mcmc.mcmc.kernel`). After each ``sample``, ``info`` holds
    per-chain float arrays ``[C]``: ``log_target``, ``log_likelihood``, ``log_proposal``, ``log_weight`` (of
    the new current state), ``accept_prob``, ``accepted``, ``proposed_log_weight``.
    """

    name = "imh"

    def __init__(
        self,
        target: TemperedTarget,
        *,
        proposal_temperature: float | None = None,
        num_chains: int = 1,
        proposal_batch: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(target, proposal_temperature=proposal_temperature, num_chains=num_chains, seed=seed)
        self.proposal_batch = IMHOptions(proposal_batch).proposal_batch
        self._state: ChainState | None = None
        self._log_likelihood: torch.Tensor | None = None  # [C] L(x, σ) of the current states

    # -- Pyro's lifecycle -------------------------------------------------------------------

    def setup(self, warmup_steps: int = 0, *args, **kwargs) -> None:
        self.start(warmup_steps)
        self._queue: list[tuple[ChainState, torch.Tensor]] = []
        self._state, self._log_likelihood = self._next_proposal()  # the chain starts at a draw from the proposal

    @property
    def initial_params(self) -> dict[str, torch.Tensor]:
        if self._state is None:
            raise RuntimeError("call setup() before reading initial_params")
        return self._params()

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        """Start the chains at given ``tokens`` and ``order`` ``[C, L]`` (scored by replay)."""
        traj = self.replay(params["tokens"], params["order"])
        log_target, self._log_likelihood = self.target.score(traj)
        self._state = ChainState(traj.tokens, traj.order, log_target, traj.log_q)

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One IMH step for every chain. ``params`` is not read: the proposal is independent
        of the state, and the current state (with its cached weights) is kept by the kernel."""
        if self._state is None or self._log_likelihood is None:
            raise RuntimeError("call setup() before sample()")
        proposed, proposed_log_likelihood = self._next_proposal()
        self._state, step = independent_mh_step(self._state, proposed, self.generator)
        self._log_likelihood = torch.where(step.accepted, proposed_log_likelihood, self._log_likelihood)
        self.track("accepted", step.accepted)
        self.info = {
            "log_target": self._state.log_target,
            "log_likelihood": self._log_likelihood,
            "log_proposal": self._state.log_proposal,
            "log_weight": self._state.log_weight,
            "accept_prob": step.accept_prob,
            "accepted": step.accepted.float(),
            "proposed_log_weight": step.proposed_log_weight,
        }
        return self._params()

    def cleanup(self) -> None:
        self._queue = []

    # -- internals --------------------------------------------------------------------------

    def _params(self) -> dict[str, torch.Tensor]:
        # its callers (initial_params, sample) check that setup() ran
        assert self._state is not None and self._log_likelihood is not None
        return self.sites(self._state.tokens, self._state.order, self._state.log_target, self._log_likelihood)

    def _next_proposal(self) -> tuple[ChainState, torch.Tensor]:
        """The next proposal of every chain and its likelihood ``L(x, σ)`` ``[C]``."""
        if not self._queue:
            self._queue = self._decode_proposals()
        return self._queue.pop(0)

    def _decode_proposals(self) -> list[tuple[ChainState, torch.Tensor]]:
        batch, chains = self.proposal_batch, self.num_chains
        traj, (log_target, log_likelihood) = self.propose(batch)
        fields = (traj.tokens, traj.order, log_target, traj.log_q)
        # rows are batch-major: proposal b of chain c is row b * C + c
        return [
            (ChainState(*(f[b * chains : (b + 1) * chains] for f in fields)),
             log_likelihood[b * chains : (b + 1) * chains])
            for b in range(batch)
        ]


@dataclass(frozen=True)
class IMHOptions:
    """The options of ``imh``: ``proposal_batch``, proposals decoded per chain in one batched decode."""

    proposal_batch: int = 1

    def __post_init__(self) -> None:
        positive_int("proposal_batch", self.proposal_batch)


def imh_cost(options: IMHOptions, unit: UnitShape) -> Cost:
    """Each chain pops ``w + 2`` proposals (one at ``setup``), decoded ``B = proposal_batch`` at a time:
    ``⌈(w + 2)/B⌉·s`` steps and ``n·⌈(w + 2)/B⌉·B·s`` rows, each batch scored once."""
    batch = options.proposal_batch
    batches = math.ceil((unit.warmup + 2) / batch)
    return Cost(batches * unit.steps, unit.samples * batches * batch * unit.steps, batches,
                unit.samples * batches * batch)


IMH_SPEC = SamplerSpec("imh", IMHOptions, imh_cost, independent=False, kernel=IMH,
                       summary="independent MH over whole decodes (the proposal: the rule at τ)")
