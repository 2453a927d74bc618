"""The experiment runner behind ``dllm-mcmc eval CONFIG``: methods × tasks × n samples, resumable.

A config (TOML, or YAML when PyYAML is installed) names a model, tasks, methods and a sample count::

    model = "tasks-small"          # bundled name, trained directory or transformers directory
    samples = 16                   # n per problem
    problems = 100                 # per task (default: each task's full test set)
    seed = 0
    output = "runs/eval/results.jsonl"
    tasks = ["countdown", "arith", "program"]   # bundled families or benchmarks (humaneval, math500...)

    [[methods]]
    name = "confidence"
    rule = "confidence"
    temperature = 0.5

    [[methods]]
    name = "imh"
    sampler = "imh"
    temperature = 0.5              # τ of the proposal
    target_temperature = 0.5       # T
    warmup = 7

Every (method, task, problem) is a *unit*: its ``n`` samples are drawn together from a seed derived
from the config seed and the unit's names alone, so the samples do not depend on which units ran
before, and a resumed run reproduces an uninterrupted one exactly. Each record carries the hash of the
settings that produced it; the runner refuses to mix records of different settings in one file.

Example:
    >>> config = load_config("configs/eval-small.toml", {"samples": 4})   # doctest: +SKIP
    >>> run_experiment(config)                                             # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from dllm_mcmc._checks import nonnegative_int, positive_int
from dllm_mcmc.denoisers.load import model_kind
from dllm_mcmc.eval.engine import Engine, load_engine
from dllm_mcmc.eval.methods import Method, generate
from dllm_mcmc.eval.problem import EvalTask
from dllm_mcmc.eval.records import RecordStore
from dllm_mcmc.small_model import bundled_models

CONFIG_KEYS = {"model", "samples", "problems", "seed", "output", "tasks", "methods", "gen_length", "model_options",
               "task_paths"}


def load_config(path: str | Path | None, overrides: dict | None = None) -> dict:
    """Read a TOML/YAML config and apply ``overrides`` (top-level keys; ``None`` values are ignored)."""
    config: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config {path} does not exist")
        if path.suffix in (".yaml", ".yml"):
            import yaml

            config = yaml.safe_load(path.read_text()) or {}
        else:
            config = tomllib.loads(path.read_text())
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(unknown)} (known: {', '.join(sorted(CONFIG_KEYS))})")
    for key in ("model", "tasks", "methods"):
        if not config.get(key):
            raise ValueError(f"the config needs {key!r}")
    positive_int("samples", config.setdefault("samples", 16))
    nonnegative_int("seed", config.setdefault("seed", 0))
    for key in ("problems", "gen_length"):
        if config.get(key) is not None:
            positive_int(key, config[key])
    if not isinstance(config.setdefault("output", "runs/eval/results.jsonl"), str):
        raise ValueError(f"output must be a file path, got {config['output']!r}")
    if not isinstance(config["tasks"], list) or not all(isinstance(t, str) for t in config["tasks"]):
        raise ValueError(f"tasks must be a list of task names, got {config['tasks']!r}")
    if not isinstance(config["methods"], list) or not all(isinstance(m, dict) for m in config["methods"]):
        raise ValueError(f"methods must be a list of tables ([[methods]] in TOML), got {config['methods']!r}")
    for key in ("model_options", "task_paths"):
        if not isinstance(config.get(key) or {}, dict):
            raise ValueError(f"{key} must be a table, got {config[key]!r}")
    return config


def load_task(name: str, path: str | None = None) -> EvalTask:
    """A bundled family by name, or a benchmark (`dllm_mcmc.eval.benchmarks`) from ``path`` or its source."""
    from dllm_mcmc.eval.family_tasks import FamilyTask
    from dllm_mcmc.tasks import FAMILIES

    if name in FAMILIES:
        return FamilyTask(name)
    from dllm_mcmc.eval.benchmarks import BENCHMARKS, load_benchmark

    if name not in BENCHMARKS:
        raise ValueError(f"unknown task {name!r}; bundled families: {', '.join(FAMILIES)}; "
                         f"benchmarks: {', '.join(BENCHMARKS)}")
    return load_benchmark(name, path=path)


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from the parts' text (independent of PYTHONHASHSEED and of run order)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def settings_hash(config: dict, method: Method, task: str) -> str:
    """Hash of everything that changes a (method, task) pair's samples."""
    settings = {"model": config["model"], "gen_length": config.get("gen_length"),
                "model_options": config.get("model_options"), "samples": config["samples"],
                "seed": config["seed"], "task": task, "method": method.spec()}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Summary:
    """What a run did: units drawn now, units found done, records in the file, seconds."""

    ran: int
    skipped: int
    records: int
    seconds: float
    output: Path


