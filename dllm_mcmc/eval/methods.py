"""Decoding methods as the experiment runner sees them: a sampler of the registry with its settings.

A method draws ``n`` samples of one prompt with a sampler of `dllm_mcmc.mcmc.registry` (``dllm-mcmc
samplers`` lists them), and the registry says how:

- a **kernel** (``imh``, ``power``, ``stepwise``, ``pgibbs``, ``smc``, or an installed plugin's) runs
  `dllm_mcmc.sample` with ``n`` chains and keeps each chain's state after ``warmup`` steps, so the ``n``
  samples are independent, as unbiased pass@k assumes; each costs ``warmup + 1`` kernel steps (kernels whose
  draws are independent, ``stepwise`` and ``smc``, have no chain to warm up: each sample is one draw);
- a **batch** sampler draws all ``n`` samples of every prompt in one call: ``decode`` (``n`` rows of one
  batched decode), ``best_of`` and ``majority`` (``K = candidates`` decodes per sample, one kept:
  `dllm_mcmc.mcmc.decoders`), and ``particles`` (one SMC system whose ``n`` particles are the samples, **not
  independent**: `dllm_mcmc.mcmc.particles`).

A method's options are checked when it is built (so when a config is read, before any model loads): an
unknown option is refused naming the method, the option and the closest valid name. ``sampler = "smc"``
without ``num_particles`` (the old meaning of ``smc`` in an evaluation, now ``particles``) is refused with a
message naming the new sampler.

>>> method = Method.from_config({"name": "imh", "sampler": "imh", "temperature": 0.5, "warmup": 3})
>>> method.target_temperature, method.spec()["warmup"]
(0.5, 3)
>>> Method.from_config({"name": "m", "sampler": "imh", "propsal_batch": 2})  # doctest: +ELLIPSIS
Traceback (most recent call last):
    ...
ValueError: method 'm': propsal_batch is not an option of sampler 'imh' (did you mean 'proposal_batch'?); ...
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import torch

from dllm_mcmc._checks import nonnegative_int, one_of, positive_float, positive_int
from dllm_mcmc.decoding import RULE_OPTIONS, Rule
from dllm_mcmc.denoisers.base import denoiser_device
from dllm_mcmc.eval.engine import Engine
from dllm_mcmc.likelihood import LIKELIHOODS
from dllm_mcmc.mcmc.decoders import majority_index
from dllm_mcmc.mcmc.registry import get_sampler
from dllm_mcmc.mcmc.runner import sample
from dllm_mcmc.mcmc.spec import DrawRequest, SamplerSpec, check_renamed
from dllm_mcmc.target import CONFIDENCE_REFUSAL

__all__ = ["AnswerOf", "Generation", "Method", "generate", "generate_pack", "majority_index"]

AnswerOf = Callable[[str], str | None]


@dataclass(frozen=True)
class Method:
    """One row of the report: a sampler and its settings.

    Attributes:
        name: the label in records and tables.
        sampler: a sampler of the registry (`dllm_mcmc.mcmc.registry.samplers`).
        rule: the decoding rule (the proposal's rule for kernels).
        temperature: token temperature ``τ``.
        target_temperature: ``T`` of the tempered target (samplers that target ``p^(1/T)``; defaults to ``τ``).
        warmup: kernel steps before the kept state (kernels with a chain).
        options: the rule's options (``block_length``, ``tokens_per_step``...), the sampler's own (its
            options dataclass, e.g. ``proposal_batch``, ``candidates``), and the shared ones: ``max_rows``
            (the largest batch of one forward call; default ``"auto"``: split to fit free GPU memory, never
            split on a CPU), and for kernels ``likelihood`` and ``elbo_samples``.
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
        try:
            if not isinstance(self.sampler, str):
                raise ValueError(f"sampler must be a sampler's name, got {self.sampler!r}")
            check_renamed(self.sampler, self.options)
            spec = get_sampler(self.sampler)
            rule = self.decoding_rule  # validates the rule and its options
            temperature = positive_float("temperature", self.temperature)
            if self.target_temperature is not None:
                positive_float("target_temperature", self.target_temperature)
            nonnegative_int("warmup", self.warmup)
            options = spec.parse_options(self.options)
            if spec.is_kernel:
                if rule.name == "confidence":
                    raise ValueError(f"rule='confidence' cannot be the proposal of sampler {spec.name!r}: "
                                     f"{CONFIDENCE_REFUSAL}")
                one_of("likelihood", self.options.get("likelihood", "order"), LIKELIHOODS)
                positive_int("elbo_samples", self.options.get("elbo_samples", 16))
            if spec.check is not None:
                spec.check(options, rule, temperature,
                           temperature if self.target_temperature is None else float(self.target_temperature))
        except ValueError as error:
            raise ValueError(f"method {self.name!r}: {error}") from None
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
    def sampler_spec(self) -> SamplerSpec:
        """The registry's `SamplerSpec` of ``sampler``."""
        return get_sampler(self.sampler)

    @cached_property
    def sampler_settings(self) -> Any:
        """The sampler's own options as its options dataclass (defaults filled in)."""
        return self.sampler_spec.parse_options(self.options)

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
        return getattr(self.sampler_settings, "candidates", 1)

    def spec(self) -> dict:
        """Every setting that changes the samples (what the config hash covers): a sampler that does not target
        ``p^(1/T)`` drops ``target_temperature`` and ``warmup``, a batch sampler ``warmup``."""
        spec = asdict(self)
        sampler = self.sampler_spec
        if not sampler.tempered:
            spec.pop("target_temperature"), spec.pop("warmup")
        elif not sampler.is_kernel:
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
    by samplers that vote on answers (``majority``) only."""
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
    spec = method.sampler_spec
    device = denoiser_device(engine.denoiser)
    prompts = [p if device is None else p.to(device) for p in prompts]
    count = len(prompts)
    options = {"max_rows": "auto", **method.sampler_options}
    target_temperature = method.target_temperature
    assert target_temperature is not None  # Method.__post_init__ replaces None with the token temperature
    start = time.perf_counter()
    if spec.draw is not None:
        token_answers = None
        if spec.needs_answers:
            if any(extract is None for extract in answers):
                raise ValueError(f"method {method.name!r}: {spec.name} needs the task's answer extractor "
                                 f"(answer_of)")
            token_answers = [_on_tokens(engine, extract) for extract in answers]
        request = DrawRequest(engine.denoiser, prompts, engine.gen_length, samples, seed, method.decoding_rule,
                              method.temperature, target_temperature, method.sampler_settings,
                              max_rows=options["max_rows"], answer_of=token_answers)
        drawn = spec.draw(request)
        generation = Generation(drawn.tokens, drawn.nfe, drawn.forward_rows, time.perf_counter() - start)
        return [drawn.tokens[u * samples:(u + 1) * samples] for u in range(count)], generation
    # a kernel: chain c samples prompt c mod count, each kept after the warm-up
    result = sample(engine.denoiser, prompts[0] if count == 1 else list(prompts), engine.gen_length,
                    kernel=method.sampler, target_temperature=target_temperature,
                    proposal_temperature=method.temperature, rule=method.decoding_rule,
                    num_chains=count * samples, num_samples=1, warmup=method.warmup, seed=seed, progress=False,
                    **options)
    tokens = result.tokens[:, -1]
    generation = Generation(tokens, result.nfe, result.forward_rows, time.perf_counter() - start)
    return [tokens[u::count] for u in range(count)], generation


def _on_tokens(engine: Engine, extract: AnswerOf | None) -> Callable[[torch.Tensor], str | None]:
    """A text answer extractor as a function of a response's ids (what `DrawRequest.answer_of` holds)."""
    assert extract is not None
    return lambda tokens: extract(engine.decode(tokens.tolist()))
