"""Does the tempered target reward correct answers on the bundled model? Two measurements that bound what
tempering ``p(x)^(1/T)`` can gain, on the first problems of the ``countdown`` and ``arith`` test splits.

    .venv/bin/python benchmarks/target_diagnostics.py        # about 2 minutes on one thread

For each problem, ``n`` responses are drawn by random-order decoding at τ = 1 (the model's own random-order
path law) and each is scored by the chain rule ``log p(x | σ)`` along its own order and along ``R`` other
uniformly random orders (`dllm_mcmc.replay`), and left to right.

1. **Order inconsistency**: a consistent joint gives every order the same ``log p(x | σ)``. Printed: the
   mean over responses of the standard deviation of ``log p(x | σ)`` across the ``R + 1`` orders, beside the
   spread between responses of one problem (the standard deviation across a problem's responses of their
   order-averaged score). The target of the samplers is the path law ``u(σ|x) p(x|σ)^(1/T)``: where the
   orders disagree, the sequence's weight is an average over orders the model does not agree on.
2. **Does the score rank correct answers first?** Within each problem that has both correct and wrong
   responses, the probability that a random correct response scores higher than a random wrong one (AUC;
   0.5: the score carries no information about correctness). Printed for the own-order ``log p(x | σ)``
   (what IMH, SMC and particle Gibbs weigh by), its average over orders, and left to right. Tempering moves
   mass towards high scores, so it can raise Pass@1 only as far as this AUC is above 0.5.

Problems, seeds and ``n``, ``R`` are fixed by the flags' defaults; nothing here is tuned to an outcome.
"""

from __future__ import annotations

import argparse

import torch

from dllm_mcmc import decode, replay
from dllm_mcmc.eval.engine import load_engine
from dllm_mcmc.eval.family_tasks import FamilyTask
from dllm_mcmc.likelihood import left_to_right_log_likelihood


def auc(scores: torch.Tensor, correct: torch.Tensor) -> float | None:
    """P(score of a random correct > score of a random wrong), ties counted one half; None if one class is empty."""
    good, bad = scores[correct], scores[~correct]
    if good.numel() == 0 or bad.numel() == 0:
        return None
    difference = good[:, None] - bad[None, :]
    return float((difference > 0).double().mean() + 0.5 * (difference == 0).double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--orders", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="tasks-small", help="a bundled model name or a trained directory")
    args = parser.parse_args()
    torch.set_num_threads(1)
    engine = load_engine(args.model)
    length = engine.gen_length
    print(f"{args.model}, first {args.problems} test problems per family, n = {args.samples} random-order "
          f"samples at τ = 1 each, {args.orders} extra random orders per sample, seed {args.seed}\n")
    print("| family | Pass@1 | sd of log p(x|σ) across orders | sd across a problem's samples | "
          "problems with both | AUC own order | AUC order-averaged | AUC left to right |")
    print("|---|---|---|---|---|---|---|---|")
    for family in ("countdown", "arith"):
        task = FamilyTask(family)
        generator = torch.Generator().manual_seed(args.seed)
        across_orders, across_samples, aucs, accuracy = [], [], {"own": [], "mean": [], "l2r": []}, []
        for problem in task.problems(args.problems):
            prompt = engine.encode(task.prompt_text(problem))
            drawn = decode(engine.denoiser, prompt, length, rule="random", temperature=1.0,
                           num_samples=args.samples, generator=generator)
            scores = [drawn.log_p.double()]
            for _ in range(args.orders):
                order = torch.stack([torch.randperm(length, generator=generator) for _ in range(args.samples)])
                scores.append(replay(engine.denoiser, prompt, drawn.tokens, order, rule="random").log_p.double())
            by_order = torch.stack(scores, 1)  # [n, R + 1]
            left_to_right = left_to_right_log_likelihood(
                engine.denoiser, prompt.expand(args.samples, -1), drawn.tokens).double()
            correct = torch.tensor([task.check(problem, engine.decode(row.tolist())).correct
                                    for row in drawn.tokens])
            accuracy.append(float(correct.double().mean()))
            across_orders.append(float(by_order.std(1).mean()))
            across_samples.append(float(by_order.mean(1).std()))
            for key, score in (("own", by_order[:, 0]), ("mean", by_order.mean(1)), ("l2r", left_to_right)):
                value = auc(score, correct)
                if value is not None:
                    aucs[key].append(value)

        def mean(values: list[float], digits: int) -> str:
            return f"{sum(values) / len(values):.{digits}f}" if values else "-"

        print(f"| {family} | {mean(accuracy, 3)} | {mean(across_orders, 2)} | {mean(across_samples, 2)} | "
              f"{len(aucs['own'])} | {mean(aucs['own'], 3)} | {mean(aucs['mean'], 3)} | {mean(aucs['l2r'], 3)} |")


if __name__ == "__main__":
    main()
