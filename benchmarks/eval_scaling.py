"""Scaling of ``dllm-mcmc eval``: samples per second of the inline runner, local workers and Ray workers.

What it measures
----------------
The config (default ``configs/eval-small.toml``: four methods × three task families on the bundled
model) restricted to ``--problems`` problems per task and ``--samples`` samples, run side by side in one
process, each into its own temporary results file:

- ``inline``: the single-process runner, 1 torch thread;
- ``local``: ``--workers`` worker processes on this machine, 1 torch thread each;
- ``ray``: ``--workers`` Ray actors, 1 torch thread (1 CPU) each, on a local cluster started before
  the timing (as a running ``ray start --head`` cluster would be).

``samples/s`` is the run's samples over its wall time (`Summary.seconds`), which includes starting the
workers and loading the model in each (a few seconds for spawned processes or Ray actors: short runs
understate the steady-state speed-up). ``ratio`` is against inline. The script also checks that the three
runs wrote the same records (minus wall times). Nothing is asserted about speed: the numbers depend on
the machine and its load; on a shared machine run it when it is idle and compare ratios, not rates.

How to run
----------
::

    .venv/bin/python benchmarks/eval_scaling.py                          # 4 problems, 8 samples, 2 workers
    .venv/bin/python benchmarks/eval_scaling.py --problems 8 --executors inline,local
    .venv/bin/python benchmarks/eval_scaling.py --repeats 3              # median of 3 rounds

The ray run needs the extra: ``pip install 'dllm-mcmc[ray]'`` (it is skipped, with a note, without it).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
from pathlib import Path

import torch

from dllm_mcmc.eval.experiment import load_config, run_experiment
from dllm_mcmc.eval.records import read_records

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "eval-small.toml"), help="eval config")
    parser.add_argument("--problems", type=int, default=4, help="problems per task")
    parser.add_argument("--samples", type=int, default=8, help="samples per problem and method")
    parser.add_argument("--workers", type=int, default=2, help="workers of the local and ray executors")
    parser.add_argument("--executors", default="inline,local,ray", help="comma-separated executors to time")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every executor; the median is shown")
    parser.add_argument("--pack", type=int, default=4,
                        help="also time the inline runner packing this many problems per call (1: skip)")
    return parser.parse_args(argv)


def comparable(path: Path) -> list:
    return sorted(tuple(sorted((k, str(v)) for k, v in r.items() if k != "seconds")) for r in read_records(path))


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    names = [name.strip() for name in args.executors.split(",") if name.strip()]
    if "ray" in names and importlib.util.find_spec("ray") is None:
        print("ray is not installed (pip install 'dllm-mcmc[ray]'): skipping the ray run")
        names.remove("ray")
    if "ray" in names:
        import ray

        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="WARNING")
    packed = f"inline pack {args.pack}"
    rates: dict[str, list[float]] = {name: [] for name in names + ([packed] if args.pack > 1 else [])}
    records: dict[str, list] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for round_ in range(args.repeats):
                for name in names:
                    output = Path(folder) / f"{name}-{round_}.jsonl"
                    config = load_config(args.config, {
                        "problems": args.problems, "samples": args.samples, "output": str(output),
                        "executor": name, "workers": None if name == "inline" else args.workers, "threads": 1})
                    summary = run_experiment(config, progress=False)
                    assert not summary.failed, summary.failed
                    rates[name].append(summary.samples_per_second)
                    records.setdefault(name, comparable(output))
                    print(f"round {round_ + 1}: {summary.line()}", flush=True)
                if args.pack > 1:  # packed samples come from other seeds: timed, not compared
                    config = load_config(args.config, {
                        "problems": args.problems, "samples": args.samples, "threads": 1, "pack": args.pack,
                        "output": str(Path(folder) / f"packed-{round_}.jsonl")})
                    summary = run_experiment(config, progress=False)
                    rates[packed].append(summary.samples_per_second)
                    print(f"round {round_ + 1} ({packed}): {summary.line()}", flush=True)
    finally:
        if "ray" in names:
            ray.shutdown()
    same = all(r == records[names[0]] for r in records.values())
    base = statistics.median(rates["inline"]) if "inline" in rates else None
    print(f"\n{args.problems} problems per task, {args.samples} samples; records identical across executors: "
          f"{'yes' if same else 'NO'}")
    print(f"{'executor':<18}{'samples/s':>10}{'ratio':>8}")
    for name in rates:
        rate = statistics.median(rates[name])
        label = name if name.startswith("inline") else f"{name} ×{args.workers}"
        ratio = f"{rate / base:.2f}" if base else "-"
        print(f"{label:<18}{rate:>10.2f}{ratio:>8}")


if __name__ == "__main__":
    main()
