"""`HFDenoiser`: a transformers model as a `Denoiser`.

Fits any model whose output has ``.logits [B, N, V]`` over the input positions: masked LMs
(``AutoModelForMaskedLM``: BERT, RoBERTa, ModernBERT, ...) and LLaDA-style mask predictors
(no shift), and Dream-style models, which keep the autoregressive convention that the
logits at position ``i - 1`` predict token ``i`` (``shift_logits=True`` undoes it, as
Dream's own ``diffusion_generate`` does: position 0 reuses its own logits).

The model stays on its device and in its dtype; logits are upcast to float32 for the
sampler. The model is put in eval mode: dropout would make decoding depend on the global
RNG instead of the caller's generator.

Example:
    >>> from transformers import BertConfig, BertForMaskedLM
    >>> config = BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1,
    ...                     num_attention_heads=2, intermediate_size=32)
    >>> denoiser = HFDenoiser(BertForMaskedLM(config), mask_id=3)
    >>> denoiser(torch.full((2, 5), 3)).shape
    torch.Size([2, 5, 20])
"""

from __future__ import annotations

from pathlib import Path

import torch


def _first_not_none(*values):
    return next((value for value in values if value is not None), None)


class HFDenoiser:
    """Wrap a transformers model (in memory) as a `Denoiser`.

    Args:
        model: a ``transformers.PreTrainedModel`` (or any module returning ``.logits``).
        tokenizer: optional; supplies ``mask_token_id``, ``eos_token_id``, ``pad_token_id``.
        mask_id: the mask id; defaults to the tokenizer's, then ``config.mask_token_id``.
        shift_logits: ``True`` for Dream-style models (position ``i`` reads logits ``i - 1``).
        eos_id, pad_id: override the ids found on the tokenizer or config.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer=None,
        mask_id: int | None = None,
        shift_logits: bool = False,
        eos_id: int | None = None,
        pad_id: int | None = None,
    ) -> None:
        config = getattr(model, "config", None)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.shift_logits = bool(shift_logits)
        self.mask_id = _first_not_none(
            mask_id,
            getattr(tokenizer, "mask_token_id", None),
            getattr(config, "mask_token_id", None),
        )
        if self.mask_id is None:
            raise ValueError(
                "mask_id: neither the tokenizer nor the config names a mask token; pass mask_id="
            )
        self.mask_id = int(self.mask_id)
        self.eos_id = _first_not_none(
            eos_id, getattr(tokenizer, "eos_token_id", None), getattr(config, "eos_token_id", None)
        )
        self.pad_id = _first_not_none(
            pad_id, getattr(tokenizer, "pad_token_id", None), getattr(config, "pad_token_id", None)
        )
        vocab_size = getattr(config, "vocab_size", None)
        if vocab_size is None:
            vocab_size = model.get_output_embeddings().weight.shape[0]
        self.vocab_size = int(vocab_size)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        shift_logits: bool = False,
        dtype: torch.dtype | None = None,
        mask_id: int | None = None,
        **model_kwargs,
    ) -> "HFDenoiser":
        """Load an ``AutoModelForMaskedLM`` and its tokenizer (if saved) from a local directory.

        Nothing is downloaded (``local_files_only=True``). ``model_kwargs`` go to
        ``from_pretrained`` (for example ``device_map``).
        """
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"path: {path} is not a local model directory (no config.json)")
        if dtype is not None:
            model_kwargs["dtype"] = dtype
        model = AutoModelForMaskedLM.from_pretrained(path, local_files_only=True, **model_kwargs)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, TypeError):
            tokenizer = None
        return cls(model, tokenizer=tokenizer, mask_id=mask_id, shift_logits=shift_logits)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.no_grad()
    def __call__(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = self.model(input_ids=tokens, attention_mask=attention_mask).logits
        if self.shift_logits:
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return logits.float()
