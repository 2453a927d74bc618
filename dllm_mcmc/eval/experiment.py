"""The experiment runner behind ``dllm-mcmc eval CONFIG``: methods × tasks × n samples, resumable.

A config (TOML, or YAML when PyYAML is installed) names a model, tasks, methods and a sample count::

    model = "tasks-small"          # bundled name, trained directory or transformers directory
    samples = 16                   # n per problem
    problems = 100                 # per task (default: each task's full test set)
    seed = 0
    output = "runs/eval/results.jsonl"
    tasks = ["countdown", "arith", "program"]   # bundled families or benchmarks (humaneval, math500...)
    baselines = ["confidence"]     # the report's paired differences against these (optional)

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

With ``pack = P`` (config key or ``--pack``), each method draws ``P`` problems of a task in one batched
run (prompts left-padded to one length with an attention mask, so every forward call carries ``P × n``
rows, split to ``max_rows``). A pack's seed depends on its members' names and the groups on the task's
problem list only, so resuming still reproduces an uninterrupted run; ``pack`` is part of the settings
hash, since packed samples come from another random stream than unpacked ones.

Where units are drawn is the ``executor`` (`dllm_mcmc.eval.executors`): ``"inline"`` (this process, the
default), ``"local"`` (``workers`` processes) or ``"ray"`` (Ray actors at ``address``), each worker with
``threads`` torch threads. The driver is the only writer of the results file whatever the executor, and
a unit's records are the same whichever worker drew them.

Code tasks (``humaneval``, ``mbpp``: their checker runs the model's code in the sandbox) run only when the
config says ``allow_code_execution = true`` (or ``dllm-mcmc eval --allow-code-execution``); otherwise the
run is refused with `CodeExecutionNotAllowed` before any model is loaded or file touched. With code tasks,
the run reports the sandbox's isolation level once (``log``), warns with `WeakIsolationWarning` when it is
weaker than full (`dllm_mcmc.eval.checking.isolation_is_full`), and every record of a code task carries
it as ``isolation``.

Example:
    >>> config = load_config("configs/eval-small.toml", {"samples": 4})   # doctest: +SKIP
    >>> run_experiment(config)                                             # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
import warnings
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dllm_mcmc._checks import nonnegative_int, positive_int
from dllm_mcmc.denoisers.load import model_kind
from dllm_mcmc.eval.checking.checkers import (
    CODE_EXECUTION_HINT,
    CodeExecutionNotAllowed,
    WeakIsolationWarning,
    isolation_notice,
)
from dllm_mcmc.eval.engine import Engine, load_engine
from dllm_mcmc.eval.executors import EXECUTORS, Done, Failed, Retried, make_executor
from dllm_mcmc.eval.fingerprint import model_fingerprint
from dllm_mcmc.eval.methods import Method, generate_pack
from dllm_mcmc.eval.problem import EvalProblem, EvalTask
from dllm_mcmc.eval.records import RecordStore, RunSettings
from dllm_mcmc.small_model import bundled_models

CONFIG_KEYS = {"model", "samples", "problems", "seed", "output", "tasks", "methods", "gen_length", "model_options",
               "task_paths", "executor", "workers", "threads", "address", "pack", "baselines",
               "allow_code_execution"}

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
"""The configs that ship with the package, ``dllm_mcmc/configs`` (in a checkout, a link to the top-level
``configs/``); `find_config` looks a name up there."""

CONFIG_SUFFIXES = (".toml", ".yaml", ".yml")


def packaged_configs() -> list[str]:
    """Names of the packaged configs, such as ``eval-small`` and ``paper/llada-code-math`` (what
    ``dllm-mcmc eval --list-configs`` prints)."""
    if not CONFIG_DIR.is_dir():
        return []
    return sorted(path.relative_to(CONFIG_DIR).with_suffix("").as_posix()
                  for path in CONFIG_DIR.rglob("*") if path.suffix in CONFIG_SUFFIXES and path.is_file())


def find_config(config: str | Path) -> Path:
    """The config file for ``config``: a file path as given when it exists, else a packaged config by name
    (``eval-small``, ``paper/llada-code-math``, with or without its suffix, with or without a leading
    ``configs/``, so the documented ``configs/eval-small.toml`` works outside a checkout too).
    ``FileNotFoundError`` names the packaged configs when neither exists."""
    path = Path(config)
    if path.is_file():
        return path
    name = Path(*path.parts[1:]) if len(path.parts) > 1 and path.parts[0] == "configs" else path
    for candidate in (CONFIG_DIR / name, *(CONFIG_DIR / f"{name}{suffix}" for suffix in CONFIG_SUFFIXES)):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"config {path} does not exist (neither a file nor a packaged config: "
                            f"{', '.join(packaged_configs()) or 'none'})")


def load_config(path: str | Path | None, overrides: dict | None = None) -> dict:
    """Read a TOML/YAML config (a file, or a packaged config by name: `find_config`) and apply ``overrides``
    (top-level keys; ``None`` values are ignored).

    Every field is checked here, before anything runs or any file is touched; a bad one is refused with a
    ``ValueError`` naming the field and the value (``problems must be a positive integer, got 0``).
    """
    config: Any = {}
    if path is not None:
        path = find_config(path)
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                try:
                    config = yaml.safe_load(path.read_text()) or {}
                except yaml.YAMLError as error:
                    raise ValueError(str(error)) from None
            else:
                config = tomllib.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"config {path}: {error}") from None
        if not isinstance(config, dict):
            raise ValueError(f"config {path} must be a table of keys, got {type(config).__name__} {config!r}")
    config.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(map(str, set(config) - CONFIG_KEYS))
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(unknown)} (known: {', '.join(sorted(CONFIG_KEYS))})")
    for key in ("model", "tasks", "methods"):
        if config.get(key) is None or config.get(key) in ("", [], {}):
            raise ValueError(f"the config needs {key!r}")
    if not isinstance(config["model"], str) or not config["model"].strip():
        raise ValueError(f"model must be a bundled model name or a model directory, got {config['model']!r}")
    positive_int("samples", config.setdefault("samples", 16))
    nonnegative_int("seed", config.setdefault("seed", 0))
    for key in ("problems", "gen_length"):
        if config.get(key) is not None:
            positive_int(key, config[key])
    output = config.setdefault("output", "runs/eval/results.jsonl")
    if not isinstance(output, str) or not output.strip():
        raise ValueError(f"output must be a file path, got {output!r}")
    tasks = config["tasks"]
    if not isinstance(tasks, list) or not all(isinstance(t, str) and t.strip() for t in tasks):
        raise ValueError(f"tasks must be a list of task names, got {tasks!r}")
    _refuse_repeats("tasks", tasks)
    methods = config["methods"]
    if not isinstance(methods, list) or not all(isinstance(m, dict) for m in methods):
        shown = f"a table {methods!r} ([methods] for [[methods]]?)" if isinstance(methods, dict) else repr(methods)
        raise ValueError(f"methods must be a list of tables ([[methods]] in TOML), one per method; got {shown}")
    for index, table in enumerate(methods):
        name = table.get("name")
        if name is None:
            raise ValueError(f"methods[{index}] needs a name (name = \"...\"): {table!r}")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"methods[{index}].name must be a non-empty string, got {name!r}")
        Method.from_config(table)  # refuses a bad sampler, rule, temperature, warmup or option, naming it
    _refuse_repeats("methods: name", [m["name"] for m in methods])
    baselines = config.setdefault("baselines", [])
    if not isinstance(baselines, list) or not all(isinstance(b, str) and b.strip() for b in baselines):
        raise ValueError(f"baselines must be a list of method names (the report compares the others with "
                         f"them), got {baselines!r}")
    _refuse_repeats("baselines", baselines)
    for key in ("model_options", "task_paths"):
        if not isinstance(config.get(key) or {}, dict):
            raise ValueError(f"{key} must be a table, got {config[key]!r}")
    for task, task_path in (config.get("task_paths") or {}).items():
        if not isinstance(task_path, str) or not task_path.strip():
            raise ValueError(f"task_paths.{task} must be a file path, got {task_path!r}")
    allowed = config.setdefault("allow_code_execution", False)
    if not isinstance(allowed, bool):
        raise ValueError(f"allow_code_execution must be true or false, got {allowed!r}")
    return config


def _refuse_repeats(field: str, names: list[str]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{field} {', '.join(map(repr, repeated))} is given more than once; each must differ")


def load_task(name: str, path: str | None = None, *, allow_code_execution: bool = False) -> EvalTask:
    """A bundled family by name, or a benchmark (`dllm_mcmc.eval.benchmarks`) from ``path`` or its source.

    ``allow_code_execution`` goes to the code benchmarks (their ``check`` runs the model's code only
    when it is true); the other tasks run no code and ignore it."""
    from dllm_mcmc.eval.family_tasks import FamilyTask
    from dllm_mcmc.tasks import FAMILIES

    if name in FAMILIES:
        return FamilyTask(name)
    from dllm_mcmc.eval.benchmarks import BENCHMARKS, load_benchmark

    if name not in BENCHMARKS:
        raise ValueError(f"unknown task {name!r}; bundled families: {', '.join(FAMILIES)}; "
                         f"benchmarks: {', '.join(BENCHMARKS)}")
    options = {"allow_code_execution": allow_code_execution} if getattr(BENCHMARKS[name], "executes_code", False) \
        else {}
    return load_benchmark(name, path=path, **options)


def runs_code(task: EvalTask) -> bool:
    """Whether grading ``task`` runs model-generated code (its ``executes_code``; False when it has none)."""
    return bool(getattr(task, "executes_code", False))


def require_code_execution(config: dict, tasks: Iterable[EvalTask]) -> list[str]:
    """The names of the code tasks among ``tasks``; `CodeExecutionNotAllowed` when there are some and the
    config does not say ``allow_code_execution = true``."""
    names = [task.name for task in tasks if runs_code(task)]
    if names and config.get("allow_code_execution") is not True:
        raise CodeExecutionNotAllowed(
            f"task{'s' if len(names) > 1 else ''} {', '.join(names)} grade{'' if len(names) > 1 else 's'} "
            f"completions by running the model's code (in the sandbox, docs/sandbox.md); nothing was run: to "
            f"allow it, {CODE_EXECUTION_HINT}")
    return names


def sandbox_isolation(names: list[str], log: Callable[[str], None] | None = None) -> str:
    """The sandbox's isolation level on this machine (`detect_isolation`, probed once per process), said
    once through ``log`` for the code tasks ``names``; a level weaker than full also warns
    (`WeakIsolationWarning`), and its line starts with ``warning:``."""
    from dllm_mcmc.eval.sandbox import detect_isolation

    try:
        level = detect_isolation()
    except RuntimeError as error:  # not Linux, no interpreter to start: no code can be graded here
        raise ValueError(f"{', '.join(names)}: the sandbox that grades code cannot run here: {error}") from None
    line, full = isolation_notice(level, names)
    if log is not None:
        log(line if full else f"warning: {line}")
    if not full:
        warnings.warn(line, WeakIsolationWarning, stacklevel=3)
    return level


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from the parts' text (independent of PYTHONHASHSEED and of run order)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def run_settings(config: dict, method: Method, task: str, fingerprint: str | None = None) -> RunSettings:
    """Everything that changes a (method, task) pair's samples, and its hash: the model's name and its
    weights' fingerprint (`dllm_mcmc.eval.fingerprint`), generation length, model options, samples, seed,
    the task and the method's settings."""
    if fingerprint is None:  # a run computes it once for all its (method, task) pairs
        fingerprint = model_fingerprint(config["model"])
    values = {"model": config["model"], "model_fingerprint": fingerprint,
              "gen_length": config.get("gen_length"), "model_options": config.get("model_options"),
              "samples": config["samples"], "seed": config["seed"], "task": task, "method": method.spec()}
    if (config.get("pack") or 1) > 1:  # packed units draw from a shared seed: other samples than unpacked,
        values["pack"] = config["pack"]  # and the packs follow the problem list, so its length matters too
        values["problems"] = config.get("problems")
    text = json.dumps(values, sort_keys=True)
    return RunSettings(method.name, task, hashlib.sha256(text.encode()).hexdigest()[:16], json.loads(text))


