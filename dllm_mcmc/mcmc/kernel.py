"""`TargetKernel`: the plumbing every kernel over a `TemperedTarget` shares (Pyro's lifecycle,
the generator, acceptance counters, cost, the sample sites), and `KernelProtocol`, what `sample` asks
of any kernel.

Every kernel of dllm-mcmc works on C chains at once (a batch dimension). The MH arithmetic lives in
`dllm_mcmc.mh`, the per-chain records in `dllm_mcmc.mcmc.states`.

The sample sites. ``sample(params)`` returns, besides the state (``tokens`` and ``order``, LongTensors
``[C, L]``), the float32 scalar sites of `SCALAR_SITES` (``[C]`` each): ``log_target`` (``log π_T`` of the
state), ``log_likelihood`` (``L(x, σ)``) and ``length`` (tokens before the first EOS). Pyro's
``MCMC.summary()`` and ``MCMC.diagnostics()`` compute mean, ESS and R-hat of every saved site, which
fails on an integer tensor; with a float site among them Pyro concatenates each draw into one float
tensor, so the summary runs (token ids come back from ``get_samples()`` as float32 holding exact
integers) and ``MCMC(..., save_params=kernel.scalar_sites)`` keeps the scalars alone.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser, IMH, TemperedTarget
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> kernel = IMH(TemperedTarget(toy, None, 4, target_temperature=0.5), num_chains=2)
    >>> kernel.setup(0)
    >>> params = kernel.sample(kernel.initial_params)
    >>> sorted(params), params["log_target"].dtype
    (['length', 'log_likelihood', 'log_target', 'order', 'tokens'], torch.float32)
    >>> bool(torch.allclose(params["log_likelihood"], toy.log_prob(params["tokens"])))   # p(x | σ) = p(x)
    True
"""

from __future__ import annotations

import warnings
from typing import Any, Protocol, runtime_checkable

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from dllm_mcmc._checks import positive_float, positive_int
from dllm_mcmc.decoding.trajectory import Trajectory
from dllm_mcmc.target import Score, TemperedTarget

SCALAR_SITES = ("length", "log_likelihood", "log_target")
"""The float32 ``[C]`` sample sites every built-in kernel returns beside ``tokens`` and ``order``:
what Pyro's ``MCMC.summary()`` is meant to summarise (``save_params=SCALAR_SITES`` keeps them alone).
Sorted on purpose: Pyro 1.9 packs a draw in ``save_params`` order but unpacks it in sorted order, so
an unsorted ``save_params`` mislabels the sites."""


