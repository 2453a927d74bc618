"""GPU benchmark: an 8B-shaped LLaDA with random bfloat16 weights, forward calls and samplers.

What it measures
----------------
The model has the real LLaDA-8B shape (vocab 126464, hidden 4096, 32 layers, 32 heads and 32
key-value heads of width 128, MLP 12288, rope theta 5e5, mask id 126336) and random weights drawn
straight into bfloat16 on the GPU (``normal_(std=0.02)``, RMSNorm weights 1): nothing is downloaded,
and the cost of a forward call does not depend on the weights' values. It is wrapped in the library's
`NativeDenoiser`, then in a `MeteredDenoiser` with ``synchronize=True``, so the seconds inside forward
calls are measured, not just their launch.

1. **Forward calls**: one call on the first decoding canvas (prompt + all-mask response, 128 + 256
   tokens) at each batch size (default 1, 4, 16, 64), after one untimed call at that size; median of
   ``--repeats`` timed calls (``torch.cuda.synchronize`` around each), rows and canvas tokens per
   second, peak memory (``torch.cuda.max_memory_allocated``).
2. **Samplers**, ``S`` responses (default 4) of 256 tokens, one token per step (256 steps):
   ``confidence`` decoding (LLaDA's low-confidence remasking, ``S`` rows per call); IMH with ``K``
   proposals per chain (``S`` chains, ``proposal_batch=K``: one decode of ``S·K`` rows, then ``K - 1``
   MH steps); the stepwise sampler with ``K`` candidates per step (one stepwise decode of ``S``
   chains, ``S·K`` rows per call after the first). ``tok/s`` is ``S × 256`` response tokens per wall
   second, ``overhead = 1 - forward seconds / wall seconds`` the share outside the model. The meter's
   synchronisation keeps the host from running ahead of the device, so the overhead is the time the
   device would sit idle between calls without that run-ahead (an upper bound).
3. **Host syncs**: each sampler once more at response lengths 8 and 16 under
   ``torch.cuda.set_sync_debug_mode("warn")``, counting the synchronising operations it reports. Equal
   counts at both lengths mean no synchronisation inside the per-step loop. On the CPU (``--dry-run``)
   the count is a proxy: host reads of tensor values seen by a dispatch mode.

Every sampler uses ``max_rows="auto"`` (from the free GPU memory; the resolved value is printed).
Rows run in order of cost; ``--budget-seconds`` (counted from the start) skips any row whose estimate
(from the forward timings) would overrun it, and the table is rewritten to ``--out`` after every row,
so a run cut short still leaves what it measured.

How to run
----------
::

    python benchmarks/gpu.py --dry-run                     # CPU, tiny shape, a few seconds
    python benchmarks/gpu.py --out gpu.md                  # GPU: about 5 minutes on an H100 expected

The GPU run needs about 16 GB for the weights and 20-40 GB more at batch 64 or ``S·K = 32`` rows
(float32 logits over 126464 tokens are 190 MB per row of 384 positions).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dllm_mcmc import IMH, MeteredDenoiser, Stepwise, TemperedTarget, decode
from dllm_mcmc.denoisers.batching import resolve_max_rows
from dllm_mcmc.denoisers.native import ArchitectureConfig, BidirectionalTransformer, NativeDenoiser

LLADA_8B = ArchitectureConfig(hidden=4096, layers=32, heads=32, kv_heads=32, head_dim=128, intermediate=12288,
                              vocab=126464, mask_id=126336, rope_theta=5e5, eos_id=126081, pad_id=126081)
TINY = ArchitectureConfig(hidden=64, layers=2, heads=4, kv_heads=4, head_dim=16, intermediate=128, vocab=300,
                          mask_id=299, rope_theta=5e5)
SYNC_LENGTHS = (8, 16)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Forward and sampler throughput of an 8B-shaped LLaDA on a GPU.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="CPU, tiny model (vocab 300, hidden 64, 2 layers), prompt 8 + gen 16, batches 1 4")
    parser.add_argument("--out", default=None, help="also write the markdown table here")
    parser.add_argument("--budget-seconds", type=float, default=400.0,
                        help="skip rows whose estimated time would end past this many seconds from the start")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    parser.add_argument("--prompt-length", type=int, default=None, help="default 128 (8 with --dry-run)")
    parser.add_argument("--gen-length", type=int, default=None, help="default 256 (16 with --dry-run)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default 1 4 16 64 (1 4 dry)")
    parser.add_argument("--samples", type=int, default=4, help="S: responses (chains) per sampler run")
    parser.add_argument("--candidates", type=int, nargs="+", default=[4, 8], help="K values")
    parser.add_argument("--samplers", default="confidence,imh,stepwise",
                        help="comma-separated subset of the sampler rows to run")
    parser.add_argument("--kernel-rule", default="top_prob", help="the kernels' decoding rule (order law)")
    parser.add_argument("--temperature", type=float, default=0.7, help="token temperature τ")
    parser.add_argument("--target-temperature", type=float, default=0.5, help="T of the kernels' target")
    parser.add_argument("--repeats", type=int, default=3, help="timed forward calls per batch size")
    parser.add_argument("--max-rows", default="auto", help="'auto', 'none' or an integer")
    parser.add_argument("--no-sync-check", action="store_true", help="skip the host-sync count")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dry = args.dry_run
    args.device = torch.device(args.device or ("cpu" if dry else "cuda"))
    args.prompt_length = args.prompt_length or (8 if dry else 128)
    args.gen_length = args.gen_length or (16 if dry else 256)
    args.batch_sizes = args.batch_sizes or ([1, 4] if dry else [1, 4, 16, 64])
    if args.max_rows != "auto":
        args.max_rows = None if args.max_rows == "none" else int(args.max_rows)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --dry-run (or --device cpu)")
    return args


def build_denoiser(config: ArchitectureConfig, device: torch.device, dtype: torch.dtype, seed: int) -> NativeDenoiser:
    """A `BidirectionalTransformer` allocated once, in ``dtype`` on ``device``, with random weights.

    Built on the meta device and materialised empty, so an 8B model never exists in float32 or on
    the host; then every weight is drawn in place.
    """
    with torch.device("meta"):
        model = BidirectionalTransformer(config)
    model = model.to(dtype=dtype).to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.fill_(1.0)
            else:
                parameter.normal_(0.0, 0.02, generator=generator)
    return NativeDenoiser(model, architecture="llada")


class Clock:
    """Wall time that waits for the device first, and the device's peak memory."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**30 if self.cuda else None


