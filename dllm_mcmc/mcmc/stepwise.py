"""Stepwise independent MH during decoding: global tempering one token at a time.

The sampler of Fang et al., "Locally Confident, Globally Stuck" (arXiv 2604.00375). It targets
the globally tempered distribution ``π_T(x) ∝ p(x)^(1/T)`` (see `dllm_mcmc.target`) by correcting,
at every decoding step, the locally tempered token proposal towards the exact conditional of
``π_T`` at the chosen position ``i`` given the observed tokens ``x_O``:

    π_T(x_i = v | x_O) ∝ p_i(v | x_O)^(1/T) · S_T(v; x_O),
    S_T(v; x_O) = Σ_{completions y of the other masked positions} p(y | x_O, x_i = v)^(1/T).

Algorithm (``C`` rows decoded together, one token per step, ``K`` candidates per step):

1. One forward call of the fully masked canvas ``[C, N]`` gives the first step's conditionals.
2. At every step: ``log p_j`` (untempered, the mask token removed) at the masked positions of
   the current block; choose a position ``i`` with the target's order law (the decoding rule),
   with probability ``r(i | state)``.
3. Draw ``K`` candidates ``v_1..v_K`` i.i.d. from ``q_i(v) ∝ p_i(v)^(1/τ)`` (Gumbel-max).
4. Fill each candidate in and run ONE forward call over the ``C·K`` candidate canvases.
5. Score every candidate with the log target weight and the log proposal

       lw(v) = log p_i(v) / T + log S(v),      lq(v) = log q_i(v),      w(v) = lw(v) − lq(v).

   ``suffix="mean_field"`` (the paper's choice; an **approximation**, exact only when the masked
   positions in scope are conditionally independent given the candidate canvas) uses the
   candidate's own forward call:

       log Ŝ_T(v) = Σ_{j masked, j ≠ i, j in scope} log Σ_u p_j(u | x_O, x_i = v)^(1/T),

   where the scope is the masked positions of the current block (``suffix_scope="block"``) or of
   the whole response (``"all"``). ``suffix="exact"`` enumerates ``S_T`` over all ``V^m``
   completions of the ``m`` masked positions in scope, with ``log p(y | ·)`` by the chain rule
   left to right over those positions. It is an **oracle for testing** on tiny vocabularies: it
   costs ``m − 1`` further (deduplicated, chunked) forward calls per step, counted in ``cost``.
   Later blocks stay masked (marginalised) under ``suffix_scope="block"``; the exact conditional
   of ``π_T`` needs ``suffix_scope="all"`` (the same thing when there is one block).
6. Select one candidate. ``selection="mh"``: an independent MH chain over the candidates in
   order, starting at ``v_1``; for ``k = 2..K`` move to ``v_k`` with probability
   ``min(1, exp(w(v_k) − w(v_cur)))``, that is

       log a(v → v') = (1/T − 1/τ)(log p_i(v') − log p_i(v)) + log S(v') − log S(v).

   Its stationary law is ``q_i · exp(w) ∝ p_i^(1/T) · S``; with ``K < ∞`` the chain has run only
   ``K − 1`` steps from ``q_i``, so the selected token is **approximately** (not exactly) a draw
   from it. ``selection="sir"``: sampling-importance-resampling, one candidate drawn
   ``∝ exp(w)`` (also exact only as ``K → ∞``).
7. Commit the selected token, and reuse the selected candidate's forward pass as the next step's
   conditionals: no extra sequential forward call.

With ``K = 1`` every step commits its single proposal: plain local tempering (decoding at ``τ``
with the rule), draw for draw the same as `dllm_mcmc.decode` with the kernel's generator.

Cost per stepwise decode (``L`` steps, no ``max_rows`` chunking, ``dedupe=False``): the last
step needs no candidate forward (nothing follows it, and its suffix is empty), so

    sequential forward calls = L,      rows = C + (L − 1) · C · K,

i.e. the first call (the empty canvas, ``C`` rows; identical for all ``K`` candidates) stands for
step 1's forward and each later step's conditionals come from the previous step's ``C·K``
candidate call. ``suffix="exact"`` adds its enumeration calls; a ``likelihood`` other than
``order`` adds the target's likelihood calls for ``log_target``. ``dedupe=True`` pushes only the
distinct candidate canvases through the model (same calls, fewer rows; identical results up to
the model's batch-dependence of floating point).

Draws are independent: every `sample` call runs one fresh stepwise decode of ``C`` rows and
returns ``C`` new draws (each "chain" is a sequence of i.i.d. draws; ``params`` is not read).

After each `sample`, ``info`` holds per-draw float tensors ``[C]``:

- ``accept_prob``: for ``mh``, the fraction of accepted moves in the ``K − 1``-move scan, averaged
  over steps (1 when ``K = 1``); for ``sir``, the normalised effective sample size of the
  candidate weights, ``(Σ e^w)² / (K Σ e^{2w}) ∈ [1/K, 1]``, averaged over steps;
- ``accepted``: ones (every draw is new);
- ``log_target``: ``log u(σ | x) + L(x, σ) / T`` of the draw (order law from the rule's choice
  probabilities, ``L`` the target's likelihood; for ``order`` the chain rule of the committed
  tokens' untempered ``log p``);
- ``sequential_forwards``: forward calls of this decode (shared by its ``C`` draws);
- ``forward_rows``: rows of this decode divided by ``C``.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser, TemperedTarget, sample
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> target = TemperedTarget(toy, None, 4, temperature=0.5)
    >>> kernel = Stepwise(target, proposal_temperature=0.5, num_candidates=8, num_chains=2)
    >>> result = sample(toy, None, 4, kernel=kernel, num_samples=3, warmup=0, progress=False)
    >>> result.tokens.shape, kernel.info["sequential_forwards"].tolist()
    (torch.Size([2, 3, 4]), [4.0, 4.0])
"""

