"""Load a trained small model directory (``model.safetensors`` + ``config.json``) as a `Denoiser`."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from .small import CharTokenizer, SmallConfig, SmallDLM

BUNDLED = Path(__file__).parent / "bundled"


def bundled_models() -> list[str]:
    """Names of the models that ship inside the package."""
    return sorted(p.name for p in BUNDLED.iterdir() if (p / "model.safetensors").is_file())


def load_model(name_or_path: str | Path) -> tuple[SmallDLM, CharTokenizer, dict]:
    """A bundled model by name (offline, from the package) or a trained directory by path.

    Example:
        >>> model, tokenizer, config = load_model("tasks-small")
        >>> model.vocab_size, config["response_length"]
        (26, 16)
    """
    if str(name_or_path) in bundled_models():
        return load_small_model(BUNDLED / str(name_or_path))
    path = Path(name_or_path)
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
