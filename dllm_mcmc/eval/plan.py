"""`plan`: what an evaluation config will cost before it is run: units, samples, sequential forward steps
and forward rows per method, and, given the time of one forward row, the estimated GPU-hours.

The counts are exact formulas of the samplers' schedules, each sampler's own (`SamplerSpec.cost` in
`dllm_mcmc.mcmc.registry`, beside the sampler's code; tested against the metered cost of real runs), with
``s`` decoding steps per response (``gen_length`` divided by the rule's tokens per step), ``n`` samples per
unit and ``w`` warm-up steps. A likelihood other than ``order`` adds its rows (``left_to_right``:
``gen_length`` per scored sequence; ``elbo``: ``elbo_samples``) and one call per scoring
(`dllm_mcmc.mcmc.registry.unit_cost`). ``dllm-mcmc samplers`` prints every formula. The time estimate is an
**approximation**: ``rows × forward time per row`` at the batch sizes the run uses, which holds once batches
are large enough to saturate the device (about 16 rows or more for an 8B model on an H100).

Example:
    >>> from dllm_mcmc.eval.methods import Method
    >>> method_cost(Method.from_config({"name": "imh", "sampler": "imh", "warmup": 6, "proposal_batch": 8}),
    ...             gen_length=16, samples=4)
    (16, 512)
"""

from __future__ import annotations

from dataclasses import dataclass

from dllm_mcmc.eval.methods import Method
from dllm_mcmc.mcmc.spec import UnitShape, unit_cost

# Problem counts of the paper's benchmarks, used when their data is not on this machine.
BENCHMARK_SIZES = {"humaneval": 164, "mbpp": 500, "math500": 500, "aime24": 30, "aime25": 30}


def method_cost(method: Method, gen_length: int, samples: int) -> tuple[int, int]:
    """``(sequential forward steps, forward rows)`` of one unit (``samples`` responses to one prompt)."""
    steps = len(method.decoding_rule.config().schedule(gen_length))
    options = method.options
    try:
        return unit_cost(method.sampler_spec, method.sampler_settings, UnitShape(steps, gen_length, samples,
                                                                                 method.warmup),
                         likelihood=options.get("likelihood", "order"), elbo_samples=options.get("elbo_samples", 16))
    except ValueError as error:
        raise ValueError(f"method {method.name!r}: {error}") from None


@dataclass(frozen=True)
class MethodPlan:
    """One method over every task of a config."""

    method: str
    units: int
    samples: int
    steps_per_unit: int
    rows_per_unit: int

    @property
    def steps(self) -> int:
        return self.units * self.steps_per_unit

    @property
    def rows(self) -> int:
        return self.units * self.rows_per_unit


@dataclass(frozen=True)
class Plan:
    """The plan of a config: per-method costs, problems per task (and which sizes were assumed)."""

    methods: list[MethodPlan]
    problems: dict[str, int]
    assumed_sizes: list[str]
    gen_length: int

    @property
    def rows(self) -> int:
        return sum(m.rows for m in self.methods)

    def gpu_hours(self, forward_ms_per_row: float) -> float:
        """Estimated device-hours at ``forward_ms_per_row`` (an approximation, see the module docstring)."""
        return self.rows * forward_ms_per_row / 3.6e6

    def markdown(self, forward_ms_per_row: float | None = None) -> str:
        sizes = ", ".join(f"{task} {count}{'*' if task in self.assumed_sizes else ''}"
                          for task, count in self.problems.items())
        lines = [f"Problems per task: {sizes}; response length {self.gen_length}.", ""]
        header = "| method | units | samples | sequential steps | forward rows |"
        rule = "|---|---:|---:|---:|---:|"
        if forward_ms_per_row is not None:
            header, rule = header + " GPU-hours |", rule + "---:|"
        lines += [header, rule]
        for m in self.methods:
            row = f"| {m.method} | {m.units:,} | {m.units * m.samples:,} | {m.steps:,} | {m.rows:,} |"
            if forward_ms_per_row is not None:
                row += f" {m.rows * forward_ms_per_row / 3.6e6:,.1f} |"
            lines.append(row)
        total = f"| total | | | {sum(m.steps for m in self.methods):,} | {self.rows:,} |"
        if forward_ms_per_row is not None:
            total += f" {self.gpu_hours(forward_ms_per_row):,.1f} |"
        lines.append(total)
        if self.assumed_sizes:
            lines += ["", "\\* the benchmark's size; its data was not loaded."]
        if forward_ms_per_row is not None:
            lines += ["", f"GPU-hours at {forward_ms_per_row:g} ms per forward row (an approximation: rows × time "
                          f"per row at saturating batch sizes)."]
        return "\n".join(lines)


def plan(config: dict) -> Plan:
    """The `Plan` of a loaded config (`dllm_mcmc.eval.experiment.load_config`); nothing is run or written."""
    from dllm_mcmc.eval.experiment import load_task

    methods = [Method.from_config(m) for m in config["methods"]]
    gen_length = config.get("gen_length")
    if gen_length is None:
        import json

        from dllm_mcmc.small_model import small_model_dir

        directory = small_model_dir(config["model"])
        if directory is None:
            raise ValueError("gen_length: the config must give the response length to plan it")
        gen_length = json.loads((directory / "config.json").read_text())["response_length"]
    problems: dict[str, int] = {}
    assumed: list[str] = []
    for name in config["tasks"]:
        path = (config.get("task_paths") or {}).get(name)
        if name in BENCHMARK_SIZES and path is None and name != "humaneval":
            # only HumanEval ships offline; loading the others would reach for the hub
            problems[name] = min(BENCHMARK_SIZES[name], config.get("problems") or BENCHMARK_SIZES[name])
            assumed.append(name)
        else:
            problems[name] = len(load_task(name, path).problems(config.get("problems")))
    units = sum(problems.values())
    samples = config["samples"]
    rows = []
    for method in methods:
        steps, forward_rows = method_cost(method, gen_length, samples)
        rows.append(MethodPlan(method.name, units, samples, steps, forward_rows))
    return Plan(rows, problems, assumed, gen_length)


def probe_forward_ms(config: dict, gen_length: int, rows: int = 16) -> float:
    """Milliseconds per forward row of the config's model: one call of ``rows`` fully masked canvases of a
    typical length (a 128-token prompt, or the model's own prompt length, plus ``gen_length``), timed after
    one warm-up call. An **approximation** of the run's cost per row (batch size and lengths vary)."""
    import time

    import torch

    from dllm_mcmc.eval.engine import load_engine

    engine = load_engine(config["model"], gen_length, **(config.get("model_options") or {}))
    prompt_length = int(engine.encode("").numel()) if config.get("gen_length") is None else 128
    denoiser = engine.denoiser
    device = getattr(denoiser, "device", None)
    canvas = torch.full((rows, prompt_length + gen_length), int(denoiser.mask_id), device=device)
    with torch.no_grad():
        denoiser(canvas)
        if device is not None and torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        denoiser(canvas)
        if device is not None and torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1000 / rows