@dataclass
class Report:
    """The measured rows, rendered as markdown."""

    header: list[str]
    forward: list[dict] = field(default_factory=list)
    samplers: list[dict] = field(default_factory=list)
    syncs: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = ["# benchmarks/gpu.py", "", *[f"- {line}" for line in self.header], ""]
        lines += ["## Forward calls", "", "| batch | ms/call | rows/s | tokens/s | peak GiB |",
                  "|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['batch']} | {1e3 * r['seconds']:.1f} | {r['batch'] / r['seconds']:.1f} | "
                  f"{r['batch'] * r['length'] / r['seconds']:,.0f} | {_gib(r['peak'])} |" for r in self.forward]
        lines += ["", "## Samplers", "",
                  "| sampler | K | rows/call | nfe | wall s | forward s | overhead | tok/s | wall / confidence "
                  "| peak GiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        base = next((r["wall"] for r in self.samplers if r["sampler"] == "confidence"), None)
        lines += [f"| {r['sampler']} | {r['K']} | {r['rows_per_call']} | {r['nfe']} | {r['wall']:.2f} | "
                  f"{r['forward']:.2f} | {100 * (1 - r['forward'] / r['wall']):.1f}% | {r['tokens'] / r['wall']:.1f} | "
                  f"{_ratio(r['wall'], base)} | "
                  f"{_gib(r['peak'])} |" for r in self.samplers]
        if self.syncs:
            lengths = " | ".join(f"syncs, L={n}" for n in SYNC_LENGTHS)
            lines += ["", "## Host syncs", "", f"| sampler | K | {lengths} | per step |",
                      "|---|---:|" + "---:|" * (len(SYNC_LENGTHS) + 1)]
            for r in self.syncs:
                counts = r["counts"]
                per_step = (counts[-1] - counts[0]) / (SYNC_LENGTHS[-1] - SYNC_LENGTHS[0])
                lines.append(f"| {r['sampler']} | {r['K']} | " + " | ".join(map(str, counts)) + f" | {per_step:g} |")
        if self.skipped:
            lines += ["", "## Skipped", "", *[f"- {reason}" for reason in self.skipped]]
        return "\n".join(lines) + "\n"


def _count(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def _ratio(value: float, base: float | None) -> str:
    return "n/a" if base is None else f"{value / base:.2f}"


def _gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


@dataclass
class Sampler:
    """One sampler run: ``run(meter, gen_length)`` and the shape of its forward calls."""

    name: str
    K: int
    rows_per_call: int
    run: Callable[[MeteredDenoiser, int], None]  # (meter, response length)

    def calls(self, gen_length: int) -> list[int]:
        """Rows of each forward call of one run (the stepwise sampler's first call has ``S`` rows)."""
        if self.name == "stepwise":
            return [self.rows_per_call // self.K] + [self.rows_per_call] * (gen_length - 1)
        return [self.rows_per_call] * gen_length


def samplers(args, prompt: torch.Tensor) -> list[Sampler]:
    """The sampler rows, cheapest first."""
    S, tau, T = args.samples, args.temperature, args.target_temperature

    def confidence(meter, length):
        generator = torch.Generator(device=args.device).manual_seed(args.seed)
        decode(meter, prompt, length, rule="confidence", temperature=tau, num_samples=S, generator=generator,
               max_rows=args.max_rows)

    def imh(K):
        def run(meter, length):
            target = TemperedTarget(meter, prompt, length, target_temperature=T, rule=args.kernel_rule,
                                    max_rows=args.max_rows)
            kernel = IMH(target, proposal_temperature=tau, num_chains=S, proposal_batch=K, seed=args.seed)
            kernel.setup(0)  # decodes the S·K proposals; the chains start at the first
            params = kernel.initial_params
            for _ in range(K - 1):
                params = kernel.sample(params)
        return run

    def stepwise(K):
        def run(meter, length):
            target = TemperedTarget(meter, prompt, length, target_temperature=T, rule=args.kernel_rule,
                                    max_rows=args.max_rows)
            kernel = Stepwise(target, proposal_temperature=tau, num_candidates=K, num_chains=S, seed=args.seed)
            kernel.setup(0)
            kernel.sample({})  # one stepwise decode: S draws
        return run

    rows = [Sampler("confidence", 1, S, confidence)]
    for K in args.candidates:
        rows += [Sampler("imh", K, S * K, imh(K)), Sampler("stepwise", K, S * K, stepwise(K))]
    wanted = {name.strip() for name in args.samplers.split(",")}
    return sorted((r for r in rows if r.name in wanted), key=lambda r: r.rows_per_call)


def forward_estimate(forward: list[dict], rows: int) -> float:
    """Seconds of one forward call of ``rows`` rows, interpolated from the forward table (0 if empty)."""
    points = sorted((r["batch"], r["seconds"]) for r in forward)
    if not points:
        return 0.0
    if rows <= points[0][0]:
        return points[0][1]
    for (b0, t0), (b1, t1) in zip(points, points[1:]):
        if rows <= b1:
            return t0 + (t1 - t0) * (rows - b0) / (b1 - b0)
    batch, seconds = points[-1]
    return seconds * rows / batch


class _HostReads(TorchDispatchMode):
    """CPU stand-in for the sync debug mode: counts value reads and value-sized ops."""

    NAMES = ("_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim", "lift_fresh")

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket.__name__ in self.NAMES
        return func(*args, **(kwargs or {}))


@contextmanager
def count_syncs(device: torch.device):
    """Yields a list that holds, on exit, the number of host synchronisations seen inside."""
    result = [0]
    if device.type == "cuda":
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield result
            finally:
                torch.cuda.set_sync_debug_mode("default")
        result[0] = sum("synchroniz" in str(w.message) for w in caught)
    else:
        with _HostReads() as reads:
            yield result
        result[0] = reads.count


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(argv)
    start = time.perf_counter()
    device, dtype = args.device, torch.bfloat16
    config = TINY if args.dry_run else LLADA_8B
    denoiser = build_denoiser(config, device, dtype, args.seed)
    meter = MeteredDenoiser(denoiser, synchronize=True)
    clock = Clock(device)
    length = args.prompt_length + args.gen_length
    generator = torch.Generator(device=device).manual_seed(args.seed + 1)
    prompt = torch.randint(0, config.mask_id, (args.prompt_length,), generator=generator, device=device)
    parameters = sum(p.numel() for p in denoiser.model.parameters())
    auto_rows = resolve_max_rows(denoiser, args.max_rows, length)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.machine()})"
    report = Report(header=[
        f"device: {name}; torch {torch.__version__}"
        + (f", CUDA {torch.version.cuda}" if device.type == "cuda" else f", {torch.get_num_threads()} threads"),
        f"model: {'tiny LLaDA-shaped (dry run)' if args.dry_run else 'LLaDA-8B shape'}: vocab {config.vocab}, "
        f"hidden {config.hidden}, {config.layers} layers, {config.heads} heads / {config.kv_heads} KV heads × "
        f"{config.head_dim}, MLP {config.intermediate}; {_count(parameters)} random {str(dtype)[6:]} parameters",
        f"canvas: prompt {args.prompt_length} + generation {args.gen_length} = {length} tokens, one token per step "
        f"({args.gen_length} steps); S = {args.samples}; τ = {args.temperature}, T = {args.target_temperature}, "
        f"kernel rule {args.kernel_rule}",
        f"max_rows {args.max_rows!r}: "
        + ("no split" if auto_rows is None else f"at most {auto_rows} rows per forward call"),
        f"budget {args.budget_seconds:.0f} s from the start; model built in {time.perf_counter() - start:.1f} s",
    ])

    def emit() -> None:
        if args.out:
            with open(args.out, "w") as handle:
                handle.write(report.markdown())

    def fits(label: str, estimate: float) -> bool:
        left = args.budget_seconds - (time.perf_counter() - start)
        if estimate > left:
            report.skipped.append(f"{label}: estimated {estimate:.0f} s, {max(left, 0):.0f} s of the budget left")
            emit()
            return False
        return True

    # 1. forward calls
    for batch in args.batch_sizes:
        canvas = torch.cat([prompt, torch.full((args.gen_length,), config.mask_id, device=device)])
        canvas = canvas[None].expand(batch, -1).contiguous()
        if not fits(f"forward batch {batch}", (args.repeats + 1) * 1.5 * forward_estimate(report.forward, batch)):
            continue
        clock.reset_peak()
        denoiser(canvas)  # untimed: kernels for this shape, allocator growth
        times = []
        for _ in range(args.repeats):
            begin = clock.now()
            denoiser(canvas)
            times.append(clock.now() - begin)
        report.forward.append({"batch": batch, "seconds": statistics.median(times), "length": length,
                               "peak": clock.peak_gib()})
        emit()

    runs = samplers(args, prompt)
    # 2. host syncs at two response lengths (cheap: short responses)
    if not args.no_sync_check:
        plain = MeteredDenoiser(denoiser)  # unsynchronised: the meter's own syncs would be counted
        for sampler in (r for r in runs if r.K in (1, min(args.candidates))):
            estimate = 1.5 * sum(forward_estimate(report.forward, rows) * n / args.gen_length
                                 for n in SYNC_LENGTHS for rows in sampler.calls(args.gen_length))
            if not fits(f"sync check {sampler.name} K={sampler.K}", estimate):
                continue
            counts = []
            for n in SYNC_LENGTHS:
                with count_syncs(device) as seen:
                    sampler.run(plain, n)
                counts.append(seen[0])
            report.syncs.append({"sampler": sampler.name, "K": sampler.K, "counts": counts})
            emit()

    # 3. samplers
    for sampler in runs:
        estimate = 1.5 * sum(forward_estimate(report.forward, rows) for rows in sampler.calls(args.gen_length))
        if not fits(f"{sampler.name} K={sampler.K}", estimate):
            continue
        meter.reset()
        clock.reset_peak()
        begin = clock.now()
        sampler.run(meter, args.gen_length)
        wall = clock.now() - begin
        report.samplers.append({"sampler": sampler.name, "K": sampler.K, "rows_per_call": sampler.rows_per_call,
                                "nfe": meter.nfe, "wall": wall, "forward": meter.seconds,
                                "tokens": args.samples * args.gen_length, "peak": clock.peak_gib()})
        emit()

    report.header.append(f"total {time.perf_counter() - start:.0f} s")
    emit()
    print(report.markdown(), end="")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
