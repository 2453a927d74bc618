"""The globally tempered quality–exploration target, as a Pyro model.

Fang et al. (arXiv 2604.00375) show that the distribution maximising ``E_q[log p(x)] + T·H(q)``
is ``π_T(x) ∝ p(x)^(1/T)`` (the Gibbs variational principle). A dLLM samples an *order* ``σ``
together with the tokens, so dllm-mcmc defines the target on the extended space

    π_T(σ, x) ∝ u(σ | x) · L(x, σ)^(1/T)

where ``u(σ | x) = Π_t r(σ_t | state_t)`` is the order law of the decoding rule (the probability
that the rule picks the positions of ``σ`` while ``x`` is being written, a distribution over
orders for each ``x``) and ``L`` is one of the likelihoods of `dllm_mcmc.likelihood`:

- ``order``: ``p(x | σ) = Π_t p(x_σt | state_t)``, the chain rule along ``σ`` (no extra forward
  pass). For a consistent model ``p(x | σ) = p(x)`` for every ``σ``, and the ``x``-marginal is
  exactly ``p(x)^(1/T) / Z``.
- ``left_to_right``: the chain rule along ``0..L-1`` (``L`` extra rows per sequence).
- ``elbo``: LLaDA's Monte-Carlo ELBO. **Approximate**: a noisy lower bound, drawn once per state.

``T = 1`` is the model itself; ``T → 0`` seeks its mode.

The Pyro program `TemperedTarget.model` writes this down: per commit a ``position_t`` site
(``Categorical`` from the rule) and a ``token_t`` site (``Categorical`` of the model's untempered
conditional), then ``pyro.factor("tempering", L(x, σ)/T − log p(x | σ))``. Its log-density, by
conditioning and tracing, is ``log u(σ | x) + L(x, σ)/T``; `TemperedTarget.log_density` gives the
same number from a decoder's `Trajectory` without any forward pass (for ``order``).

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser, decode
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> target = TemperedTarget(toy, None, gen_length=4, target_temperature=0.5)
    >>> traj = decode(toy, None, 4, num_samples=3, generator=torch.Generator().manual_seed(0))
    >>> fast = target.log_density(traj)
    >>> traced = target.traced_log_density(traj.tokens, traj.order)
    >>> bool(torch.allclose(fast, traced, atol=1e-5))
    True
"""

from __future__ import annotations

from typing import NamedTuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine

from dllm_mcmc._checks import one_of, positive_float, positive_int
from dllm_mcmc.decoding.canvas import Prompt, canvas_attention, masked_canvas, prompt_batch
from dllm_mcmc.decoding.config import Rule
from dllm_mcmc.decoding.record import DecoderRecord
from dllm_mcmc.decoding.rules import NEG_INF, position_rule_of
from dllm_mcmc.denoisers.base import Denoiser, model_log_probs
from dllm_mcmc.denoisers.batching import LogitWindow, MaxRows, forward_in_chunks, resolve_max_rows
from dllm_mcmc.denoisers.metered import MeteredDenoiser
from dllm_mcmc.likelihood import LIKELIHOODS, elbo_log_likelihood, left_to_right_log_likelihood

CONFIDENCE_REFUSAL = (
    "rule='confidence' has no exact trajectory density: its position choice depends on tokens "
    "drawn and discarded at every other masked position, so neither the order law u(σ|x) nor the "
    "proposal density q can be evaluated, and an MH ratio built on it would be wrong. Use "
    "'random' or 'stochastic' (or 'top_prob', 'margin', 'entropy')."
)


class Score(NamedTuple):
    """The target's two numbers for decoded responses (``[...]`` each): ``log_target`` (unnormalised
    ``log π_T(σ, x) = log u(σ | x) + L(x, σ)/T``) and ``log_likelihood`` (``L(x, σ)``), kept together because
    the ELBO likelihood is random: both must come from one evaluation."""

    log_target: torch.Tensor
    log_likelihood: torch.Tensor


