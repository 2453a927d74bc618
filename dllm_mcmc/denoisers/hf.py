"""`HFDenoiser`: a transformers model as a `Denoiser`.

Fits any model whose output has ``.logits [B, N, V]`` over the input positions: masked LMs
(``AutoModelForMaskedLM``: BERT, RoBERTa, ModernBERT, ...) and LLaDA-style mask predictors
(no shift), and Dream-style models, which keep the autoregressive convention that the
logits at position ``i - 1`` predict token ``i`` (``shift_logits=True`` undoes it, as
Dream's own ``diffusion_generate`` does: position 0 reuses its own logits).

The model stays on its device and in its dtype; logits are upcast to float32 for the
sampler. The model is put in eval mode: dropout would make decoding depend on the global
RNG instead of the caller's generator.

Left padding (prompts of different lengths in one call; see ``docs/decoding.md``): with an
``attention_mask`` (``False``/0 on padding) a row's logits at its real positions equal those of the
row alone. The mask goes to the model, which hides padded keys, and positions are counted from each
row's first real token: ``position_ids = cumsum(mask) - 1`` for models whose forward takes
``position_ids`` (BERT, Llama-style ones, Dream's remote code). RoBERTa-style models (XLM-R,
CamemBERT...), whose embeddings number positions themselves from ``padding_idx + 1`` skipping tokens
equal to ``padding_idx``, get no ``position_ids``: their padded positions are rewritten to
``padding_idx``, so the model numbers the real tokens exactly as it does unpadded. A model whose
forward takes no ``position_ids`` and has no such embeddings would shift a padded row's positions,
and is refused. ``shift_logits`` lets each row's first real position keep its own logits.

Construction refuses a model whose rotary frequency buffers (any buffer named ``*inv_freq``)
are non-finite or not strictly positive (`check_rotary_buffers`). Buffers are not weights:
loaders rebuild them, and remote modeling code that a newer transformers no longer
initialises leaves them as empty memory. Dream-7B loaded through ``trust_remote_code`` on
transformers 5.x is the known case: the model loads without a warning and its logits are
wrong. LLaDA and Dream have native loaders (`dllm_mcmc.denoisers.native`) that avoid it.

Example:
    >>> from transformers import BertConfig, BertForMaskedLM
    >>> config = BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=1,
    ...                     num_attention_heads=2, intermediate_size=32)
    >>> denoiser = HFDenoiser(BertForMaskedLM(config), mask_id=3)
    >>> denoiser(torch.full((2, 5), 3)).shape
    torch.Size([2, 5, 20])
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from dllm_mcmc.denoisers.native.transformer import shift_logits as shift_padded_logits
from dllm_mcmc.denoisers.native.transformer import token_positions


def _first_not_none(*values):
    return next((value for value in values if value is not None), None)


def check_rotary_buffers(model: torch.nn.Module) -> None:
    """Raise a ValueError naming the buffer if a rotary ``*inv_freq`` buffer is not finite and > 0.

    RoPE's inverse frequencies ``theta^(-2i/d)`` are all strictly positive (under every RoPE
    scaling scheme too); NaN, infinite, zero or negative entries mean the buffer was never computed
    (memory left uninitialised by a loader, as with Dream's remote code on transformers 5.x; fresh
    allocations are often zeros). Uninitialised memory that happens to hold positive numbers passes:
    the check is a cheap guard, not a proof. Buffers on the ``meta`` device are skipped.

    >>> module = torch.nn.Module()
    >>> module.register_buffer("inv_freq", torch.zeros(4))
    >>> try:
    ...     check_rotary_buffers(module)
    ... except ValueError as error:
    ...     print(str(error)[:59])
    rotary buffer 'inv_freq' holds non-positive or non-finite v
    """
    for name, buffer in model.named_buffers():
        if not name.endswith("inv_freq") or buffer.is_meta or buffer.numel() == 0:
            continue
        values = buffer.detach().float()
        bad = int((~torch.isfinite(values) | (values <= 0)).sum())
        if bad:
            raise ValueError(
                f"rotary buffer {name!r} holds non-positive or non-finite values ({bad} of {values.numel()} "
                f"entries); it was not initialised when the model was loaded (a known failure of remote "
                f"modeling code on newer transformers, e.g. Dream on 5.x), so the logits would be wrong. "
                f"Load LLaDA / Dream with dllm_mcmc.denoisers.native.load_native, or recompute the buffer"
            )


def _self_numbering_padding_idx(model: torch.nn.Module) -> int | None:
    """``padding_idx`` of a RoBERTa-style model, whose embeddings number positions themselves from
    the tokens (``create_position_ids_from_input_ids``: ``padding_idx + 1`` on, skipping tokens equal to
    ``padding_idx``); ``None`` for any other model."""
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    if embeddings is None or not hasattr(embeddings, "create_position_ids_from_input_ids"):
        return None
    padding_idx = getattr(embeddings, "padding_idx", None)
    return None if padding_idx is None else int(padding_idx)


class HFDenoiser:
    """Wrap a transformers model (in memory) as a `Denoiser`.

    Args:
        model: a ``transformers.PreTrainedModel`` (or any module returning ``.logits``).
        tokenizer: optional; supplies ``mask_token_id``, ``eos_token_id``, ``pad_token_id``.
        mask_id: the mask id; defaults to the tokenizer's, then ``config.mask_token_id``.
        shift_logits: ``True`` for Dream-style models (position ``i`` reads logits ``i - 1``).
        eos_id, pad_id: override the ids found on the tokenizer or config.

    Raises:
        ValueError: no mask id, or an uninitialised rotary buffer (`check_rotary_buffers`).
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
        check_rotary_buffers(model)
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
        self._padding_idx = _self_numbering_padding_idx(model)
        try:
            self._takes_position_ids = "position_ids" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):  # a forward without a readable signature
            self._takes_position_ids = False
        vocab_size = getattr(config, "vocab_size", None)
        if vocab_size is None:
            # torch types Module.__getattr__ as Tensor | Module; on a transformers model this is a method.
            vocab_size = model.get_output_embeddings().weight.shape[0]  # type: ignore[operator]
        self.vocab_size = int(vocab_size)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        shift_logits: bool = False,
        dtype: torch.dtype | None = None,
        mask_id: int | None = None,
        **model_kwargs,
    ) -> HFDenoiser:
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
        """Logits ``[B, N, V]`` (float32); ``attention_mask [B, N]`` marks left padding (module docstring)."""
        if attention_mask is None:
            logits = self.model(input_ids=tokens, attention_mask=None).logits
            if self.shift_logits:
                logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
            return logits.float()
        keep = attention_mask.bool()
        mask = keep.long()
        if self._padding_idx is not None:  # RoBERTa-style: the model numbers the positions itself
            tokens = tokens.masked_fill(~keep, self._padding_idx)
            logits = self.model(input_ids=tokens, attention_mask=mask).logits
        elif self._takes_position_ids:
            logits = self.model(input_ids=tokens, attention_mask=mask,
                                position_ids=token_positions(tokens, mask)).logits
        else:
            raise ValueError(
                f"{type(self.model).__name__}: left-padded rows need position ids counted from each row's "
                f"first real token, and this model's forward takes no position_ids; decode prompts of one "
                f"length with it (or pad them in its own convention before decoding)"
            )
        if self.shift_logits:
            logits = shift_padded_logits(logits, mask)
        return logits.float()
