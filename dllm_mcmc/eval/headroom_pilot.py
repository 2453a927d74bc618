"""Drawing the pilot of the tempering-headroom check (`dllm_mcmc.diagnostics.tempering_headroom`).

Per problem of each task: ``n`` responses by plain random-order decoding at token temperature ``τ = 1`` (one
batched `dllm_mcmc.decode`, its generator seeded by ``stable_seed(seed, "headroom", task, problem id)``, so a
problem's pilot does not depend on which problems came before), graded by the task's ``check``, with three
scores per response:

- ``log p(x | σ)`` along its own order: the decoder's record (``Trajectory.log_p``), no extra pass;
- left to right: the chain rule along ``0..L−1``, as a teacher-forced `dllm_mcmc.replay` along that order
  (the same numbers as `dllm_mcmc.likelihood.left_to_right_log_likelihood`, ``n·L`` rows, without building its
  ``[n·L, L, V]`` logits at once, which an 8B model's vocabulary would not fit);
- along ``M`` further uniformly random orders (uniform within blocks when ``block_length`` is set), replayed
  with the ``random`` rule at temperature 1: each replay's ``log_p`` is the chain rule along that order.

The left-to-right order and the ``M`` random ones go through one replay of ``(M + 1)·n`` rows. Cost per
problem, in forward rows: ``n·s`` (decode, ``s`` steps = ``L`` at one token per step) ``+ n·L`` (left to
right) ``+ M·n·s`` (replays); `plan_pilot` counts them before anything runs. The reweighting itself needs the
decode alone: ``orders = 0, left_to_right = False`` is the cheapest pilot (no AUC left to right, no order
statistics).

Example:
    >>> from dllm_mcmc.eval.engine import load_engine
    >>> engine = load_engine("tasks-small")
    >>> plan = plan_pilot(engine.gen_length, {"arith": 2}, samples=4, orders=1)
    >>> plan.rows_per_problem, plan.forward_rows
    (192, 384)
    >>> pilot = draw_pilot(engine, ["arith"], problems=2, samples=4, orders=1, progress=False)
    >>> [len(p.correct) for p in pilot["arith"]], len(pilot["arith"][0].orders[0])
    ([4, 4], 1)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from dllm_mcmc._checks import nonnegative_int, positive_int
from dllm_mcmc.decoding import decode, replay
from dllm_mcmc.decoding.config import Rule
from dllm_mcmc.denoisers.base import denoiser_device
from dllm_mcmc.denoisers.batching import MaxRows
from dllm_mcmc.diagnostics.headroom import PilotProblem
from dllm_mcmc.eval.engine import Engine
from dllm_mcmc.eval.experiment import load_task, require_code_execution, stable_seed
from dllm_mcmc.eval.problem import EvalProblem, EvalTask


@dataclass(frozen=True)
class PilotPlan:
    """What a pilot costs: ``problems`` per task, ``samples`` (``n``), ``orders`` (``M``), ``steps`` (``s``) and
    ``gen_length`` (``L``)."""

    problems: Mapping[str, int]
    samples: int
    orders: int
    steps: int
    gen_length: int
    block_length: int | None = None
    left_to_right: bool = True

    @property
    def total_problems(self) -> int:
        return sum(self.problems.values())

    @property
    def rows_per_problem(self) -> int:
        """``n·s + n·L + M·n·s``: the decode, the left-to-right replay (when kept) and the ``M`` random-order
        replays."""
        n, s = self.samples, self.steps
        return n * s + n * self.gen_length * self.left_to_right + self.orders * n * s

    @property
    def forward_rows(self) -> int:
        return self.total_problems * self.rows_per_problem

    def lines(self, forward_ms: float | None = None) -> list[str]:
        """The plan as printed before the pilot runs (with ``forward_ms``: estimated GPU-minutes, an
        approximation that assumes batches large enough to saturate the device)."""
        n, s, m, length = self.samples, self.steps, self.orders, self.gen_length
        tasks = ", ".join(f"{name} {count}" for name, count in self.problems.items())
        blocks = "" if self.block_length is None else f", uniform within blocks of {self.block_length}"
        lines = [f"Plan: pilot of n = {n} random-order samples at τ = 1 per problem ({tasks} problems), "
                 f"L = {length}, s = {s} steps, M = {m} replayed random orders{blocks}.",
                 f"Forward rows per problem: n·s + n·L + M·n·s = {n * s:,} (decode) + "
                 f"{n * length * self.left_to_right:,} (left to right{'' if self.left_to_right else ': skipped'}) "
                 f"+ {m * n * s:,} (replays) = {self.rows_per_problem:,}; in all {self.forward_rows:,} rows."]
        if forward_ms is not None:
            minutes = self.forward_rows * forward_ms / 1000 / 60
            lines.append(f"At {forward_ms:g} ms per row: about {minutes:,.1f} GPU-minutes (rows × time per row, "
                         f"an approximation).")
        return lines


def plan_pilot(gen_length: int, problems: Mapping[str, int], samples: int, orders: int,
               block_length: int | None = None, left_to_right: bool = True) -> PilotPlan:
    """The `PilotPlan` of a pilot over ``problems`` (task name -> problems drawn) with ``samples`` per problem,
    ``orders`` replayed random orders and (``left_to_right``) the left-to-right score; nothing is loaded.

    >>> plan_pilot(16, {"countdown": 300, "arith": 300}, samples=16, orders=4).forward_rows
    921600
    """
    positive_int("samples", samples)
    nonnegative_int("orders", orders)
    steps = len(_config(block_length).schedule(gen_length))
    return PilotPlan(dict(problems), samples, orders, steps, gen_length, block_length, left_to_right)


def draw_pilot(engine: Engine, tasks: Sequence[str | EvalTask], problems: int | None, samples: int,
               orders: int = 4, seed: int = 0, block_length: int | None = None, max_rows: MaxRows = "auto",
               progress: bool = True, allow_code_execution: bool = False,
               left_to_right: bool = True) -> dict[str, list[PilotProblem]]:
    """Draw the pilot of `dllm_mcmc.diagnostics.tempering_headroom`: task name -> one `PilotProblem` per
    problem (the first ``problems`` of each task, in the task's order, as the evaluation runner takes them).

    Args:
        engine: the loaded model (`dllm_mcmc.eval.engine.load_engine`).
        tasks: task names (`dllm_mcmc.eval.experiment.load_task`) or task objects.
        problems: problems per task (``None``: all).
        samples: ``n`` per problem.
        orders: ``M`` replayed random orders per sample (0: none, and no order statistics).
        seed: the base seed; problem ``p`` of task ``t`` draws from ``stable_seed(seed, "headroom", t, p.id)``.
        block_length: decode (and draw the random orders) block by block, as LLaDA's semi-autoregressive
            decoding; ``None``: the whole response is one block.
        max_rows: largest batch of one forward call (``"auto"``: from the free CUDA memory).
        progress: a tqdm bar over problems.
        allow_code_execution: code tasks (``humaneval``, ``mbpp``) grade by running the model's code; refused
            (`dllm_mcmc.eval.checking.CodeExecutionNotAllowed`) unless true.
        left_to_right: also score each sample left to right (``n·L`` rows per problem; with ``orders = 0`` and
            no left-to-right score, the pilot is the decode alone, which is all the reweighting needs).

    Example: see the module docstring.
    """
    positive_int("samples", samples)
    nonnegative_int("orders", orders)
    if problems is not None:
        positive_int("problems", problems)
    loaded = [load_task(t, allow_code_execution=allow_code_execution) if isinstance(t, str) else t for t in tasks]
    require_code_execution({"allow_code_execution": allow_code_execution}, loaded)
    config = _config(block_length)
    config.schedule(engine.gen_length)  # refuses a block length that does not divide L
    work = [(task, problem) for task in loaded for problem in task.problems(problems)]
    pilot: dict[str, list[PilotProblem]] = {task.name: [] for task in loaded}
    for task, problem in tqdm(work, desc="headroom pilot", unit="problem", disable=not progress):
        pilot[task.name].append(draw_problem(engine, task, problem, samples, orders, seed, block_length, max_rows,
                                             left_to_right))
    return pilot


def draw_problem(engine: Engine, task: EvalTask, problem: EvalProblem, samples: int, orders: int, seed: int,
                 block_length: int | None = None, max_rows: MaxRows = "auto",
                 left_to_right: bool = True) -> PilotProblem:
    """One problem's `PilotProblem` (see `draw_pilot`): one decode of ``samples`` rows and one replay of
    ``(orders + 1)·samples`` rows (``orders·samples`` without the left-to-right score; none when that is 0)."""
    length = engine.gen_length
    device = denoiser_device(engine.denoiser)
    generator = torch.Generator().manual_seed(stable_seed(seed, "headroom", task.name, problem.id))
    prompt = engine.encode(task.prompt_text(problem))
    prompt = prompt if device is None else prompt.to(device)
    drawn = decode(engine.denoiser, prompt, length, rule=Rule.of("random", block_length=block_length),
                   temperature=1.0, num_samples=samples, generator=generator, max_rows=max_rows)
    tokens = drawn.tokens
    correct = [task.check(problem, engine.decode(row.tolist())).correct for row in tokens.cpu()]
    first = samples if left_to_right else 0
    forced = torch.cat([torch.arange(length).expand(first, length),  # left to right, then M random orders
                        random_orders(orders * samples, length, block_length, generator)]).to(tokens.device)
    scores = torch.zeros(0, dtype=torch.float64)
    if forced.shape[0]:
        scores = replay(engine.denoiser, prompt, tokens.repeat(orders + left_to_right, 1), forced, drawn.config,
                        max_rows=max_rows).log_p.double().cpu()
    by_order = scores[first:].reshape(orders, samples).T  # [n, M]
    return PilotProblem(correct=correct, log_p=drawn.log_p.double().cpu().tolist(),
                        left_to_right=scores[:first].tolist() if left_to_right else None,
                        orders=by_order.tolist() if orders else None, problem=problem.id)


def random_orders(rows: int, length: int, block_length: int | None, generator: torch.Generator) -> torch.Tensor:
    """``[rows, L]`` uniformly random decoding orders (uniform within each block, blocks in sequence).

    >>> orders = random_orders(3, 4, 2, torch.Generator().manual_seed(0))
    >>> bool((orders[:, :2] < 2).all()), sorted(orders[0].tolist())
    (True, [0, 1, 2, 3])
    """
    block = length if block_length is None else block_length
    keys = torch.rand(rows, length, generator=generator, dtype=torch.float64)
    keys = keys + 2 * (torch.arange(length) // block)  # a block's keys lie above every earlier block's
    return keys.argsort(-1)


def save_pilot(path: str | Path, pilot: Mapping[str, Sequence[PilotProblem]], settings: dict | None = None) -> Path:
    """Write ``pilot`` (and the ``settings`` that drew it) as JSON, to analyse again with other temperatures
    without redrawing it (`load_pilot`).

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = save_pilot(f"{folder}/pilot.json", {"t": [PilotProblem([True], [-1.0])]}, {"seed": 0})
    >>> load_pilot(path)[0]["t"][0].log_p, load_pilot(path)[1]
    ((-1.0,), {'seed': 0})
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"settings": settings or {},
            "pilot": {name: [asdict(problem) for problem in problems] for name, problems in pilot.items()}}
    path.write_text(json.dumps(data))
    return path


def load_pilot(path: str | Path) -> tuple[dict[str, list[PilotProblem]], dict]:
    """``(pilot, settings)`` from a file of `save_pilot`."""
    try:
        data = json.loads(Path(path).read_text())
        pilot = {name: [PilotProblem(**p) for p in problems] for name, problems in data["pilot"].items()}
    except (json.JSONDecodeError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a pilot file of dllm-mcmc headroom ({error})") from None
    return pilot, dict(data.get("settings") or {})


def _config(block_length: int | None):
    return Rule.of("random", block_length=block_length).config(temperature=1.0)