@dataclass(frozen=True)
class Failure:
    """A unit whose drawing raised: nothing is recorded for it. ``error``: one line; ``details``: traceback."""

    method: str
    task: str
    problem: str
    error: str
    details: str = ""


@dataclass(frozen=True)
class Summary:
    """What a run did: units drawn now, units found done, records in the file, seconds; where the units were
    drawn (``executor``, ``workers``), the units that failed, worker deaths survived (``retried``: units
    started again elsewhere), the samples drawn now and, with code tasks, the sandbox's ``isolation``."""

    ran: int
    skipped: int
    records: int
    seconds: float
    output: Path
    executor: str = "inline"
    workers: int = 1
    failed: tuple[Failure, ...] = ()
    retried: int = 0
    samples: int = 0
    isolation: str | None = None
    """The sandbox's isolation level when the run has code tasks (this process's; see `sandbox_isolation`)."""

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line account the command line prints."""
        code = "" if self.isolation is None else f"; code ran at isolation {self.isolation}"
        return (f"{self.ran} units drawn by {self.executor}×{self.workers}, {self.skipped} already done, "
                f"{len(self.failed)} failed, {self.retried} retried; {self.records} records in {self.output} "
                f"({self.seconds:.1f} s, {self.samples_per_second:.2f} samples/s){code}")


def execution_settings(config: dict) -> dict:
    """The config's ``executor`` (default ``"inline"``), ``workers``, ``threads`` and ``address``, checked."""
    settings = {"executor": config.get("executor") or "inline", "workers": config.get("workers"),
                "threads": config.get("threads"), "address": config.get("address")}
    if config.get("pack") is not None:
        positive_int("pack", config["pack"])
    if settings["executor"] not in EXECUTORS:
        raise ValueError(f"executor={settings['executor']!r} is unknown; choose one of {', '.join(EXECUTORS)}")
    for key in ("workers", "threads"):
        if settings[key] is not None:
            positive_int(key, settings[key])
    if settings["address"] is not None and not isinstance(settings["address"], str):
        raise ValueError(f"address must be a Ray address such as 'HOST:6379', got {settings['address']!r}")
    return settings


