"""A model ready for evaluation: a `Denoiser` plus how to turn prompt text into ids and ids into text.

Three kinds load offline:

- a bundled model name or a directory written by ``dllm_mcmc.models.train`` (character tokenizer,
  prompt left-padded to the trained prompt length, response length from training);
- a LLaDA or Dream checkpoint directory, read natively (`dllm_mcmc.models.native.load_native`, options
  ``dtype`` and ``device``; no code from the directory runs);
- another transformers masked-LM directory (`HFDenoiser.from_pretrained`).

For the last two the prompt goes through the tokenizer's chat template when it has one, and
``gen_length`` must be given (no default suits every benchmark).

>>> engine = load_engine("tasks-small")
>>> engine.gen_length, engine.decode(engine.encode("7+5*3=")[-2:])
(16, '3=')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..denoisers.base import Denoiser


@dataclass(frozen=True)
class Engine:
    """``denoiser`` and the text codec the runner needs: ``encode(text) -> [P] ids``, ``decode(ids) -> text``."""

    name: str
    denoiser: Denoiser
    gen_length: int
    encode: Callable[[str], torch.Tensor]
    decode: Callable[[Sequence[int]], str]


def load_engine(model: str, gen_length: int | None = None, **hf_options) -> Engine:
    """Load ``model`` (a bundled name, a trained small-model directory, a LLaDA / Dream directory or a
    transformers directory).

    ``hf_options`` go to `load_native` for LLaDA / Dream (``dtype``, ``device``) and to
    `HFDenoiser.from_pretrained` otherwise (``shift_logits``, ``mask_id``, ``dtype``...).
    """
    from ..models.load import bundled_models, load_model, model_kind
    from ..models.native import load_native

    kind = model_kind(model)
    if kind is None:
        raise ValueError(f"model {model!r} is neither a bundled model ({', '.join(bundled_models())}) "
                         f"nor a local model directory")
    if kind == "small":
        if hf_options:
            raise ValueError(f"{', '.join(hf_options)}: options of transformers models, not of {model!r}")
        denoiser, tokenizer, config = load_model(model)
        prompt_length = config["prompt_length"]
        return Engine(model, denoiser, gen_length or config["response_length"],
                      lambda text: torch.tensor(tokenizer.encode_prompt(text, prompt_length)), tokenizer.decode)
    if gen_length is None:
        raise ValueError(f"gen_length: give the response length for the transformers model {model!r}")
    if kind == "native":
        unknown = sorted(set(hf_options) - {"dtype", "device"})
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not options of the LLaDA / Dream directory {model!r} "
                             f"(it takes dtype and device)")
        return _text_engine(model, load_native(model, **hf_options), gen_length)
    return _hf_engine(model, gen_length, hf_options)


def _hf_engine(model: str, gen_length: int, hf_options: dict) -> Engine:
    from ..denoisers.hf import HFDenoiser

    return _text_engine(model, HFDenoiser.from_pretrained(model, **hf_options), gen_length)


def _text_engine(model: str, denoiser, gen_length: int) -> Engine:
    """An engine around a denoiser that carries a transformers ``tokenizer``."""
    from .benchmarks import chat_prompt

    tokenizer = denoiser.tokenizer
    if tokenizer is None:
        raise ValueError(f"model {model!r}: no tokenizer saved beside the weights")
    templated = getattr(tokenizer, "chat_template", None) is not None

    def encode(text: str) -> torch.Tensor:
        # A chat template already holds the special tokens the model was tuned with.
        ids = tokenizer(chat_prompt(tokenizer, text), add_special_tokens=not templated)["input_ids"]
        return torch.tensor(ids)

    def decode(ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if denoiser.eos_id is not None and denoiser.eos_id in ids:
            ids = ids[: ids.index(denoiser.eos_id)]
        return tokenizer.decode(ids, skip_special_tokens=True)

    return Engine(model, denoiser, gen_length, encode, decode)
