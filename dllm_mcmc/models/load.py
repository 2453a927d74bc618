"""Load a model as a `Denoiser`: the bundled small model, a trained small-model directory, or a
LLaDA / Dream checkpoint directory (read natively, `dllm_mcmc.models.native`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .native import NativeDenoiser, is_native_checkpoint, load_native, read_config
from .small import CharTokenizer, SmallConfig, SmallDLM

BUNDLED = Path(__file__).parent / "bundled"


def bundled_models() -> list[str]:
    """Names of the models that ship inside the package."""
    return sorted(p.name for p in BUNDLED.iterdir() if (p / "model.safetensors").is_file())


def model_kind(name_or_path: str | Path) -> str | None:
    """``"small"`` (a bundled name or a directory written by `train`), ``"native"`` (LLaDA / Dream),
    ``"transformers"`` (any other directory with a ``config.json``) or ``None``.

    >>> model_kind("tasks-small"), model_kind("no/such/dir")
    ('small', None)
    """
    if str(name_or_path) in bundled_models():
        return "small"
    path = Path(name_or_path)
    if is_native_checkpoint(path):
        return "native"
    if not (path / "config.json").is_file():
        return None
    return "small" if "alphabet" in read_config(path) else "transformers"


def load_model(
    name_or_path: str | Path,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> tuple[SmallDLM | NativeDenoiser, Any, dict]:
    """A bundled model by name (offline, from the package), or a trained or LLaDA / Dream directory by path.

    A directory whose ``config.json`` names LLaDA (``model_type: "llada"``) or Dream
    (``model_type: "Dream"``) gives ``(NativeDenoiser, its transformers tokenizer or None, the
    config.json dict)``, in ``dtype`` (default: as stored) on ``device`` (default: CPU); no code in the
    directory runs. ``dtype`` and ``device`` apply to those directories only.

    Example:
        >>> model, tokenizer, config = load_model("tasks-small")
        >>> model.vocab_size, config["response_length"]
        (26, 16)
        >>> denoiser, tokenizer, config = load_model("/models/Dream-v0-Instruct-7B", device="cuda")  # doctest: +SKIP
    """
    kind, path = model_kind(name_or_path), Path(name_or_path)
    if kind == "native":
        denoiser = load_native(path, dtype=dtype, device=device)
        return denoiser, denoiser.tokenizer, read_config(path)
    if dtype is not None or device is not None:
        raise ValueError(f"dtype, device: options of LLaDA / Dream directories, not of {str(name_or_path)!r}")
    if kind == "transformers":
        raise ValueError(f"{name_or_path!r} is a transformers model directory: load it with "
                         f"HFDenoiser.from_pretrained")
    if str(name_or_path) in bundled_models():
        return load_small_model(BUNDLED / str(name_or_path))
    if path.is_dir():
        return load_small_model(path)
    raise ValueError(
        f"{name_or_path!r} is neither a bundled model ({', '.join(bundled_models())}) nor a model directory"
    )


def load_small_model(path: str | Path) -> tuple[SmallDLM, CharTokenizer, dict]:
    """``(model in eval mode, tokenizer, config dict)`` from a directory written by `train`.

    Example:
        >>> model, tokenizer, config = load_small_model("runs/small")   # doctest: +SKIP
    """
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise ValueError(f"path: {path} has no config.json and model.safetensors")
    config = json.loads((path / "config.json").read_text())
    tokenizer = CharTokenizer(config["alphabet"])
    model = SmallDLM(SmallConfig(**config["architecture"]), tokenizer.mask_id, tokenizer.eos_id, tokenizer.pad_id)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval(), tokenizer, config
