"""Command line: ``dllm-mcmc demo`` (the bundled model), ``dllm-mcmc toy`` (an exact toy),
``dllm-mcmc eval CONFIG`` (the experiment runner), ``dllm-mcmc report RESULTS`` (its report),
``dllm-mcmc samplers`` (every sampler of the registry, installed plugins included, with its options and cost),
``dllm-mcmc headroom`` (will tempering pay on this model? a pilot and its importance reweighting) and
``dllm-mcmc lm-eval ...`` (lm-evaluation-harness with our ``dllm-mcmc`` model registered).

Also ``python -m dllm_mcmc demo``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from typing import TYPE_CHECKING

import torch

from dllm_mcmc._checks import positive_float, positive_int
from dllm_mcmc.decoding import RULES, decode
from dllm_mcmc.denoisers import ExactDenoiser

if TYPE_CHECKING:
    from dllm_mcmc.diagnostics.headroom import HeadroomReport

TOY_ALPHABET = "abcd"
SHOWN_ANSWERS = 6  # answers printed per method by `model_demo`


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

    IMH targets ``p(x)^(1/T)`` with ``T = τ`` (random-order proposals at ``τ``): ``min(4, samples)``
    chains after a short warm-up, each drawing ``ceil(samples / chains)`` states, of which the first
    ``samples`` (draw-major) are kept, so every rule is scored on exactly ``samples`` answers. The first
    `SHOWN_ANSWERS` answers of each rule are printed.
    """
    from dllm_mcmc.denoisers.load import load_model
    from dllm_mcmc.eval.passk import pass_at_k
    from dllm_mcmc.mcmc.runner import sample
    from dllm_mcmc.tasks import FAMILIES

    out = sys.stdout if out is None else out
    model, codec = load_model("tasks-small")
    gen_length = codec.gen_length
    assert gen_length is not None  # a small model's codec carries its trained response length
    shown = (f"all {samples} answers shown per method" if samples <= SHOWN_ANSWERS
             else f"showing the first {SHOWN_ANSWERS} of {samples} answers per method")
    print(f"Bundled model tasks-small; {problems} test problems per family, {samples} samples per rule, "
          f"τ = T = {temperature}, seed {seed} ({shown}).", file=out)
    chains = min(4, samples)
    per_chain = math.ceil(samples / chains)
    totals: dict[str, list[float]] = {}
    for name, family in FAMILIES.items():
        for problem in family.generate("test", problems, seed=seed):
            prompt = codec.encode(family.format_prompt(problem))
            print(f"\n[{name}] {family.format_prompt(problem)}", file=out)
            draws = {
                rule: decode(model, prompt, gen_length, rule=rule, temperature=temperature,
                             num_samples=samples, generator=torch.Generator().manual_seed(seed)).tokens
                for rule in ("random", "confidence")
            }
            result = sample(model, prompt, gen_length, kernel="imh", target_temperature=temperature,
                            proposal_temperature=temperature, num_chains=chains, num_samples=per_chain, warmup=4,
                            seed=seed, proposal_batch=per_chain + 4, progress=False)
            # [C, S, L] -> draw-major rows (every chain's first draw, then every chain's second, ...),
            # cut to exactly `samples` so every method reports k/samples.
            draws["imh"] = result.tokens.transpose(0, 1).reshape(-1, result.tokens.shape[-1])[:samples]
            for rule, tokens in draws.items():
                texts = [codec.decode(row) for row in tokens]
                correct = [family.verify(problem, text) for text in texts]
                answers = ", ".join(f"{family.extract_answer(t)}{'✓' if c else '✗'}"
                                    for t, c in zip(texts[:SHOWN_ANSWERS], correct))
                k = sum(correct)
                totals.setdefault(f"{rule} pass@1", []).append(k / len(texts))
                totals.setdefault(f"{rule} pass@{len(texts)}", []).append(pass_at_k(len(texts), k, len(texts)))
                print(f"  {rule:10s} {k:2d}/{len(texts)} correct   {answers}", file=out)
    print("\nAveraged over the problems shown: "
          + "   ".join(f"{key} {sum(v) / len(v):.2f}" for key, v in totals.items()), file=out)