def response_length(tokens: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """Tokens before the first EOS (the full length when there is none, or no ``eos_id``).

    >>> response_length(torch.tensor([[1, 2, 0, 2], [1, 1, 1, 1]]), eos_id=2).tolist()
    [1, 4]
    """
    length = tokens.shape[-1]
    if eos_id is None:
        return torch.full(tokens.shape[:-1], length, device=tokens.device)
    positions = torch.arange(length, device=tokens.device).expand_as(tokens)
    return torch.where(tokens == eos_id, positions, length).min(-1).values


class ColdProposalWarning(UserWarning):
    """A proposal at a token temperature τ below the target temperature T."""


def warn_if_colder(proposal_temperature: float, target_temperature: float) -> None:
    """Warn when the proposal is colder than the target (τ < T). A proposal at τ = T is the default: for
    prefix proposals it minimises the variance of the importance weights (Power-SMC, arXiv 2602.10273),
    while a colder one puts almost no mass where the target still has some, so an independent sampler can
    stay stuck there (on a toy at T = 2, τ = 0.5 the smallest q/π was 1.5e-7)."""
    if proposal_temperature < target_temperature:
        warnings.warn(f"proposal_temperature τ={proposal_temperature:g} is colder than the target temperature "
                      f"T={target_temperature:g}: the proposal rarely reaches the target's tails and the "
                      f"chains may not mix; τ = T (the default) is the safe choice",
                      ColdProposalWarning, stacklevel=3)


@runtime_checkable
class KernelProtocol(Protocol):
    """What `dllm_mcmc.sample` needs of a kernel object: Pyro's lifecycle (``setup``,
    ``initial_params``, ``sample``, ``cleanup``, ``logging``), ``num_chains``, a per-chain ``info``
    dict of float tensors ``[C]`` after every ``sample``, and ``cost`` = ``(nfe, forward_rows)``.
    Optional: ``name`` (for records), ``needs_warmup`` (``False`` for kernels whose draws are
    independent: `sample` then runs no warm-up, does not read ``initial_params`` and passes ``{}`` to the
    first ``sample``, so such a kernel spends nothing on an initial state it would not use), an
    ``"order"`` entry in the params (kept in `Result.order`), and float ``[C]`` scalar sites in the params
    listed in ``scalar_sites`` (for Pyro's ``MCMC.summary()``; see `SCALAR_SITES`)."""

    num_chains: int
    info: dict[str, torch.Tensor] | None

    def setup(self, warmup_steps: int, *args: Any, **kwargs: Any) -> None: ...

    @property
    def initial_params(self) -> dict[str, torch.Tensor]: ...

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def cleanup(self) -> None: ...

    def logging(self) -> dict[str, str]: ...

    @property
    def cost(self) -> tuple[int, int]: ...


class TargetKernel(MCMCKernel):
    """The base of a kernel over a `TemperedTarget`: the whole contract of a kernel author.

    **Required**: ``sample(params) -> params``, one step of every chain (Pyro's one abstract method). It
    returns `sites` (the state and the scalar sites) and sets ``self.info``, per-chain float tensors
    ``[C]`` of what the step did.

    **Optional** (defaults here): ``setup(warmup_steps)`` (default: `start`, which seeds
    ``self.generator`` and resets the meter and the tracked statistics: call it first when overriding);
    ``initial_params`` (the chains' first state; an independent kernel, ``needs_warmup = False``, never
    needs one under `dllm_mcmc.sample`); ``cleanup``; ``logging`` and ``diagnostics`` (both report the
    running means of what `track` was given); ``name`` (for records).

    **Helpers**: ``self.target.score(record)`` (the one target formula, for any decoder record), `propose`
    (fresh draws of the proposal decoder with their scores), `replay` (a decoder record of given states),
    `sites` (the params a step returns), `track` (a running per-chain statistic under its own name:
    ``accept_prob`` only for MH acceptance probabilities),
    ``self.proposal`` (the proposal decoder's `DecodeConfig`: the target's rule at ``τ``), and
    `dllm_mcmc.mh` for the accept/reject arithmetic. ``self.transforms = {}`` is set because Pyro's
    ``MCMC`` otherwise looks for ``kernel.model`` to build transforms of continuous sites; our sites are
    discrete and need none.

    Validates ``target``, ``num_chains`` (a multiple of the target's number of prompts: with a list of
    prompts, chain ``c`` samples prompt ``c mod C``) and ``proposal_temperature`` (``None``: the target's
    ``T``; a colder proposal warns). The cost is read from the target's meter.
    """

    name = "kernel"
    needs_warmup = True
    scalar_sites: tuple[str, ...] = SCALAR_SITES

    def __init__(self, target: TemperedTarget, *, proposal_temperature: float | None = None, num_chains: int = 1,
                 seed: int = 0) -> None:
        if not isinstance(target, TemperedTarget):
            raise ValueError(f"target must be a TemperedTarget, got {type(target).__name__}")
        positive_int("num_chains", num_chains)
        if proposal_temperature is None:
            proposal_temperature = target.target_temperature
        positive_float("proposal_temperature", proposal_temperature)
        warn_if_colder(proposal_temperature, target.target_temperature)
        if num_chains % target.num_prompts:
            raise ValueError(f"num_chains={num_chains} is not a multiple of the target's {target.num_prompts} "
                             f"prompts (chain c samples prompt c mod {target.num_prompts})")
        self.proposal = target.rule.config(temperature=proposal_temperature)  # the proposal decoder
        self.target = target
        self.num_chains = num_chains
        self.seed = seed
        self.transforms: dict[str, Any] = {}  # Pyro's MCMC looks for kernel.model unless this exists
        self.info: dict[str, torch.Tensor] | None = None
        self._tracked: dict[str, torch.Tensor] = {}
        self._tracked_steps: dict[str, int] = {}

    def setup(self, warmup_steps: int = 0, *args: Any, **kwargs: Any) -> None:
        self.start(warmup_steps)

    def start(self, warmup_steps: int) -> None:
        """Seed ``self.generator`` from ``seed``, reset the target's meter and the tracked statistics."""
        self.warmup_steps = warmup_steps
        self.generator = torch.Generator(device=self.target.device).manual_seed(self.seed)
        self.target.denoiser.reset()
        self._tracked, self._tracked_steps = {}, {}
        self.info = None

    def track(self, name: str, value: torch.Tensor) -> None:
        """Add ``value [C]`` to the running per-chain mean of the statistic ``name`` (shown by `logging`, returned
        by `diagnostics`). Call it once per move: ``accept_prob`` for MH kernels, ``ess`` for SMC."""
        value = value.float()
        self._tracked[name] = self._tracked.get(name, torch.zeros_like(value)) + value
        self._tracked_steps[name] = self._tracked_steps.get(name, 0) + 1

    def running_mean(self, name: str) -> torch.Tensor:
        """``[C]`` mean of the values `track` was given under ``name`` since ``setup``."""
        if name not in self._tracked:
            raise KeyError(f"{name!r} was never tracked; tracked: {sorted(self._tracked)}")
        return self._tracked[name] / self._tracked_steps[name]

    @property
    def save_params(self) -> list[str]:
        """The sites Pyro's ``MCMC`` saves (its ``save_params=`` sets this; unset: every site). Kept sorted:
        Pyro 1.9 packs each draw in this order but unpacks it in sorted order, which mislabels the sites of
        an unsorted list."""
        names = getattr(self, "_save_params", None)
        if names is None:
            raise AttributeError("save_params")  # Pyro's default: every site of the params
        return names

    @save_params.setter
    def save_params(self, names: list[str] | tuple[str, ...]) -> None:
        self._save_params = sorted(names)

    def propose(self, per_chain: int = 1) -> tuple[Trajectory, Score]:
        """``per_chain`` fresh draws of the proposal decoder for every chain, in one batched decode of
        ``per_chain · C`` rows (row ``b·C + c``: draw ``b`` of chain ``c``), with their `Score` under the target.
        The independent proposal of IMH-like kernels; its density is ``Trajectory.log_q``."""
        from dllm_mcmc.decoding.decode import decode

        rows = per_chain * self.num_chains
        trajectory = decode(self.target.denoiser, self.target.prompt_for(rows), self.target.gen_length,
                            num_samples=rows, generator=self.generator, max_rows=self.target.max_rows,
                            **self.proposal.as_dict())
        return trajectory, self.target.score(trajectory)

    def replay(self, tokens: torch.Tensor, order: torch.Tensor) -> Trajectory:
        """The proposal decoder's record of given states ``[C, L]`` (teacher-forced; ``L`` forward calls)."""
        from dllm_mcmc.decoding.decode import replay

        return replay(self.target.denoiser, self.target.prompt_for(tokens.shape[0]), tokens, order, self.proposal,
                      max_rows=self.target.max_rows)

    def sites(self, tokens: torch.Tensor, order: torch.Tensor, log_target: torch.Tensor,
              log_likelihood: torch.Tensor) -> dict[str, torch.Tensor]:
        """The params a step returns: the state (``tokens``, ``order``) and the float32 scalar sites."""
        length = response_length(tokens, getattr(self.target.denoiser, "eos_id", None))
        return {"tokens": tokens, "order": order, "log_target": log_target.float(),
                "log_likelihood": log_likelihood.float(), "length": length.float()}

    def logging(self) -> dict[str, str]:
        """The running mean of every tracked statistic (Pyro's progress bar and `dllm_mcmc.sample`'s)."""
        return {name: f"{float(self.running_mean(name).mean()):.3f}" for name in self._tracked}

    def diagnostics(self) -> dict:
        """Picklable summary: every tracked statistic per chain (over every step since ``setup``, warm-up
        included), the moves, and the cost so far. Pyro's ``MCMC.diagnostics()`` adds each entry under
        ``"chain 0"``."""
        return {
            **{name: self.running_mean(name).tolist() for name in self._tracked},
            "steps": max(self._tracked_steps.values(), default=0),
            "nfe": self.target.denoiser.nfe,
            "forward_rows": self.target.denoiser.forward_rows,
        }

    @property
    def cost(self) -> tuple[int, int]:
        """``(nfe, forward_rows)``: sequential forward calls and rows pushed through the model since ``setup``."""
        return self.target.denoiser.nfe, self.target.denoiser.forward_rows