def run_experiment(config: dict, progress: bool = True, engine: Engine | None = None,
                   log: Callable[[str], None] | None = None) -> Summary:
    """Run every unfinished unit of ``config`` and append its records to ``config["output"]``.

    Units are drawn by the config's executor; the driver (this process) appends each unit's records as
    it arrives. A unit that raises is recorded nowhere and listed in `Summary.failed`; the others go on.
    ``engine`` (a loaded model) serves the inline executor only.

    Code tasks need ``config["allow_code_execution"]`` (else `CodeExecutionNotAllowed`, before any model
    is loaded or file touched); the sandbox's isolation level is then said once through ``log`` (a line),
    warned about when weaker than full (`WeakIsolationWarning`) and written into their records.
    """
    settings = execution_settings(config)
    methods = [Method.from_config(m) for m in config["methods"]]
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must differ: {names}")
    samples = config["samples"]
    task_paths = config.get("task_paths") or {}
    allowed = config.get("allow_code_execution") is True
    tasks = [load_task(name, task_paths.get(name), allow_code_execution=allowed)  # before any file is touched
             for name in config["tasks"]]
    code_tasks = require_code_execution(config, tasks)  # before a model is loaded or a sample drawn
    if engine is None and model_kind(config["model"]) is None:
        raise ValueError(f"model {config['model']!r} is neither a bundled model ({', '.join(bundled_models())}) "
                         f"nor a local model directory with a config.json")
    if engine is not None and settings["executor"] != "inline":
        raise ValueError(f"engine= serves the inline executor only, not {settings['executor']!r}")
    isolation = sandbox_isolation(code_tasks, log) if code_tasks else None
    device = str((config.get("model_options") or {}).get("device") or "")
    executor = make_executor(settings["executor"], settings["workers"], settings["threads"], settings["address"],
                             gpus=device.startswith("cuda") and settings["executor"] != "inline")
    fingerprint = model_fingerprint(config["model"])
    runs = {(m.name, t.name): run_settings(config, m, t.name, fingerprint) for m in methods for t in tasks}
    # Locks the output, then refuses it untouched (another writer, not a results file, other settings,
    # duplicates, another sample count) before it repairs anything.
    store = RecordStore.open(config["output"], samples_per_unit=samples, settings=runs.values())
    try:
        hashes = {key: run.config_hash for key, run in runs.items()}
        done = store.done_units()
        pack = config.get("pack") or 1
        work = _packs(methods, tasks, config.get("problems"), pack)
        todo = [w for w in work if any(_unit(hashes, w[0], w[1], problem) not in done for problem in w[2])]
        drawer = UnitDrawer(config, {m.name: m for m in methods}, {t.name: t for t in tasks}, hashes)
        # the worker factory: loads the model in the worker, or (inline, engine given) serves this one
        factory = drawer if engine is None else partial(partial, drawer.draw, engine)
        units = sum(len(w[2]) for w in work)
        units_todo = sum(1 for w in todo for problem in w[2] if _unit(hashes, w[0], w[1], problem) not in done)
        start = time.perf_counter()
        drawn, retried = 0, 0
        failed: list[Failure] = []
        with tqdm(total=units * samples, initial=(units - units_todo) * samples, unit="sample",
                  desc=f"eval {executor.name}", disable=not progress) as bar, \
                closing(executor.run([(m.name, t.name, ps) for m, t, ps in todo], factory)) as events:
            for event in events:
                if isinstance(event, Retried):
                    retried += 1
                elif isinstance(event, Done):
                    # a packed job redraws its done units identically; only the missing ones are written
                    fresh = [units_of for units_of in _by_unit(event.result) if units_of[0]["unit"] not in done]
                    for records in fresh:
                        store.append(records)
                    drawn += len(fresh)
                    bar.update(len(fresh) * samples)
                elif isinstance(event, Failed):
                    method, task, problems = todo[event.index]
                    failed.extend(Failure(method.name, task.name, problem.id, event.error, event.details)
                                  for problem in problems)
                bar.set_postfix_str(f"done {drawn}, failed {len(failed)}, retried {retried}", refresh=True)
        return Summary(drawn, units - units_todo, len(store.records), time.perf_counter() - start,
                       Path(config["output"]), executor.name, executor.workers, tuple(failed), retried,
                       drawn * samples, isolation)
    finally:
        store.close()  # releases the output's lock


