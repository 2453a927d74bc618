"""`Stepwise`: the stepwise sampler of Fang et al. (arXiv 2604.00375) as a kernel for `sample`.

The algorithm, its formulas and its approximations are in `dllm_mcmc.decoding.stepwise`
(`stepwise_decode`); this adapter runs it with the target's rule and ``T`` and its own generator.
Draws are independent: every `sample` call runs one fresh stepwise decode of ``C`` rows and returns
``C`` new draws (``params`` is not read; the runner skips warm-up). It returns the draws (``tokens``,
``order``) and the scalar sites ``log_target``, ``log_likelihood``, ``length`` (see
`dllm_mcmc.mcmc.kernel`). After each `sample`, ``info`` holds float tensors ``[C]``:

- ``selection_accept_rate`` (``selection="mh"``): the decode's per-step fraction of accepted moves of the
  candidate scan; ``selection_ess`` (``"sir"``): the per-step mean normalised ESS of the candidates' weights;
- ``log_target``: ``log u(σ | x) + L(x, σ) / T`` of the draw (the rule's choice probabilities and
  the target's likelihood; for ``order`` the chain rule of the committed tokens);
- ``log_likelihood``: ``L(x, σ)``;
- ``nfe``: forward calls of this decode, likelihood calls for ``log_target`` included;
- ``forward_rows``: rows of those calls divided by ``C``.

Example:
    >>> from dllm_mcmc import ExactDenoiser, TemperedTarget, sample
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> target = TemperedTarget(toy, None, 4, target_temperature=0.5)
    >>> kernel = Stepwise(target, proposal_temperature=0.5, num_candidates=8, num_chains=2)
    >>> result = sample(toy, None, 4, kernel=kernel, num_samples=3, warmup=0, progress=False)
    >>> result.tokens.shape, kernel.info["nfe"].tolist()
    (torch.Size([2, 3, 4]), [4.0, 4.0])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from dllm_mcmc._checks import boolean, one_of, positive_int
from dllm_mcmc.decoding.stepwise import SELECTIONS, SUFFIX_SCOPES, SUFFIXES, check_stepwise_options, stepwise_decode
from dllm_mcmc.denoisers.batching import MaxRows, resolve_max_rows
from dllm_mcmc.mcmc.kernel import TargetKernel
from dllm_mcmc.mcmc.spec import Cost, SamplerSpec, UnitShape
from dllm_mcmc.target import TemperedTarget


class Stepwise(TargetKernel):
    """`stepwise_decode` over a `TemperedTarget` (its rule, with ``tokens_per_step=1``, and its ``T``);
    ``proposal_temperature`` is ``τ``, ``num_chains`` the ``C`` rows decoded per `sample`, ``seed`` seeds
    the kernel's generator, ``max_rows`` (``None``: the target's) caps one forward call; the other
    options are `stepwise_decode`'s."""

    name = "stepwise"
    needs_warmup = False  # draws are independent decodes; the runner skips warm-up

    def __init__(self, target: TemperedTarget, *, proposal_temperature: float | None = None,
                 num_candidates: int = 16,
                 suffix: str = "mean_field", selection: str = "mh", suffix_scope: str = "block",
                 num_chains: int = 1, seed: int = 0, dedupe: bool = False, max_rows: MaxRows = None,
                 max_suffix_completions: int = 100_000) -> None:
        super().__init__(target, proposal_temperature=proposal_temperature, num_chains=num_chains, seed=seed)
        self.options: dict[str, Any] = asdict(StepwiseOptions(num_candidates, suffix, selection, suffix_scope, dedupe,
                                                              max_suffix_completions))
        check_stepwise_options(target.rule, target.gen_length, target.denoiser, **self.options)
        self.max_rows = max_rows
        self.selection_stat = "selection_accept_rate" if selection == "mh" else "selection_ess"
        self._rows = (target.max_rows if max_rows is None
                      else resolve_max_rows(target.denoiser, max_rows, target.prompt_length + target.gen_length))
        self._params: dict[str, torch.Tensor] | None = None

    def setup(self, warmup_steps: int = 0, *args, **kwargs) -> None:
        self.start(warmup_steps)
        self._params = None
        self._ready = True

    @property
    def initial_params(self) -> dict[str, torch.Tensor]:
        """A stepwise draw, made when first read (Pyro's `MCMC` reads it; `dllm_mcmc.sample` does not, so
        its samples cost one stepwise decode each)."""
        if not getattr(self, "_ready", False):
            raise RuntimeError("call setup() before reading initial_params")
        if self._params is None:
            self._params, _ = self._decode()
        return self._params

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        """Accepted for Pyro's API (draws never depend on the current state); the state is scored by a
        replay (``L`` forward calls) for its scalar sites."""
        log_target, log_likelihood = self.target.score(self.replay(params["tokens"], params["order"]))
        self._params = self.sites(params["tokens"], params["order"], log_target, log_likelihood)

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``C`` new independent draws by one batched stepwise decode (``params`` is not read)."""
        self._params, self.info = self._decode()
        self.track(self.selection_stat, self.info[self.selection_stat])
        return self._params

    def _decode(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        target, meter, num_rows = self.target, self.target.denoiser, self.num_chains
        nfe_before, rows_before = meter.nfe, meter.forward_rows
        draw = stepwise_decode(meter, target.prompt_for(num_rows), target.gen_length, rule=target.rule,
                               temperature=self.proposal.temperature, target_temperature=target.target_temperature,
                               num_samples=num_rows, generator=self.generator, max_rows=self._rows, **self.options)
        log_target, log_likelihood = target.score(draw)
        device = draw.tokens.device
        info = {
            self.selection_stat: draw.selection_stat,
            "log_target": log_target.float(),
            "log_likelihood": log_likelihood.float(),
            "nfe": torch.full((num_rows,), float(meter.nfe - nfe_before), device=device),
            "forward_rows": torch.full((num_rows,), (meter.forward_rows - rows_before) / num_rows, device=device),
        }
        return self.sites(draw.tokens, draw.order, log_target, log_likelihood), info


@dataclass(frozen=True)
class StepwiseOptions:
    """The options of ``stepwise`` (those of `stepwise_decode`): ``num_candidates`` ``K``, ``suffix``,
    ``selection``, ``suffix_scope``, ``dedupe``, ``max_suffix_completions``."""

    num_candidates: int = 16
    suffix: str = "mean_field"
    selection: str = "mh"
    suffix_scope: str = "block"
    dedupe: bool = False
    max_suffix_completions: int = 100_000

    def __post_init__(self) -> None:
        positive_int("num_candidates", self.num_candidates)
        positive_int("max_suffix_completions", self.max_suffix_completions)
        one_of("suffix", self.suffix, SUFFIXES)
        one_of("selection", self.selection, SELECTIONS)
        one_of("suffix_scope", self.suffix_scope, SUFFIX_SCOPES)
        boolean("dedupe", self.dedupe)


def stepwise_cost(options: StepwiseOptions, unit: UnitShape) -> Cost:
    """One stepwise decode per sample (no initial state is drawn): ``s`` steps and ``n·(1 + (s − 1)·K)`` rows,
    the draw scored once (``suffix="mean_field"`` without ``dedupe``; the exact suffix is an oracle for toys,
    and deduplication depends on the draws: neither can be planned)."""
    if options.suffix != "mean_field" or options.dedupe:
        raise ValueError("only suffix='mean_field' without dedupe can be planned")
    return Cost(unit.steps, unit.samples * (1 + (unit.steps - 1) * options.num_candidates), 1, unit.samples)


STEPWISE_SPEC = SamplerSpec("stepwise", StepwiseOptions, stepwise_cost, independent=True, kernel=Stepwise,
                            summary="the paper's stepwise sampler: K candidate tokens per step scored by their suffix")
