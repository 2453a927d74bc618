"""Score a trained small model on the task families' test splits: ``python -m dllm_mcmc.eval.score_small``.

For each family, ``--problems`` test problems, ``--samples`` decodes per problem (one batched decode
per problem) with each ``--rules`` at token temperature ``--temperature``, one token per step.
Prints, per family and rule: Pass@1 (mean correctness), unbiased Pass@k (Chen et al. 2021,
``1 − C(n−c, k)/C(n, k)``, `dllm_mcmc.eval.passk`) with its standard error over problems, and distinct
extracted answers per problem. ``--sample-seed`` changes the draws but not the problems (``--seed``), to
measure the sampling noise of the table. ``--greedy`` also reports
near-greedy accuracy (rule top_prob at τ = 1e-3: an approximation of argmax decoding, since the
decoder requires τ > 0).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from dllm_mcmc.decoding import decode
from dllm_mcmc.eval.passk import pass_at_k
from dllm_mcmc.small_model import load_small_model
from dllm_mcmc.tasks import FAMILIES


def mean_and_error(values: list[float]) -> str:
    """``mean ± standard error over problems``."""
    error = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):.3f} ± {error:.3f}"


def score(model, tokenizer, config, family_name, rule, temperature, problems, samples, seed):
    family = FAMILIES[family_name]
    generator = torch.Generator().manual_seed(seed)
    passes: dict[int, list[float]] = {1: [], 4: [], 16: []}
    distinct: list[int] = []
    for problem in problems:
        prompt = torch.tensor(tokenizer.encode_prompt(family.format_prompt(problem), config["prompt_length"]))
        traj = decode(model, prompt, config["response_length"], rule=rule, temperature=temperature,
                      num_samples=samples, generator=generator)
        texts = [tokenizer.decode(row) for row in traj.tokens]
        correct = sum(family.verify(problem, text) for text in texts)
        for k in passes:
            if k <= samples:
                passes[k].append(pass_at_k(samples, correct, k))
        distinct.append(len({family.extract_answer(text) for text in texts}))
    return {f"pass@{k}": mean_and_error(v) if v else None for k, v in passes.items()} | {
        "distinct": f"{sum(distinct) / len(distinct):.2f}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--rules", default="random,confidence")
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="which test problems (and, by default, the draws)")
    parser.add_argument("--sample-seed", type=int, default=None, help="seed of the draws (default: --seed)")
    parser.add_argument("--families", default=",".join(FAMILIES))
    args = parser.parse_args(argv)
    sample_seed = args.seed if args.sample_seed is None else args.sample_seed
    model, tokenizer, config = load_small_model(args.model)
    print("| family | rule | pass@1 | pass@4 | pass@16 | distinct answers |")
    print("|---|---|---|---|---|---|")
    for name in args.families.split(","):
        family = FAMILIES[name]
        problems = family.generate("test", args.problems, seed=args.seed)
        runs = [(rule, args.temperature, args.samples) for rule in args.rules.split(",")]
        if args.greedy:
            runs.insert(0, ("top_prob", 1e-3, 1))
        for rule, temperature, samples in runs:
            result = score(model, tokenizer, config, name, rule, temperature, problems, samples, sample_seed)
            label = "greedy≈" if temperature < 0.01 else rule
            print(f"| {name} | {label} | " + " | ".join("-" if v is None else v for v in result.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