def print_plan(config: dict, forward_ms: float | None, probe: bool) -> int:
    """``dllm-mcmc eval CONFIG --plan``: the cost table (`dllm_mcmc.eval.plan`); nothing is written."""
    from dllm_mcmc.eval.plan import plan, probe_forward_ms

    if forward_ms is not None:
        positive_float("--forward-ms", forward_ms)
    result = plan(config)
    if probe:
        forward_ms = probe_forward_ms(config, result.gen_length)
        print(f"Probe: {forward_ms:.2f} ms per forward row (one timed call after a warm-up call).")
    print(result.markdown(forward_ms))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """``dllm-mcmc eval``: load the config, apply the flags, run what is not done yet; exit code 1 when some
    units failed (listed on stderr, recorded nowhere: a rerun draws them again)."""
    from dllm_mcmc.eval.checking import WeakIsolationWarning
    from dllm_mcmc.eval.experiment import CONFIG_DIR, load_config, packaged_configs, run_experiment

    if args.list_configs:
        print(f"Packaged configs ({CONFIG_DIR}):")
        for name in packaged_configs():
            print(f"  {name}")
        return 0
    if args.config is None:
        raise ValueError("eval needs a CONFIG: a TOML/YAML file or a packaged config's name (--list-configs)")
    overrides = {key: getattr(args, key) for key in ("output", "model", "samples", "problems", "seed", "executor",
                                                     "workers", "threads", "address", "pack")}
    if args.allow_code_execution:  # a flag can allow it; leaving it out keeps the config's choice
        overrides["allow_code_execution"] = True
    if args.tasks:
        overrides["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    config = load_config(args.config, overrides)
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        known = {m.get("name"): m for m in config["methods"]}
        missing = [m for m in wanted if m not in known]
        if missing:
            raise ValueError(f"--methods: {', '.join(missing)} not in the config ({', '.join(map(str, known))})")
        config["methods"] = [known[m] for m in wanted]
    if args.plan:
        return print_plan(config, args.forward_ms, args.probe)
    def say(line: str) -> None:  # the sandbox's isolation level, once, before anything is drawn
        print(f"dllm-mcmc: {line}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WeakIsolationWarning)  # `say` has printed it as "dllm-mcmc: warning: ..."
        summary = run_experiment(config, progress=not args.no_progress, log=say)
    print(summary.line())
    if args.report:
        from dllm_mcmc.eval.report import write_report

        print(f"Report: {write_report(summary.output, args.report, baselines=config['baselines'])}")
    if summary.failed:  # recorded nowhere: a rerun draws them again (after a fix)
        print(f"dllm-mcmc: {len(summary.failed)} unit(s) failed and were not recorded:", file=sys.stderr)
        for failure in summary.failed:
            print(f"  {failure.method} / {failure.task} / {failure.problem!r}: {failure.error}", file=sys.stderr)
            if args.debug:
                print("    " + failure.details.rstrip().replace("\n", "\n    "), file=sys.stderr)
        return 1
    return 0


HEADROOM_DEFAULTS = {"model": "tasks-small", "tasks": ["countdown", "arith"], "problems": 60, "samples": 16, "seed": 0}
"""``dllm-mcmc headroom``'s settings when neither a flag nor a config gives them."""


def run_headroom(args: argparse.Namespace) -> int:
    """``dllm-mcmc headroom``: print the pilot's plan (forward rows), draw it (random order, τ = 1), and print
    `dllm_mcmc.diagnostics.tempering_headroom`'s tables and one verdict line per task; ``--out`` writes the
    markdown. Settings come from the flags, else from an eval config (model, tasks, problems, samples, seed,
    gen_length, model_options, task_paths), else `HEADROOM_DEFAULTS`."""
    from dllm_mcmc._checks import nonnegative_int
    from dllm_mcmc.diagnostics.headroom import DEFAULT_TEMPERATURES, tempering_headroom
    from dllm_mcmc.eval.engine import load_engine
    from dllm_mcmc.eval.experiment import load_config, load_task, require_code_execution, sandbox_isolation
    from dllm_mcmc.eval.headroom_pilot import draw_pilot, load_pilot, plan_pilot, save_pilot

    nonnegative_int("--orders", args.orders)
    if args.seed is not None:
        nonnegative_int("--seed", args.seed)
    for flag in ("gen_length", "block_length"):
        if getattr(args, flag) is not None:
            positive_int(f"--{flag.replace('_', '-')}", getattr(args, flag))
    if args.forward_ms is not None:
        positive_float("--forward-ms", args.forward_ms)
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    if args.temperatures is not None:
        texts = [t.strip() for t in args.temperatures.split(",") if t.strip()]
        if not texts:
            raise ValueError(f"--temperatures must be a comma-separated list of positive numbers, got "
                             f"{args.temperatures!r}")
        try:
            temperatures = tuple(positive_float("--temperatures", float(t)) for t in texts)
        except ValueError:
            raise ValueError(f"--temperatures must be a comma-separated list of positive numbers, got "
                             f"{args.temperatures!r}") from None
    if args.pilot is not None:  # a saved pilot: analyse it again, nothing is drawn
        pilot, saved = load_pilot(args.pilot)
        notes = [f"Pilot read from {args.pilot} (drawn with {saved or 'unrecorded settings'})."]
        return _print_headroom(tempering_headroom(pilot, temperatures, notes=notes), args.out)
    settings: dict = dict(HEADROOM_DEFAULTS, gen_length=None, model_options={}, task_paths={})
    config: dict = {}
    if args.config is not None:
        config = load_config(args.config)
        settings.update({key: config[key] for key in ("model", "tasks", "problems", "samples", "seed", "gen_length",
                                                       "model_options", "task_paths") if config.get(key) is not None})
    if args.tasks is not None:
        settings["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
        if not settings["tasks"]:
            raise ValueError(f"--tasks must name at least one task, got {args.tasks!r}")
    for key in ("model", "problems", "samples", "seed", "gen_length"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    for key in ("device", "dtype"):
        if getattr(args, key) is not None:
            settings["model_options"] = {**settings["model_options"], key: getattr(args, key)}
    allowed = bool(args.allow_code_execution or config.get("allow_code_execution"))
    tasks = [load_task(name, settings["task_paths"].get(name), allow_code_execution=allowed)
             for name in settings["tasks"]]
    code_tasks = require_code_execution({"allow_code_execution": allowed}, tasks)
    engine = None
    gen_length = settings["gen_length"]
    if gen_length is None:  # the bundled model's length is its own; others need --gen-length
        engine = load_engine(settings["model"], None, **settings["model_options"])
        gen_length = engine.gen_length
    limit = settings["problems"]
    plan = plan_pilot(gen_length, {task.name: len(task.problems(limit)) for task in tasks}, settings["samples"],
                      args.orders, args.block_length, not args.no_left_to_right)
    print(f"Headroom check of {settings['model']}: tasks {', '.join(settings['tasks'])}, seed {settings['seed']}, "
          f"T in {', '.join(f'{t:g}' for t in temperatures)}.")
    for line in plan.lines(args.forward_ms):
        print(line)
    if args.plan:
        return 0
    sys.stdout.flush()
    if code_tasks:
        sandbox_isolation(code_tasks, lambda line: print(f"dllm-mcmc: {line}", file=sys.stderr, flush=True))
    if engine is None:
        engine = load_engine(settings["model"], gen_length, **settings["model_options"])
    start = time.perf_counter()
    pilot = draw_pilot(engine, tasks, limit, settings["samples"], args.orders, settings["seed"], args.block_length,
                       progress=not args.no_progress, allow_code_execution=allowed,
                       left_to_right=not args.no_left_to_right)
    seconds = time.perf_counter() - start
    print(f"Pilot drawn in {seconds:.0f} s.")
    if args.save_pilot:
        saved_settings = {key: settings[key] for key in ("model", "tasks", "problems", "samples", "seed")}
        print(f"Pilot saved: {save_pilot(args.save_pilot, pilot, {**saved_settings, 'orders': args.orders})}")
    notes = [f"Model {settings['model']}; the first {limit} problems of each task; seed {settings['seed']}; "
             f"pilot drawn in {seconds:.0f} s.", *plan.lines(args.forward_ms)]
    report = tempering_headroom(pilot, temperatures, notes=[" ".join(notes[:2]), " ".join(notes[2:])])
    return _print_headroom(report, args.out)


def _print_headroom(report: HeadroomReport, out: str | None) -> int:
    """Print the report's markdown and its verdict lines; write the markdown to ``out`` when given."""
    print()
    print(report.markdown())
    for line in report.verdict_lines():
        print(line)
    if out:
        from pathlib import Path

        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(report.markdown())
        print(f"Written: {path}")
    return 0


THREADS_HELP = ("torch threads, >= 1 (default 1: on a small or shared machine torch's default, one per core, "
                "was 4-6x slower)")

USER_ERRORS = (ValueError, OSError, KeyError)
"""Exceptions reported as ``dllm-mcmc: error: ...`` (exit 2) unless ``--debug``: bad configs and flag values
(ValueError), missing or unreadable files (OSError, FileNotFoundError among them), unknown names (KeyError)."""


def describe_samplers() -> str:
    """Every sampler of the registry (`dllm_mcmc.mcmc.registry`), built-in or from an installed package's
    ``dllm_mcmc.samplers`` entry point: how an evaluation uses it, whether its samples are independent, its own
    options with their defaults, and its cost formula per unit (n samples, s steps, w warm-up steps).

    >>> print(describe_samplers().splitlines()[0])
    decode  (batch sampler; independent samples) plain decoding with the rule at token temperature τ
    """
    import dataclasses
    import inspect

    from dllm_mcmc.mcmc.registry import BUILTIN, samplers

    blocks = []
    for name, spec in samplers().items():
        if spec.is_kernel:
            kind = f"kernel, {'independent draws' if spec.independent else 'a Markov chain'}"
            independence = "eval samples: one chain each, independent"
        else:
            kind = "batch sampler"
            independence = "independent samples" if spec.independent else "dependent samples"
        origin = "" if name in BUILTIN else f"; plugin {spec.options.__module__.split('.')[0]}"
        lines = [f"{name}  ({kind}; {independence}{origin}) {spec.summary}".rstrip()]
        options = [f"{field.name}={field.default!r}" for field in dataclasses.fields(spec.options)]
        lines.append(f"    options: {', '.join(options) or 'none of its own'}; also {', '.join(spec.shared_options)}"
                     f" and the rule's")
        cost = inspect.getdoc(spec.cost)
        if cost:
            lines.append("    cost: " + " ".join(cost.split()))
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def build_parser() -> argparse.ArgumentParser:
    """The ``dllm-mcmc`` parser: the top-level flags and the ``demo``, ``toy``, ``eval``, ``report`` commands."""
    from dllm_mcmc import __version__

    parser = argparse.ArgumentParser(prog="dllm-mcmc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full traceback instead of the one-line message")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="one of the commands below; 'dllm-mcmc COMMAND -h' lists its flags")
    defaults = argparse.ArgumentDefaultsHelpFormatter

    model_parser = commands.add_parser("demo", help="the bundled model on test problems: random, confidence, IMH",
                                       description="Decode a few test problems of every task family with the "
                                                   "bundled model tasks-small under the random and confidence "
                                                   "rules and IMH, and print Pass@k.", formatter_class=defaults)
    model_parser.add_argument("--problems", type=int, default=2, help="test problems per task family (>= 1)")
    model_parser.add_argument("--samples", type=int, default=8,
                              help=f"answers per method and problem (>= 1); the first {SHOWN_ANSWERS} are printed")
    model_parser.add_argument("--temperature", type=float, default=0.5,
                              help="token temperature τ of the decoders, also IMH's target temperature T (> 0)")
    model_parser.add_argument("--seed", type=int, default=0, help="seed of the problems and of the samplers")
    model_parser.add_argument("--threads", type=int, help=THREADS_HELP)

    toy_parser = commands.add_parser("toy", help="decode an exact toy model under every rule, then IMH",
                                     description="Decode a random exact joint over 4 letters and 6 positions "
                                                 "under every rule, with exact log-densities, then IMH towards "
                                                 "the globally tempered target.", formatter_class=defaults)
    toy_parser.add_argument("--samples", type=int, default=4, help="samples printed per rule (>= 1)")
    toy_parser.add_argument("--temperature", type=float, default=0.5,
                            help="token temperature τ, also IMH's target temperature T (> 0)")
    toy_parser.add_argument("--seed", type=int, default=0, help="seed of the toy joint and of the samplers")
    toy_parser.add_argument("--threads", type=int, help=THREADS_HELP)

    eval_parser = commands.add_parser("eval", help="methods x tasks x n samples from a TOML/YAML config; resumable",
                                      description="Run every method of CONFIG on every task, n samples per "
                                                  "problem, appending records to a JSONL file; units already "
                                                  "in the file are skipped. Flags override the config.")
    eval_parser.add_argument("config", nargs="?",
                             help="a TOML or YAML file (see docs/evaluation.md), or the name of a config that ships "
                                  "with the package, such as eval-small (see --list-configs)")
    eval_parser.add_argument("--list-configs", action="store_true",
                             help="print the names of the packaged configs and exit")
    eval_parser.add_argument("--out", dest="output", metavar="JSONL",
                             help="results JSONL (overrides the config's output)")
    eval_parser.add_argument("--model", help="bundled model name or local model directory (overrides the config's)")
    eval_parser.add_argument("--samples", type=int,
                             help="samples per problem and method, >= 1 (overrides the config's)")
    eval_parser.add_argument("--problems", type=int,
                             help="problems per task, >= 1 (overrides the config's; default: the whole test set)")
    eval_parser.add_argument("--seed", type=int, help="base seed (overrides the config's)")
    eval_parser.add_argument("--tasks", help="comma-separated task names, replacing the config's")
    eval_parser.add_argument("--methods", help="comma-separated method names: a subset of the config's")
    eval_parser.add_argument("--report", metavar="DIR", help="then write the report of the results file into DIR")
    eval_parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    eval_parser.add_argument("--executor", choices=("inline", "local", "ray"),
                             help="where units are drawn: inline (this process; the default), local (worker "
                                  "processes on this machine) or ray (Ray actors: pip install 'dllm-mcmc[ray]')")
    eval_parser.add_argument("--workers", type=int,
                             help="workers of the local or ray executor, >= 1 (default: one per GPU when the "
                                  "model's device is cuda, else the CPUs divided by --threads)")
    eval_parser.add_argument("--threads", type=int,
                             help="torch threads per worker (inline: of this process), >= 1 (default 1)")
    eval_parser.add_argument("--pack", type=int,
                             help="problems of a task each method draws in one batched run, >= 1 (default 1; "
                                  "part of the settings: packed samples differ from unpacked ones)")
    eval_parser.add_argument("--plan", action="store_true",
                             help="print units, samples, sequential steps and forward rows per method, and exit "
                                  "without loading the model or writing anything")
    eval_parser.add_argument("--forward-ms", type=float, metavar="MS",
                             help="with --plan: time of one forward row in milliseconds, to estimate GPU-hours")
    eval_parser.add_argument("--probe", action="store_true",
                             help="with --plan: load the model and time one forward call to measure --forward-ms")
    eval_parser.add_argument("--allow-code-execution", action="store_true",
                             help="let code tasks (humaneval, mbpp) grade completions by running the model's code "
                                  "in the sandbox (docs/sandbox.md); without it (or allow_code_execution = true "
                                  "in the config) a config with code tasks is refused before anything runs. "
                                  "--plan does not need it")
    eval_parser.add_argument("--address", metavar="ADDR",
                             help="the Ray cluster to join, HOST:PORT of 'ray start --head' (default: "
                                  "RAY_ADDRESS, else a new local cluster)")

    report_parser = commands.add_parser("report", help="markdown table and plots from an eval results file",
                                        description="Write report.md (pass@k with bootstrap intervals) and its "
                                                    "plots for the records of one or more results files.")
    report_parser.add_argument("results", nargs="+", help="JSONL files written by dllm-mcmc eval (read as one)")
    report_parser.add_argument("--out", metavar="DIR",
                               help="folder for report.md and the plots (default: beside the first file)")
    report_parser.add_argument("--baseline", action="append", metavar="METHOD",
                               help="compare every other method with this one: paired differences in Pass@1 and "
                                    "Pass@n with bootstrap intervals over problems (repeatable)")

    commands.add_parser("samplers", help="list every sampler (built-in and installed plugins): options, cost, "
                                         "independence", description=describe_samplers.__doc__)

    headroom_parser = commands.add_parser(
        "headroom", help="will tempering pay? a random-order pilot reweighted to p^(1/T): Pass@k per T, AUC, verdict",
        description="Draw a pilot of plain random-order samples at τ = 1 per problem, and estimate by importance "
                    "reweighting the Pass@1 and (plug-in) Pass@k of the tempered law p(x)^(1/T) for a grid of T, "
                    "with the within-problem AUC of log p, the order inconsistency and a verdict per task "
                    "(docs/how-to/will-tempering-pay.md). Flags override the config.", formatter_class=defaults)
    headroom_parser.add_argument("config", nargs="?",
                                 help="optional eval config (file or packaged name): model, tasks, problems, samples, "
                                      "seed, gen_length, model_options and task_paths are taken from it")
    headroom_parser.add_argument("--model", help="bundled model name or local model directory (default tasks-small)")
    headroom_parser.add_argument("--tasks", help="comma-separated task names (default countdown,arith)")
    headroom_parser.add_argument("--problems", type=int, help="first problems per task, >= 1 (default 60)")
    headroom_parser.add_argument("--samples", type=int, help="random-order samples per problem, n >= 1 (default 16)")
    headroom_parser.add_argument("--orders", type=int, default=4,
                                 help="M: further random orders each sample is replayed along, >= 0")
    headroom_parser.add_argument("--temperatures", metavar="T,T,...",
                                 help="comma-separated target temperatures (default 0.25,0.5,0.75,1.0,1.5)")
    headroom_parser.add_argument("--seed", type=int, help="base seed of the pilot (default 0)")
    headroom_parser.add_argument("--gen-length", type=int, help="response length (default: the bundled model's own; "
                                                                "needed for other models)")
    headroom_parser.add_argument("--block-length", type=int,
                                 help="decode block by block (LLaDA's semi-autoregressive blocks); default one block")
    headroom_parser.add_argument("--device", help="where the model runs, such as cuda (default: CPU)")
    headroom_parser.add_argument("--dtype", help="parameter dtype of a checkpoint, such as bfloat16")
    headroom_parser.add_argument("--no-left-to-right", action="store_true",
                                 help="skip the left-to-right score (saves n·L rows per problem)")
    headroom_parser.add_argument("--threads", type=int, help=THREADS_HELP)
    headroom_parser.add_argument("--out", metavar="MD", help="also write the markdown report there")
    headroom_parser.add_argument("--plan", action="store_true", help="print the pilot's cost and exit")
    headroom_parser.add_argument("--forward-ms", type=float, metavar="MS",
                                 help="time of one forward row in milliseconds: the plan adds GPU-minutes")
    headroom_parser.add_argument("--save-pilot", metavar="JSON", help="also save the pilot, to analyse it again")
    headroom_parser.add_argument("--pilot", metavar="JSON",
                                 help="analyse a pilot saved by --save-pilot instead of drawing one")
    headroom_parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    headroom_parser.add_argument("--allow-code-execution", action="store_true",
                                 help="let code tasks (humaneval, mbpp) grade by running the model's code in the "
                                      "sandbox")

    lm_eval_parser = commands.add_parser("lm-eval", add_help=False,
                                         help="lm-evaluation-harness (pip install 'dllm-mcmc[lm-eval]') with "
                                              "the model dllm-mcmc registered: every flag is lm_eval's",
                                         description="lm_eval's own command line, with --model dllm-mcmc "
                                                     "available (docs/lm-eval.md); 'dllm-mcmc lm-eval -h' "
                                                     "prints lm_eval's help.")
    lm_eval_parser.add_argument("lm_eval_args", nargs=argparse.REMAINDER, help="flags of lm_eval")
    return parser


def run_lm_eval(argv: list[str], debug: bool) -> int:
    """``dllm-mcmc lm-eval ARGS``: lm-eval's command line on ``ARGS`` with ``dllm-mcmc`` registered (lm-eval
    finds models only in modules already imported). Returns its exit code; a user error (a bad
    ``model_args`` key or value, a missing model) prints one line, as the other commands do."""
    try:
        from dllm_mcmc.lm_eval_model import main as lm_eval_main
    except ImportError as error:
        if debug:
            raise
        print(f"dllm-mcmc: error: {one_line(error)}", file=sys.stderr)
        return 2
    saved = list(sys.argv)
    try:
        lm_eval_main(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"dllm-mcmc: error: {one_line(error)}", file=sys.stderr)
        return 2
    finally:
        sys.argv = saved
    return 0


def check_values(args: argparse.Namespace) -> None:
    """Refuse flag values that parse but make no sense (``ValueError`` naming the flag and the value)."""
    for flag in ("samples", "problems", "workers", "threads"):
        if getattr(args, flag, None) is not None:
            positive_int(f"--{flag}", getattr(args, flag))
    if getattr(args, "temperature", None) is not None:
        positive_float("--temperature", args.temperature)


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line (a KeyError's text without its quotes; the type if empty)."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        message = f"{error.filename}: {error.strerror}"  # not "[Errno 2] No such file or directory: 'x'"
    elif isinstance(error, KeyError) and len(error.args) == 1:
        message = error.args[0]
    else:
        message = str(error)
    message = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    return message or type(error).__name__


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command; user errors propagate as exceptions (see `main`)."""
    check_values(args)
    if args.command in ("demo", "toy", "eval", "headroom"):
        from dllm_mcmc.eval.executors.threads import use_threads

        use_threads(args.threads or 1)  # deliberately: torch's default oversubscribes small and shared machines
    if args.command == "eval":
        return run_eval(args)
    if args.command == "headroom":
        return run_headroom(args)
    if args.command == "report":
        from pathlib import Path

        from dllm_mcmc.eval.report import write_report

        first = Path(args.results[0])
        out = Path(args.out) if args.out else first.with_name(first.stem + "-report")
        path = write_report(args.results, out, baselines=args.baseline or ())
        print(path.read_text())
        print(f"Written: {path} and its plots")
        return 0
    if args.command == "samplers":
        print(describe_samplers())
        return 0
    if args.command == "demo":
        model_demo(args.problems, args.samples, args.temperature, args.seed)
    elif args.command == "toy":
        demo(args.samples, args.temperature, args.seed)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``dllm-mcmc`` on ``argv`` and return the exit code: 0 on success, 2 on a user error.

    A user error (`USER_ERRORS`: a missing file, a bad value, an unknown task or model) prints one line,
    ``dllm-mcmc: error: <message>``, on stderr; with ``--debug`` it is raised instead, traceback and all.
    Errors of the command line's syntax are argparse's (usage line, then the error; exit 2).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if "lm-eval" in argv and set(argv[:argv.index("lm-eval")]) <= {"--debug"}:  # the rest is lm_eval's
        return run_lm_eval(argv[argv.index("lm-eval") + 1:], debug="--debug" in argv[:argv.index("lm-eval")])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, syntax errors: argparse has printed what it had to
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    try:
        return run_command(args)
    except USER_ERRORS as error:
        if args.debug:
            raise
        print(f"{parser.prog}: error: {one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