class TemperedTarget:
    """``π_T(σ, x) ∝ u(σ | x) · L(x, σ)^(1/T)`` for one prompt, or one per chain.

    Args:
        denoiser: the dLLM (wrapped in a `MeteredDenoiser` to count its cost).
        prompt: ``[P]`` prompt ids or ``None``; or a list of ``C`` 1-D id tensors of any lengths, one
            target per prompt: row ``r`` of every batch the target scores (and of every decode its
            kernels make) belongs to prompt ``r mod C`` (`prompt_for`), so a kernel's chain ``c`` samples
            ``π_T(· | prompt c mod C)``. Rows of different lengths are left-padded with an attention
            mask (see ``docs/decoding.md``, "Prompts of different lengths").
        gen_length: response length ``L``.
        target_temperature: ``T > 0`` (keyword-only; the token temperature ``τ`` of a proposal is
            the kernel's ``proposal_temperature``).
        likelihood: ``order``, ``left_to_right`` or ``elbo`` (approximate).
        rule: the order law ``u``: a rule name or a `Rule` with its options (block length,
            tokens per step, position temperature and score); ``confidence`` is refused.
        elbo_samples: maskings per sequence for ``elbo``.
        seed: seeds the ELBO's maskings.
        max_rows: largest batch of one forward call, for the kernels over this target (their
            decodes, candidate calls and replays) and the likelihood calls: ``None`` (no split), a
            positive int, or ``"auto"`` (from the free CUDA memory when the target is built, ``None``
            off CUDA; see `dllm_mcmc.denoisers.batching.auto_max_rows`). ``self.max_rows`` holds the
            resolved number.
    """

    def __init__(
        self,
        denoiser: Denoiser,
        prompt: Prompt,
        gen_length: int,
        *,
        target_temperature: float = 1.0,
        likelihood: str = "order",
        rule: str | Rule = "random",
        elbo_samples: int = 16,
        seed: int = 0,
        max_rows: MaxRows = None,
    ) -> None:
        rule = Rule.of(rule)
        if rule.name == "confidence":
            raise ValueError(CONFIDENCE_REFUSAL)
        one_of("likelihood", likelihood, LIKELIHOODS)
        try:
            positive_float("target_temperature", target_temperature)
        except ValueError as error:
            raise ValueError(f"{error} (the target temperature T)") from None
        positive_int("elbo_samples", elbo_samples)
        self.denoiser = denoiser if isinstance(denoiser, MeteredDenoiser) else MeteredDenoiser(denoiser)
        self.rule = rule
        self.order_law = rule.config(temperature=1.0)
        self.order_law.schedule(gen_length)  # validates gen_length against block_length
        self.prompt: torch.Tensor | list[torch.Tensor]
        if isinstance(prompt, (list, tuple)):
            if not prompt:
                raise ValueError("prompt: an empty list (give at least one prompt, or None)")
            ids, _ = prompt_batch(self.denoiser, prompt, len(prompt))  # validates every prompt once
            self.prompt = list(prompt)
            self.num_prompts, self.prompt_length, self.device = len(prompt), ids.shape[1], ids.device
        else:
            self.prompt = prompt_batch(self.denoiser, prompt, 1)[0][0]
            self.num_prompts, self.prompt_length, self.device = 1, self.prompt.numel(), self.prompt.device
        self.gen_length = gen_length
        self.target_temperature = float(target_temperature)
        self.likelihood = likelihood
        self.elbo_samples = elbo_samples
        self.max_rows = resolve_max_rows(self.denoiser, max_rows, self.prompt_length + gen_length,
                                         LogitWindow(self.prompt_length, self.prompt_length + gen_length))
        self._elbo_generator = torch.Generator(device=self.device).manual_seed(seed)

    @property
    def exact(self) -> bool:
        """``False`` for the ELBO likelihood (a noisy lower bound)."""
        return self.likelihood != "elbo"

    @property
    def per_row(self) -> bool:
        """Whether the prompt is a list (one target per prompt, rows cycling through them)."""
        return isinstance(self.prompt, list)

    def prompt_for(self, num_rows: int) -> torch.Tensor | list[torch.Tensor]:
        """The ``prompt`` argument of a decode (or replay) of ``num_rows`` rows of this target: the
        shared ``[P]`` prompt, or the list of prompts repeated, row ``r`` taking prompt ``r mod C``
        (``num_rows`` must then be a multiple of ``C``)."""
        if not isinstance(self.prompt, list):
            return self.prompt
        if num_rows % self.num_prompts:
            raise ValueError(f"{num_rows} rows cannot cycle through {self.num_prompts} prompts: give a multiple "
                             f"of the number of prompts (row r belongs to prompt r mod {self.num_prompts})")
        return self.prompt * (num_rows // self.num_prompts)

    def prompt_batch(self, num_rows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(ids [num_rows, P], prompt_mask or None)`` of `prompt_for` (`dllm_mcmc.decoding.canvas.prompt_batch`)."""
        if not isinstance(self.prompt, list):
            return self.prompt[None].expand(num_rows, -1), None
        return prompt_batch(self.denoiser, self.prompt_for(num_rows), num_rows)

    def prompt_rows(self, num_rows: int) -> torch.Tensor:
        """``[num_rows, P]`` prompt ids (left-padded for prompts of different lengths: see `prompt_batch`)."""
        return self.prompt_batch(num_rows)[0]

    def log_likelihood(self, tokens: torch.Tensor, order_log_p: torch.Tensor) -> torch.Tensor:
        """``[S]`` ``L(x, σ)``; ``order_log_p`` is the chain rule along σ (used by ``order``). Row ``r``
        of ``tokens`` is scored after prompt ``r mod C`` (`prompt_for`)."""
        if self.likelihood == "order":
            return order_log_p
        rows, prompt_mask = self.prompt_batch(tokens.shape[0])
        if self.likelihood == "left_to_right":
            return left_to_right_log_likelihood(self.denoiser, rows, tokens, self.max_rows, prompt_mask)
        return elbo_log_likelihood(
            self.denoiser, rows, tokens, self.elbo_samples, self._elbo_generator, self.max_rows, prompt_mask
        )

    def score(self, record: DecoderRecord) -> Score:
        """`Score` of a decoder record (`DecoderRecord`: a `Trajectory`, a stepwise draw, an SMC run's
        particles): the one place the target formula is written,

            log π_T(σ, x) = log u(σ | x) + L(x, σ) / T.

        The record must come from a decoder with this target's order law (any token temperature): its
        position terms are then exactly ``log u``. For ``order`` no forward call is made.

        >>> import torch
        >>> from dllm_mcmc import ExactDenoiser, decode
        >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
        >>> traj = decode(toy, None, 4, num_samples=2, generator=torch.Generator().manual_seed(0))
        >>> score = TemperedTarget(toy, None, 4, target_temperature=0.5).score(traj)
        >>> bool(torch.equal(score.log_target, traj.log_position + 2 * traj.log_p))
        True
        """
        log_likelihood = self.log_likelihood(record.tokens, record.log_p)
        return Score(record.log_position + log_likelihood / self.target_temperature, log_likelihood)

    def log_density(self, record: DecoderRecord) -> torch.Tensor:
        """``[S]`` unnormalised ``log π_T(σ, x)`` of a decoder record (``score(record).log_target``)."""
        return self.score(record).log_target

    def model(self, num_rows: int = 1) -> None:
        """The Pyro program of the target: decoding at τ = 1 plus a tempering factor."""
        config = self.order_law
        rule = position_rule_of(config)
        mask_id = int(self.denoiser.mask_id)
        prompt_length, length = self.prompt_length, self.gen_length
        device = self.device
        rows = torch.arange(num_rows, device=device)
        prompts, prompt_mask = self.prompt_batch(num_rows)
        canvas = masked_canvas(prompts, length, mask_id)
        attention = canvas_attention(prompt_mask, length)  # None unless some prompt is left-padded
        response = canvas[:, prompt_length:]
        response_positions = torch.arange(prompt_length, prompt_length + length, device=device)
        order = torch.empty(num_rows, length, dtype=torch.long, device=device)
        chain_rule_log_p = torch.zeros(num_rows, device=device)
        commit = 0
        with pyro.plate("rows", num_rows):
            for start, end, k in config.schedule(length):
                logits = forward_in_chunks(self.denoiser, canvas, self.max_rows, attention,
                                           logit_positions=response_positions)
                log_p = model_log_probs(logits, mask_id)
                in_block = (torch.arange(length, device=device) >= start) & (torch.arange(length, device=device) < end)
                available = (response == mask_id) & in_block
                step_positions, step_tokens = [], []
                for _ in range(k):
                    # the rule sees the block's own positions (egi's first commit is "the whole block free")
                    position_logits = torch.full((num_rows, length), NEG_INF, device=device)
                    position_logits[:, start:end] = rule.next_logits(log_p[:, start:end], available[:, start:end])
                    position = pyro.sample(f"position_{commit}", dist.Categorical(logits=position_logits))
                    token = pyro.sample(f"token_{commit}", dist.Categorical(logits=log_p[rows, position]))
                    chain_rule_log_p = chain_rule_log_p + log_p[rows, position, token]
                    available = available.scatter(1, position[:, None], False)
                    order[:, commit] = position
                    step_positions.append(position)
                    step_tokens.append(token)
                    commit += 1
                response[rows[:, None], torch.stack(step_positions, 1)] = torch.stack(step_tokens, 1)
            log_lik = self.log_likelihood(response.clone(), chain_rule_log_p)
            pyro.factor("tempering", log_lik / self.target_temperature - chain_rule_log_p)

    @torch.no_grad()  # scoring never needs gradients through the denoiser
    def traced_log_density(self, tokens: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """``[S]`` ``log π_T(σ, x)`` by conditioning `model` on (order, tokens) and tracing it.

        Costs one forward call per step; `log_density` is the fast path for decoder records.
        """
        data = {}
        for commit in range(order.shape[1]):
            data[f"position_{commit}"] = order[:, commit]
            data[f"token_{commit}"] = tokens.gather(1, order[:, commit : commit + 1]).squeeze(1)
        trace = poutine.trace(poutine.condition(self.model, data=data)).get_trace(tokens.shape[0])
        trace.compute_log_prob()
        log_density = sum(site["log_prob"] for site in trace.nodes.values() if site["type"] == "sample")
        assert isinstance(log_density, torch.Tensor)  # not sum's start 0: the model samples every commit
        return log_density
