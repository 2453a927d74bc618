"""WeDLM's prefix cache and restricted logits: time per token and peak memory, side by side.

What it measures
----------------
1. **Prefix cache.** A small WeDLM-shaped model (causal Qwen3-style stack with q/k norms and grouped
   key-value heads, random weights drawn from a seeded generator; nothing is downloaded; the vocabulary
   sized so that the output head costs about the share of a token's FLOPs it has in WeDLM-8B, 8%, since
   the cache saves the stack's work and not the head's) is wrapped twice
   as a `WeDLMDenoiser`, with ``kv_cache=True`` and ``kv_cache=False``, and ``decode`` runs one response
   after a prompt with each, for every response length (``--gen-lengths``, 64 and 256 by default) and
   every order:

   - ``left-to-right``: ``rule="random"`` with ``block_length=1`` (one position per block, so strictly
     left to right): the cache reuses everything but the newest token and the masks;
   - ``top_prob/32``: LLaDA-style semi-autoregressive blocks of 32 with the ``top_prob`` rule: within a
     block, commits left of the previous ones invalidate what follows them;
   - ``random``: ``rule="random"`` over the whole response: only the observed tokens left of the newest
     commit are reused, about half the committed ones on average.

   Reported: seconds per generated token (median over ``--repeats`` rounds; every round runs every
   configuration once, cached and uncached one after the other) and ``speedup = uncached / cached``.

2. **Restricted logits.** A LLaDA-shaped bidirectional model (LLaDA-8B's vocabulary of 126464 columns,
   a narrow stack) runs one forward call on a 128 + 256 canvas, returning the full float32 logits, only
   the 256 response positions, or one 32-token block (``logit_positions``). Reported: the peak of live
   CPU tensor bytes during the call (torch profiler with ``profile_memory``, at operator granularity:
   transient buffers inside one operator are not seen) and its ratio to the full call's. The weights are
   allocated before profiling and do not count.

Nothing is asserted: the numbers depend on the machine.

How to run
----------
::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/wedlm_cache.py            # defaults (one thread)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/wedlm_cache.py --quick    # tiny sizes (seconds)

On one core of a shared 2-core CPU the default run takes a few minutes, most of it in the uncached
decodes of 256 tokens.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from dllm_mcmc import decode
from dllm_mcmc.denoisers.native import ArchitectureConfig, NativeDenoiser, Transformer, WeDLMDenoiser

ORDERS = {"left-to-right": ("random", 1), "top_prob/32": ("top_prob", 32), "random": ("random", None)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--gen-lengths", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--prompt-length", type=int, default=32)
    parser.add_argument("--num-samples", type=int, default=1, help="rows decoded together")
    parser.add_argument("--orders", nargs="+", default=list(ORDERS), choices=list(ORDERS))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=1024,
                        help="the output head's share of a token's FLOPs is then about WeDLM-8B's (8%%)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.gen_lengths, args.hidden, args.layers, args.vocab, args.repeats = [16, 32], 64, 2, 512, 1
    return args


def random_model(config: ArchitectureConfig, seed: int) -> Transformer:
    """A stack with weights drawn from one seeded generator (norm weights 1)."""
    generator = torch.Generator().manual_seed(seed)
    model = Transformer(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.fill_(1.0)
            else:
                parameter.normal_(0.0, 0.05, generator=generator)
    return model.eval()


def wedlm_config(args: argparse.Namespace) -> ArchitectureConfig:
    heads = max(2, args.hidden // 64)
    return ArchitectureConfig(hidden=args.hidden, layers=args.layers, heads=heads, kv_heads=heads // 2,
                              head_dim=args.hidden // heads, intermediate=3 * args.hidden, vocab=args.vocab,
                              mask_id=args.vocab - 1, rope_theta=1e6, rms_eps=1e-6, qk_norm=True, causal=True)


def time_decode(denoiser: WeDLMDenoiser, prompt: torch.Tensor, gen_length: int, order: str,
                num_samples: int, seed: int) -> float:
    """Seconds per generated token of one decode (the cache emptied first)."""
    rule, block_length = ORDERS[order]
    if block_length is not None and gen_length % block_length:
        block_length = gen_length  # --quick lengths: one block
    denoiser.clear_cache()
    start = time.perf_counter()
    decode(denoiser, prompt, gen_length, rule=rule, block_length=block_length, num_samples=num_samples,
           generator=torch.Generator().manual_seed(seed))
    return (time.perf_counter() - start) / gen_length


def cache_table(args: argparse.Namespace) -> None:
    model = random_model(wedlm_config(args), args.seed)
    cached, plain = WeDLMDenoiser(model, kv_cache=True), WeDLMDenoiser(model, kv_cache=False)
    prompt = torch.randint(0, args.vocab - 1, (args.prompt_length,), generator=torch.Generator().manual_seed(1))
    configs = [(length, order) for length in args.gen_lengths for order in args.orders]
    time_decode(cached, prompt, 8, "random", args.num_samples, args.seed)  # warm-up
    times: dict[tuple, list[float]] = {}
    for round_ in range(args.repeats):
        for length, order in configs:
            for name, denoiser in (("cached", cached), ("uncached", plain)):
                seconds = time_decode(denoiser, prompt, length, order, args.num_samples, args.seed + round_)
                times.setdefault((length, order, name), []).append(seconds)
    print(f"WeDLM-shaped model: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}; prompt "
          f"{args.prompt_length}, {args.num_samples} row(s), {torch.get_num_threads()} thread(s), "
          f"median of {args.repeats}")
    print(f"{'length':>6}  {'order':<14}{'cached ms/token':>16}{'uncached ms/token':>19}{'speedup':>9}")
    for length, order in configs:
        fast = statistics.median(times[(length, order, "cached")])
        slow = statistics.median(times[(length, order, "uncached")])
        print(f"{length:>6}  {order:<14}{1e3 * fast:>16.2f}{1e3 * slow:>19.2f}{slow / fast:>8.2f}x")


def peak_bytes(fn) -> int:
    """Peak live CPU tensor bytes during ``fn()``, from the profiler's allocation records in time order."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events()
                     if e.self_cpu_memory_usage)
    live = top = 0
    for _, change in records:
        live += change
        top = max(top, live)
    return top


