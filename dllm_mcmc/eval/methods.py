"""Decoding methods as the experiment runner sees them: plain decoding or an MCMC kernel.

A method draws ``n`` samples of one prompt. ``sampler = "decode"`` runs one batched `decode` with the
given rule (``random``, ``confidence``...). A kernel name (``imh``, ``power``, ``stepwise``) runs
`dllm_mcmc.sample` with ``n`` independent chains and keeps each chain's state after ``warmup`` steps, so
the ``n`` samples are independent, as unbiased pass@k assumes; each costs ``warmup + 1`` kernel steps
(the stepwise kernel has no chain to warm up: each sample is one stepwise decode).

``sampler = "smc"`` is the exception among the kernel names: it runs **one** SMC system of ``n``
particles per prompt (`dllm_mcmc.decoding.smc.smc_decode`, towards ``p^(1/T)`` with the method's rule as
the order law) and keeps its particles after a final systematic resampling of their weights, so the ``n``
samples cost what ``n`` plain decodes cost. They are **not independent** (resampled particles share
ancestors): Pass@1 and Pass@n are those of the particle set, and the unbiased pass@k estimator for
``1 < k < n`` gives the pass rate of ``k`` particles picked at random from it, not of an SMC run with
``k`` particles. Its options are the rule's, ``max_rows``, ``ess_threshold`` (default 0.5) and
``position_proposal`` (``"tempered_mass"``: the fully adapted SMC of `dllm_mcmc.decoding.smc`). The SMC
kernel's independent draws (``N`` particles spent per sample) stay available through `dllm_mcmc.sample`.

Two selection baselines spend ``K = candidates`` decodes on each sample (all ``n·K`` rows in one batched
`decode` with the method's rule and temperature) and keep one of each sample's ``K``:

- ``best_of``: the candidate with the highest model log-likelihood, taken as the decoder's recorded
  chain-rule ``log p`` **along its own decoding order** (``Trajectory.log_p``): an order-dependent
  likelihood, no extra forward call, not the sequence's marginal ``log p(x)``;
- ``majority`` (self-consistency): a candidate whose extracted answer (the task's ``answer``) is the most
  frequent among the ``K``, ties between answers broken by first occurrence, the first candidate giving
  it kept; candidates without an answer do not vote (all without: the first is kept). For code tasks the
  answer is the program itself, so the vote is over identical programs.

>>> method = Method.from_config({"name": "imh", "sampler": "imh", "temperature": 0.5, "warmup": 3})
>>> method.target_temperature, method.spec()["warmup"]
(0.5, 3)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from dllm_mcmc._checks import nonnegative_int, positive_float, positive_int
from dllm_mcmc.decoding import RULE_OPTIONS, Rule, decode
from dllm_mcmc.decoding.canvas import generator_for
from dllm_mcmc.decoding.smc import check_position_proposal, smc_decode
from dllm_mcmc.denoisers.base import denoiser_device
from dllm_mcmc.eval.engine import Engine
from dllm_mcmc.mcmc import KERNELS
from dllm_mcmc.mcmc.runner import sample
from dllm_mcmc.mh import systematic_resample

DECODE_OPTIONS = (*RULE_OPTIONS, "max_rows")
SELECTORS = ("best_of", "majority")
"""Samplers that decode ``candidates`` responses per sample and keep one."""
DEFAULT_CANDIDATES = 8
SELECTOR_OPTIONS = (*DECODE_OPTIONS, "candidates")
PARTICLE_OPTIONS = (*DECODE_OPTIONS, "ess_threshold", "position_proposal")
"""Options of ``sampler = "smc"`` in an evaluation (one SMC system whose particles are the samples)."""

AnswerOf = Callable[[str], str | None]


@dataclass(frozen=True)
class Method:
    """One row of the report: a sampler and its settings.

    Attributes:
        name: the label in records and tables.
        sampler: ``"decode"``, ``"best_of"``, ``"majority"`` (see the module docstring) or a kernel in
            `dllm_mcmc.mcmc.KERNELS`.
        rule: the decoding rule (the proposal's rule for kernels).
        temperature: token temperature ``τ``.
        target_temperature: ``T`` of the tempered target (kernels; defaults to ``τ``).
        warmup: kernel steps before the kept state (kernels with a chain).
        options: `decode` options (``block_length``, ``tokens_per_step``...) and kernel options.
            ``max_rows`` (the largest batch of one forward call) defaults to ``"auto"``: split to fit
            free GPU memory, never split on a CPU. ``candidates`` (``K``, default 8) for ``best_of`` and
            ``majority``.
    """

    name: str
    sampler: str = "decode"
    rule: str = "random"
    temperature: float = 0.5
    target_temperature: float | None = None
    warmup: int = 7
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a method's name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.options, dict):
            raise ValueError(f"method {self.name!r}: options must be a table, got {self.options!r}")
        if not isinstance(self.sampler, str) or (self.sampler not in ("decode", *SELECTORS)
                                                 and self.sampler not in KERNELS):
            raise ValueError(f"method {self.name!r}: sampler must be 'decode' or one of "
                             f"{', '.join((*SELECTORS, *KERNELS))}, got {self.sampler!r}")
        try:
            _ = self.decoding_rule  # validates the rule and its options
            positive_float("temperature", self.temperature)
            if self.target_temperature is not None:
                positive_float("target_temperature", self.target_temperature)
            nonnegative_int("warmup", self.warmup)
            if self.sampler in SELECTORS:
                positive_int("candidates", self.options.get("candidates", DEFAULT_CANDIDATES))
        except ValueError as error:
            raise ValueError(f"method {self.name!r}: {error}") from None
        if self.sampler == "decode" and set(self.options) - set(DECODE_OPTIONS):
            unknown = ", ".join(sorted(set(self.options) - set(DECODE_OPTIONS)))
            raise ValueError(f"method {self.name!r}: {unknown} not an option of decode ({', '.join(DECODE_OPTIONS)})")
        if self.sampler in SELECTORS and set(self.options) - set(SELECTOR_OPTIONS):
            unknown = ", ".join(sorted(set(self.options) - set(SELECTOR_OPTIONS)))
            raise ValueError(f"method {self.name!r}: {unknown} not an option of {self.sampler} "
                             f"({', '.join(SELECTOR_OPTIONS)})")
        if self.sampler == "smc":
            if set(self.options) - set(PARTICLE_OPTIONS):
                unknown = ", ".join(sorted(set(self.options) - set(PARTICLE_OPTIONS)))
                raise ValueError(f"method {self.name!r}: {unknown} not an option of smc in an evaluation "
                                 f"({', '.join(PARTICLE_OPTIONS)}; the particles are the samples)")
            threshold = self.options.get("ess_threshold", 0.5)
            if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
                raise ValueError(f"method {self.name!r}: ess_threshold must lie in [0, 1], got {threshold!r}")
            try:
                check_position_proposal(self.options.get("position_proposal", "rule"), self.rule, self.temperature,
                                        self.temperature if self.target_temperature is None
                                        else self.target_temperature)
            except ValueError as error:
                raise ValueError(f"method {self.name!r}: {error}") from None
            if self.rule == "confidence" or self.decoding_rule.tokens_per_step != 1:
                raise ValueError(f"method {self.name!r}: smc needs a rule with an exact order law and one token "
                                 f"per step (not 'confidence'), got rule={self.rule!r}")
        if self.target_temperature is None:
            object.__setattr__(self, "target_temperature", self.temperature)

    @classmethod
    def from_config(cls, config: dict) -> Method:
        """A method from a config table; keys other than the fields go to ``options``."""
        if not isinstance(config, dict):
            raise ValueError(f"a method must be a table of settings, got {config!r}")
        config = dict(config)
        if "name" not in config:
            raise ValueError(f"a method needs a name: {config}")
        fields = {k: config.pop(k) for k in ("name", "sampler", "rule", "temperature", "target_temperature",
                                              "warmup") if k in config}
        return cls(**fields, options=config)

    @property
    def decoding_rule(self) -> Rule:
        """The `Rule` object of this method: ``rule`` with the rule options found in ``options``."""
        return Rule.of(self.rule, **{k: v for k, v in self.options.items() if k in RULE_OPTIONS})

    @property
    def sampler_options(self) -> dict:
        """``options`` less the rule's: what goes to `decode` / `sample` beside the rule."""
        return {k: v for k, v in self.options.items() if k not in RULE_OPTIONS}

    @property
    def candidates(self) -> int:
        """``K``, the candidates decoded per kept sample (``best_of``, ``majority``; 1 for the others)."""
        return self.options.get("candidates", DEFAULT_CANDIDATES) if self.sampler in SELECTORS else 1

    def spec(self) -> dict:
        """Every setting that changes the samples (what the config hash covers)."""
        spec = asdict(self)
        if self.sampler == "decode" or self.sampler in SELECTORS:
            spec.pop("target_temperature"), spec.pop("warmup")
        elif self.sampler == "smc":
            spec.pop("warmup")
        return spec


@dataclass(frozen=True)
class Generation:
    """``tokens [n, L]`` and their cost: sequential forward calls, forward rows and seconds for all ``n``."""

    tokens: torch.Tensor
    nfe: int
    forward_rows: int
    seconds: float


def generate(method: Method, engine: Engine, prompt: torch.Tensor, samples: int, seed: int,
             answer_of: AnswerOf | None = None) -> Generation:
    """Draw ``samples`` responses to ``prompt`` (``[P]`` ids) with ``method``; reproducible from ``seed``.

    ``answer_of`` (completion text -> extracted answer, the task's ``answer`` for this problem) is needed
    by ``sampler = "majority"`` only."""
    return generate_pack(method, engine, [prompt], samples, seed, [answer_of])[1]


def generate_pack(method: Method, engine: Engine, prompts: list[torch.Tensor], samples: int,
                  seed: int, answer_of: Sequence[AnswerOf | None] | None = None
                  ) -> tuple[list[torch.Tensor], Generation]:
    """``samples`` responses to each of several prompts in one batched run (prompts of different lengths
    are left-padded with an attention mask; see ``docs/decoding.md``). Returns the ``[samples, L]`` tokens
    of each prompt and the run's `Generation` (tokens of every row, shared cost). One prompt is decoded as a
    plain ``[P]`` prompt (no padding machinery). ``answer_of``: one answer extractor per prompt (``majority``
    only)."""
    answers: list[AnswerOf | None] = [None] * len(prompts) if answer_of is None else list(answer_of)
    if len(answers) != len(prompts):
        raise ValueError(f"answer_of: one extractor per prompt, got {len(answers)} for {len(prompts)} prompts")
    device = denoiser_device(engine.denoiser)
    prompts = [p if device is None else p.to(device) for p in prompts]
    count = len(prompts)
    options = {"max_rows": "auto", **method.sampler_options}
    start = time.perf_counter()
    if method.sampler in SELECTORS:
        kept, nfe, forward_rows = _select(method, engine, prompts[0] if count == 1 else prompts, count, samples,
                                          seed, options, answers)
        generation = Generation(kept, nfe, forward_rows, time.perf_counter() - start)
        return [kept[u * samples:(u + 1) * samples] for u in range(count)], generation
    if method.sampler == "decode":
        # prompt-major rows: unit u is rows u·n .. (u + 1)·n − 1
        rows = prompts[0] if count == 1 else [prompt for prompt in prompts for _ in range(samples)]
        trajectory = decode(engine.denoiser, rows, engine.gen_length, rule=method.decoding_rule,
                            temperature=method.temperature, num_samples=count * samples,
                            generator=torch.Generator().manual_seed(seed), **options)
        generation = Generation(trajectory.tokens, trajectory.nfe, trajectory.forward_rows,
                                time.perf_counter() - start)
        return [trajectory.tokens[u * samples:(u + 1) * samples] for u in range(count)], generation
    target_temperature = method.target_temperature
    assert target_temperature is not None  # Method.__post_init__ replaces None with the token temperature
    if method.sampler == "smc":
        tokens, nfe, forward_rows = _smc_particles(method, engine, prompts, samples, seed, options)
        generation = Generation(tokens, nfe, forward_rows, time.perf_counter() - start)
        return [tokens[u * samples:(u + 1) * samples] for u in range(count)], generation
    # a target over several prompts: chain c samples prompt c mod count
    result = sample(engine.denoiser, prompts[0] if count == 1 else list(prompts), engine.gen_length,
                    kernel=method.sampler, target_temperature=target_temperature,
                    proposal_temperature=method.temperature, rule=method.decoding_rule,
                    num_chains=count * samples, num_samples=1, warmup=method.warmup, seed=seed, progress=False,
                    **options)
    tokens = result.tokens[:, -1]
    generation = Generation(tokens, result.nfe, result.forward_rows, time.perf_counter() - start)
    return [tokens[u::count] for u in range(count)], generation


def _select(method: Method, engine: Engine, prompt: torch.Tensor | list[torch.Tensor], count: int, samples: int,
            seed: int, options: dict, answer_of: list[AnswerOf | None]) -> tuple[torch.Tensor, int, int]:
    """``best_of`` / ``majority``: one batched `decode` of ``count·samples·K`` rows (prompt-major, then
    sample, then candidate: row ``(u·n + i)·K + c``), and the kept candidate of each of the ``count·n``
    samples. Returns the kept ``[count·n, L]`` tokens, the decode's steps and its forward rows."""
    k = method.candidates
    options = {key: value for key, value in options.items() if key != "candidates"}
    if method.sampler == "majority" and any(extract is None for extract in answer_of):
        raise ValueError(f"method {method.name!r}: majority voting needs the task's answer extractor (answer_of)")
    rows = prompt if isinstance(prompt, torch.Tensor) else [p for p in prompt for _ in range(samples * k)]
    trajectory = decode(engine.denoiser, rows, engine.gen_length, rule=method.decoding_rule,
                        temperature=method.temperature, num_samples=count * samples * k,
                        generator=torch.Generator().manual_seed(seed), **options)
    if method.sampler == "best_of":
        kept = trajectory.log_p.view(count * samples, k).argmax(-1).tolist()  # the first of equal maxima
    else:
        kept = []
        for group in range(count * samples):
            extract = answer_of[group // samples]
            assert extract is not None
            answers = [extract(engine.decode(trajectory.tokens[group * k + c].tolist())) for c in range(k)]
            kept.append(majority_index(answers))
    index = torch.tensor(kept, device=trajectory.tokens.device) + torch.arange(count * samples,
                                                                               device=trajectory.tokens.device) * k
    return trajectory.tokens[index], trajectory.nfe, trajectory.forward_rows


def _smc_particles(method: Method, engine: Engine, prompts: list[torch.Tensor], samples: int, seed: int,
                   options: dict) -> tuple[torch.Tensor, int, int]:
    """``sampler = "smc"``: one SMC system of ``samples`` particles per prompt (all in one batch), then a
    final systematic resampling to equal weights. Returns the ``[count·n, L]`` particles (prompt-major),
    the run's steps and forward rows."""
    generator = torch.Generator().manual_seed(seed)
    count = len(prompts)
    out = smc_decode(engine.denoiser, prompts[0] if count == 1 else prompts, engine.gen_length,
                     rule=method.decoding_rule, temperature=method.temperature,
                     target_temperature=float(method.target_temperature or method.temperature),
                     num_particles=samples, ess_threshold=float(options.get("ess_threshold", 0.5)),
                     generator=generator, max_rows=options.get("max_rows"), num_runs=count,
                     position_proposal=options.get("position_proposal", "rule"))
    ancestors = systematic_resample(out.log_weight, generator_for(generator, out.log_weight.device))  # [R, N]
    runs = torch.arange(count, device=ancestors.device)[:, None]
    return out.tokens[runs, ancestors].reshape(count * samples, -1), out.nfe, out.forward_rows


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