def run_experiment(config: dict, progress: bool = True, engine: Engine | None = None) -> Summary:
    """Run every unfinished unit of ``config`` and append its records to ``config["output"]``."""
    methods = [Method.from_config(m) for m in config["methods"]]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must differ: {names}")
    samples = config["samples"]
    task_paths = config.get("task_paths") or {}
    tasks = [load_task(name, task_paths.get(name)) for name in config["tasks"]]  # before any file is touched
    if engine is None and model_kind(config["model"]) is None:
        raise ValueError(f"model {config['model']!r} is neither a bundled model ({', '.join(bundled_models())}) "
                         f"nor a local model directory with a config.json")
    store = RecordStore.open(config["output"], samples_per_unit=samples)
    hashes = {(m.name, t.name): settings_hash(config, m, t.name) for m in methods for t in tasks}
    _refuse_mixed_settings(store, hashes)
    done = store.done_units()
    work = [(method, task, problem) for task in tasks for problem in task.problems(config.get("problems"))
            for method in methods]
    todo = [w for w in work if _unit(hashes, *w) not in done]
    start = time.perf_counter()
    if todo and engine is None:
        engine = load_engine(config["model"], config.get("gen_length"), **(config.get("model_options") or {}))
    with tqdm(total=len(work) * samples, initial=(len(work) - len(todo)) * samples, unit="sample",
              desc="eval", disable=not progress) as bar:
        for method, task, problem in todo:
            assert engine is not None  # loaded above whenever there is work to do
            store.append(_draw_unit(config, engine, hashes, method, task, problem))
            bar.update(samples)
    return Summary(len(todo), len(work) - len(todo), len(store.records), time.perf_counter() - start,
                   Path(config["output"]))


def _unit(hashes: dict, method: Method, task: EvalTask, problem) -> str:
    return f"{hashes[method.name, task.name]}/{problem.id}"


def _refuse_mixed_settings(store: RecordStore, hashes: dict) -> None:
    for record in store.records:
        key = (record.get("method"), record.get("task"))
        if key in hashes and record.get("config_hash") != hashes[key]:
            raise ValueError(
                f"{store.path} holds records of method {key[0]!r} on task {key[1]!r} made with other settings "
                f"(hash {record.get('config_hash')} vs {hashes[key]}); write to another output or remove them"
            )


def _draw_unit(config: dict, engine: Engine, hashes: dict, method: Method, task: EvalTask, problem) -> list[dict]:
    seed = stable_seed(config["seed"], method.name, task.name, problem.id)
    generation = generate(method, engine, engine.encode(task.prompt_text(problem)), config["samples"], seed)
    n = generation.tokens.shape[0]
    records = []
    for index, tokens in enumerate(generation.tokens):
        completion = engine.decode(tokens.tolist())
        records.append({
            "unit": _unit(hashes, method, task, problem), "config_hash": hashes[method.name, task.name],
            "method": method.name, "task": task.name, "problem": problem.id, "sample": index,
            "completion": completion, **task.check(problem, completion).as_record(),
            "nfe": generation.nfe, "forward_rows": generation.forward_rows / n,
            "seconds": generation.seconds / n, "seed": seed,
        })
    return records