def logits_table(args: argparse.Namespace) -> None:
    vocab, prompt_length, gen_length, block = (2048, 16, 32, 8) if args.quick else (126464, 128, 256, 32)
    config = ArchitectureConfig(hidden=128, layers=2, heads=4, kv_heads=4, head_dim=32, intermediate=384,
                                vocab=vocab, mask_id=vocab - 2, rope_theta=5e5)
    denoiser = NativeDenoiser(random_model(config, args.seed), architecture="llada")
    tokens = torch.randint(0, vocab, (1, prompt_length + gen_length), generator=torch.Generator().manual_seed(2))
    tokens[:, prompt_length:] = config.mask_id
    cases = {"full [N]": None,
             f"response [{gen_length}]": torch.arange(prompt_length, prompt_length + gen_length),
             f"block [{block}]": torch.arange(prompt_length, prompt_length + block)}
    denoiser(tokens)  # warm-up
    peaks = {name: peak_bytes(lambda index=index: denoiser(tokens, logit_positions=index))
             for name, index in cases.items()}
    full = peaks["full [N]"]
    print(f"\nLLaDA-shaped forward: vocab {vocab}, canvas {prompt_length} + {gen_length}, float32 "
          f"(full logits {prompt_length + gen_length} x {vocab} x 4 B = "
          f"{(prompt_length + gen_length) * vocab * 4 / 2**20:.0f} MiB)")
    print(f"{'logits':<16}{'peak MiB':>10}{'vs full':>9}")
    for name, value in peaks.items():
        print(f"{name:<16}{value / 2**20:>10.1f}{value / full:>9.3f}")


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cache_table(args)
    logits_table(args)


if __name__ == "__main__":
    main()
