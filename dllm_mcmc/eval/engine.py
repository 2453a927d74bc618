"""`Engine`: what the experiment runner needs of a model, built by the one loader
(`dllm_mcmc.denoisers.load.load_model`) plus the response length of the run.

>>> engine = load_engine("tasks-small")
>>> engine.gen_length, engine.decode(engine.encode("7+5*3=")[-2:])
(16, '3=')
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dllm_mcmc.denoisers.base import Denoiser
from dllm_mcmc.denoisers.load import load_model


@dataclass(frozen=True)
class Engine:
    """``denoiser`` and the text codec the runner needs: ``encode(text) -> [P] ids``, ``decode(ids) -> text``."""

    name: str
    denoiser: Denoiser
    gen_length: int
    encode: Callable[[str], torch.Tensor]
    decode: Callable[[Sequence[int]], str]


def load_engine(model: str, gen_length: int | None = None, **model_options: Any) -> Engine:
    """Load ``model`` with `load_model` (``model_options``: ``dtype``, ``device``, and the transformers
    options ``shift_logits``, ``mask_id``); ``gen_length`` defaults to the model's own (the bundled
    model's trained length) and must be given for the others."""
    denoiser, codec = load_model(model, **model_options)
    if codec.tokenizer is None:
        raise ValueError(f"model {model!r}: no tokenizer saved beside the weights")
    length = gen_length or codec.gen_length
    if length is None:
        raise ValueError(f"gen_length: give the response length for the model {model!r}")
    return Engine(model, denoiser, length, codec.encode, codec.decode)
