"""Read the bundled small model, or a directory written by `dllm_mcmc.small_model.train`."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from dllm_mcmc.small_model.model import CharTokenizer, SmallConfig, SmallDLM

BUNDLED = Path(__file__).parent / "bundled"


def bundled_models() -> list[str]:
    """Names of the models that ship inside the package.

    >>> bundled_models()
    ['tasks-small']
    """
    return sorted(p.name for p in BUNDLED.iterdir() if (p / "model.safetensors").is_file())


def small_model_dir(name_or_path: str | Path) -> Path | None:
    """The directory of a bundled name or of a trained small model (its ``config.json`` has an
    ``alphabet``), else ``None``."""
    if str(name_or_path) in bundled_models():
        return BUNDLED / str(name_or_path)
    path = Path(name_or_path)
    config = path / "config.json"
    if not config.is_file():
        return None
    try:
        return path if "alphabet" in json.loads(config.read_text()) else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def load_small_model(path: str | Path) -> tuple[SmallDLM, CharTokenizer, dict]:
    """``(model in eval mode, tokenizer, config dict)`` from a directory written by `train`.

    Example:
        >>> model, tokenizer, config = load_small_model(BUNDLED / "tasks-small")
        >>> config["prompt_length"], tokenizer.vocab_size
        (20, 26)
    """
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise ValueError(f"path: {path} has no config.json and model.safetensors")
    config = json.loads((path / "config.json").read_text())
    tokenizer = CharTokenizer(config["alphabet"])
    model = SmallDLM(SmallConfig(**config["architecture"]), tokenizer.mask_id, tokenizer.eos_id, tokenizer.pad_id)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval(), tokenizer, config
