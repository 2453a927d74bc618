"""Command line: ``dllm-mcmc demo`` (the bundled model), ``dllm-mcmc toy`` (an exact toy),
``dllm-mcmc eval CONFIG`` (the experiment runner) and ``dllm-mcmc report RESULTS`` (its report).

Also ``python -m dllm_mcmc demo``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from dllm_mcmc.decoding import RULES, decode
from dllm_mcmc.denoisers import ExactDenoiser

TOY_ALPHABET = "abcd"


def demo(samples: int, temperature: float, seed: int, out=None) -> None:
    """Decode a toy joint under every rule and print samples with their log-densities.

    The toy is an `ExactDenoiser` over 4 letters and 6 positions, so the exact model
    probability ``log p(x)`` of each sample is printed beside what the decoder recorded.
    """
    out = sys.stdout if out is None else out
    toy = ExactDenoiser.random(vocab_size=len(TOY_ALPHABET), length=6, seed=seed, sharpness=2.0)
    print(
        f"Toy dLLM: exact joint over {len(TOY_ALPHABET)}^6 sequences; token temperature τ={temperature}, "
        f"{samples} samples per rule, seed {seed}.",
        file=out,
    )
    print("log q: decoder's density of (order, tokens); log p: model, chain rule along the order", file=out)
    for rule in RULES:
        generator = torch.Generator().manual_seed(seed)
        traj = decode(toy, None, 6, rule=rule, temperature=temperature, block_length=3,
                      num_samples=samples, generator=generator)
        exact = toy.log_prob(traj.tokens)
        note = "" if traj.exact_density else "   (log q omits the position choice: not a density)"
        print(f"\n[{rule}] nfe={traj.nfe}{note}", file=out)
        print("  sample  order          log q    log p   exact log p", file=out)
        for s in range(samples):
            text = "".join(TOY_ALPHABET[t] for t in traj.tokens[s].tolist())
            order = "".join(str(j) for j in traj.order[s].tolist())
            print(f"  {text}  {order}  {traj.log_q[s]:8.3f} {traj.log_p[s]:8.3f} {exact[s]:8.3f}", file=out)
    imh_demo(toy, temperature, seed, out)


def imh_demo(toy: ExactDenoiser, temperature: float, seed: int, out) -> None:
    """IMH towards p(x)^(1/T) with T = τ, against local tempering, both compared with the exact target."""
    from dllm_mcmc.diagnostics import summary
    from dllm_mcmc.mcmc.runner import sample

    target = toy.tempered(temperature)
    result = sample(toy, None, toy.length, target_temperature=temperature, proposal_temperature=temperature,
                    num_chains=4, num_samples=2000, warmup=100, seed=seed, proposal_batch=500, progress=False)
    local = decode(toy, None, toy.length, temperature=temperature, num_samples=8000,
                   generator=torch.Generator().manual_seed(seed))

    def tv(tokens: torch.Tensor) -> float:
        counts = torch.bincount(toy.index(tokens.reshape(-1, toy.length)), minlength=target.numel())
        return 0.5 * float((counts / counts.sum() - target).abs().sum())

    diagnostics = summary(result)["diagnostics"]["log_target"]
    print(f"\nIMH towards the globally tempered target p(x)^(1/T), T = {temperature} "
          f"(4 chains x 2000 draws, proposal: random order at τ = {temperature})", file=out)
    print(f"  acceptance {float(result.acceptance_rate.mean()):.3f}, ESS(log target) "
          f"{diagnostics['ess_bulk']:.0f}, R-hat {diagnostics['r_hat']:.3f}", file=out)
    iid = toy.sequences[torch.multinomial(target.float(), 8000, replacement=True,
                                          generator=torch.Generator().manual_seed(seed))]
    print(f"  TV to the exact target: IMH {tv(result.tokens):.3f}   "
          f"local tempering (plain decoding at τ) {tv(local.tokens):.3f}   "
          f"8000 exact draws {tv(iid):.3f}", file=out)


def model_demo(problems: int, samples: int, temperature: float, seed: int, out=None) -> None:
    """Decode a few test problems with the bundled model: random, confidence and IMH, with Pass@k.

    IMH targets ``p(x)^(1/T)`` with ``T = τ`` (random-order proposals at ``τ``), ``samples`` draws as
    4 chains, after a short warm-up.
    """
    from dllm_mcmc.denoisers.load import load_model
    from dllm_mcmc.eval.passk import pass_at_k
    from dllm_mcmc.mcmc.runner import sample
    from dllm_mcmc.tasks import FAMILIES

    out = sys.stdout if out is None else out
    model, codec = load_model("tasks-small")
    print(f"Bundled model tasks-small; {problems} test problems per family, {samples} samples per rule, "
          f"τ = T = {temperature}, seed {seed}.", file=out)
    totals: dict[str, list[float]] = {}
    for name, family in FAMILIES.items():
        for problem in family.generate("test", problems, seed=seed):
            prompt = codec.encode(family.format_prompt(problem))
            print(f"\n[{name}] {family.format_prompt(problem)}", file=out)
            draws = {
                rule: decode(model, prompt, codec.gen_length, rule=rule, temperature=temperature,
                             num_samples=samples, generator=torch.Generator().manual_seed(seed)).tokens
                for rule in ("random", "confidence")
            }
            result = sample(model, prompt, codec.gen_length, kernel="imh", target_temperature=temperature,
                            proposal_temperature=temperature, num_chains=4, num_samples=samples // 4, warmup=4,
                            seed=seed, proposal_batch=samples // 4 + 4, progress=False)
            draws["imh"] = result.tokens.reshape(-1, result.tokens.shape[-1])
            for rule, tokens in draws.items():
                texts = [codec.decode(row) for row in tokens]
                correct = [family.verify(problem, text) for text in texts]
                answers = ", ".join(f"{family.extract_answer(t)}{'✓' if c else '✗'}" for t, c in zip(texts[:6], correct))
                k = sum(correct)
                totals.setdefault(f"{rule} pass@1", []).append(k / len(texts))
                totals.setdefault(f"{rule} pass@{len(texts)}", []).append(pass_at_k(len(texts), k, len(texts)))
                print(f"  {rule:10s} {k:2d}/{len(texts)} correct   {answers}", file=out)
    print("\nAveraged over the problems shown: " + "   ".join(f"{key} {sum(v) / len(v):.2f}" for key, v in totals.items()),
          file=out)


def run_eval(args: argparse.Namespace) -> int:
    """``dllm-mcmc eval``: load the config, apply the flags, run what is not done yet."""
    from dllm_mcmc.eval.experiment import load_config, run_experiment

    overrides = {key: getattr(args, key) for key in ("output", "model", "samples", "problems", "seed")}
    if args.tasks:
        overrides["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    config = load_config(args.config, overrides)
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        known = {m.get("name"): m for m in config["methods"]}
        missing = [m for m in wanted if m not in known]
        if missing:
            raise SystemExit(f"--methods: {', '.join(missing)} not in the config ({', '.join(map(str, known))})")
        config["methods"] = [known[m] for m in wanted]
    summary = run_experiment(config, progress=not args.no_progress)
    print(f"{summary.ran} problem-method units drawn, {summary.skipped} already done; "
          f"{summary.records} records in {summary.output} ({summary.seconds:.1f} s)")
    if args.report:
        from dllm_mcmc.eval.report import write_report

        print(f"Report: {write_report(summary.output, args.report)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dllm-mcmc", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    model_parser = commands.add_parser("demo", help="the bundled model on test problems: random, confidence, IMH")
    model_parser.add_argument("--problems", type=int, default=2)
    model_parser.add_argument("--samples", type=int, default=8)
    model_parser.add_argument("--temperature", type=float, default=0.5)
    model_parser.add_argument("--seed", type=int, default=0)
    toy_parser = commands.add_parser("toy", help="decode an exact toy model under every rule, then IMH")
    toy_parser.add_argument("--samples", type=int, default=4)
    toy_parser.add_argument("--temperature", type=float, default=0.5)
    toy_parser.add_argument("--seed", type=int, default=0)
    eval_parser = commands.add_parser("eval", help="methods x tasks x n samples from a TOML/YAML config; resumable")
    eval_parser.add_argument("config", help="a TOML or YAML file (see docs/evaluation.md)")
    eval_parser.add_argument("--out", dest="output", help="results JSONL (overrides the config's output)")
    eval_parser.add_argument("--model")
    eval_parser.add_argument("--samples", type=int)
    eval_parser.add_argument("--problems", type=int, help="problems per task (default: the whole test set)")
    eval_parser.add_argument("--seed", type=int)
    eval_parser.add_argument("--tasks", help="comma-separated task names, replacing the config's")
    eval_parser.add_argument("--methods", help="comma-separated method names: a subset of the config's")
    eval_parser.add_argument("--report", metavar="DIR", help="then write the report of the results file into DIR")
    eval_parser.add_argument("--no-progress", action="store_true")
    report_parser = commands.add_parser("report", help="markdown table and plots from an eval results file")
    report_parser.add_argument("results", nargs="+", help="JSONL files written by dllm-mcmc eval (read as one)")
    report_parser.add_argument("--out", help="folder for report.md and the plots (default: beside the first file)")
    args = parser.parse_args(argv)
    if args.command == "eval":
        return run_eval(args)
    if args.command == "report":
        from pathlib import Path

        from dllm_mcmc.eval.report import write_report

        first = Path(args.results[0])
        out = Path(args.out) if args.out else first.with_name(first.stem + "-report")
        path = write_report(args.results, out)
        print(path.read_text())
        print(f"Written: {path} and its plots")
        return 0
    if args.command == "demo":
        model_demo(args.problems, args.samples, args.temperature, args.seed)
    elif args.command == "toy":
        demo(args.samples, args.temperature, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
