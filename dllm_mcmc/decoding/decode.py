"""`decode`: batched masked-diffusion decoding that records the exact trajectory density.

Algorithm (one token per step shown; ``tokens_per_step=k`` commits ``k`` per step). The
response of length ``L`` starts fully masked and is split into blocks decoded left to right
(LLaDA's semi-autoregressive scheme, Nie et al. 2025, arXiv 2502.09992). At every step, for all
``S`` rows in one forward call:

1. ``p_j = softmax(logits_j)`` at the masked positions ``M`` of the current block
   (the mask token itself is removed from every distribution);
2. choose a position ``j ∈ M`` by the rule, with probability ``r(j | state)``;
3. draw ``v ~ q_j(v) ∝ p_j(v)^(1/τ)``;
4. commit ``x_j = v`` and record

       log q_step = log r(j | state) + log q_j(v),      log p_step = log p_j(v).

The sums ``log q = Σ log q_step`` and ``log p = Σ log p_step`` are the proposal density of
the trajectory (order and tokens) and the model's chain-rule probability along that order.
`replay` recomputes both for given tokens and order by teacher forcing, through the same loop.

For ``confidence`` (LLaDA's low-confidence remasking) step 2 comes after drawing a token at
every masked position, and the position with the most probable drawn token is kept. Its
choice probability is an integral over the discarded draws with no closed form, so
``log_q`` holds only the token terms and the trajectory has ``exact_density=False``: it must
not be used as an MH proposal density.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from dllm_mcmc._checks import positive_int
from dllm_mcmc.decoding.canvas import Prompt, canvas_attention, generator_for, masked_canvas, prompt_batch
from dllm_mcmc.decoding.config import DEFAULT_DISTANCE_PENALTY, DEFAULT_WINDOW, RULE_OPTIONS, DecodeConfig, Rule
from dllm_mcmc.decoding.rules import NEG_INF, position_rule_of, proposal_log_probs, sample_tokens
from dllm_mcmc.decoding.trajectory import Trajectory
from dllm_mcmc.denoisers.base import Denoiser, model_log_probs
from dllm_mcmc.denoisers.batching import LogitWindow, MaxRows, forward_in_chunks, resolve_max_rows


def decode(
    denoiser: Denoiser,
    prompt: Prompt,
    gen_length: int,
    rule: str | Rule = "random",
    temperature: float = 1.0,
    block_length: int | None = None,
    tokens_per_step: int = 1,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    position_temperature: float = 1.0,
    position_score: str = "top_prob",
    suppress_eos: bool = False,
    progress: bool = False,
    max_rows: MaxRows = None,
    distance_penalty: float = DEFAULT_DISTANCE_PENALTY,
    window: int = DEFAULT_WINDOW,
) -> Trajectory:
    """Decode ``num_samples`` responses of ``gen_length`` tokens after ``prompt``.

    Args:
        denoiser: any `Denoiser` (``mask_id``, ``vocab_size``, ``__call__`` -> logits).
        prompt: ``[P]`` ids shared by all rows, ``[S, P]`` one per row, ``None``, or a list of ``S``
            1-D id tensors of any lengths, one per row: they are left-padded to the longest and the
            denoiser gets an attention mask that hides the padding, so each row is decoded as it would
            be alone (see ``docs/decoding.md``, "Prompts of different lengths").
        gen_length: response length ``L``.
        rule: ``random``, ``confidence``, ``top_prob``, ``margin``, ``entropy``, ``stochastic``, ``egi``,
            ``wedlm``, or a `Rule` object carrying the rule's options (then leave ``block_length``,
            ``tokens_per_step``, ``position_temperature``, ``position_score``, ``distance_penalty``,
            ``window`` at their defaults).
        temperature: token temperature ``τ > 0``.
        block_length: semi-autoregressive block size; must divide ``gen_length``.
        tokens_per_step: positions committed per forward call.
        num_samples: ``S``, rows decoded together (one forward call of batch ``S`` per step).
        generator: the source of every random draw; ``None`` seeds a new one from torch's
            global generator (so ``torch.manual_seed`` makes the call reproducible). Draws are
            made on the denoiser's device; a generator on another device type (a CPU generator
            for a CUDA model) seeds, by one draw, a generator there (see `dllm_mcmc.decoding.canvas.generator_for`).
        position_temperature, position_score: the ``stochastic`` rule's softmax temperature and
            score.
        suppress_eos: never propose ``denoiser.eos_id``.
        progress: show a progress bar over steps.
        max_rows: largest batch of one forward call: ``None`` (the ``S`` rows in one call), a
            positive int (each step's call split into micro-batches), or ``"auto"`` (from the
            free CUDA memory, ``None`` on other devices; see `dllm_mcmc.denoisers.batching.auto_max_rows`).
            Results do not depend on it (beyond the model's batch-dependence of floating point);
            ``nfe`` counts steps, not micro-batches.
        distance_penalty, window: the ``wedlm`` rule's ``λ`` and window ``W`` (see
            `dllm_mcmc.decoding.rules`).

    Returns:
        A `Trajectory` with tokens, order, per-step ``log q`` and ``log p``, and NFE.

    Example:
        >>> import torch
        >>> from dllm_mcmc import ExactDenoiser, decode
        >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
        >>> traj = decode(toy, None, gen_length=4, rule="entropy", temperature=0.5,
        ...               num_samples=3, generator=torch.Generator().manual_seed(0))
        >>> traj.tokens.shape, traj.exact_density
        (torch.Size([3, 4]), True)
    """
    options = dict(block_length=block_length, tokens_per_step=tokens_per_step,
                   position_temperature=position_temperature, position_score=position_score,
                   distance_penalty=distance_penalty, window=window)
    if isinstance(rule, Rule):  # the rule's options travel inside it; keywords left at their defaults
        options = {k: v for k, v in options.items() if v != getattr(Rule(), k)}
    config = Rule.of(rule, **options).config(temperature, suppress_eos)
    positive_int("num_samples", num_samples)
    prompts, prompt_mask = prompt_batch(denoiser, prompt, num_samples)
    generator = generator_for(generator, prompts.device)
    return _run(denoiser, prompt, prompts, prompt_mask, gen_length, config, generator, None, progress, max_rows)


def replay(
    denoiser: Denoiser,
    prompt: Prompt,
    tokens: torch.Tensor,
    order: torch.Tensor,
    config: DecodeConfig | None = None,
    max_rows: MaxRows = None,
    **options,
) -> Trajectory:
    """Teacher-force ``tokens`` in ``order`` through the decoder and return their record.

    Gives ``log q`` and ``log p`` of any (order, tokens) pair, for example a state an MCMC
    kernel did not propose itself. ``config`` (or the keyword ``options`` of `decode`) must be
    those of the decoder whose density is wanted. A deterministic rule gives ``-inf`` to an
    order it would not have chosen. ``prompt`` and ``max_rows`` as in `decode` (a list: one prompt
    per row of ``tokens``).

    Example:
        >>> import torch
        >>> from dllm_mcmc import ExactDenoiser, decode, replay
        >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
        >>> traj = decode(toy, None, 4, num_samples=2, generator=torch.Generator().manual_seed(0))
        >>> again = replay(toy, None, traj.tokens, traj.order, traj.config)
        >>> bool(torch.allclose(again.log_q, traj.log_q))
        True
    """
    if config is None:
        rule = options.pop("rule", "random")
        rule_options = {k: options.pop(k) for k in RULE_OPTIONS if k in options}
        config = Rule.of(rule, **rule_options).config(**options)
    elif options:
        raise ValueError("pass either config or decode options, not both")
    if tokens.dim() != 2 or order.shape != tokens.shape:
        raise ValueError(
            f"tokens and order must both be [S, L]; got {tuple(tokens.shape)} and {tuple(order.shape)}"
        )
    _check_order(order, config)
    prompts, prompt_mask = prompt_batch(denoiser, prompt, tokens.shape[0])
    forced = (tokens.to(prompts.device), order.to(prompts.device), None)
    return _run(denoiser, prompt, prompts, prompt_mask, tokens.shape[1], config, None, forced, False, max_rows)


def redecode(
    denoiser: Denoiser,
    prompt: Prompt,
    trajectory: Trajectory,
    keep_steps: torch.Tensor,
    generator: torch.Generator,
    config: DecodeConfig | None = None,
    max_rows: MaxRows = None,
) -> Trajectory:
    """Keep the first ``keep_steps[s]`` steps of each row of ``trajectory`` and decode the rest anew.

    The kept steps are teacher-forced (their records are recomputed and equal the old ones); the
    later steps are sampled with ``config`` (default: the trajectory's own). The new record's
    steps from ``keep_steps[s]`` on are the density of re-decoding that suffix from the kept
    prefix: what a re-masking MH move needs for its forward and reverse proposal terms.
    ``prompt`` (the trajectory's: a list holds one prompt per row), ``generator`` and ``max_rows`` as
    in `decode`.

    Example:
        >>> import torch
        >>> from dllm_mcmc import ExactDenoiser, decode
        >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
        >>> g = torch.Generator().manual_seed(0)
        >>> traj = decode(toy, None, 4, num_samples=2, generator=g)
        >>> new = redecode(toy, None, traj, torch.tensor([4, 2]), g)
        >>> bool(torch.equal(new.tokens[0], traj.tokens[0])), bool(torch.equal(new.order[1, :2], traj.order[1, :2]))
        (True, True)
    """
    config = trajectory.config if config is None else config
    prompts, prompt_mask = prompt_batch(denoiser, prompt, trajectory.num_samples)
    schedule = config.schedule(trajectory.gen_length)
    commits_before = torch.tensor([0] + [k for _, _, k in schedule], device=prompts.device).cumsum(0)
    keep_commits = commits_before[keep_steps.to(prompts.device).clamp(0, len(schedule))]
    forced = (trajectory.tokens, trajectory.order, keep_commits)
    generator = generator_for(generator, prompts.device)
    return _run(denoiser, prompt, prompts, prompt_mask, trajectory.gen_length, config, generator, forced, False,
                max_rows)


@torch.no_grad()  # decoding never needs gradients, whatever the denoiser
def _run(
    denoiser: Denoiser,
    prompt: Prompt,
    prompts: torch.Tensor,
    prompt_mask: torch.Tensor | None,
    gen_length: int,
    config: DecodeConfig,
    generator: torch.Generator | None,
    forced: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None,
    progress: bool,
    max_rows: MaxRows = None,
) -> Trajectory:
    """The decoding loop, shared by sampling (``forced=None``) and replay.

    ``forced`` is ``(tokens, order, keep_commits)``: rows commit the forced tokens and positions for
    their first ``keep_commits[s]`` commits and sample the rest (`redecode`), or all of them when
    ``keep_commits`` is ``None`` (`replay`, which passes no ``generator``: it never samples).

    ``prompt_mask`` (``None``: no padding) marks the real prompt tokens of left-padded rows; the
    canvas's attention mask is then passed with every forward call.

    Everything it creates lives on the prompt rows' device (the denoiser's), and nothing in the
    loop waits for the device: no tensor value is read on the host until the NaN flags after it.
    """
    steps = config.schedule(gen_length)
    # eos_id is optional, not part of the Denoiser protocol
    eos_id = getattr(denoiser, "eos_id", None) if config.suppress_eos else None
    if config.suppress_eos and eos_id is None:
        raise ValueError("suppress_eos=True but the denoiser has no eos_id")
    num_rows, prompt_length = prompts.shape
    device = prompts.device
    mask_id = int(denoiser.mask_id)
    # each step's call needs the logits of its block only (the head runs there alone when the denoiser can)
    windows = [LogitWindow(prompt_length + start, prompt_length + end) for start, end, _ in steps]
    max_rows = resolve_max_rows(denoiser, max_rows, prompt_length + gen_length, logit_positions=windows)
    suppressed = None if eos_id is None else int(eos_id)  # set only under suppress_eos
    rows = torch.arange(num_rows, device=device)[:, None]
    canvas = masked_canvas(prompts, gen_length, mask_id)
    attention = canvas_attention(prompt_mask, gen_length)  # None unless some row is left-padded
    response = canvas[:, prompt_length:]  # a view: commits write through to the canvas
    rule = None if config.rule.name == "confidence" else position_rule_of(config)
    order = torch.empty(num_rows, gen_length, dtype=torch.long, device=device)
    log_q_steps = torch.empty(num_rows, len(steps), dtype=torch.float32, device=device)
    log_p_steps = torch.empty_like(log_q_steps)
    log_position_steps = torch.empty_like(log_q_steps)
    invalid = []  # per-step flags, checked once at the end: no host sync inside the loop
    committed = 0
    for step, (start, end, k) in enumerate(tqdm(steps, desc=f"decode[{config.rule.name}]", disable=not progress)):
        logits = forward_in_chunks(denoiser, canvas, max_rows, attention, logit_positions=windows[step])
        log_p = model_log_probs(logits, mask_id)
        del logits  # log_p is a new tensor: free the [S, block, V] logits before the next step's call
        eligible = response[:, start:end] == mask_id
        sampling = forced is None or forced[2] is not None
        forced_rows = forced_positions = None
        if forced is not None:  # replay's order was validated once, before the loop
            forced_positions = forced[1][:, committed : committed + k] - start
            keep_commits = forced[2]
            forced_rows = (committed < keep_commits)[:, None] if keep_commits is not None else None
        if rule is None:  # confidence: draw everywhere, keep the most confident draws
            position_log_prob = torch.zeros(num_rows, dtype=torch.float32, device=device)
            log_q = proposal_log_probs(log_p, config.temperature, suppressed)
            if sampling:
                assert generator is not None  # only replay passes None, and replay never samples
                drawn = sample_tokens(log_q, generator)
                confidence = log_p.gather(-1, drawn[..., None]).squeeze(-1)
                positions = confidence.masked_fill(~eligible, NEG_INF).topk(k, dim=-1).indices
                positions = _merge(forced_rows, forced_positions, positions)
                tokens = drawn.gather(1, positions)
            else:
                assert forced_positions is not None  # not sampling: replay, every position forced
                positions = forced_positions
            log_q = log_q[rows, positions]
        else:
            chosen_positions = None
            if sampling:
                assert generator is not None  # only replay passes None, and replay never samples
                chosen_positions = rule.choose(log_p, eligible, k, generator)
            positions = _merge(forced_rows, forced_positions, chosen_positions)
            position_log_prob = rule.log_prob(log_p, eligible, positions)
            # the proposal is needed only where tokens are committed: [S, k, V], not [S, block, V]
            log_q = proposal_log_probs(log_p[rows, positions], config.temperature, suppressed)
            if sampling:
                assert generator is not None
                tokens = sample_tokens(log_q, generator)
        # NaN anywhere survives a max; +inf logits and all -inf rows turn into NaN in log_softmax
        invalid.append(torch.isnan(log_p.amax(-1)).any() | torch.isnan(log_q.amax(-1)).any())
        if forced is not None:
            forced_tokens = forced[0].gather(1, positions + start)
            tokens = _merge(forced_rows, forced_tokens, tokens if sampling else None)
        chosen = torch.arange(k, device=device)[None]
        log_q_steps[:, step] = position_log_prob + log_q[rows, chosen, tokens].sum(-1)
        log_p_steps[:, step] = log_p[rows, positions, tokens].sum(-1)
        log_position_steps[:, step] = position_log_prob
        response[rows, positions + start] = tokens
        order[:, committed : committed + k] = positions + start
        committed += k
    flags = torch.stack(invalid)
    if flags.any():
        raise ValueError(
            f"denoiser returned NaN or +inf logits, or a position with no finite logit, at step "
            f"{int(flags.nonzero()[0, 0])}"
        )
    return Trajectory(
        tokens=response.clone(),
        order=order,
        log_q_steps=log_q_steps,
        log_p_steps=log_p_steps,
        log_position_steps=log_position_steps,
        nfe=len(steps),
        exact_density=config.exact_density,
        config=config,
        prompt=(prompts if isinstance(prompt, torch.Tensor) and prompt.dim() == 2
                else prompts[0] if prompt is None or isinstance(prompt, torch.Tensor) else list(prompt)),
    )


def _merge(forced_rows, forced_value, free_value):
    """Per row, the forced value where ``forced_rows`` (``None``: all rows forced), else the free one."""
    if forced_value is None:
        return free_value
    if free_value is None or forced_rows is None:
        return forced_value
    return torch.where(forced_rows, forced_value, free_value)


def _check_order(order: torch.Tensor, config: DecodeConfig) -> None:
    """Refuse an order that is not a permutation per row, or that commits a position outside the
    block of its step, with one host read before the loop (a permutation never refills a position)."""
    length = order.shape[1]
    # per commit (column of order): its step and the bounds of that step's block
    commits = [(step, start, end) for step, (start, end, k) in enumerate(config.schedule(length)) for _ in range(k)]
    step_of, starts, ends = zip(*commits)
    bounds = torch.tensor([starts, ends], device=order.device)
    permutation = (order.sort(-1).values == torch.arange(length, device=order.device)).all()
    outside = ((order < bounds[0]) | (order >= bounds[1])).any(0)
    is_permutation, any_outside, first_outside = torch.stack(
        [permutation.long(), outside.any().long(), outside.long().argmax()]
    ).tolist()
    if not is_permutation:
        raise ValueError("order: every row must be a permutation of 0..L-1")
    if any_outside:
        raise ValueError(
            f"order: step {step_of[first_outside]} commits a position outside the current block or already filled"
        )
