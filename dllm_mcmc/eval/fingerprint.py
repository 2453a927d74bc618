"""`model_fingerprint`: a cheap identity of a model's weights, for the settings hash of the results file.

A model's name says which directory was loaded, not what was in it: retraining into the same directory,
or copying other weights over it, keeps the name. The fingerprint is a sha256 over the directory's
``config.json`` and, for each weight file (``*.safetensors``, ``*.bin``, ``*.pt``, in name order), its
name, its size and the sha256 of its first MiB (a safetensors file's header, with every tensor's name,
dtype, shape and offsets, and the first block of data). It reads about 1 MiB per weight file, so it takes
milliseconds even for a 16 GB checkpoint. It does not see a change beyond the first MiB of a weight file
that keeps every file's size; retrained weights change the first block too.

>>> fingerprint = model_fingerprint("tasks-small")
>>> len(fingerprint), fingerprint == model_fingerprint("tasks-small")
(64, True)
>>> model_fingerprint("no/such/model")        # neither a bundled name nor a directory: the name itself
'no/such/model'
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from dllm_mcmc.small_model import small_model_dir

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
HEAD_BYTES = 1 << 20


def model_directory(name_or_path: str | Path) -> Path | None:
    """The directory of a bundled model name or of a model directory (one with a ``config.json``)."""
    directory = small_model_dir(name_or_path)
    if directory is not None:
        return directory
    path = Path(name_or_path)
    return path if (path / "config.json").is_file() else None


def model_fingerprint(name_or_path: str | Path) -> str:
    """sha256 hex of ``config.json`` and each weight file's name, size and first MiB; for something that is
    neither a bundled name nor a model directory (an engine given by a test), ``str(name_or_path)``."""
    directory = model_directory(name_or_path)
    if directory is None:
        return str(name_or_path)
    digest = hashlib.sha256(b"config.json\0" + (directory / "config.json").read_bytes())
    weights = sorted(p for p in directory.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    for weight in weights:
        with weight.open("rb") as handle:
            head = hashlib.sha256(handle.read(HEAD_BYTES)).hexdigest()
        digest.update(f"\n{weight.name}\0{weight.stat().st_size}\0{head}".encode())
    return digest.hexdigest()
