"""Stepwise sampler accuracy: how close does each variant get to the globally tempered target?

What it measures
----------------
On random enumerable joints (`ExactDenoiser.random`: ``p(x) ∝ exp(sharpness · z_x)``,
``z_x ~ N(0, 1)``) of sizes V=3, L=4 (81 sequences) and V=4, L=5 (1,024 sequences), seeds 0..4,
sharpness 1 and 2, it draws ``--draws`` responses (random positions, no blocks, target
temperature ``T`` = proposal temperature ``τ`` = 0.5 by default) with

- ``local``: local tempering, i.e. the stepwise sampler with ``K = 1`` (decoding at ``τ``);
- ``mf K``: the stepwise sampler with the paper's mean-field suffix (an approximation), MH scan
  over ``K`` candidates;
- ``exact K``: the stepwise sampler with the exactly enumerated suffix (the oracle), MH scan;

and reports the total-variation distance of each empirical distribution to the exact target
``p(x)^(1/T) / Z``. ``floor`` is the TV of as many exact i.i.d. draws from the target: the
sampling noise every column carries. An exact sampler sits at the floor; anything above it is bias
(finite ``K`` or the mean-field approximation). All runs deduplicate identical candidate
canvases (``dedupe=True``: the same draws, fewer rows). The summary averages over the 5 seeds.

The sampler is `dllm_mcmc.decoding.stepwise_decode`, run through its kernel adapter
(`dllm_mcmc.mcmc.stepwise.Stepwise` under `sample`, seeded by ``seed``: the first decode is the kernel's
initial state and is not counted), so the table in ``docs/results.md`` reproduces digit for digit.

How to run
----------
::

    .venv/bin/python benchmarks/stepwise_accuracy.py            # about 2-4 minutes on 2 cores
    .venv/bin/python benchmarks/stepwise_accuracy.py --quick    # one seed, 5,000 draws

Prints markdown tables to stdout. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import time

import torch

from dllm_mcmc import ExactDenoiser, TemperedTarget, sample
from dllm_mcmc.mcmc.stepwise import Stepwise


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p.double() - q.double()).abs().sum())


def empirical(toy: ExactDenoiser, tokens: torch.Tensor) -> torch.Tensor:
    counts = torch.bincount(toy.index(tokens), minlength=toy.probs.numel()).double()
    return counts / counts.sum()


def stepwise_tv(toy, target_temperature, temperature, candidates, suffix, draws, chains, seed):
    target = TemperedTarget(toy, None, toy.length, target_temperature=target_temperature)
    kernel = Stepwise(target, proposal_temperature=temperature, num_candidates=candidates, suffix=suffix,
                      num_chains=chains, seed=seed, dedupe=True)
    result = sample(toy, None, toy.length, kernel=kernel, num_samples=draws // chains, warmup=0,
                    progress=False)
    return total_variation(empirical(toy, result.tokens.reshape(-1, toy.length)), toy.tempered(target_temperature))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=20_000)
    parser.add_argument("--chains", type=int, default=2_000, help="rows per stepwise decode")
    parser.add_argument("--target-temperature", type=float, default=0.5, help="target temperature T")
    parser.add_argument("--temperature", type=float, default=0.5, help="token temperature τ of the candidate proposal")
    parser.add_argument("--candidates", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one seed, 5,000 draws")
    args = parser.parse_args()
    if args.quick:
        args.draws, args.seeds, args.chains = 5_000, 1, 1_000
    torch.set_num_threads(1)
    columns = ["floor", "local"] + [f"{s} K={k}" for s in ("mf", "exact") for k in args.candidates]
    print(f"T = {args.target_temperature}, τ = {args.temperature}, {args.draws} draws per cell, random positions\n")
    print("| V | L | sharpness | seed | " + " | ".join(columns) + " |")
    print("|---|---|---|---|" + "---|" * len(columns))
    summary: dict[tuple, list[list[float]]] = {}
    start = time.perf_counter()
    for vocab_size, length in ((3, 4), (4, 5)):
        for sharpness in (1.0, 2.0):
            for seed in range(args.seeds):
                toy = ExactDenoiser.random(vocab_size, length, seed=seed, sharpness=sharpness)
                target = toy.tempered(args.target_temperature)
                iid = torch.multinomial(target, args.draws, replacement=True,
                                        generator=torch.Generator().manual_seed(seed))
                row = [total_variation(torch.bincount(iid, minlength=target.numel()).double() / args.draws, target)]
                row.append(stepwise_tv(toy, args.target_temperature, args.temperature, 1, "mean_field", args.draws,
                                       args.chains, seed))
                for suffix in ("mean_field", "exact"):
                    for k in args.candidates:
                        row.append(stepwise_tv(toy, args.target_temperature, args.temperature, k, suffix, args.draws,
                                               args.chains, seed))
                summary.setdefault((vocab_size, length, sharpness), []).append(row)
                cells = " | ".join(f"{value:.4f}" for value in row)
                print(f"| {vocab_size} | {length} | {sharpness:g} | {seed} | {cells} |", flush=True)
    print("\nMean over seeds:\n")
    print("| V | L | sharpness | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for (vocab_size, length, sharpness), rows in summary.items():
        means = torch.tensor(rows).mean(0).tolist()
        print(f"| {vocab_size} | {length} | {sharpness:g} | " + " | ".join(f"{m:.4f}" for m in means) + " |")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
