"""Dream (Ye et al. 2025, "Dream 7B: Diffusion Large Language Models", arXiv 2508.15487): config and names.

Dream-7B is Qwen2.5-7B's decoder run without the causal mask, initialised from it and kept in its
layout: ``config.json`` has ``model_type: "Dream"``, ``architectures: ["DreamModel"]`` and Qwen2 field
names (``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, ``num_key_value_heads``,
``intermediate_size``, ``rope_theta``, ``rms_norm_eps``, ``mask_token_id``...); tensors are named as in
Qwen2 (``model.embed_tokens``, ``model.layers.{i}.self_attn.{q,k,v}_proj`` with biases, ``o_proj``
without, ``mlp.{gate,up,down}_proj``, ``{input,post_attention}_layernorm``, ``model.norm``, an untied
``lm_head``). Dream keeps the autoregressive logit shift: the logits computed at position ``j - 1``
predict token ``j``; the native model undoes it (position 0 keeps its own logits, as Dream's
``diffusion_generate`` does).

Qwen2 options that would change the computation (sliding-window attention, RoPE scaling, tied
embeddings, another activation) are refused with an error naming the field. ``attention_bias: false``
(Dream-layout conversions of Llama checkpoints) drops the query/key/value biases.

Example:
    >>> config = architecture_config({"model_type": "Dream", "hidden_size": 3584,
    ...     "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
    ...     "intermediate_size": 18944, "vocab_size": 152064, "rope_theta": 1000000.0,
    ...     "rms_norm_eps": 1e-06, "mask_token_id": 151666, "pad_token_id": 151643,
    ...     "eos_token_id": 151643, "tie_word_embeddings": False})
    >>> config.head_dim, config.kv_heads, config.qkv_bias, config.shift_logits
    (128, 4, True, True)
"""

from __future__ import annotations

from dllm_mcmc.denoisers.native.checkpoint import CheckpointError, refuse_unsupported
from dllm_mcmc.denoisers.native.transformer import ArchitectureConfig, first_id

MODEL_TYPES = ("Dream", "dream")
ARCHITECTURES = ("DreamModel",)

_REFUSED = (
    ("hidden_act", (None, "silu")),
    ("tie_word_embeddings", (None, False)),
    ("use_sliding_window", (None, False)),
    ("rope_scaling", (None,)),
)


def architecture_config(config: dict) -> ArchitectureConfig:
    """The `ArchitectureConfig` of a Dream ``config.json``."""
    refuse_unsupported(config, _REFUSED, "Dream")
    missing = [f for f in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                           "vocab_size", "mask_token_id") if config.get(f) is None]
    if missing:
        raise CheckpointError(f"Dream config: missing field {missing[0]!r}")
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    return ArchitectureConfig(
        hidden=hidden, layers=int(config["num_hidden_layers"]), heads=heads,
        kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        intermediate=int(config["intermediate_size"]), vocab=int(config["vocab_size"]),
        rope_theta=float(config.get("rope_theta", 10000.0)),
        rms_eps=float(config.get("rms_norm_eps", 1e-6)),
        # Qwen2 always has these biases; Dream conversions of bias-free (Llama) checkpoints say
        # attention_bias: false, and Dream's code then zero-initialises them: the same as none.
        qkv_bias=bool(config.get("attention_bias", True)),
        shift_logits=True,
        mask_id=int(config["mask_token_id"]),
        eos_id=first_id(config.get("eos_token_id")), pad_id=first_id(config.get("pad_token_id")),
    )


def tensor_names(config: ArchitectureConfig) -> dict[str, str]:
    """Checkpoint tensor name -> `BidirectionalTransformer` parameter name."""
    return qwen_tensor_names(config.layers, qkv_bias=True, qk_norm=False)


def qwen_tensor_names(layers: int, qkv_bias: bool, qk_norm: bool) -> dict[str, str]:
    """The Qwen2 / Qwen3 checkpoint layout (Dream, WeDLM): tensor name -> `BidirectionalTransformer` name,
    with the query/key/value biases and the per-head ``q_norm`` / ``k_norm`` where the model has them.

    >>> names = qwen_tensor_names(2, qkv_bias=False, qk_norm=True)
    >>> names["model.layers.1.self_attn.k_norm.weight"], "model.layers.0.self_attn.q_proj.bias" in names
    ('blocks.1.attn.k_norm.weight', False)
    """
    names = {"model.embed_tokens.weight": "embed.weight", "model.norm.weight": "norm.weight",
             "lm_head.weight": "head.weight"}
    parts = {"input_layernorm.weight": "attn_norm.weight",
             "post_attention_layernorm.weight": "mlp_norm.weight",
             "self_attn.o_proj.weight": "attn.o.weight",
             "mlp.gate_proj.weight": "mlp.gate.weight", "mlp.up_proj.weight": "mlp.up.weight",
             "mlp.down_proj.weight": "mlp.down.weight"}
    for p in "qkv":
        parts[f"self_attn.{p}_proj.weight"] = f"attn.{p}.weight"
        if qkv_bias:
            parts[f"self_attn.{p}_proj.bias"] = f"attn.{p}.bias"
    if qk_norm:
        parts.update({f"self_attn.{p}_norm.weight": f"attn.{p}_norm.weight" for p in "qk"})
    for i in range(layers):
        names.update({f"model.layers.{i}.{ours}": f"blocks.{i}.{theirs}" for ours, theirs in parts.items()})
    return names
