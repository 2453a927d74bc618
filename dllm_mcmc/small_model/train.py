"""Train the small masked-diffusion LM on the task families: ``python -m dllm_mcmc.small_model.train``.

Objective (MDLM, Sahoo et al. 2024; LLaDA SFT, Nie et al. 2025, arXiv 2502.09992): the prompt is
always visible; each response position is masked independently with probability ``t ~ U(ε, 1)``,
and the loss is the cross-entropy on the masked positions weighted by ``1/t``, averaged over the
response length: an upper bound on the response's negative log-likelihood.

Optional **exchange-consistency penalty** (``--consistency λ``; ours, aimed at the order inconsistency that
``benchmarks/target_diagnostics.py`` measures). A joint distribution's conditionals satisfy, for any canvas
``c`` and two of its masked positions ``i, j``,

    log p(x_i | c) + log p(x_j | c, x_i) = log p(x_j | c) + log p(x_i | c, x_j),

so every order of revealing the two gives the same probability. A finite model's conditionals need not;
the penalty is ``λ · E[(lhs − rhs)²]`` over random canvases of training rows and of the model's own
random-order samples (refreshed every few steps), because the samplers weigh the model's own samples, which
include wrong answers the training data never show. Where order inconsistency hurts any-order models is
discussed by Shih, Sadigh & Ermon (2022), "Training and Inference on Any-Order Autoregressive Models the
Right Way". ``--init DIR`` starts from a trained small model (fine-tuning).

A sequence is ``left-padded prompt (prompt_length) + answer + "." + <eos> fill (response_length)``.
Training problems come from each family's train split only. Writes ``model.safetensors``,
``config.json`` (architecture, tokenizer alphabet, lengths, the training run) and ``loss.csv``.

Example:
    python -m dllm_mcmc.small_model.train --out runs/small --minutes 40
    python -m dllm_mcmc.small_model.train --out runs/small-x --init runs/small --consistency 0.5 --lr 3e-4
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from dllm_mcmc.small_model.model import CharTokenizer, SmallConfig, SmallDLM
from dllm_mcmc.tasks import ALPHABET, END_MARKER, FAMILIES


class TrainingData:
    """Batches of (prompt + response) id rows from the train splits, drawn with ``random.Random``."""

    def __init__(self, tokenizer: CharTokenizer, prompt_length: int, response_length: int, seed: int):
        self.tokenizer, self.prompt_length, self.response_length = tokenizer, prompt_length, response_length
        self.rng = random.Random(seed)
        self.pools = {name: family.problem_space("train") if family.enumerate_problems() is not None else None
                      for name, family in FAMILIES.items()}

    def _problem(self, name: str):
        family = FAMILIES[name]
        pool = self.pools[name]
        if pool is not None:
            return self.rng.choice(pool)
        while True:  # sampled families: keep train-split draws only
            problem = family.sample_problem(self.rng)
            if problem is not None and family.split_of(problem) == "train":
                return problem

    def row(self, name: str) -> list[int]:
        family = FAMILIES[name]
        problem = self._problem(name)
        response = self.tokenizer.encode(family.reference_solution(problem) + END_MARKER)
        response = response[: self.response_length]
        response += [self.tokenizer.eos_id] * (self.response_length - len(response))
        return self.tokenizer.encode_prompt(family.format_prompt(problem), self.prompt_length) + response

    def batch(self, size: int) -> torch.Tensor:
        names = sorted(FAMILIES)
        return torch.tensor([self.row(names[i % len(names)]) for i in range(size)])


def diffusion_loss(model: SmallDLM, rows: torch.Tensor, prompt_length: int, generator: torch.Generator,
                   min_ratio: float = 1e-3) -> torch.Tensor:
    """The 1/t-weighted masked cross-entropy on the response positions (see the module docstring)."""
    batch, length = rows.shape
    response_length = length - prompt_length
    ratio = torch.rand(batch, 1, generator=generator) * (1 - min_ratio) + min_ratio
    masked = torch.rand(batch, response_length, generator=generator) < ratio
    noisy = rows.clone()
    noisy[:, prompt_length:] = rows[:, prompt_length:].masked_fill(masked, model.mask_id)
    logits = model(noisy)[:, prompt_length:]
    token_loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), rows[:, prompt_length:].reshape(-1), reduction="none"
    ).reshape(batch, response_length)
    return ((token_loss * masked).sum(-1) / ratio.squeeze(1) / response_length).mean()


def exchange_gap(model: SmallDLM, rows: torch.Tensor, prompt_length: int, generator: torch.Generator,
                 min_ratio: float = 1e-3) -> torch.Tensor:
    """Per row, ``[log p(x_i|c) + log p(x_j|c,x_i)] − [log p(x_j|c) + log p(x_i|c,x_j)]`` (nats).

    ``i ≠ j`` are uniform response positions, masked in ``c`` together with every other response position
    independently with probability ``t ~ U(min_ratio, 1)``. Zero for every row when the conditionals are
    those of one joint distribution (see the module docstring). One forward of ``3 × rows``.
    """
    batch, length = rows.shape
    response_length = length - prompt_length
    if response_length < 2:
        raise ValueError(f"rows: need at least 2 response positions, got {response_length}")
    keys = torch.rand(batch, response_length, generator=generator)
    pair = keys.argsort(-1)[:, :2] + prompt_length  # two distinct positions per row
    ratio = torch.rand(batch, 1, generator=generator) * (1 - min_ratio) + min_ratio
    masked = torch.zeros_like(rows, dtype=torch.bool)
    masked[:, prompt_length:] = torch.rand(batch, response_length, generator=generator) < ratio
    index = torch.arange(batch)
    i, j = pair[:, 0], pair[:, 1]
    masked[index, i] = masked[index, j] = True
    canvas = rows.masked_fill(masked, model.mask_id)
    with_i, with_j = canvas.clone(), canvas.clone()
    with_i[index, i] = rows[index, i]
    with_j[index, j] = rows[index, j]
    logp = torch.log_softmax(model(torch.cat([canvas, with_i, with_j])).float(), -1)
    at_c, at_i, at_j = logp[:batch], logp[batch: 2 * batch], logp[2 * batch:]
    token_i, token_j = rows[index, i], rows[index, j]
    first_i = at_c[index, i, token_i] + at_i[index, j, token_j]
    first_j = at_c[index, j, token_j] + at_j[index, i, token_i]
    return first_i - first_j


@torch.no_grad()
def random_order_samples(model: SmallDLM, rows: torch.Tensor, prompt_length: int,
                         generator: torch.Generator) -> torch.Tensor:
    """The model's own responses to the prompts of ``rows``: one uniformly random masked position per step,
    its token drawn from the model's conditional at τ = 1 (random-order decoding, written out here because
    this module sits below ``dllm_mcmc.decoding``)."""
    was_training = model.training
    model.eval()
    canvas = rows.clone()
    canvas[:, prompt_length:] = model.mask_id
    index = torch.arange(rows.shape[0])
    for _ in range(rows.shape[1] - prompt_length):
        keys = torch.rand(canvas.shape, generator=generator).masked_fill(canvas != model.mask_id, -1.0)
        position = keys.argmax(-1)
        probs = torch.softmax(model(canvas)[index, position].float(), -1)
        canvas[index, position] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    model.train(was_training)
    return canvas


def train(out: Path, steps: int, minutes: float, batch_size: int, lr: float, seed: int, config: SmallConfig,
          prompt_length: int, response_length: int, progress: bool = True, init: Path | None = None,
          consistency: float = 0.0, refresh: int = 10) -> SmallDLM:
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if consistency < 0:
        raise ValueError(f"consistency must be >= 0, got {consistency}")
    torch.manual_seed(seed)
    tokenizer = CharTokenizer(ALPHABET)
    model = SmallDLM(config, tokenizer.mask_id, tokenizer.eos_id, tokenizer.pad_id)
    if init is not None:
        model.load_state_dict(load_file(str(Path(init) / "model.safetensors")))
    data = TrainingData(tokenizer, prompt_length, response_length, seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, min(200, steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    out.mkdir(parents=True, exist_ok=True)
    log: list[tuple[object, ...]] = [("step", "seconds", "loss", "exchange_gap_sq")]
    start, average = time.perf_counter(), None
    gap_average: float | None = None
    own: torch.Tensor | None = None
    model.train()
    with tqdm(range(steps), desc="train", disable=not progress) as bar:
        for step in bar:
            rows = data.batch(batch_size)
            loss = diffusion_loss(model, rows, prompt_length, generator)
            if consistency > 0:
                half = max(1, batch_size // 4)
                if own is None or step % refresh == 0:
                    own = random_order_samples(model, rows[:half], prompt_length, generator)
                gap_sq = exchange_gap(model, torch.cat([rows[:half], own]), prompt_length, generator).square().mean()
                loss = loss + consistency * gap_sq
                gap_average = gap_sq.item() if gap_average is None else 0.98 * gap_average + 0.02 * gap_sq.item()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            value = loss.item()
            average = value if average is None else 0.98 * average + 0.02 * value
            elapsed = time.perf_counter() - start
            if step % 10 == 0:
                log.append((step, round(elapsed, 1), round(average, 4),
                            None if gap_average is None else round(gap_average, 6)))
                bar.set_postfix(loss=f"{average:.3f}", refresh=False)
            if elapsed > minutes * 60:
                break
    assert average is not None  # steps >= 1, so the loop ran at least once
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "loss.csv").write_text("\n".join(",".join(map(str, row)) for row in log) + "\n")
    plot_loss(out / "loss.csv", out / "loss.png")
    (out / "config.json").write_text(json.dumps({
        "architecture": config.as_dict(), "alphabet": ALPHABET, "prompt_length": prompt_length,
        "response_length": response_length,
        "training": {"steps": step + 1, "seconds": round(time.perf_counter() - start), "batch_size": batch_size,
                     "lr": lr, "seed": seed, "final_loss": round(average, 4),
                     "init": None if init is None else str(init), "consistency": consistency},
    }, indent=2))
    return model


def plot_loss(csv: Path, png: Path) -> None:
    """Plot the smoothed training loss of ``loss.csv`` (step, seconds, loss) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [line.split(",") for line in csv.read_text().split()[1:]]  # after the header
    figure, axis = plt.subplots(figsize=(5, 3.2))
    axis.plot([int(r[0]) for r in rows], [float(r[2]) for r in rows])
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("loss (EMA 0.98)")
    axis.set_title("MDLM training loss")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--minutes", type=float, default=40.0, help="stop early after this wall time")
    parser.add_argument("--batch-size", type=int, default=96)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--prompt-length", type=int, default=20)
    parser.add_argument("--response-length", type=int, default=16)
    parser.add_argument("--init", type=Path, default=None, help="start from this trained small model")
    parser.add_argument("--consistency", type=float, default=0.0,
                        help="weight λ of the exchange-consistency penalty (0: plain MDLM)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one per process when several run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.init is not None:  # the architecture and lengths of the model fine-tuned
        trained = json.loads((args.init / "config.json").read_text())
        config = SmallConfig(**trained["architecture"])
        args.prompt_length, args.response_length = trained["prompt_length"], trained["response_length"]
    else:
        config = SmallConfig(vocab_size=CharTokenizer(ALPHABET).vocab_size,
                             max_length=args.prompt_length + args.response_length,
                             dim=args.dim, layers=args.layers, heads=args.heads)
    train(args.out, args.steps, args.minutes, args.batch_size, args.lr, args.seed, config,
          args.prompt_length, args.response_length, init=args.init, consistency=args.consistency)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
