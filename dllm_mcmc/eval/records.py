"""An append-only JSONL file of evaluation records that survives interrupts and ``kill -9`` and is never
overwritten, mixed or shared by accident.

Each line is one record: one sample of one problem under one method (a dict with at least ``unit``, a
string, and ``sample``, an int). The runner writes all samples of a problem (a *unit*) with a single
``write`` of whole lines followed by ``fsync``, so an interrupted run can leave at most one torn trailing
line or one partly written unit. Beside the records, the runner's file holds one *settings line* per
(method, task) pair, ``{"kind": "settings", "method", "task", "config_hash", "settings": {...}}``, written
in the same ``write`` as the pair's first unit: the values its ``config_hash`` covers, so that a changed
setting can be named.

`RecordStore.open` takes an exclusive lock (``fcntl.flock`` on a sidecar ``PATH.lock``, removed on
`RecordStore.close`), then checks the file and refuses it, untouched, when

- it is not a results file: a non-empty file in which some JSON line is not a record or settings line
  (a dataset JSONL, a config), or no line is (a README);
- its records of a (method, task) pair about to be run were made with other settings (the message names
  each setting that differs, read from the settings line);
- it holds a ``(unit, sample)`` twice, a unit with more samples than expected, or more than one unit with
  fewer (a run with another sample count; an interrupted run leaves one at most).

Only then does it repair what an interrupt leaves: it drops the torn last line and the one unfinished
unit, rewriting the file through a temporary file and ``os.replace`` (atomic on POSIX), so a resumed run
never duplicates a record. Lines that are not valid UTF-8 or JSON elsewhere in the file are skipped with
a warning and left where they are.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "results.jsonl"
>>> with RecordStore.open(path, samples_per_unit=2) as store:
...     store.append([{"unit": "u1", "sample": 0}, {"unit": "u1", "sample": 1}])
>>> _ = path.open("a").write('{"unit": "u2", "sam')     # a torn line, as after kill -9
>>> with RecordStore.open(path, samples_per_unit=2) as store:
...     store.done_units()
{'u1'}
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SETTINGS_KIND = "settings"
RUNNER_KEYS = ("unit", "config_hash", "method", "task", "problem", "sample")
"""The keys every record of ``dllm-mcmc eval`` carries (and a results file of the runner must hold)."""


class ResultsFileError(ValueError):
    """A results file refused, untouched: not a results file, other settings, duplicates, sample counts."""


class OutputLocked(ResultsFileError):
    """Another process (or another open store) is writing the results file."""


class UnreadableLinesWarning(UserWarning):
    """Lines of a results file that are not valid UTF-8 or JSON, or a torn last line, were skipped."""


@dataclass(frozen=True)
class RunSettings:
    """What produces the records of one (method, task) pair: their ``config_hash`` and the values it covers.

    ``values`` must be JSON-serialisable; they are written once into the file (the settings line) so
    that a later run with other settings can be told which ones differ.
    """

    method: str
    task: str
    config_hash: str
    values: dict

    def line(self) -> dict:
        return {"kind": SETTINGS_KIND, "method": self.method, "task": self.task, "config_hash": self.config_hash,
                "settings": self.values}


def read_records(path: str | Path) -> list[dict]:
    """Every record of a results file, in file order, without its settings lines.

    Unreadable lines (invalid UTF-8, not JSON, a torn last line) are skipped with one warning. A file that
    is not a results file, or that holds a ``(unit, sample)`` twice, is refused with ``ValueError``.
    """
    contents = _Contents.read(Path(path))
    contents.refuse_foreign(strict=False)
    contents.warn_skipped(stacklevel=3)
    contents.refuse_duplicates()
    return contents.records()


class RecordStore:
    """Records keyed by ``record["unit"]``; a unit is done when it holds ``samples_per_unit`` samples.

    Open it with `RecordStore.open`; it holds the output's lock until `close` (or the end of a ``with``).
    """

    def __init__(self, path: Path, records: list[dict], samples_per_unit: int | None,
                 settings: dict[tuple[str, str], RunSettings], declared: set[str], lock: _Lock | None) -> None:
        self.path, self.records, self.samples_per_unit = path, records, samples_per_unit
        self._settings, self._declared, self._lock = settings, declared, lock
        self._keys = {(r["unit"], r["sample"]) for r in records}

    @classmethod
    def open(cls, path: str | Path, samples_per_unit: int | None = None,
             settings: Iterable[RunSettings] | None = None) -> RecordStore:
        """Lock ``path``, check it and repair what an interrupt left; the file is created by the first append.

        Args:
            path: the results file (its folder is created).
            samples_per_unit: samples of a finished unit; a unit with fewer is the one an interrupt cut short
                (dropped; more than one such unit is refused), one with more is refused.
            settings: the runner's (method, task) pairs about to be run: their records in the file must carry
                the same ``config_hash`` (else refused, naming what differs), every record must carry
                `RUNNER_KEYS`, and the first unit appended of a pair brings its settings line.

        Raises:
            OutputLocked: another process (or an open store) is writing ``path``.
            ResultsFileError: the file is refused (the message names it and the reason); it is untouched.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise ResultsFileError(f"{path} is a directory, not a results file")
        wanted = {(s.method, s.task): s for s in settings or ()}
        lock = _Lock.acquire(path)
        try:
            contents = _Contents.read(path) if path.exists() else _Contents(path, [], [], [])
            contents.refuse_foreign(strict=settings is not None)
            contents.warn_skipped(stacklevel=3)
            contents.refuse_other_settings(wanted)
            contents.refuse_duplicates()
            unfinished = contents.unfinished_unit(samples_per_unit, wanted)
            contents.repair(unfinished)
        except BaseException:
            lock.release()
            raise
        records = [r for r in contents.records() if r["unit"] != unfinished]
        declared = {contents.values[i]["config_hash"] for i in contents.indices(SETTINGS_KIND)}
        return cls(path, records, samples_per_unit, wanted, declared, lock)

    def close(self) -> None:
        """Release the lock (a closed store cannot append)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:  # a store dropped without close() still frees the output
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def done_units(self) -> set[str]:
        """Units that hold all their samples."""
        return {r["unit"] for r in self.records}

    def append(self, records: Iterable[dict]) -> None:
        """Append ``records`` (with the settings line of a pair new to the file) with one ``write`` call and
        ``fsync`` them to disk. A record that repeats a ``(unit, sample)`` of the file is refused, unwritten."""
        if self._lock is None:
            raise ValueError(f"the store of {self.path} is closed")
        records = list(records)
        keys = [(r.get("unit"), r.get("sample")) for r in records]
        repeated = [key for key in keys if key in self._keys] or [k for k, c in Counter(keys).items() if c > 1]
        if repeated:
            raise ValueError(f"{self.path}: unit {repeated[0][0]!r} sample {repeated[0][1]!r} would be written twice")
        lines, declared = [], set[str]()
        for record in records:
            run = self._settings.get((str(record.get("method")), str(record.get("task"))))
            if run is not None and record.get("config_hash") == run.config_hash \
                    and run.config_hash not in self._declared | declared:
                lines.append(json.dumps(run.line(), sort_keys=True) + "\n")
                declared.add(run.config_hash)
            lines.append(json.dumps(record, sort_keys=True) + "\n")
        data = "".join(lines).encode("utf-8")
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked (signals, pipes); finish the unit
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        self.records.extend(records)
        self._keys.update(keys)
        self._declared |= declared


class _Lock:
    """An exclusive, non-blocking ``flock`` on ``PATH.lock`` (the holder's pid inside); removed on release."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path, self.descriptor = path, descriptor

    @classmethod
    def acquire(cls, output: Path) -> _Lock:
        path = output.with_name(output.name + ".lock")
        for _ in range(100):
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                raise OutputLocked(f"another process is writing {output} ({_holder(path)} holds {path}); "
                                   "wait for it to finish, or write to another output") from None
            except BaseException:
                os.close(descriptor)
                raise
            try:  # the holder before us removes the file on release: a lock on a removed file locks nothing
                held = os.stat(path)
                ours = os.fstat(descriptor)
                current = (held.st_dev, held.st_ino) == (ours.st_dev, ours.st_ino)
            except FileNotFoundError:
                current = False
            if current:
                os.ftruncate(descriptor, 0)
                os.write(descriptor, f"{os.getpid()}\n".encode())
                return cls(path, descriptor)
            os.close(descriptor)
        raise OutputLocked(f"could not lock {output}: {path} keeps being replaced")

    def release(self) -> None:
        try:
            os.unlink(self.path)  # while still locked, so that nobody locks the removed file unnoticed
        except FileNotFoundError:
            pass
        finally:
            os.close(self.descriptor)


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "a process"


@dataclass
class _Contents:
    """A results file as lines (bytes, ends kept), each classified: ``"record"``, ``"settings"`` (a settings
    line), ``"foreign"`` (JSON that is neither), ``"unreadable"`` (not UTF-8 or not JSON) or ``"torn"`` (a
    last line without its newline that is not foreign JSON)."""

    path: Path
    lines: list[bytes]
    kinds: list[str]
    values: list[Any]

    @classmethod
    def read(cls, path: Path) -> _Contents:
        data = path.read_bytes()
        pieces = data.split(b"\n")
        lines = [piece + b"\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
        kinds, values = [], []
        for line in lines:
            kind, value = _classify(line)
            if not line.endswith(b"\n") and kind != "foreign":
                kind = "torn"
            kinds.append(kind)
            values.append(value)
        return cls(path, lines, kinds, values)

    def indices(self, *kinds: str) -> list[int]:
        return [i for i, kind in enumerate(self.kinds) if kind in kinds]

    def records(self) -> list[dict]:
        return [self.values[i] for i in self.indices("record")]

    def warn_skipped(self, stacklevel: int) -> None:
        unreadable, torn = len(self.indices("unreadable")), len(self.indices("torn"))
        if unreadable or torn:
            parts = [f"{unreadable} unreadable line(s) (invalid UTF-8 or not JSON, lines "
                     f"{_numbers(self.indices('unreadable'))})"] if unreadable else []
            parts += ["a torn last line"] if torn else []
            warnings.warn(f"{self.path}: skipped {' and '.join(parts)}", UnreadableLinesWarning,
                          stacklevel=stacklevel)

    def refuse_foreign(self, strict: bool) -> None:
        """Refuse a file that is not a results file (``strict``: of the runner, whose records carry
        `RUNNER_KEYS`)."""
        for i in self.indices("record", "foreign"):
            if self.kinds[i] == "foreign" or (strict and not all(k in self.values[i] for k in RUNNER_KEYS)):
                raise ResultsFileError(
                    f"{self.path} is not a results file of dllm-mcmc eval: line {i + 1} is not one of its records "
                    f"({_excerpt(self.lines[i])}); it was left untouched: write to another output")
        if self.lines and not self.indices("record", SETTINGS_KIND):
            torn_only = self.kinds == ["torn"] and self.lines[0].startswith(b'{"')  # a first write cut short
            if not torn_only:
                raise ResultsFileError(
                    f"{self.path} is not a results file of dllm-mcmc eval: none of its {len(self.lines)} lines is "
                    f"a record (line 1: {_excerpt(self.lines[0])}); it was left untouched: write to another output")

    def refuse_other_settings(self, wanted: dict[tuple[str, str], RunSettings]) -> None:
        """Refuse records or settings lines of a wanted (method, task) pair with another ``config_hash``."""
        if not wanted:
            return
        declared = {self.values[i]["config_hash"]: self.values[i] for i in self.indices(SETTINGS_KIND)}
        for i in self.indices("record", SETTINGS_KIND):
            value = self.values[i]
            run = wanted.get((value.get("method"), value.get("task")))
            if run is None or value.get("config_hash") == run.config_hash:
                continue
            old = declared.get(value.get("config_hash"))
            if old is not None and isinstance(old.get("settings"), dict):
                what = "; ".join(settings_difference(old["settings"], run.values)) or "the same values (another hash)"
                before = old["settings"]
                if before.get("model") == run.values.get("model") \
                        and before.get("model_fingerprint") != run.values.get("model_fingerprint"):
                    what += f" (the config or weights in {run.values.get('model')!r} changed since)"
            else:
                what = (f"hash {value.get('config_hash')}, now {run.config_hash} (the file does not say which "
                        "settings: it was written before results files recorded them, and before the settings "
                        "hash covered the model's weights)")
            raise ResultsFileError(
                f"{self.path} holds method {run.method!r} on task {run.task!r} made with other settings: {what}. "
                "Nothing was changed; write to another output (--out), or remove those records yourself")

    def refuse_duplicates(self) -> None:
        seen: dict[tuple[str, int], int] = {}
        for i in self.indices("record"):
            key = (self.values[i]["unit"], self.values[i]["sample"])
            if key in seen:
                raise ResultsFileError(
                    f"{self.path} holds unit {key[0]!r} sample {key[1]} twice (lines {seen[key] + 1} and {i + 1}); "
                    "a results file has one record per sample, so its counts would be wrong. Were two files "
                    "concatenated, or lines copied by hand? Remove the duplicates or write to another output")
            seen[key] = i

    def unfinished_unit(self, samples_per_unit: int | None, wanted: dict[tuple[str, str], RunSettings]) -> str | None:
        """The one unit an interrupt cut short, if any; refuse units with more samples than their settings
        ask for, or several with fewer (the file was written with another sample count)."""
        records = self.records()
        sizes = Counter(r["unit"] for r in records)
        hash_of = {r["unit"]: r.get("config_hash") for r in records}
        declared = {self.values[i]["config_hash"]: self.values[i]["settings"].get("samples")
                    for i in self.indices(SETTINGS_KIND)}
        current = {run.config_hash for run in wanted.values()}
        largest: Counter = Counter()
        for unit, size in sizes.items():
            largest[hash_of[unit]] = max(largest[hash_of[unit]], size)

        def expected(unit: str) -> int:
            config_hash = hash_of[unit]
            if samples_per_unit is not None and (config_hash in current or not wanted):
                return samples_per_unit
            if isinstance(declared.get(config_hash), int):
                return declared[config_hash]
            return largest[config_hash]

        over = [(unit, size) for unit, size in sizes.items() if size > expected(unit)]
        under = [(unit, size) for unit, size in sizes.items() if size < expected(unit)]
        if over or len(under) > 1:
            unit, size = over[0] if over else under[0]
            what = "more" if over else f"fewer (as do {len(under) - 1} other units; an interrupted run leaves one)"
            raise ResultsFileError(
                f"{self.path} holds {size} samples of unit {unit!r}, {what} than samples={expected(unit)}: it was "
                "written with another sample count. Nothing was changed; write to another output (--out)")
        return under[0][0] if under else None

    def repair(self, unfinished: str | None) -> None:
        """Rewrite the file without its torn last line and the lines of ``unfinished`` (atomically)."""
        drop = set(self.indices("torn")) | {i for i in self.indices("record") if self.values[i]["unit"] == unfinished}
        if not drop:
            return
        target = Path(os.path.realpath(self.path))
        temporary = target.with_name(target.name + ".repair")
        with temporary.open("wb") as handle:
            handle.writelines(line for i, line in enumerate(self.lines) if i not in drop)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        _fsync_directory(target.parent)


def _classify(line: bytes) -> tuple[str, Any]:
    try:
        value = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "unreadable", None
    if isinstance(value, dict) and value.get("kind") == SETTINGS_KIND and isinstance(value.get("config_hash"), str) \
            and isinstance(value.get("settings"), dict) and "unit" not in value:
        return SETTINGS_KIND, value
    sample = value.get("sample") if isinstance(value, dict) else None
    if isinstance(value, dict) and isinstance(value.get("unit"), str) and isinstance(sample, int) \
            and not isinstance(sample, bool):
        return "record", value
    return "foreign", value


def settings_difference(old: dict, new: dict) -> list[str]:
    """``"key=old (now new)"`` for each setting that differs; nested tables as dotted keys.

    >>> settings_difference({"samples": 16, "method": {"rule": "random"}}, {"samples": 8, "method": {"rule": "random"}})
    ['samples=16 (now 8)']
    """
    old, new = _flatten(old), _flatten(json.loads(json.dumps(new)))
    missing = object()
    return [f"{key}={_show(old.get(key, missing))} (now {_show(new.get(key, missing))})"
            for key in sorted(set(old) | set(new)) if old.get(key, missing) != new.get(key, missing)]


def _flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _show(value: Any) -> str:
    if not isinstance(value, (str, int, float, bool, list, dict, type(None))):
        return "unset"
    text = repr(value)
    return text if len(text) <= 40 else text[:15] + "…'"


def _excerpt(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace").strip()
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _numbers(indices: list[int]) -> str:
    shown = ", ".join(str(i + 1) for i in indices[:5])
    return shown + (", …" if len(indices) > 5 else "")


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
