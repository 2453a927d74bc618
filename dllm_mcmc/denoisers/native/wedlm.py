"""WeDLM (Liu et al. 2025, "WeDLM: Reconciling Diffusion Language Models with Standard Causal Attention for
Fast Inference", arXiv 2512.22737): config, tensor names, and the reordering denoiser.

The checkpoints. WeDLM fine-tunes an autoregressive model into a mask predictor without giving up causal
attention: WeDLM-8B is Qwen3-8B's stack (no query/key/value biases, per-head RMSNorm ``q_norm`` /
``k_norm`` over ``head_dim`` before the rotation, an explicit ``head_dim``), WeDLM-7B is Qwen2.5-7B's
(query/key/value biases, no q/k norm). ``config.json`` has ``model_type: "wedlm"``, ``architectures:
["WeDLMForCausalLM"]``, Qwen field names, ``attention_bias`` and ``qk_norm`` (absent ``qk_norm`` is read as
``not attention_bias``, the rule of WeDLM's own engine; a wrong reading fails at load, naming a
``q_norm`` tensor), and tensors under the usual Qwen names (`tensor_names`). Options that would change the
computation (another activation, tied embeddings, sliding-window attention, RoPE scaling) are refused by
name.

The mask id. The released configs leave ``mask_token_id`` null; WeDLM's engine then uses 151665
(`FALLBACK_MASK_ID`). `load_native` takes the config's value when there is one, else that one, unless a
``mask_id=`` argument says otherwise, and records which in ``denoiser.mask_id_source`` (``"config"``,
``"fallback"`` - with a warning - or ``"argument"``).

The denoiser (`WeDLMDenoiser`). The paper's topological reordering, applied to the whole canvas: for a
row with valid positions ``V``, observed ``O = {j ∈ V : x_j ≠ m}`` and masked ``M = V \\ O``,

    π = (O ascending, M ascending, padding),     input slot i: token x_π(i), rotary position pos(π(i)),
    causal attention in slot order,               ℓ_j = head(h_{π⁻¹(j)})  for j ∈ M   (no shift),

with ``pos`` the logical position counted from the row's first valid token (`reorder`). Every mask sees
every observed token and the masks left of it; the logits of mask ``j`` are read at its own slot, as in
WeDLM's generation code. The output is a deterministic function of the canvas, in logical order
``[B, N, V]``. At positions that are not masks (observed tokens, padding) the returned logits are zeros
(a uniform distribution), not a prediction: the model's output at an observed slot is its
autoregressive next-token prediction for the next slot, which the samplers never read (they read
masked positions only). The head runs at masked positions only.

An exact prefix cache (`PrefixCache`, on by default): the keys and values of the observed part depend on
the observed tokens only, so the last call's are reused for rows that start with the same observed
tokens (checked token by token); identical rows and a prefix shared by all rows of a call are computed
once. ``kv_cache=False`` turns it off, `WeDLMDenoiser.clear_cache` empties it. A call reads the device to
size its work: once for the head (the most masks in a row), and with the cache for the identical rows and
the reuse lengths.

Example:
    >>> config = architecture_config({"model_type": "wedlm", "hidden_size": 4096, "num_hidden_layers": 36,
    ...     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 12288,
    ...     "vocab_size": 151936, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06, "attention_bias": False,
    ...     "qk_norm": True, "mask_token_id": None, "tie_word_embeddings": False})
    >>> config.qk_norm, config.qkv_bias, config.causal, config.mask_id
    (True, False, True, 151665)
    >>> tensor_names(config)["model.layers.0.self_attn.q_norm.weight"]
    'blocks.0.attn.q_norm.weight'
"""

from __future__ import annotations

import torch

from dllm_mcmc.denoisers.native.checkpoint import CheckpointError, refuse_unsupported
from dllm_mcmc.denoisers.native.dream import qwen_tensor_names
from dllm_mcmc.denoisers.native.prefix_cache import CacheStats, PrefixCache, unique_rows
from dllm_mcmc.denoisers.native.reorder import Reordering, reorder
from dllm_mcmc.denoisers.native.transformer import ArchitectureConfig, BidirectionalTransformer, first_id
from dllm_mcmc.denoisers.native.wrapper import NativeDenoiser

MODEL_TYPES = ("wedlm", "WeDLM")
ARCHITECTURES = ("WeDLMForCausalLM",)
FALLBACK_MASK_ID = 151665
"""The mask id WeDLM's engine uses when neither its caller nor ``config.json`` gives one."""

_REFUSED = (
    ("hidden_act", (None, "silu")),
    ("tie_word_embeddings", (None, False)),
    ("use_sliding_window", (None, False)),
    ("rope_scaling", (None,)),
)


def mask_id_source(config: dict) -> str:
    """``"config"`` when ``config.json`` names a mask token, else ``"fallback"`` (`FALLBACK_MASK_ID`)."""
    return "fallback" if config.get("mask_token_id") is None else "config"


def architecture_config(config: dict) -> ArchitectureConfig:
    """The `ArchitectureConfig` of a WeDLM ``config.json`` (either variant)."""
    refuse_unsupported(config, _REFUSED, "WeDLM")
    # transformers >= 5 writes rope_theta inside rope_parameters, with the scaling type next to it
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        raise CheckpointError(f"WeDLM config: rope_parameters.rope_type = {rope['rope_type']!r} is not supported "
                              f"by the native loader (supported: ['default'])")
    missing = [f for f in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                           "vocab_size") if config.get(f) is None]
    if missing:
        raise CheckpointError(f"WeDLM config: missing field {missing[0]!r}")
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    bias = bool(config.get("attention_bias", True))  # WeDLMConfig's default (the Qwen2.5 layout)
    qk_norm = config.get("qk_norm")
    mask = config.get("mask_token_id")
    return ArchitectureConfig(
        hidden=hidden, layers=int(config["num_hidden_layers"]), heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        intermediate=int(config["intermediate_size"]), vocab=int(config["vocab_size"]),
        rope_theta=float(config.get("rope_theta") or rope.get("rope_theta") or 10000.0),
        rms_eps=float(config.get("rms_norm_eps", 1e-6)),
        qkv_bias=bias, qk_norm=not bias if qk_norm is None else bool(qk_norm),
        shift_logits=False, causal=True,
        mask_id=FALLBACK_MASK_ID if mask is None else int(mask),
        eos_id=first_id(config.get("eos_token_id")), pad_id=first_id(config.get("pad_token_id")),
    )


