"""`load_model`: one loader for every kind of model, returning a `Denoiser` and its `TextCodec`.

Three kinds load offline, told apart by `model_kind`:

- ``"small"``: a bundled model name (``tasks-small``) or a directory written by
  `dllm_mcmc.small_model.train` (character tokenizer, prompts left-padded to the trained prompt
  length, response length from training);
- ``"native"``: a LLaDA, Dream or WeDLM checkpoint directory, read natively from its safetensors
  (`dllm_mcmc.denoisers.native`; no code from the directory runs);
- ``"transformers"``: any other directory with a ``config.json``, through
  `HFDenoiser.from_pretrained` (an ``AutoModelForMaskedLM``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from dllm_mcmc.denoisers.base import Denoiser
from dllm_mcmc.denoisers.codec import TextCodec, transformers_codec
from dllm_mcmc.denoisers.native import NativeDenoiser, is_native_checkpoint, load_native, read_config
from dllm_mcmc.small_model import bundled_models, load_small_model, small_model_dir

if TYPE_CHECKING:
    from dllm_mcmc.denoisers.hf import HFDenoiser

NATIVE_OPTIONS = frozenset({"mask_id", "kv_cache"})


class LoadedModel(NamedTuple):
    """What `load_model` returns: unpack it as ``denoiser, codec = load_model(...)``."""

    denoiser: Denoiser
    codec: TextCodec


def model_kind(name_or_path: str | Path) -> str | None:
    """``"small"``, ``"native"``, ``"transformers"``, or ``None`` when ``name_or_path`` is neither a
    bundled name nor a model directory.

    >>> model_kind("tasks-small"), model_kind("no/such/dir")
    ('small', None)
    """
    if small_model_dir(name_or_path) is not None:
        return "small"
    path = Path(name_or_path)
    if is_native_checkpoint(path):
        return "native"
    if (path / "config.json").is_file():
        return "transformers"
    return None


def load_model(
    name_or_path: str | Path,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    **options: Any,
) -> LoadedModel:
    """Load a model by bundled name or local path as ``(denoiser, codec)``.

    Args:
        name_or_path: a bundled model (``"tasks-small"``), a trained small-model directory, a LLaDA, Dream
            or WeDLM directory (native), or a transformers masked-LM directory.
        dtype: parameter dtype (or its name, ``"bfloat16"``); ``None``: as stored. Native and
            transformers directories only (the bundled model runs in float32).
        device: where the parameters go (``None``: CPU).
        options: further options of `HFDenoiser.from_pretrained` (``shift_logits``, ``mask_id``) for
            transformers directories; ``mask_id`` (any native directory) and ``kv_cache`` (WeDLM) of
            `load_native` for native ones; refused for the small model.

    Nothing is downloaded. Raises ``ValueError`` naming the path and the bad option.

    Example:
        >>> denoiser, codec = load_model("tasks-small")
        >>> denoiser.vocab_size, codec.gen_length, codec.config["prompt_length"]
        (26, 16, 20)
        >>> llada, codec = load_model("/models/LLaDA-8B-Instruct", dtype="bfloat16", device="cuda")  # doctest: +SKIP
    """
    kind = model_kind(name_or_path)
    if kind is None:
        raise ValueError(f"model {str(name_or_path)!r} is neither a bundled model ({', '.join(bundled_models())}) "
                         f"nor a local model directory with a config.json")
    if kind == "small":
        if dtype is not None or device is not None or options:
            given = [k for k, v in (("dtype", dtype), ("device", device)) if v is not None] + sorted(options)
            raise ValueError(f"{', '.join(given)}: not options of the small model {str(name_or_path)!r} "
                             f"(it runs in float32 on the CPU; move it with .to() after loading)")
        small_dir = small_model_dir(name_or_path)
        if small_dir is None:  # its config.json changed since model_kind read it
            raise ValueError(f"model {str(name_or_path)!r} is no longer a small-model directory")
        model, tokenizer, config = load_small_model(small_dir)
        prompt_length = config["prompt_length"]
        codec = TextCodec(lambda text: torch.tensor(tokenizer.encode_prompt(text, prompt_length)),
                          tokenizer.decode, tokenizer, config["response_length"], config)
        return LoadedModel(model, codec)
    path = Path(name_or_path)
    denoiser: NativeDenoiser | HFDenoiser
    if kind == "native":
        unknown = sorted(set(options) - NATIVE_OPTIONS)
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not options of the native directory {str(path)!r} "
                             f"(it takes dtype, device, {', '.join(sorted(NATIVE_OPTIONS))})")
        denoiser = load_native(path, dtype=dtype, device=device, **options)
    else:
        from dllm_mcmc.denoisers.hf import HFDenoiser

        if isinstance(dtype, str):
            dtype = _torch_dtype(dtype)
        denoiser = HFDenoiser.from_pretrained(path, dtype=dtype, **options)
        if device is not None:
            denoiser.model.to(device)
    return LoadedModel(denoiser, transformers_codec(denoiser.tokenizer, denoiser.eos_id, read_config(path),
                                                    name=str(path)))


def _torch_dtype(name: str) -> torch.dtype:
    named = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(named, torch.dtype) or not named.is_floating_point:
        raise ValueError(f"dtype: {name!r} is not a torch floating dtype")
    return named
