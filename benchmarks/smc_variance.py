"""Spread of SMC's normaliser estimate Ẑ/Z on the exact toy: random positions (the rule) against the fully
adapted proposal (positions ∝ tempered mass, resampling before the draw), τ = T, side by side in one run.

    .venv/bin/python benchmarks/smc_variance.py          # about 5 s on one thread

Toy: ``ExactDenoiser.random(vocab_size=3, length=4, seed=0)``, random-order target, ``Z = Σ_x p(x)^(1/T)``.
Prints, per (T, N, proposal): the mean and standard deviation of Ẑ/Z over the runs (the mean is 1 up to
its Monte Carlo error, ``sd / sqrt(runs)``), the share of steps that resampled and the mean normalised ESS
of the final weights.
"""

from __future__ import annotations

import argparse

import torch

from dllm_mcmc import ExactDenoiser, smc_decode
from dllm_mcmc.decoding.smc import effective_sample_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    print("| T | N | positions | mean Ẑ/Z | sd Ẑ/Z | steps resampled | final ESS / N |")
    print("|---|---|---|---|---|---|---|")
    for temperature in (0.25, 0.5):
        exact = float((toy.probs.double() ** (1 / temperature)).sum())
        for particles in (4, 16):
            for proposal in ("rule", "tempered_mass"):
                out = smc_decode(toy, None, 4, temperature=temperature, target_temperature=temperature,
                                 num_particles=particles, num_runs=args.runs, position_proposal=proposal,
                                 generator=torch.Generator().manual_seed(args.seed))
                ratio = out.log_normalizer.exp() / exact
                ess = float((effective_sample_size(out.log_weight) / particles).mean())
                print(f"| {temperature} | {particles} | {proposal} | {float(ratio.mean()):.4f} | "
                      f"{float(ratio.std()):.3f} | {float(out.resampled.float().mean()):.3f} | {ess:.3f} |")


if __name__ == "__main__":
    main()