def tensor_names(config: ArchitectureConfig) -> dict[str, str]:
    """Checkpoint tensor name -> `BidirectionalTransformer` parameter name (Qwen's layout, as Dream's)."""
    return qwen_tensor_names(config.layers, qkv_bias=config.qkv_bias, qk_norm=config.qk_norm)


class WeDLMDenoiser(NativeDenoiser):
    """A causal WeDLM stack called on reordered canvases (see the module docstring); a `Denoiser`.

    ``denoiser(tokens [B, N], attention_mask=None, logit_positions=None) -> float32 logits [B, N, V]``
    (``[B, K, V]`` with ``logit_positions``, a 1-D index shared by all rows), in logical order; zeros
    wherever the canvas holds no mask. Rows may have different masked sets; left padding
    (``attention_mask`` ``False`` on it) leaves each row's logits those of the row alone.

    Args:
        model: a stack with ``config.causal``.
        kv_cache: reuse the keys and values of the previous call's observed prefixes (exact; see
            `PrefixCache`). Settable afterwards; `clear_cache` empties the store.

    Attributes:
        cache: the `PrefixCache`; stats: its `CacheStats`.

    Example:
        >>> config = ArchitectureConfig(hidden=16, layers=1, heads=2, kv_heads=1, head_dim=8,
        ...                             intermediate=32, vocab=11, mask_id=10, causal=True, qk_norm=True)
        >>> denoiser = WeDLMDenoiser(BidirectionalTransformer(config))
        >>> canvas = torch.tensor([[1, 10, 3, 10], [1, 2, 10, 10]])
        >>> logits = denoiser(canvas)
        >>> logits.shape, bool((logits[0, [0, 2]] == 0).all()), bool(logits[0, 1].abs().sum() > 0)
        (torch.Size([2, 4, 11]), True, True)
        >>> bool(torch.allclose(WeDLMDenoiser(denoiser.model, kv_cache=False)(canvas), logits, atol=1e-6))
        True
    """

    def __init__(self, model: BidirectionalTransformer, tokenizer=None, architecture: str | None = "wedlm",
                 mask_id_source: str = "config", kv_cache: bool = True) -> None:
        if not model.config.causal:
            raise ValueError("WeDLMDenoiser: the model must be causal (config.causal=True)")
        super().__init__(model, tokenizer, architecture, mask_id_source)
        self.kv_cache = bool(kv_cache)
        self.cache = PrefixCache()

    @property
    def stats(self) -> CacheStats:
        return self.cache.stats

    def clear_cache(self) -> None:
        """Forget the stored keys and values (and reset `stats`)."""
        self.cache.clear()

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 logit_positions: torch.Tensor | None = None) -> torch.Tensor:
        batch, length = tokens.shape
        if attention_mask is not None and tuple(attention_mask.shape) != (batch, length):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {[batch, length]}")
        if logit_positions is not None and (logit_positions.dim() != 1 or logit_positions.is_floating_point()):
            raise ValueError(f"logit_positions: expected a 1-D integer tensor, got shape "
                             f"{tuple(logit_positions.shape)} and dtype {logit_positions.dtype}")
        inverse = None
        rows, mask = tokens, attention_mask
        if self.kv_cache and batch > 1:
            rows, mask, inverse = unique_rows(tokens, attention_mask)
        order = reorder(rows, self.mask_id, mask)
        if self.kv_cache:
            self.cache.stats.rows += batch
            self.cache.stats.requested_tokens += batch * length
            hidden, start = self.cache.run(self.model, order.tokens, order.positions, order.observed)
        else:
            hidden, _ = self.model.hidden_states(order.tokens, order.positions)
            start = 0
        logits = self._mask_logits(hidden, start, order, logit_positions)
        return logits if inverse is None else logits[inverse]

    def _mask_logits(self, hidden: torch.Tensor, start: int, order: Reordering,
                     logit_positions: torch.Tensor | None) -> torch.Tensor:
        """``[U, K, V]``: the head at each requested masked position's slot (hidden holds slots ``start..``),
        zeros elsewhere. The head runs on ``max_rows(#masked requested)`` rows per row only."""
        slots, wanted = order.slot, order.masked
        if logit_positions is not None:
            slots, wanted = slots[:, logit_positions], wanted[:, logit_positions]
        rows, requested = wanted.shape
        out = torch.zeros(rows, requested, self.vocab_size, dtype=torch.float32, device=hidden.device)
        width = int(wanted.sum(1).max()) if rows and requested else 0
        if width == 0 or hidden.shape[1] == 0:
            return out
        # Each row's requested masks first (a stable sort keeps their order), cut to the widest row.
        pick = torch.sort((~wanted).to(torch.int32), dim=1, stable=True).indices[:, :width]
        used = wanted.gather(1, pick)
        source = (slots.gather(1, pick) - start).clamp(0, hidden.shape[1] - 1)
        values = self.model.logits_at(hidden, source).masked_fill(~used[..., None], 0.0)
        return out.scatter_(1, pick[..., None].expand(-1, -1, self.vocab_size), values)
