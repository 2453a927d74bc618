"""Score a trained small model on the task families' test splits: ``python -m dllm_mcmc.models.evaluate``.

For each family, ``--problems`` test problems, ``--samples`` decodes per problem (one batched decode
per problem) with each ``--rules`` at token temperature ``--temperature``, one token per step.
Prints, per family and rule: Pass@1 (mean correctness), unbiased Pass@k (Chen et al. 2021,
``1 − C(n−c, k)/C(n, k)``) and distinct extracted answers per problem. ``--greedy`` also reports
near-greedy accuracy (rule top_prob at τ = 1e-3: an approximation of argmax decoding, since the
decoder requires τ > 0).
"""

from __future__ import annotations

import argparse
import math

import torch

from ..decoding import decode
from ..tasks import FAMILIES
from .load import load_small_model


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for ``c`` correct of ``n`` samples."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def score(model, tokenizer, config, family_name, rule, temperature, problems, samples, seed):
    family = FAMILIES[family_name]
    generator = torch.Generator().manual_seed(seed)
    passes, distinct = {1: [], 4: [], 16: []}, []
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
    return {f"pass@{k}": sum(v) / len(v) if v else None for k, v in passes.items()} | {
        "distinct": sum(distinct) / len(distinct)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--problems", type=int, default=50)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--rules", default="random,confidence")
    parser.add_argument("--greedy", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model, tokenizer, config = load_small_model(args.model)
    print("| family | rule | pass@1 | pass@4 | pass@16 | distinct answers |")
    print("|---|---|---|---|---|---|")
    for name, family in FAMILIES.items():
        problems = family.generate("test", args.problems, seed=args.seed)
        runs = [(rule, args.temperature, args.samples) for rule in args.rules.split(",")]
        if args.greedy:
            runs.insert(0, ("top_prob", 1e-3, 1))
        for rule, temperature, samples in runs:
            result = score(model, tokenizer, config, name, rule, temperature, problems, samples, args.seed)
            label = "greedy≈" if temperature < 0.01 else rule
            print(f"| {name} | {label} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in result.values()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
