"""`NativeDenoiser`: a native transformer with its tokenizer, called as a `Denoiser`.

Example:
    >>> from dllm_mcmc.denoisers.native.transformer import ArchitectureConfig, BidirectionalTransformer
    >>> config = ArchitectureConfig(hidden=16, layers=1, heads=2, kv_heads=1, head_dim=8,
    ...                             intermediate=32, vocab=11, mask_id=10)
    >>> denoiser = NativeDenoiser(BidirectionalTransformer(config), architecture="llada")
    >>> canvas = torch.tensor([[1, 2, 10, 10]])
    >>> denoiser(canvas).shape, denoiser(canvas, logit_positions=torch.tensor([2, 3])).shape
    (torch.Size([1, 4, 11]), torch.Size([1, 2, 11]))
"""

from __future__ import annotations

import torch

from dllm_mcmc.denoisers.native.transformer import ArchitectureConfig, BidirectionalTransformer


class NativeDenoiser:
    """A `BidirectionalTransformer` with its tokenizer: ``denoiser(tokens, attention_mask) -> float32 logits``.

    Attributes:
        model: the module (eval mode, no gradients).
        architecture: ``"llada"``, ``"dream"`` or ``"wedlm"``.
        config: its `ArchitectureConfig`.
        tokenizer: a transformers tokenizer or ``None``.
        mask_id, eos_id, pad_id, vocab_size: from ``config.json``.
        mask_id_source: where ``mask_id`` came from (``"config"``, ``"argument"`` or, for WeDLM,
            ``"fallback"``; see `load_native`).
    """

    accepts_logit_positions = True  # see dllm_mcmc.denoisers.batching.forward_in_chunks

    def __init__(self, model: BidirectionalTransformer, tokenizer=None, architecture: str | None = None,
                 mask_id_source: str = "config") -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.architecture = architecture
        self.config: ArchitectureConfig = model.config
        self.mask_id, self.eos_id, self.pad_id = model.mask_id, model.eos_id, model.pad_id
        self.mask_id_source = mask_id_source
        self.vocab_size = model.vocab_size

    @property
    def device(self) -> torch.device:
        return self.model.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed.weight.dtype

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 logit_positions: torch.Tensor | None = None) -> torch.Tensor:
        """Float32 logits ``[B, N, V]``, or ``[B, K, V]`` at the ``K`` indices ``logit_positions`` (1-D, shared
        by all rows; the output head runs there only, see `BidirectionalTransformer.forward`)."""
        return self.model(tokens, attention_mask, logit_positions=logit_positions)
