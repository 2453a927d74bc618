"""Our decoders and MCMC kernels as an lm-evaluation-harness model: ``dllm-mcmc``.

lm-evaluation-harness (``pip install -e '.[lm-eval]'``) evaluates generation tasks through a model's
``generate_until``. This module registers `DllmMcmcLM` under the name ``dllm-mcmc``; its ``model_args``
are those of an evaluation method (`dllm_mcmc.eval.methods.Method`: ``sampler``, ``rule``,
``temperature``, ``target_temperature``, ``warmup`` and the rule's and sampler's options such as
``block_length`` or ``proposal_batch``) plus the model's own (``pretrained``, ``gen_length``, ``seed``,
``threads``, ``dtype``, ``device``...). See ``docs/lm-eval.md``.

lm-eval 0.4 has no plugin discovery for models: a model exists once the module that registers it is
imported. Importing this module registers ``dllm-mcmc``; the command lines that do so are ::

    dllm-mcmc lm-eval --model dllm-mcmc --model_args pretrained=tasks-small,sampler=imh --tasks ...
    python -m dllm_mcmc.lm_eval_model --model dllm-mcmc --model_args ... --tasks ...

(both take every flag of lm-eval's own ``lm_eval`` command). From Python:

>>> import lm_eval
>>> import dllm_mcmc.lm_eval_model  # registers "dllm-mcmc"
>>> results = lm_eval.simple_evaluate(model="dllm-mcmc", tasks=["gsm8k"],
...                                   model_args="pretrained=/models/LLaDA-8B-Instruct,sampler=imh,"
...                                              "target_temperature=0.5,gen_length=256")  # doctest: +SKIP

How requests are drawn: the ``n = repeats`` copies lm-eval makes of one request are **one** call of
`dllm_mcmc.eval.methods.generate_pack` with ``samples = n`` (``n`` rows of one batched decode, or ``n``
independent chains of a kernel each kept after ``warmup`` steps; ``smc``: ``n`` particles of one
system), so they are ``n`` distinct draws, not one draw repeated. ``batch_size`` distinct prompts are
decoded together (left-padded when their lengths differ). Each batched run is seeded from ``seed`` and
the run's own prompts, so the same ``seed`` gives the same outputs and a task's outputs do not depend on
which other tasks run beside it. ``loglikelihood`` requests are refused: see `NO_LIKELIHOOD`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

try:
    from lm_eval.api.model import LM
except ImportError as error:  # pragma: no cover - the extra is part of the test install
    raise ImportError("dllm_mcmc.lm_eval_model needs lm-evaluation-harness: pip install 'dllm-mcmc[lm-eval]' "
                      "(from a clone: pip install -e '.[lm-eval]')") from error

from dllm_mcmc._checks import positive_int
from dllm_mcmc.denoisers.load import load_model, model_kind
from dllm_mcmc.eval.engine import Engine
from dllm_mcmc.eval.executors.threads import use_threads
from dllm_mcmc.eval.experiment import stable_seed
from dllm_mcmc.eval.methods import Method, generate_pack
from dllm_mcmc.mcmc.registry import get_sampler, samplers

if TYPE_CHECKING:
    from lm_eval.api.instance import Instance

logger = logging.getLogger(__name__)

MODEL_NAME = "dllm-mcmc"
"""The name lm-eval knows the model by (``--model dllm-mcmc``)."""

METHOD_KEYS = ("sampler", "rule", "temperature", "target_temperature", "warmup")
"""``model_args`` that are fields of `Method`; every other method key is one of its ``options``."""

LOAD_KEYS = ("dtype", "device", "mask_id", "kv_cache", "shift_logits")
"""``model_args`` passed to `dllm_mcmc.load_model` (``device`` also moves the bundled model)."""

OWN_KEYS = ("pretrained", "gen_length", "seed", "threads", "batch_size", "max_batch_size", *LOAD_KEYS)
"""``model_args`` of the model itself, beside the method's."""

ACCEPTED_KEYS = ("trust_remote_code",)
"""Accepted and unused: lm-eval's ``--trust_remote_code`` adds it; no code from a model directory runs here."""

MAX_TOKEN_KEYS = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")
"""lm-eval's names for the response length in ``gen_kwargs``, first found wins (its own priority)."""

