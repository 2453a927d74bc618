"""Load a trained small model directory (``model.safetensors`` + ``config.json``) as a `Denoiser`."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from .small import CharTokenizer, SmallConfig, SmallDLM


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
