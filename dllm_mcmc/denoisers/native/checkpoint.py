"""Read a local safetensors checkpoint directory: ``config.json`` and one or several weight files.

Two layouts are read, the ones ``save_pretrained`` writes: a single ``model.safetensors``, or shards
``model-0000k-of-0000n.safetensors`` listed by ``model.safetensors.index.json`` (``weight_map``: tensor
name -> file). Nothing in the directory is executed, and tensors are read one at a time with
`safetensors.safe_open` straight onto the target device (on a GPU the dtype conversion happens
there), so peak host memory stays near one tensor.

Every problem is reported before any tensor is read, naming the tensor or file: a shard the index
names but the directory lacks, a tensor the architecture needs but the checkpoint lacks, a tensor the
checkpoint has but the architecture does not use, and a shape that differs from the configuration.

Example:
    >>> import tempfile
    >>> from safetensors.torch import save_file
    >>> folder = Path(tempfile.mkdtemp())
    >>> save_file({"w": torch.ones(2, 3)}, str(folder / "model.safetensors"))
    >>> tensors = load_tensors(folder, {"w": "weight"}, {"weight": (2, 3)}, dtype=torch.bfloat16)
    >>> tensors["weight"].dtype, tuple(tensors["weight"].shape)
    (torch.bfloat16, (2, 3))
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A checkpoint directory that does not hold what its architecture needs."""


def read_config(path: str | Path) -> dict:
    """The parsed ``config.json`` of a model directory."""
    file = Path(path) / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{path}: no config.json (not a local model directory)")
    config = json.loads(file.read_text())
    if not isinstance(config, dict):
        raise CheckpointError(f"{file}: expected a JSON object")
    return config


def refuse_unsupported(config: dict, refused: Sequence[tuple[str, tuple]], label: str) -> None:
    """Raise `CheckpointError` naming the first ``config`` field whose value is not among the accepted ones.

    ``refused`` holds ``(field, accepted values)``; ``None`` among them accepts an absent field.
    """
    for field, accepted in refused:
        if config.get(field) not in accepted:
            raise CheckpointError(f"{label} config: {field} = {config[field]!r} is not supported by the "
                                  f"native loader (supported: {[a for a in accepted if a is not None]})")


def tensor_files(path: str | Path) -> dict[str, Path]:
    """Tensor name -> the file holding it, from the index (sharded) or the single file's header."""
    path = Path(path)
    if (path / INDEX).is_file():
        weight_map = json.loads((path / INDEX).read_text()).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{path / INDEX}: no weight_map")
        files = {name: path / file for name, file in weight_map.items()}
        for file in sorted(set(files.values())):
            if not file.is_file():
                held = sorted(name for name, holder in files.items() if holder == file)
                raise CheckpointError(
                    f"{path}: shard {file.name} named by {INDEX} is missing "
                    f"(it holds {len(held)} tensors, e.g. {held[0]!r})"
                )
        return files
    if (path / SINGLE).is_file():
        with safe_open(str(path / SINGLE), framework="pt") as handle:
            return {name: path / SINGLE for name in handle.keys()}
    raise CheckpointError(f"{path}: no {SINGLE} and no {INDEX}")


def stored_dtype(path: str | Path, name: str) -> torch.dtype:
    """The dtype tensor ``name`` is stored in."""
    file = tensor_files(path).get(name)
    if file is None:
        raise CheckpointError(f"{path}: checkpoint has no tensor {name!r}")
    with safe_open(str(file), framework="pt") as handle:
        # A one-row slice tells the dtype without reading the tensor.
        return handle.get_slice(name)[:1].dtype


def load_tensors(
    path: str | Path,
    names: Mapping[str, str],
    shapes: Mapping[str, Sequence[int]],
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Read the tensors ``names`` maps (checkpoint name -> target name), checked against ``shapes``.

    Args:
        names: every tensor the checkpoint must hold, and the name to return it under.
        shapes: target name -> expected shape.
        dtype: convert floating tensors to it (``None``: as stored).
        device: where to put them (``None``: CPU).

    Raises:
        CheckpointError: missing shard or file, missing tensor, unexpected tensor, shape mismatch.
    """
    path = Path(path)
    files = tensor_files(path)
    missing = [name for name in names if name not in files]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks tensor {missing[0]!r}"
                              + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    unexpected = sorted(set(files) - set(names))
    if unexpected:
        raise CheckpointError(f"{path}: checkpoint has tensor {unexpected[0]!r} that the architecture does not use"
                              + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    by_file: dict[Path, list[str]] = {}
    for name in names:
        by_file.setdefault(files[name], []).append(name)
    # Check every shape before reading anything: a wrong config should fail in seconds, not after
    # 16 GB of reads.
    for file, held in by_file.items():
        with safe_open(str(file), framework="pt") as handle:
            present = set(handle.keys())
            for name in held:
                if name not in present:
                    raise CheckpointError(f"{file}: tensor {name!r} is listed in {INDEX} but not in this file")
                shape = tuple(handle.get_slice(name).get_shape())
                expected = tuple(shapes[names[name]])
                if shape != expected:
                    raise CheckpointError(f"{file.name}: tensor {name!r} has shape {list(shape)}, "
                                          f"the configuration needs {list(expected)}")
    device = torch.device("cpu") if device is None else torch.device(device)
    tensors = {}
    for file, held in by_file.items():
        with safe_open(str(file), framework="pt", device=str(device)) as handle:
            for name in held:
                tensor = handle.get_tensor(name)
                if dtype is not None and tensor.is_floating_point():
                    tensor = tensor.to(dtype)
                tensors[names[name]] = tensor
    return tensors