DEFAULT_GEN_LENGTH = 256
"""The canvas when neither ``gen_length``, the model nor the request gives one (lm-eval's default
``max_gen_toks``)."""

NO_LIKELIHOOD = (
    "dllm-mcmc has no loglikelihood: a masked diffusion LM gives no exact log-likelihood of a continuation "
    "here (its chain-rule log p depends on the decoding order, and the ELBO is only a bound), so "
    "multiple-choice and perplexity tasks are not supported. Use generate_until tasks (output_type: "
    "generate_until)."
)


def parse_value(value: Any) -> Any:
    """A ``model_args`` value as lm-eval may hand it over (a string): booleans, ``None``, ints and floats
    parsed, anything else unchanged.

    >>> parse_value("true"), parse_value("None"), parse_value("8"), parse_value("0.5"), parse_value("imh")
    (True, None, 8, 0.5, 'imh')
    >>> parse_value(3), parse_value(" 1e-2 ")
    (3, 0.01)
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def allowed_options(sampler: str) -> tuple[str, ...]:
    """The option keys (beyond `METHOD_KEYS`) that ``sampler`` takes (from the registry: the rule's, the
    shared ones and the sampler's own).

    >>> "proposal_batch" in allowed_options("imh"), "proposal_batch" in allowed_options("decode")
    (True, False)
    >>> {"block_length", "max_rows", "likelihood"} <= set(allowed_options("power"))
    True
    """
    return get_sampler(sampler).option_names()


def method_from_args(args: dict[str, Any]) -> Method:
    """The `Method` of the method keys of ``model_args`` (values parsed by `parse_value`); ``ValueError``
    naming the key for an unknown key or a bad value.

    >>> method = method_from_args({"sampler": "imh", "target_temperature": "0.5", "proposal_batch": "4"})
    >>> method.sampler, method.target_temperature, method.warmup, method.options
    ('imh', 0.5, 7, {'proposal_batch': 4})
    >>> method_from_args({"sampler": "decode", "proposal_batch": 4})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: model_args: proposal_batch is not a key of dllm-mcmc with sampler='decode' (its method keys: ...)
    """
    config = {key: parse_value(value) for key, value in args.items()}
    sampler = config.get("sampler", "decode")
    if isinstance(sampler, str) and sampler in samplers():
        known = (*METHOD_KEYS, *allowed_options(sampler))
        unknown = [key for key in config if key not in known]
        if unknown:
            raise ValueError(f"model_args: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
                             f"{'a key' if len(unknown) == 1 else 'keys'} of {MODEL_NAME} with sampler={sampler!r} "
                             f"(its method keys: {', '.join(known)}; the model's: {', '.join(OWN_KEYS)})")
    try:
        method = Method.from_config({"name": MODEL_NAME, **config})
    except ValueError as error:
        raise ValueError(f"model_args: {str(error).removeprefix(f'method {MODEL_NAME!r}: ')}") from None
    return method


def stop_sequences(gen_kwargs: dict[str, Any]) -> list[str]:
    """The non-empty stop strings of a request's ``until`` (a string or a list of them).

    >>> stop_sequences({"until": "."}), stop_sequences({"until": ["\\n", ""]}), stop_sequences({})
    (['.'], ['\\n'], [])
    """
    until = gen_kwargs.get("until") or []
    if isinstance(until, str):
        until = [until]
    if not isinstance(until, (list, tuple)) or not all(isinstance(stop, str) for stop in until):
        raise ValueError(f"gen_kwargs: until must be a string or a list of strings, got {until!r}")
    return [stop for stop in until if stop]


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string (the stop itself dropped), as lm-eval's own
    models return it.

    >>> cut_at_stop("5*3=15,7+15=22.junk", ["."]), cut_at_stop("a\\nb.c", [".", "\\n"]), cut_at_stop("abc", [])
    ('5*3=15,7+15=22', 'a', 'abc')
    """
    cut = len(text)
    for stop in until:
        found = text.find(stop)
        if found != -1:
            cut = min(cut, found)
    return text[:cut]


def request_length(gen_kwargs: dict[str, Any]) -> int | None:
    """The response length a request asks for (``max_gen_toks`` or an alias), or ``None``.

    >>> request_length({"until": ["."], "max_gen_toks": 16}), request_length({"max_new_tokens": "8"})
    (16, 8)
    """
    for key in MAX_TOKEN_KEYS:
        if gen_kwargs.get(key) is not None:
            return positive_int(f"gen_kwargs: {key}", parse_value(gen_kwargs[key]))
    return None


def pack_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from ``seed`` and the settings and prompts of one batched run (stable across
    processes and platforms; the same inputs give the same seed).

    >>> pack_seed(0, 16, ["1+2="]) == pack_seed(0, 16, ["1+2="]) != pack_seed(1, 16, ["1+2="])
    True
    """
    return stable_seed(json.dumps([seed, *parts], sort_keys=True, default=str))


@dataclass
class _Group:
    """One request and its ``n`` copies (lm-eval's ``repeats``): drawn together, ``n`` samples."""

    context: str
    gen_kwargs: dict
    indices: list[int] = field(default_factory=list)


class DllmMcmcLM(LM):
    """An lm-eval model that answers ``generate_until`` requests with a dllm-mcmc decoder or kernel.

    Args:
        pretrained: a bundled model (``tasks-small``) or a local model directory (LLaDA, Dream, WeDLM,
            a transformers masked LM), as `dllm_mcmc.load_model` takes it.
        gen_length: the response canvas of every request. Default: the model's own (the bundled model's
            trained length), else the request's ``max_gen_toks``, else 256.
        seed: base seed of the draws (default 0): the same seed gives the same outputs.
        threads: torch threads (default 1 on a CPU; on a GPU torch's own setting is kept).
        batch_size: distinct prompts decoded in one batched run, each with its ``n`` samples (default 1;
            ``"auto"``: every prompt of the same length and ``n``, at most ``max_batch_size``).
        max_batch_size: the cap of ``batch_size="auto"``.
        dtype, device, mask_id, kv_cache, shift_logits: loading options (`dllm_mcmc.load_model`); the
            bundled model takes ``device`` only (it is moved there after loading). ``device`` defaults to
            CUDA when available; an unavailable CUDA device (lm-eval's command line passes ``cuda:0``
            unless told) falls back to the CPU with a warning.
        method_args: the method: ``sampler``, ``rule``, ``temperature``, ``target_temperature``,
            ``warmup`` and the options of that sampler (`allowed_options`), as in an evaluation config.

    Example:
        >>> lm = DllmMcmcLM(pretrained="tasks-small", sampler="imh", target_temperature=0.5,
        ...                 warmup=2)  # doctest: +SKIP
    """

    def __init__(self, pretrained: str = "tasks-small", gen_length: int | str | None = None, seed: int | str = 0,
                 threads: int | str | None = None, batch_size: int | str | None = 1,
                 max_batch_size: int | str | None = None, dtype: str | None = None, device: str | None = None,
                 **method_args: Any) -> None:
        super().__init__()
        accepted = [key for key in method_args if key in ACCEPTED_KEYS]
        for key in accepted:
            method_args.pop(key)
        load_options = {key: parse_value(method_args.pop(key)) for key in LOAD_KEYS if key in method_args}
        self.method = method_from_args(method_args)
        self.pretrained = str(pretrained)
        self.seed = parse_value(seed)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"model_args: seed must be an integer, got {seed!r}")
        length = parse_value(gen_length)
        self.gen_length = None if length is None else positive_int("model_args: gen_length", length)
        self.batch_size, self.max_batch_size = _batch_sizes(batch_size, max_batch_size)
        self.kind = model_kind(self.pretrained)
        self._device = _resolve_device(None if device is None else str(device))
        if self.kind == "small":
            # the bundled model loads in float32 on the CPU and is moved after: load_model refuses device
            # (and names any other loading option it does not take)
            denoiser, codec = load_model(self.pretrained, dtype=dtype, **load_options)
            if self._device.type != "cpu":
                denoiser = denoiser.to(self._device)  # type: ignore[attr-defined]
        else:
            denoiser, codec = load_model(self.pretrained, dtype=dtype, device=self._device, **load_options)
        self.denoiser, self.codec = denoiser, codec
        threads = parse_value(threads)
        if threads is not None:
            use_threads(positive_int("model_args: threads", threads))
        elif self._device.type == "cpu":
            use_threads(1)  # torch's default oversubscribes small and shared machines
        self._templated = False
        self._occurrences: dict[str, int] = {}

    # --- lm-eval's interface -----------------------------------------------------------------------------

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> DllmMcmcLM:
        """The model from ``--model_args`` as text (``key=value,key=value``); see `create_from_arg_obj`."""
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict | None = None) -> DllmMcmcLM:
        """The model from ``model_args`` and lm-eval's ``batch_size``, ``max_batch_size`` and ``device``
        (``additional_config``). A key given in ``model_args`` wins: lm-eval's command line always passes
        ``batch_size=1`` and ``device=cuda:0`` unless told, which would otherwise collide with them."""
        extra = {key: value for key, value in (additional_config or {}).items()
                 if value is not None and key not in arg_dict}
        return cls(**arg_dict, **extra)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """One completion per request, cut at its first stop string (``until``). The copies of one request
        (lm-eval's ``repeats``) are drawn as ``n`` samples of one run; ``batch_size`` distinct requests
        of the same response length and ``n`` share a run."""
        from tqdm import tqdm

        groups: dict[tuple, _Group] = {}
        for index, request in enumerate(requests):
            context, gen_kwargs = request.args[0], dict(request.args[1] or {})
            if not isinstance(context, str) or len(request.args) > 2:
                raise ValueError(f"{MODEL_NAME}: a generate_until request must be text alone (context, gen_kwargs); "
                                 f"multimodal requests are not supported")
            key = (getattr(request, "task_name", None), getattr(request, "doc_id", None),
                   getattr(request, "idx", None), context, json.dumps(gen_kwargs, sort_keys=True, default=str))
            groups.setdefault(key, _Group(context, gen_kwargs)).indices.append(index)
        self._warn_ignored(groups.values())
        buckets: dict[tuple[int, int], list[_Group]] = {}
        for group in groups.values():
            buckets.setdefault((self.response_length(group.gen_kwargs), len(group.indices)), []).append(group)
        results: list[str | None] = [None] * len(requests)
        with tqdm(total=len(requests), desc=MODEL_NAME, disable=disable_tqdm or self.rank != 0) as bar:
            for (length, samples), members in buckets.items():
                engine = Engine(self.pretrained, self.denoiser, length, self.codec.encode, self.codec.decode)
                prompts = [self.encode(group.context) for group in members]
                order = sorted(range(len(members)), key=lambda i: -int(prompts[i].shape[-1]))  # stable
                size = len(order) if isinstance(self.batch_size, str) else self.batch_size  # "auto": all
                size = min(size, self.max_batch_size or size)
                for start in range(0, len(order), size):
                    pack = order[start:start + size]
                    self._run_pack([members[i] for i in pack], [prompts[i] for i in pack], engine, samples,
                                   results)
                    bar.update(samples * len(pack))
        assert all(result is not None for result in results)
        return [result for result in results if result is not None]

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """Refused: see `NO_LIKELIHOOD`."""
        raise NotImplementedError(NO_LIKELIHOOD)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        """Refused: see `NO_LIKELIHOOD`."""
        raise NotImplementedError(NO_LIKELIHOOD)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """lm-eval's ``--apply_chat_template``: the tokenizer's chat template over ``chat_history``; the
        prompts are then encoded without adding special tokens (the template holds them)."""
        tokenizer = self.codec.tokenizer
        if self.kind == "small" or not getattr(tokenizer, "chat_template", None):
            raise ValueError(f"{MODEL_NAME}: {self.pretrained!r} has no chat template; run without "
                             f"--apply_chat_template")
        self._templated = True
        return str(tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                 add_generation_prompt=add_generation_prompt))

    @property
    def tokenizer_name(self) -> str:
        """Fingerprint of the tokenizer for lm-eval's request cache."""
        return self.pretrained.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The tokenizer's chat template (empty for a model without one)."""
        return getattr(self.codec.tokenizer, "chat_template", None) or ""

    def get_model_info(self) -> dict:
        """What lm-eval records in ``results["config"]``: the method's settings, the seed and lengths."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("dllm-mcmc")
        except PackageNotFoundError:  # run from a source tree that was never installed
            installed = "unknown"
        return {"dllm_mcmc_version": installed, "dllm_mcmc_method": self.method.spec(),
                "dllm_mcmc_seed": self.seed, "dllm_mcmc_gen_length": self.gen_length,
                "dllm_mcmc_model_kind": self.kind}

    # --- ours --------------------------------------------------------------------------------------------

    def response_length(self, gen_kwargs: dict[str, Any]) -> int:
        """The canvas of a request: ``gen_length``, else the model's own, else ``max_gen_toks``, else 256."""
        if self.gen_length is not None:
            return self.gen_length
        if self.codec.gen_length is not None:
            return int(self.codec.gen_length)
        return request_length(gen_kwargs) or DEFAULT_GEN_LENGTH

    def encode(self, text: str) -> torch.Tensor:
        """``[P]`` prompt ids of a context as lm-eval hands it over: the bundled model's codec (its padding);
        a transformers tokenizer as is, with its special tokens unless lm-eval applied the chat template."""
        if self.kind == "small":
            return self.codec.encode(text)
        tokenizer = self.codec.tokenizer
        if tokenizer is None:
            raise ValueError(f"{MODEL_NAME}: {self.pretrained!r} has no tokenizer saved beside the weights")
        return torch.tensor(tokenizer(text, add_special_tokens=not self._templated)["input_ids"])

    def _run_pack(self, groups: list[_Group], prompts: list[torch.Tensor], engine: Engine, samples: int,
                  results: list[str | None]) -> None:
        stops = [stop_sequences(group.gen_kwargs) for group in groups]
        fingerprint = json.dumps([engine.gen_length, samples, [group.context for group in groups]])
        occurrence = self._occurrences.get(fingerprint, 0)  # the same prompts again: a fresh seed
        self._occurrences[fingerprint] = occurrence + 1
        seed = pack_seed(self.seed, fingerprint, occurrence)
        answer_of = [lambda text, until=until: cut_at_stop(text, until).strip() or None for until in stops]
        tokens, _ = generate_pack(self.method, engine, prompts, samples, seed, answer_of)
        for group, until, rows in zip(groups, stops, tokens):
            for index, row in zip(group.indices, rows):
                text = cut_at_stop(self.codec.decode(row.tolist()), until)
                results[index] = text
                self.cache_hook.add_partial("generate_until", (group.context, group.gen_kwargs), text)

    def _warn_ignored(self, groups: Any) -> None:
        ignored = sorted({key for group in groups for key in group.gen_kwargs
                          if key not in ("until", *MAX_TOKEN_KEYS)})
        if ignored:
            logger.warning("%s: gen_kwargs %s ignored: the sampler and its temperatures come from model_args "
                           "(sampler=%s, temperature=%s)", MODEL_NAME, ", ".join(ignored), self.method.sampler,
                           self.method.temperature)