from __future__ import annotations

import torch

from dllm_mcmc._checks import positive_int
from dllm_mcmc.decoding.rules import position_rule, proposal_log_probs, sample_tokens
from dllm_mcmc.denoisers.base import MaxRows, forward_in_chunks, model_log_probs, resolve_max_rows
from dllm_mcmc.mcmc.kernel import TargetKernel
from dllm_mcmc.mh import mh_scan, sir
from dllm_mcmc.target import TemperedTarget

SUFFIXES = ("mean_field", "exact")
SELECTIONS = ("mh", "sir")
SUFFIX_SCOPES = ("block", "all")


class Stepwise(TargetKernel):
    """Stepwise IMH over ``K`` candidate tokens per decoding step (Fang et al. 2026).

    Args:
        target: the `TemperedTarget` (denoiser, prompt, ``gen_length``, ``T``, order law).
            Its rule picks the positions (``random``, ``top_prob``, ``margin``, ``entropy``,
            ``stochastic``; blocks allowed; ``tokens_per_step`` must be 1).
        proposal_temperature: ``τ`` of the candidate proposal ``q_i ∝ p_i^(1/τ)``.
        num_candidates: ``K`` (1 gives local tempering).
        suffix: ``"mean_field"`` (approximate, the paper's) or ``"exact"`` (enumeration oracle
            for tiny vocabularies).
        selection: ``"mh"`` (independent MH scan over the candidates) or ``"sir"``.
        suffix_scope: masked positions the suffix covers: ``"block"`` (current block) or
            ``"all"`` (the whole response).
        num_chains: ``C``, draws per `sample` call (rows decoded together).
        seed: seeds the kernel's generator (positions, candidates, selection).
        dedupe: forward only the distinct candidate canvases (fewer rows, same calls; counting
            them is one host read per step, the only one in the loop).
        max_rows: largest batch of one forward call, for the candidate calls and the
            ``suffix="exact"`` enumeration: a positive int (a step's ``C·K`` rows split into several
            calls), ``"auto"`` (see `dllm_mcmc.denoisers.base.auto_max_rows`), or ``None``: the
            target's ``max_rows`` (which is ``None``, one call per step, unless set there).
        max_suffix_completions: the largest ``V^m`` ``suffix="exact"`` may enumerate.
    """

    name = "stepwise"
    needs_warmup = False  # draws are independent decodes; the runner skips warm-up

    def __init__(
        self,
        target: TemperedTarget,
        proposal_temperature: float = 1.0,
        num_candidates: int = 16,
        suffix: str = "mean_field",
        selection: str = "mh",
        suffix_scope: str = "block",
        num_chains: int = 1,
        seed: int = 0,
        dedupe: bool = False,
        max_rows: MaxRows = None,
        max_suffix_completions: int = 100_000,
    ) -> None:
        super().__init__(target, proposal_temperature, num_chains, seed)
        for name, value in (
            ("num_candidates", num_candidates),
            ("max_suffix_completions", max_suffix_completions),
        ):
            positive_int(name, value)
        for name, value, choices in (
            ("suffix", suffix, SUFFIXES),
            ("selection", selection, SELECTIONS),
            ("suffix_scope", suffix_scope, SUFFIX_SCOPES),
        ):
            if value not in choices:
                raise ValueError(f"{name}={value!r} is unknown; choose one of {', '.join(choices)}")
        if not isinstance(dedupe, bool):
            raise ValueError(f"dedupe must be True or False, got {dedupe!r}")
        order_law = target.order_law
        if order_law.tokens_per_step != 1:
            raise ValueError(
                f"tokens_per_step={order_law.tokens_per_step}: the stepwise sampler commits one "
                f"token per step; build the target with tokens_per_step=1"
            )
        self.num_candidates = num_candidates
        self.suffix = suffix
        self.selection = selection
        self.suffix_scope = suffix_scope
        self.dedupe = dedupe
        self.max_rows = max_rows
        self.max_suffix_completions = max_suffix_completions
        # one micro-batch size for every forward call of the kernel
        self._rows = (target.max_rows if max_rows is None
                      else resolve_max_rows(target.denoiser, max_rows, target.prompt.numel() + target.gen_length))
        self.rule = position_rule(order_law.rule, order_law.position_temperature, order_law.position_score)
        denoiser = target.denoiser
        self._mask_id = int(denoiser.mask_id)
        self._vocab_size = int(denoiser.vocab_size)
        self._tokens = torch.tensor(
            [v for v in range(self._vocab_size) if v != self._mask_id], device=target.prompt.device
        )
        if suffix == "exact":
            length = target.gen_length
            block = length if order_law.block_length is None or suffix_scope == "all" else order_law.block_length
            completions = len(self._tokens) ** (block - 1)
            if completions > max_suffix_completions:
                raise ValueError(
                    f"suffix='exact' would enumerate {len(self._tokens)}^{block - 1} = {completions} "
                    f"completions per candidate (more than max_suffix_completions="
                    f"{max_suffix_completions}); use suffix='mean_field'"
                )
        # masked positions left in scope after each step's commit, the same in every row: step t
        # has committed t tokens, so t − start of its block [start, end)
        self._suffix_counts = [
            (target.gen_length if suffix_scope == "all" else end) - step - 1
            for step, (_, end, _) in enumerate(order_law.schedule(target.gen_length))
        ]
        self._params: dict[str, torch.Tensor] | None = None

    # -- Pyro's lifecycle -------------------------------------------------------------------

    def setup(self, warmup_steps: int = 0, *args, **kwargs) -> None:
        self._start(warmup_steps)
        params, _ = self._decode()  # the chains start at a stepwise draw
        self._params = params

    @property
    def initial_params(self) -> dict[str, torch.Tensor]:
        if self._params is None:
            raise RuntimeError("call setup() before reading initial_params")
        return self._params

    @initial_params.setter
    def initial_params(self, params: dict[str, torch.Tensor]) -> None:
        """Accepted for Pyro's API; draws never depend on the current state."""
        self._params = {"tokens": params["tokens"], "order": params["order"]}

    def sample(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``C`` new independent draws by one batched stepwise decode (``params`` is not read)."""
        self._params, self.info = self._decode()
        self._count_acceptance(self.info["accept_prob"])
        return self._params

    # -- one stepwise decode ----------------------------------------------------------------

    def _decode(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        target, generator = self.target, self.generator
        denoiser = target.denoiser
        calls_before, rows_before = denoiser.calls, denoiser.rows
        num_rows, num_candidates = self.num_chains, self.num_candidates
        length, prompt_length = target.gen_length, target.prompt.numel()
        mask_id, device = self._mask_id, target.prompt.device
        rows = torch.arange(num_rows, device=device)
        canvas = torch.cat(
            [target.prompt_rows(num_rows),
             torch.full((num_rows, length), mask_id, dtype=torch.long, device=device)],
            dim=1,
        )
        response = canvas[:, prompt_length:]  # a view: commits write through to the canvas
        logits = self._forward(canvas)[:, prompt_length:]  # [C, L, V] conditionals of the state
        order = torch.empty(num_rows, length, dtype=torch.long, device=device)
        log_position = torch.zeros(num_rows, device=device)
        chain_log_p = torch.zeros(num_rows, device=device)
        accept_sum = torch.zeros(num_rows, dtype=torch.float64, device=device)
        invalid = []  # flags checked once at the end: no host sync per step
        steps = self.proposal.schedule(length)
        for step, (start, end, _) in enumerate(steps):
            log_p = model_log_probs(logits[:, start:end], mask_id)  # [C, B, V]
            eligible = response[:, start:end] == mask_id
            chosen = self.rule.choose(log_p, eligible, 1, generator)  # [C, 1], block-relative
            log_position = log_position + self.rule.log_prob(log_p, eligible, chosen)
            position = chosen[:, 0] + start
            log_p_i = log_p[rows, chosen[:, 0]]  # [C, V]
            log_q_i = proposal_log_probs(log_p_i, self.proposal.temperature)
            candidates = sample_tokens(
                log_q_i[:, None].expand(num_rows, num_candidates, -1), generator
            )  # [C, K]
            log_p_c = log_p_i.gather(1, candidates)
            log_q_c = log_q_i.gather(1, candidates)
            invalid.append(torch.isnan(log_p.amax(-1)).any() | torch.isnan(log_q_i.amax(-1)).any())
            if step + 1 < len(steps):
                log_suffix, candidate_logits = self._score_candidates(
                    canvas, position, candidates, start, end, self._suffix_counts[step]
                )
            else:  # nothing left to complete, nothing left to condition on
                log_suffix, candidate_logits = torch.zeros_like(log_p_c), None
            log_weight = (log_p_c.double() / target.temperature + log_suffix.double()) - log_q_c.double()
            if self.selection == "mh":
                selected, accept, bad = mh_scan(log_weight, generator)
            else:
                selected, accept, bad = sir(log_weight, generator)
            invalid.append(bad)
            accept_sum += accept
            token = candidates.gather(1, selected[:, None]).squeeze(1)
            response[rows, position] = token
            order[:, step] = position
            chain_log_p = chain_log_p + log_p_c.gather(1, selected[:, None]).squeeze(1)
            if candidate_logits is not None:
                logits = candidate_logits(selected)
                candidate_logits = None  # frees the C·K candidate logits before the next step's call
        flags = torch.stack(invalid)
        if flags.any():
            raise ValueError(
                "stepwise: NaN in the model's log-probabilities or in the candidate weights (the "
                "denoiser returned NaN/+inf logits, or every candidate has zero target mass)"
            )
        tokens = response.clone()
        log_target = log_position + target.log_likelihood(tokens, chain_log_p) / target.temperature
        calls, forward_rows = denoiser.calls - calls_before, denoiser.rows - rows_before
        info = {
            "accept_prob": (accept_sum / len(steps)).float(),
            "accepted": torch.ones(num_rows, device=device),
            "log_target": log_target.float(),
            "sequential_forwards": torch.full((num_rows,), float(calls), device=device),
            "forward_rows": torch.full((num_rows,), forward_rows / num_rows, device=device),
        }
        return {"tokens": tokens, "order": order}, info

    @torch.no_grad()  # decoding never needs gradients, whatever the denoiser
    def _forward(self, canvases: torch.Tensor) -> torch.Tensor:
        return forward_in_chunks(self.target.denoiser, canvases, self._rows)

    def _score_candidates(self, canvas, position, candidates, start, end, count):
        """``log S`` ``[C, K]`` of every candidate, and a function selected ``[C]`` -> the
        selected candidates' response logits ``[C, L, V]`` (the next step's conditionals)."""
        num_rows, num_candidates = candidates.shape
        prompt_length = self.target.prompt.numel()
        if self.dedupe:
            # a candidate canvas is (state, position, token): deduplicate the C states by rows,
            # then the triples as one integer key (far cheaper than unique rows of C·K canvases)
            states, state_of = torch.unique(canvas, dim=0, return_inverse=True)
            length, vocab = self.target.gen_length, self._vocab_size
            key = (state_of[:, None] * length + position[:, None]) * vocab + candidates
            keys, inverse = torch.unique(key.reshape(-1), return_inverse=True)
            canvases = states[keys // (length * vocab)]
            rows = torch.arange(keys.shape[0], device=keys.device)
            canvases[rows, prompt_length + (keys // vocab) % length] = keys % vocab
        else:
            canvases = canvas[:, None, :].repeat(1, num_candidates, 1)
            canvases[:, :, prompt_length:].scatter_(
                2, position[:, None, None].expand(-1, num_candidates, 1), candidates[..., None]
            )
            canvases = canvases.reshape(num_rows * num_candidates, -1)
            inverse = torch.arange(canvases.shape[0], device=canvases.device)
        logits = self._forward(canvases)[:, prompt_length:]  # [U, L, V]
        response = canvases[:, prompt_length:]
        low, high = (0, response.shape[1]) if self.suffix_scope == "all" else (start, end)
        columns = torch.arange(response.shape[1], device=response.device)
        # compared, not assigned: `in_scope[low:high] = True` copies a host scalar at every step
        in_scope = (columns >= low) & (columns < high)
        scope = (response == self._mask_id) & in_scope  # the same count in every row
        if self.suffix == "mean_field":
            log_suffix = self._mean_field(logits, scope, count)
        else:
            log_suffix = self._exact(canvases, logits, scope, in_scope, count)
        inverse = inverse.view(num_rows, num_candidates)
        log_suffix = log_suffix[inverse]

        def selected_logits(selected: torch.Tensor) -> torch.Tensor:
            return logits[inverse.gather(1, selected[:, None]).squeeze(1)]

        return log_suffix, selected_logits

    def _mean_field(self, logits: torch.Tensor, scope: torch.Tensor, count: int | None = None) -> torch.Tensor:
        """``Σ_{j in scope} logsumexp_u(log p_j(u) / T)`` per canvas, ``[U]``."""
        count = _scope_count(scope, count)
        if count == 0:
            return torch.zeros(logits.shape[0], device=logits.device)
        index = _scope_index(scope, count)
        picked = logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))
        log_p = model_log_probs(picked, self._mask_id)
        return (log_p / self.target.temperature).logsumexp(-1).sum(-1)

    def _exact(
        self,
        canvases: torch.Tensor,
        logits: torch.Tensor,
        scope: torch.Tensor,
        in_scope: torch.Tensor,
        count: int | None = None,
    ) -> torch.Tensor:
        """``log Σ_y p(y | canvas)^(1/T)`` over all completions ``y`` of the positions in scope,
        ``p(y | ·)`` by the chain rule left to right; ``[U]``. The canvases of every level are
        deduplicated and pushed in chunks of the kernel's micro-batch size (see ``max_rows``)."""
        num, width = canvases.shape
        prompt_length = self.target.prompt.numel()
        count = _scope_count(scope, count)
        if count == 0:
            return torch.zeros(num, dtype=torch.float64, device=canvases.device)
        index = _scope_index(scope, count)  # response positions, ascending per row
        tokens = self._tokens
        size = len(tokens)
        states = canvases[:, None, :]  # [U, V^k, N]: the first k positions of the scope filled
        log_p_prefix = torch.zeros(num, 1, dtype=torch.float64, device=canvases.device)
        for k in range(count):
            if k == 0:  # the candidates' own forward call
                level_rows, level_logits = canvases, logits
                where = torch.arange(num, device=canvases.device)
                at = index[:, 0]
            else:
                level_rows, where = torch.unique(states.reshape(-1, width), dim=0, return_inverse=True)
                level_logits = self._forward(level_rows)
                level_logits = level_logits[:, prompt_length:]
                # a distinct state's next position: its leftmost masked position in scope (the
                # same for every state it stands for, since they are equal canvases)
                masked = (level_rows[:, prompt_length:] == self._mask_id) & in_scope
                at = masked.int().argmax(-1)
            rows = torch.arange(level_rows.shape[0], device=canvases.device)
            step_log_p = model_log_probs(level_logits[rows, at], self._mask_id)[:, tokens]
            step_log_p = step_log_p[where].view(num, -1, size).double()
            log_p_prefix = (log_p_prefix[..., None] + step_log_p).reshape(num, -1)
            if k + 1 < count:
                states = states[:, :, None, :].repeat(1, 1, size, 1)
                positions = (index[:, k] + prompt_length).view(num, 1, 1, 1).expand(-1, states.shape[1], size, 1)
                fill = tokens.view(1, 1, size, 1).expand(num, states.shape[1], size, 1)
                states = states.scatter(3, positions, fill).reshape(num, -1, width)
        return (log_p_prefix / self.target.temperature).logsumexp(-1)


def _scope_count(scope: torch.Tensor, count: int | None) -> int:
    """Masked positions in scope per row (the same in every row); read from ``scope`` (a host
    sync) only when the caller does not know it."""
    if count is not None:
        return count
    return int(scope[0].sum()) if scope.shape[0] else 0


def _scope_index(scope: torch.Tensor, count: int) -> torch.Tensor:
    """``[B, count]`` the positions where ``scope [B, L]`` is true, ascending, without a host sync
    (a stable descending sort puts the true positions first, in their order)."""
    return scope.to(torch.uint8).argsort(dim=1, descending=True, stable=True)[:, :count]
