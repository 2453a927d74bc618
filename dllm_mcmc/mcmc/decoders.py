"""The batch samplers that are one batched `dllm_mcmc.decode`: ``decode`` and the selection baselines
``best_of`` and ``majority``, as `dllm_mcmc.mcmc.registry` entries.

``decode`` draws the ``n`` samples of each prompt as ``n`` rows of one decode with the method's rule and
temperature. The two selection baselines spend ``K = candidates`` decodes on each sample (all ``n·K`` rows in
one batched decode) and keep one of each sample's ``K``:

- ``best_of``: the candidate with the highest model log-likelihood, taken as the decoder's recorded chain-rule
  ``log p`` **along its own decoding order** (``Trajectory.log_p``): an order-dependent likelihood, no extra
  forward call, not the sequence's marginal ``log p(x)``;
- ``majority`` (self-consistency, Wang et al. 2023): a candidate whose extracted answer (the task's
  ``answer``) is the most frequent among the ``K``, ties between answers broken by first occurrence, the first
  candidate giving it kept; candidates without an answer do not vote (all without: the first is kept). For code
  tasks the answer is the program itself, so the vote is over identical programs.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser, Rule
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> request = DrawRequest(toy, [torch.tensor([], dtype=torch.long)], 4, samples=3, seed=0, rule=Rule(),
    ...                       temperature=1.0, target_temperature=1.0, options=SelectionOptions(candidates=2))
    >>> draw = draw_best_of(request)
    >>> draw.tokens.shape, draw.nfe, draw.forward_rows
    (torch.Size([3, 4]), 4, 24)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dllm_mcmc._checks import positive_int
from dllm_mcmc.decoding.decode import decode
from dllm_mcmc.decoding.trajectory import Trajectory
from dllm_mcmc.mcmc.spec import Cost, Draw, DrawRequest, SamplerSpec, UnitShape

DEFAULT_CANDIDATES = 8


@dataclass(frozen=True)
class DecodeOptions:
    """``decode`` has no options of its own (the rule's and ``max_rows`` only)."""


@dataclass(frozen=True)
class SelectionOptions:
    """The options of ``best_of`` and ``majority``: ``candidates`` ``K`` decoded per kept sample."""

    candidates: int = DEFAULT_CANDIDATES

    def __post_init__(self) -> None:
        positive_int("candidates", self.candidates)


def _decode_rows(request: DrawRequest, per_prompt: int) -> Trajectory:
    """One batched decode of ``per_prompt`` rows for each prompt (prompt-major); one prompt is decoded as a
    plain ``[P]`` prompt (no padding machinery)."""
    prompts = request.prompts
    rows = prompts[0] if len(prompts) == 1 else [prompt for prompt in prompts for _ in range(per_prompt)]
    return decode(request.denoiser, rows, request.gen_length, rule=request.rule, temperature=request.temperature,
                  num_samples=len(prompts) * per_prompt, generator=torch.Generator().manual_seed(request.seed),
                  max_rows=request.max_rows)


def draw_decode(request: DrawRequest) -> Draw:
    """``n`` rows of one batched decode per prompt."""
    trajectory = _decode_rows(request, request.samples)
    return Draw(trajectory.tokens, trajectory.nfe, trajectory.forward_rows)


def _kept(request: DrawRequest, trajectory: Trajectory, kept: list[int]) -> Draw:
    k = request.options.candidates
    device = trajectory.tokens.device
    index = torch.tensor(kept, device=device) + torch.arange(len(kept), device=device) * k
    return Draw(trajectory.tokens[index], trajectory.nfe, trajectory.forward_rows)


def draw_best_of(request: DrawRequest) -> Draw:
    """``n·K`` rows per prompt (row ``(u·n + i)·K + c``); per sample the candidate of highest ``log p`` along
    its own order (the first of equal maxima)."""
    k = request.options.candidates
    trajectory = _decode_rows(request, request.samples * k)
    groups = len(request.prompts) * request.samples
    return _kept(request, trajectory, trajectory.log_p.view(groups, k).argmax(-1).tolist())


def draw_majority(request: DrawRequest) -> Draw:
    """``n·K`` rows per prompt; per sample the first candidate whose answer is the most frequent of its ``K``."""
    answer_of = request.answer_of
    if answer_of is None or len(answer_of) != len(request.prompts) or any(f is None for f in answer_of):
        raise ValueError("majority voting needs the task's answer extractor (answer_of), one per prompt")
    k = request.options.candidates
    trajectory = _decode_rows(request, request.samples * k)
    kept = []
    for group in range(len(request.prompts) * request.samples):
        extract = answer_of[group // request.samples]
        assert extract is not None
        kept.append(majority_index([extract(trajectory.tokens[group * k + c]) for c in range(k)]))
    return _kept(request, trajectory, kept)


def majority_index(answers: Sequence[str | None]) -> int:
    """The index of the first answer equal to the most frequent one (``None`` does not vote; ties between
    answers go to the one that occurs first; no answer at all: 0).

    >>> majority_index(["3", None, "4", "4", "3"]), majority_index([None, "7", "8"]), majority_index([None])
    (0, 1, 0)
    """
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    if not counts:
        return 0
    best = max(counts.values())
    return next(i for i, answer in enumerate(answers) if answer is not None and counts[answer] == best)


def decode_cost(options: DecodeOptions, unit: UnitShape) -> Cost:
    """``s`` steps, ``n·s`` rows."""
    return Cost(unit.steps, unit.samples * unit.steps)


def selection_cost(options: SelectionOptions, unit: UnitShape) -> Cost:
    """One decode of ``n·K`` rows: ``s`` steps and ``n·K·s`` rows (the selection reads the decoder's record or
    the text: no forward call)."""
    return Cost(unit.steps, unit.samples * options.candidates * unit.steps)


DECODE = SamplerSpec("decode", DecodeOptions, decode_cost, independent=True, draw=draw_decode, tempered=False,
                     summary="plain decoding with the rule at token temperature τ")
BEST_OF = SamplerSpec("best_of", SelectionOptions, selection_cost, independent=True, draw=draw_best_of,
                      tempered=False, summary="best of K decodes by their log p along their own order")
MAJORITY = SamplerSpec("majority", SelectionOptions, selection_cost, independent=True, draw=draw_majority,
                       tempered=False, needs_answers=True,
                       summary="majority vote over the answers of K decodes (self-consistency)")
