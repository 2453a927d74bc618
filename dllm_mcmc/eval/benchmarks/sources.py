"""Where benchmark records come from: local JSON / JSONL files (optionally gzipped) or the Hugging Face
hub through ``datasets``, and the helpers that read fields whose names differ between sources.

>>> str(HubSource("google-research-datasets/mbpp", "test", "full"))
'google-research-datasets/mbpp [full] split test'
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dllm_mcmc.eval.checking.checkers import EVAL_EXTRA_HINT

__all__ = ["HubSource", "hub_records", "load_records"]


def load_records(path: str | Path) -> list[dict]:
    """The records of a local data file: JSON (a list, or an object with a ``"data"`` list) or JSONL,
    either optionally gzipped (``.gz``).

    >>> import tempfile, pathlib
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "tiny.jsonl"
    >>> _ = file.write_text('{"problem": "1+1", "answer": "2"}\\n\\n{"problem": "2+2", "answer": "4"}\\n')
    >>> [record["answer"] for record in load_records(file)]
    ['2', '4']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {path}")
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        text = handle.read()
    stem = path.name.lower().removesuffix(".gz")
    if not stem.endswith(".jsonl"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            if stem.endswith(".json"):
                raise
            data = None  # an unknown suffix that is not one JSON document: try JSON lines
        if data is not None:
            if isinstance(data, dict) and isinstance(data.get("data"), list):
                data = data["data"]
            if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
                raise ValueError(f"{path}: expected a list of objects or {{\"data\": [...]}}")
            return data
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {number}: expected a JSON object")
            records.append(record)
    return records


@dataclass(frozen=True)
class HubSource:
    """One split of one hub dataset (``config`` for datasets that have several)."""

    repo: str
    split: str
    config: str | None = None

    def __str__(self) -> str:
        return self.repo + (f" [{self.config}]" if self.config else "") + f" split {self.split}"


def hub_records(benchmark: str, options: Sequence[Sequence[HubSource]], fields: str) -> list[dict]:
    """Records from the first of ``options`` that loads; each option concatenates its sources.

    Every record gains ``_source`` (its config, else repo) and ``_index`` (its row in that source),
    which the normalisers use for ids when a dataset has none.
    """
    hint = (f"pass path= to a local JSON or JSONL file of {benchmark} with the fields {fields} "
            f"(see docs/benchmarks.md)")
    try:
        import datasets
    except ImportError:
        raise RuntimeError(f"{benchmark} data is not bundled and the `datasets` package is not "
                           f"installed ({EVAL_EXTRA_HINT}); or {hint}") from None
    failures = []
    for option in options:
        try:
            records = []
            for source in option:
                rows = datasets.load_dataset(source.repo, source.config, split=source.split)
                for index, row in enumerate(rows):
                    records.append({**dict(row), "_source": source.config or source.repo, "_index": index})
            return records
        except Exception as error:  # noqa: BLE001 - offline, renamed or gated: try the next source
            failures.append(f"{' + '.join(map(str, option))}: {type(error).__name__}: {error}")
    raise RuntimeError(f"could not load {benchmark} from the hub ({'; '.join(failures)}); {hint}")


def _lower_keys(record: dict) -> dict:
    # Sources disagree on case ("Problem"/"problem", "ID"/"id"); the first spelling wins.
    out: dict = {}
    for key, value in record.items():
        out.setdefault(key.lower() if isinstance(key, str) else key, value)
    return out


def _first(record: dict, *keys: str, default: Any = None) -> Any:
    for key in keys:
        value = record.get(key)
        if value is not None and value != "":
            return value
    return default

