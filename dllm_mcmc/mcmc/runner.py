"""`sample`: run C batched chains of an MCMC kernel over decoded responses and collect a `Result`.

The runner knows nothing of algorithms: it drives any kernel through Pyro's lifecycle
(``setup`` → ``initial_params`` → ``sample`` × (warm-up + draws) → ``cleanup``), reads the kernel's
per-chain ``info`` after every step, drops the warm-up, and records cost and configuration.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

import torch
from tqdm import tqdm

from dllm_mcmc._checks import nonnegative_int, positive_int
from dllm_mcmc.decoding.canvas import Prompt
from dllm_mcmc.decoding.config import Rule
from dllm_mcmc.denoisers.base import Denoiser
from dllm_mcmc.mcmc.kernel import KernelProtocol, response_length
from dllm_mcmc.mcmc.registry import get_sampler, kernel_names
from dllm_mcmc.mcmc.result import Result
from dllm_mcmc.mcmc.spec import TARGET_OPTIONS
from dllm_mcmc.target import TemperedTarget


def sample(
    denoiser: Denoiser,
    prompt: Prompt,
    gen_length: int,
    kernel: str | KernelProtocol = "imh",
    *,
    target_temperature: float = 1.0,
    proposal_temperature: float | None = None,
    rule: str | Rule = "random",
    num_chains: int = 4,
    num_samples: int = 1000,
    warmup: int = 100,
    seed: int = 0,
    progress: bool = True,
    likelihood: str = "order",
    **options: Any,
) -> Result:
    """Draw ``num_samples`` states per chain from ``π_T ∝ u · L^(1/T)`` after ``warmup`` steps.

    Args:
        prompt: ``[P]`` ids, ``None``, or a list of ``C'`` 1-D id tensors of any lengths: chain ``c``
            samples prompt ``c mod C'`` (``num_chains`` a multiple of ``C'``; see `TemperedTarget`), all
            chains in the same batched forward calls.
        kernel: the name of a kernel sampler in the registry (`dllm_mcmc.mcmc.registry`: ``"imh"``,
            ``"power"``, ``"stepwise"``, ``"pgibbs"``, ``"smc"``, or one an installed package registers) or a
            kernel object (an
            ``MCMCKernel`` with ``num_chains``, ``info`` after each ``sample``, and ``cost``; see
            ``docs/sampling.md``); with an object, the target and proposal options here are unused.
        target_temperature: ``T``.
        proposal_temperature: token temperature ``τ`` of the proposal decoder; ``None`` (the default): the
            target's ``T``. A colder proposal (τ < T) warns (`ColdProposalWarning`).
        rule: the decoding rule (the proposal's, and the target's order law): a name or a `Rule`
            with its options (``Rule("entropy", block_length=8)``).
        likelihood: ``order``, ``left_to_right`` or ``elbo`` (approximate).
        options: further `TemperedTarget` options (``elbo_samples``; ``max_rows``: the largest
            batch of one forward call of every kernel, a positive int, ``"auto"`` from the free CUDA
            memory, or ``None`` for no split) and options of the named kernel (IMH:
            ``proposal_batch``; power: ``moves_per_draw``; stepwise: ``num_candidates``, ``suffix``,
            ``selection``, ``suffix_scope``; pgibbs, smc: ``num_particles``,
            ``ess_threshold``).

    Returns:
        `Result` with ``tokens [C, S, L]``, ``order [C, S, L]`` (where the kernel's params carry an
        ``"order"``) and per-draw ``stats`` ``[C, S]``.

    Example:
        >>> from dllm_mcmc import ExactDenoiser, sample
        >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
        >>> result = sample(toy, None, 4, target_temperature=0.5, proposal_temperature=0.5,
        ...                 num_chains=2, num_samples=50, warmup=10, progress=False)
        >>> result.tokens.shape
        torch.Size([2, 50, 4])
    """
    positive_int("num_samples", num_samples)
    nonnegative_int("warmup", warmup)
    # a list of prompts records its lengths (bad entries are refused by the target, below)
    lengths = ([int(p.shape[-1]) if isinstance(p, torch.Tensor) and p.dim() else 0 for p in prompt]
               if isinstance(prompt, (list, tuple)) else None)
    config: dict[str, Any] = {
        "gen_length": gen_length,
        "num_chains": num_chains,
        "num_samples": num_samples,
        "warmup": warmup,
        "seed": seed,
        "denoiser": type(denoiser).__name__,
        "prompt_length": (int(prompt.shape[-1]) if isinstance(prompt, torch.Tensor)
                          else 0 if lengths is None else max(lengths, default=0)),
    }
    if lengths is not None:
        config["prompt_lengths"] = lengths
    mcmc_kernel: KernelProtocol
    if isinstance(kernel, str):
        try:
            spec = get_sampler(kernel)
        except ValueError as error:
            raise ValueError(f"kernel: {error} (or pass a kernel object)") from None
        if spec.kernel is None:
            raise ValueError(f"kernel={kernel!r} is a batch sampler of the evaluation, not a kernel; sample() runs "
                             f"one of {', '.join(kernel_names())} (or a kernel object)")
        target_options = {k: options.pop(k) for k in TARGET_OPTIONS if k in options and k != "likelihood"}
        try:
            kernel_options = spec.parse_options(options, also=[k for k in TARGET_OPTIONS if k != "likelihood"])
        except ValueError as error:
            raise ValueError(f"sample(): {error}") from None
        target = TemperedTarget(
            denoiser, prompt, gen_length, target_temperature=target_temperature, likelihood=likelihood,
            rule=rule, seed=seed, **target_options,
        )
        mcmc_kernel = spec.kernel(
            target, proposal_temperature=proposal_temperature, num_chains=num_chains, seed=seed,
            **asdict(kernel_options),
        )
        config.update(**options, **target_options)
    else:
        mcmc_kernel = kernel
    kernel_chains = getattr(mcmc_kernel, "num_chains", None)
    if kernel_chains is None:
        raise ValueError("kernel: a kernel object must say how many chains it runs (num_chains)")
    config.update(kernel=getattr(mcmc_kernel, "name", type(mcmc_kernel).__name__), num_chains=kernel_chains)
    config.update(_target_config(getattr(mcmc_kernel, "target", None), getattr(mcmc_kernel, "proposal", None)))
    independent = not getattr(mcmc_kernel, "needs_warmup", True)
    if independent:
        warmup = 0  # every draw is an independent decode: there is no chain to warm up
    config["warmup"] = warmup
    start = time.perf_counter()
    mcmc_kernel.setup(warmup)
    # an independent kernel's draws never read the state: no initial state is drawn (or paid for)
    params: dict[str, torch.Tensor] = {} if independent else mcmc_kernel.initial_params
    draws: list[torch.Tensor] = []
    orders: list[torch.Tensor] = []
    infos: list[dict[str, torch.Tensor]] = []
    with tqdm(total=warmup + num_samples, desc=str(config["kernel"]), disable=not progress) as bar:
        for step in range(warmup + num_samples):
            params = mcmc_kernel.sample(params)
            if step >= warmup:
                info = mcmc_kernel.info
                if info is None:
                    raise ValueError("kernel: info is None after sample(); a kernel must set its per-chain info")
                draws.append(params["tokens"])
                if "order" in params:
                    orders.append(params["order"])
                infos.append(info)
            if progress and (step % 20 == 0 or step == warmup + num_samples - 1):
                bar.set_postfix(mcmc_kernel.logging(), refresh=False)
            bar.update()
    mcmc_kernel.cleanup()
    wall_time = time.perf_counter() - start
    tokens = torch.stack(draws, dim=1)  # [C, S, L]
    order = torch.stack(orders, dim=1) if len(orders) == len(draws) else None  # [C, S, L]
    stats = {key: torch.stack([info[key] for info in infos], dim=1).float() for key in infos[0]}
    stats["length"] = response_length(tokens, getattr(denoiser, "eos_id", None)).float()
    nfe, forward_rows = mcmc_kernel.cost
    return Result(tokens=tokens, stats=stats, nfe=nfe, forward_rows=forward_rows,
                  wall_time=wall_time, config=config, order=order)


def _target_config(target, proposal) -> dict:
    """The target's and proposal's settings, read from the kernel (named or user-built)."""
    if not isinstance(target, TemperedTarget):
        return {}
    config = {
        "target_temperature": target.target_temperature,
        "likelihood": target.likelihood,
        "likelihood_exact": target.exact,
        **{k if k == "rule" else f"rule_{k}": v for k, v in target.order_law.as_dict().items()
           if k not in ("temperature", "suppress_eos")},
    }
    if proposal is not None:
        config["proposal_temperature"] = proposal.temperature
    return config