def _batch_sizes(batch_size: Any, max_batch_size: Any) -> tuple[int | str, int | None]:
    size = parse_value(batch_size)
    if size is None:
        size = 1
    if isinstance(size, str) and size.startswith("auto"):
        size = "auto"  # lm-eval's "auto:N" (recompute N times) means nothing here: one size fits
    elif not isinstance(size, str):
        size = positive_int("model_args: batch_size", size)
    else:
        raise ValueError(f"model_args: batch_size must be a positive integer or 'auto', got {batch_size!r}")
    cap = parse_value(max_batch_size)
    return size, None if cap is None else positive_int("model_args: max_batch_size", cap)


def _resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        logger.warning("%s: device %s is not available; running on the CPU", MODEL_NAME, device)
        return torch.device("cpu")
    return resolved


def register() -> None:
    """Register `DllmMcmcLM` with lm-eval as ``dllm-mcmc`` (done on import; repeating it is harmless).

    lm-eval fills its registry with its own models on first lookup only while the registry is empty,
    so those are registered first: ``--model hf`` keeps working beside ours."""
    import lm_eval.models  # noqa: F401  (its own models' lazy entries)
    from lm_eval.api.registry import model_registry

    if model_registry.get(MODEL_NAME, None) is not DllmMcmcLM:
        model_registry.register(MODEL_NAME)(DllmMcmcLM)


def main(argv: Sequence[str] | None = None) -> None:
    """lm-eval's own command line (``lm_eval ...``, every flag of it) with ``dllm-mcmc`` registered."""
    from lm_eval.__main__ import cli_evaluate

    register()
    if argv is not None:
        sys.argv = ["lm-eval", *argv]
    cli_evaluate()


if __name__ == "__main__":
    # run as a script this file is `__main__`: the registered class must be the importable one
    from dllm_mcmc.lm_eval_model import main as _main

    _main()
else:
    register()