def _unit(hashes: dict, method: Method, task: EvalTask, problem) -> str:
    return f"{hashes[method.name, task.name]}/{problem.id}"


def _packs(methods: list[Method], tasks: list[EvalTask], limit: int | None,
           pack: int) -> list[tuple[Method, EvalTask, tuple[EvalProblem, ...]]]:
    """The jobs of a run: each task's problems in order, cut into consecutive groups of ``pack``, times
    every method. The groups depend only on the task's problem list, so a resumed run forms the same ones."""
    work = []
    for task in tasks:
        problems = task.problems(limit)
        for start in range(0, len(problems), pack):
            group = tuple(problems[start:start + pack])
            work += [(method, task, group) for method in methods]
    return work


def _by_unit(records: list[dict]) -> list[list[dict]]:
    """A job's records split into its units' records, in order."""
    units: dict[str, list[dict]] = {}
    for record in records:
        units.setdefault(record["unit"], []).append(record)
    return list(units.values())


def _draw_unit(config: dict, engine: Engine, hashes: dict, method: Method, task: EvalTask,
               problems: tuple[EvalProblem, ...]) -> list[dict]:
    """The records of every unit of one job: ``problems`` (one, or a pack drawn in one batched run)."""
    if len(problems) == 1:
        seed = stable_seed(config["seed"], method.name, task.name, problems[0].id)
    else:  # a pack's seed depends on its members' names only, like a unit's
        seed = stable_seed(config["seed"], method.name, task.name, "pack", *(problem.id for problem in problems))
    prompts = [engine.encode(task.prompt_text(problem)) for problem in problems]
    answer_of = [partial(task.answer, problem) for problem in problems] if method.sampler == "majority" else None
    per_unit, generation = generate_pack(method, engine, prompts, config["samples"], seed, answer_of)
    rows = generation.tokens.shape[0]
    # the level every program of this process ran at (probed once per process; a worker probes its own)
    isolation = {"isolation": _isolation()} if runs_code(task) else {}
    records = []
    for problem, tokens_of_unit in zip(problems, per_unit):
        for index, tokens in enumerate(tokens_of_unit):
            completion = engine.decode(tokens.tolist())
            records.append({
                "unit": _unit(hashes, method, task, problem), "config_hash": hashes[method.name, task.name],
                "method": method.name, "task": task.name, "problem": problem.id, "sample": index,
                "completion": completion, **task.check(problem, completion).as_record(), **isolation,
                "nfe": generation.nfe, "forward_rows": generation.forward_rows / rows,
                "seconds": generation.seconds / rows, "seed": seed,
                **({"pack": [p.id for p in problems]} if len(problems) > 1 else {}),
            })
    return records


def _isolation() -> str:
    from dllm_mcmc.eval.sandbox import detect_isolation

    return detect_isolation()


@dataclass(frozen=True)
class UnitDrawer:
    """What a worker needs to draw units, picklable (it travels to worker processes and Ray actors).

    Called once in each worker, it loads the model and returns ``draw(job) -> records`` for jobs
    ``(method name, task name, problems)`` (one problem, or a pack): the records of those units.
    """

    config: dict
    methods: dict[str, Method]
    tasks: dict[str, EvalTask]
    hashes: dict[tuple[str, str], str]

    def __call__(self) -> Callable[[tuple], list[dict]]:
        config = self.config
        engine = load_engine(config["model"], config.get("gen_length"), **(config.get("model_options") or {}))
        return partial(self.draw, engine)

    def draw(self, engine: Engine, job: tuple) -> list[dict]:
        method, task, problems = job
        return _draw_unit(self.config, engine, self.hashes, self.methods[method], self.tasks[task], problems)
