"""An append-only JSONL file of evaluation records that survives interrupts and ``kill -9``.

Each line is one record: one sample of one problem under one method. The runner writes all samples of
a problem (a *unit*) with a single ``write`` of whole lines followed by ``fsync``, so an interrupted run
can leave at most one torn trailing line or one partly written unit. `RecordStore.open` repairs both:
it drops lines that do not parse and units with fewer records than expected, rewriting the file through
a temporary file and ``os.replace`` (atomic on POSIX), so a resumed run never duplicates a record.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "results.jsonl"
>>> store = RecordStore.open(path, samples_per_unit=2)
>>> store.append([{"unit": "u1", "sample": 0}, {"unit": "u1", "sample": 1}])
>>> _ = path.open("a").write('{"unit": "u2", "sam')     # a torn line, as after kill -9
>>> RecordStore.open(path, samples_per_unit=2).done_units()
{'u1'}
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path


def read_records(path: str | Path) -> list[dict]:
    """Every parseable record of a results file, in file order (torn lines are skipped)."""
    return _parse(Path(path).read_text(encoding="utf-8").splitlines(keepends=True))


def _parse(lines: list[str]) -> list[dict]:
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and line.endswith("\n"):
            records.append(record)
    return records


class RecordStore:
    """Records keyed by ``record["unit"]``; a unit is done when it holds ``samples_per_unit`` samples."""

    def __init__(self, path: Path, records: list[dict], samples_per_unit: int | None) -> None:
        self.path, self.records, self.samples_per_unit = path, records, samples_per_unit

    @classmethod
    def open(cls, path: str | Path, samples_per_unit: int | None = None) -> RecordStore:
        """Open (or create) ``path``, dropping torn lines and, given ``samples_per_unit``, unfinished units."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch()
            return cls(path, [], samples_per_unit)
        raw_lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        records = _parse(raw_lines)
        if samples_per_unit is not None:
            samples = defaultdict(set)
            for record in records:
                samples[record.get("unit")].add(record.get("sample"))
            records = [r for r in records if len(samples[r.get("unit")]) >= samples_per_unit]
        if len(records) != len(raw_lines):
            cls._rewrite(path, records)
        return cls(path, records, samples_per_unit)

    @staticmethod
    def _rewrite(path: Path, records: list[dict]) -> None:
        temporary = path.with_name(path.name + ".repair")
        with temporary.open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r, sort_keys=True) + "\n" for r in records)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def done_units(self) -> set[str]:
        """Units that hold all their samples."""
        return {r["unit"] for r in self.records if "unit" in r}

    def append(self, records: Iterable[dict]) -> None:
        """Append ``records`` with one ``write`` call and ``fsync`` them to disk."""
        records = list(records)
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode("utf-8")
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked (signals, pipes); finish the unit
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        self.records.extend(records)
