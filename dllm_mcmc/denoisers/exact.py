"""An enumerable toy denoiser whose conditionals are exact.

`ExactDenoiser` holds a joint probability table ``p(x)`` over all ``V^L`` response
sequences (behind an optional fixed prompt). Given a canvas with observed set ``O`` it
returns, at every response position ``i``, the exact conditional

    p(x_i = v | x_O) = sum_{x : x_O fixed, x_i = v} p(x) / sum_{x : x_O fixed} p(x)

so every decoding order of it draws from the same joint, and every target the library
defines (for example ``p(x)^(1/T) / Z``) can be enumerated. Statistical tests and
notebooks compare samplers against it.

Example:
    >>> import torch
    >>> from dllm_mcmc import ExactDenoiser, decode
    >>> toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    >>> traj = decode(toy, None, gen_length=4, num_samples=5, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(traj.log_p, toy.log_prob(traj.tokens), atol=1e-5))
    True
"""

from __future__ import annotations

import torch


class ExactDenoiser:
    """A joint table over ``V^L`` sequences, queried through exact conditionals.

    Args:
        probs: non-negative weights, shaped ``[V] * L`` (one dimension per response position,
            position 0 first); normalised here.
        prompt: optional fixed prompt ids in front of the response; canvases must carry it.
        mask_id: id of the mask token; defaults to ``V`` (outside the predicted vocabulary).
        eos_id, pad_id: optional special ids, for exercising EOS handling.

    It refuses an ``attention_mask`` with padding (prompts of different lengths): its conditionals
    are those of one fixed prompt.
    """

    def __init__(
        self,
        probs: torch.Tensor,
        prompt: torch.Tensor | None = None,
        mask_id: int | None = None,
        eos_id: int | None = None,
        pad_id: int | None = None,
    ) -> None:
        probs = torch.as_tensor(probs, dtype=torch.float64)
        if probs.dim() < 1 or len(set(probs.shape)) != 1:
            raise ValueError(f"probs must be shaped [V] * L, got {tuple(probs.shape)}")
        if not torch.isfinite(probs).all() or (probs < 0).any() or probs.sum() <= 0:
            raise ValueError("probs must be finite, non-negative and not all zero")
        self.vocab_size = int(probs.shape[0])
        self.length = probs.dim()
        self.mask_id = self.vocab_size if mask_id is None else int(mask_id)
        if 0 <= self.mask_id < self.vocab_size:
            raise ValueError(f"mask_id={self.mask_id} must not be a token of the table (0..V-1)")
        self.eos_id = eos_id
        self.pad_id = pad_id
        self.prompt = (
            torch.zeros(0, dtype=torch.long)
            if prompt is None
            else torch.as_tensor(prompt, dtype=torch.long).reshape(-1)
        )
        if (self.prompt == self.mask_id).any():
            raise ValueError("prompt must not contain mask_id")
        self.probs = (probs / probs.sum()).reshape(-1)
        # sequences[c] are the base-V digits of c, position 0 most significant (C order).
        digits = torch.arange(self.vocab_size ** self.length)
        powers = self.vocab_size ** torch.arange(self.length - 1, -1, -1)
        self.sequences = (digits[:, None] // powers) % self.vocab_size
        self._one_hot = torch.nn.functional.one_hot(self.sequences, self.vocab_size).to(
            torch.float64
        )

    @classmethod
    def random(
        cls,
        vocab_size: int,
        length: int,
        seed: int = 0,
        sharpness: float = 1.0,
        prompt: torch.Tensor | None = None,
        **kwargs,
    ) -> ExactDenoiser:
        """A random joint ``p(x) ∝ exp(sharpness · z_x)``, ``z_x ~ N(0, 1)`` i.i.d., from ``seed``."""
        if vocab_size < 2 or length < 1:
            raise ValueError("vocab_size must be >= 2 and length >= 1")
        generator = torch.Generator().manual_seed(seed)
        scores = sharpness * torch.randn(vocab_size**length, generator=generator, dtype=torch.float64)
        probs = torch.softmax(scores, dim=0).reshape([vocab_size] * length)
        return cls(probs, prompt=prompt, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.probs.device

    def to(self, device: torch.device | str) -> ExactDenoiser:
        """Move the table (the library itself never moves a denoiser)."""
        for name in ("probs", "sequences", "_one_hot", "prompt"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def index(self, tokens: torch.Tensor) -> torch.Tensor:
        """Row index into ``probs`` / ``sequences`` of response sequences ``[B, L]``."""
        powers = self.vocab_size ** torch.arange(self.length - 1, -1, -1, device=tokens.device)
        return (tokens * powers).sum(-1)

    def log_prob(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` of response sequences ``[B, L]``."""
        return self.probs.log()[self.index(tokens)].to(torch.float32)

    def tempered(self, target_temperature: float) -> torch.Tensor:
        """The globally tempered target ``p(x)^(1/T) / Z`` over all sequences, ``[V^L]``."""
        return torch.softmax(self.probs.log() / target_temperature, dim=0)

    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise ValueError(
                "ExactDenoiser: its table is behind one fixed prompt, so it cannot take left-padded rows "
                "(prompts of different lengths); give every row the same prompt"
            )
        prompt_length = self.prompt.numel()
        if tokens.dim() != 2 or tokens.shape[1] != prompt_length + self.length:
            raise ValueError(
                f"tokens must be [B, {prompt_length + self.length}] (prompt + response), "
                f"got {tuple(tokens.shape)}"
            )
        if prompt_length and not (tokens[:, :prompt_length] == self.prompt).all():
            raise ValueError("tokens do not start with this ExactDenoiser's prompt")
        response = tokens[:, prompt_length:]
        observed = response != self.mask_id
        # A sequence is consistent when it matches every observed token: count matches with one
        # matrix product of one-hot encodings (far cheaper than a [B, C, L] comparison).
        shown = torch.nn.functional.one_hot(response.clamp(0, self.vocab_size - 1), self.vocab_size)
        shown = (shown * observed[..., None]).to(torch.float64).reshape(response.shape[0], -1)
        matches = shown @ self._one_hot.reshape(self._one_hot.shape[0], -1).T  # [B, C]
        consistent = matches == observed.sum(-1, keepdim=True)
        weights = self.probs[None] * consistent  # [B, C]
        if (weights.sum(-1) <= 0).any():
            raise ValueError("the observed tokens have probability zero under the joint")
        marginals = torch.einsum("bc,clv->blv", weights, self._one_hot)
        marginals = marginals / marginals.sum(-1, keepdim=True)
        logits = torch.zeros(
            tokens.shape[0], tokens.shape[1], self.vocab_size, dtype=torch.float32, device=tokens.device
        )
        logits[:, prompt_length:] = marginals.log().to(torch.float32)
        return logits
