"""Sampler overhead: the share of wall time spent outside the model's forward calls.

What it measures
----------------
A masked diffusion LM sampler should spend its time in the model. This benchmark builds a small
transformer denoiser in memory (a ``BertForMaskedLM`` of about 5M parameters with random weights,
from a ``BertConfig``; nothing is downloaded), wraps it in a `MeteredDenoiser` it keeps a reference
to (so `TemperedTarget` uses it as is and does not wrap it again), and times

- ``decode`` (rule ``random``, ``S = C`` rows, token temperature ``τ``), called as many times as
  `sample` with ``proposal_batch=1`` decodes, so both push the same rows through the model;
- ``sample`` (IMH, ``C`` chains, target temperature ``T``, proposal temperature ``τ``) with each
  ``--proposal-batch`` value.

For every run, ``wall`` is the time around the call, ``forward`` the seconds the meter counted
inside the model's forward calls, and ``overhead = 1 - forward / wall``: the share of the run spent
in the sampler's own Python and tensor code (decoding loop, rules, log-softmax over the vocabulary,
MH arithmetic, progress bar). The runs are measured side by side in the same process: after a
short untimed warm-up, each of ``--repeats`` rounds runs every configuration once, and the table
reports the median per configuration. Nothing is asserted: the numbers depend on the machine.

``--profile N`` then runs ``sample`` (first ``--proposal-batch`` value) under cProfile and lists
the N largest items of time spent *outside* the forward calls: the Python functions of
dllm_mcmc (own time) and the torch operations they call directly (time per calling function).
cProfile's own cost inflates Python-heavy items, so read it as a ranking, not as a measurement.

How to run
----------
::

    .venv/bin/python benchmarks/overhead.py                    # default configuration
    .venv/bin/python benchmarks/overhead.py --threads 1        # one intra-op thread
    .venv/bin/python benchmarks/overhead.py --profile 20       # plus a cProfile breakdown
    .venv/bin/python benchmarks/overhead.py --quick            # tiny configuration (seconds)
    .venv/bin/python benchmarks/overhead.py --device cuda      # on a GPU (synchronised meter)

On a 2-core CPU the default configuration takes about 4 minutes (each configuration pushes
20 x 32 x 16 rows of 48 tokens through the model; ``--profile`` adds one more ``sample`` run).
On a shared or busy machine prefer ``--threads 1``: small reductions split over OpenMP threads
become very slow when the cores are contended, which inflates the overhead share.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time

import torch

from dllm_mcmc import HFDenoiser, MeteredDenoiser, decode, sample

PACKAGE_DIR = os.path.dirname(os.path.abspath(sys.modules["dllm_mcmc"].__file__))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Share of decode/sample wall time spent outside the model's forward calls.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true",
                        help="tiny configuration (small model, 4 chains, 8 tokens, 4 draws, 1 round)")
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--chains", type=int, default=16, help="C (and S for decode)")
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--gen-length", type=int, default=32)
    parser.add_argument("--num-samples", type=int, default=19,
                        help="IMH draws kept per chain (sample decodes 1 + warmup + num_samples proposals)")
    parser.add_argument("--warmup", type=int, default=0, help="IMH warm-up steps")
    parser.add_argument("--target-temperature", type=float, default=0.5, help="T")
    parser.add_argument("--proposal-temperature", type=float, default=0.5, help="τ")
    parser.add_argument("--proposal-batch", type=int, nargs="+", default=[1, 4],
                        help="proposal_batch values of sample to time")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed rounds; the table reports the median per configuration")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: leave torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--progress", action="store_true",
                        help="let sample show its tqdm bar (sample's own default); off by default")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also profile sample with cProfile and print the top N out-of-forward items")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.vocab_size, args.hidden_size, args.layers, args.heads = 100, 64, 2, 2
        args.chains, args.prompt_length, args.gen_length = 4, 8, 8
        args.num_samples, args.warmup, args.repeats = 4, 0, 1
    return args


def build_denoiser(args) -> tuple[MeteredDenoiser, int]:
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(args.seed)
    config = BertConfig(
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden_size,
        max_position_embeddings=max(64, args.prompt_length + args.gen_length),
        pad_token_id=0,
    )
    model = BertForMaskedLM(config).to(args.device)
    num_params = sum(p.numel() for p in model.parameters())
    mask_id = args.vocab_size - 1
    denoiser = HFDenoiser(model, mask_id=mask_id)
    meter = MeteredDenoiser(denoiser, synchronize=torch.device(args.device).type == "cuda")
    return meter, num_params


def make_prompt(args, mask_id: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(args.seed + 1)
    # ids 1 .. mask_id - 1: never the pad (0) or the mask
    return torch.randint(1, mask_id, (args.prompt_length,), generator=generator).to(args.device)


def _sync(args) -> None:
    if torch.device(args.device).type == "cuda":
        torch.cuda.synchronize()


def decode_calls(args) -> int:
    """Decodes that sample(proposal_batch=1) makes: the initial state plus one per step."""
    return 1 + args.warmup + args.num_samples


def run_decode(meter: MeteredDenoiser, prompt: torch.Tensor, args) -> dict:
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    meter.reset()
    _sync(args)
    start = time.perf_counter()
    for _ in range(decode_calls(args)):
        decode(meter, prompt, args.gen_length, rule="random", temperature=args.proposal_temperature,
               num_samples=args.chains, generator=generator)
    _sync(args)
    wall = time.perf_counter() - start
    return {"wall": wall, "forward": meter.seconds, "nfe": meter.nfe, "forward_rows": meter.forward_rows}


def run_sample(meter: MeteredDenoiser, prompt: torch.Tensor, args, proposal_batch: int) -> dict:
    meter.reset()  # IMH.setup resets it too
    _sync(args)
    start = time.perf_counter()
    sample(meter, prompt, args.gen_length, kernel="imh",
           target_temperature=args.target_temperature,
           proposal_temperature=args.proposal_temperature, rule="random",
           num_chains=args.chains, num_samples=args.num_samples, warmup=args.warmup,
           seed=args.seed, progress=args.progress, proposal_batch=proposal_batch)
    _sync(args)
    wall = time.perf_counter() - start
    return {"wall": wall, "forward": meter.seconds, "nfe": meter.nfe, "forward_rows": meter.forward_rows}


def warm_up(meter: MeteredDenoiser, prompt: torch.Tensor, args) -> None:
    """One short untimed decode and sample per batch shape (allocator, thread pools, lazy imports)."""
    for b in args.proposal_batch:
        sample(meter, prompt, args.gen_length, target_temperature=args.target_temperature,
               proposal_temperature=args.proposal_temperature, num_chains=args.chains,
               num_samples=1, warmup=0, seed=args.seed, progress=False, proposal_batch=b,
               rule="random")
    decode(meter, prompt, args.gen_length, temperature=args.proposal_temperature,
           num_samples=args.chains, generator=torch.Generator(device=args.device).manual_seed(0))


def median_run(runs: list[dict]) -> dict:
    out = {key: statistics.median(run[key] for run in runs) for key in ("wall", "forward")}
    out["overhead"] = statistics.median(1 - run["forward"] / run["wall"] for run in runs)
    out["nfe"], out["forward_rows"] = runs[0]["nfe"], runs[0]["forward_rows"]
    return out


def print_table(args, num_params: int, results: dict[str, dict]) -> None:
    print(f"model: BertForMaskedLM, {num_params:,} parameters ({num_params / 1e6:.2f}M); "
          f"vocab {args.vocab_size}, hidden {args.hidden_size}, {args.layers} layers; "
          f"device {args.device}, torch threads {torch.get_num_threads()}")
    print(f"C = S = {args.chains}, prompt {args.prompt_length}, gen_length {args.gen_length}, "
          f"IMH draws {args.num_samples} (+{args.warmup} warm-up), T = {args.target_temperature}, "
          f"τ = {args.proposal_temperature}, rule random; median of {args.repeats} round(s)")
    print()
    header = (f"{'run':<22}{'nfe':>7}{'rows':>8}{'wall s':>10}{'forward s':>11}"
              f"{'ms/call':>9}{'overhead':>10}{'wall/decode':>13}{'ovh s/decode ovh s':>20}")
    print(header)
    print("-" * len(header))
    base = results["decode"]
    base_overhead_s = base["wall"] - base["forward"]
    for name, r in results.items():
        overhead_s = r["wall"] - r["forward"]
        ratio_overhead = overhead_s / base_overhead_s if base_overhead_s > 0 else float("nan")
        print(f"{name:<22}{r['nfe']:>7}{r['forward_rows']:>8}{r['wall']:>10.3f}{r['forward']:>11.3f}"
              f"{1e3 * r['forward'] / r['nfe']:>9.2f}{100 * r['overhead']:>9.1f}%"
              f"{r['wall'] / base['wall']:>13.2f}{ratio_overhead:>20.2f}")
    print()
    print("overhead = 1 - forward / wall (time outside the model's forward calls); "
          "wall/decode and ovh s/decode ovh s compare with the decode row "
          f"({decode_calls(args)} decodes of {args.chains} rows, the forward work of "
          "sample with proposal_batch=1)")


def profile_sample(meter: MeteredDenoiser, prompt: torch.Tensor, args, top: int) -> None:
    proposal_batch = args.proposal_batch[0]
    profiler = cProfile.Profile()
    profiler.enable()
    run_sample(meter, prompt, args, proposal_batch)
    profiler.disable()
    stats = pstats.Stats(profiler)
    forward_key = next(key for key in stats.stats if key[0].endswith(os.path.join("denoisers", "metered.py"))
                       and key[2] == "__call__")
    total = stats.total_tt
    forward_cumulative = stats.stats[forward_key][3]

    def ours(filename: str) -> bool:
        return filename.startswith(PACKAGE_DIR) and not filename.endswith(
            (os.path.join("denoisers", "hf.py"), os.path.join("denoisers", "metered.py"))
        )

    def short(key) -> str:
        filename, line, name = key
        if filename == "~":
            return name
        if filename.startswith(PACKAGE_DIR):
            filename = "dllm_mcmc" + filename[len(PACKAGE_DIR):]
        else:
            filename = os.path.basename(filename)
        return f"{filename}:{line}({name})"

    items = []
    for key, (_, _, tottime, _, callers) in stats.stats.items():
        if ours(key[0]):
            items.append((tottime, f"{short(key)} [own Python time]"))
        elif not key[0].startswith(PACKAGE_DIR):  # torch ops and other library code
            for caller, (_, _, _, cumulative) in callers.items():
                if ours(caller[0]):
                    items.append((cumulative, f"{short(key)}  <-  {short(caller)}"))
    # tqdm and the rest of the runner's helpers are outside the package: show them as one line
    tqdm_time = sum(v[3] for k, v in stats.stats.items() if "tqdm" in k[0] and k[2] in ("update", "set_postfix"))
    items.sort(reverse=True)
    print()
    print(f"cProfile of sample(proposal_batch={proposal_batch}): {total:.3f} s profiled, "
          f"{forward_cumulative:.3f} s in MeteredDenoiser.__call__ "
          f"({100 * (1 - forward_cumulative / total):.1f}% outside, inflated by the profiler)")
    print(f"top {top} out-of-forward items (seconds; 'op <- caller' is the op's time when called "
          "from that dllm_mcmc function):")
    for seconds, label in items[:top]:
        print(f"  {seconds:8.4f}  {100 * seconds / total:5.1f}%  {label}")
    print(f"  tqdm update/set_postfix: {tqdm_time:.4f} s")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    meter, num_params = build_denoiser(args)
    prompt = make_prompt(args, meter.mask_id)

    runs: dict[str, list[dict]] = {"decode": []}
    runs.update({f"sample pb={b}": [] for b in args.proposal_batch})
    warm_up(meter, prompt, args)
    for _ in range(args.repeats):
        runs["decode"].append(run_decode(meter, prompt, args))
        for b in args.proposal_batch:
            runs[f"sample pb={b}"].append(run_sample(meter, prompt, args, b))
    print_table(args, num_params, {name: median_run(r) for name, r in runs.items()})
    if args.profile:
        profile_sample(meter, prompt, args, args.profile)


if __name__ == "__main__":
    main()
