"""LLaDA (Nie et al. 2025, "Large Language Diffusion Models", arXiv 2502.09992): config and tensor names.

LLaDA-8B is a Llama-style stack without the causal mask, released in the OLMo code base's layout:
``config.json`` has ``model_type: "llada"``, ``architectures: ["LLaDAModelLM"]`` and OLMo field names
(``d_model``, ``n_heads``, ``n_kv_heads``, ``n_layers``, ``mlp_hidden_size``, ``embedding_size``,
``rope_theta``, ``rms_norm_eps``, ``mask_token_id``...), and the tensors live under
``model.transformer.`` (``wte``, ``blocks.{i}.{attn_norm, q_proj, k_proj, v_proj, attn_out, ff_norm,
ff_proj, up_proj, ff_out}``, ``ln_f``, ``ff_out``). ``ff_proj`` is the SiLU gate, ``up_proj`` the linear
branch. Logits are not shifted: position ``j`` predicts token ``j``.

Options of the OLMo configuration that LLaDA-8B leaves off (biases, ALiBi, q/k norms, input
embedding scaling, tied weights...) are refused with an error naming the field, rather than ignored.

Example:
    >>> config = architecture_config({"model_type": "llada", "d_model": 4096, "n_heads": 32,
    ...     "n_kv_heads": 32, "n_layers": 32, "mlp_hidden_size": 12288, "vocab_size": 126464,
    ...     "embedding_size": 126464, "rope_theta": 500000.0, "rms_norm_eps": 1e-05,
    ...     "mask_token_id": 126336, "eos_token_id": 126081, "pad_token_id": 126081})
    >>> config.head_dim, config.kv_heads, config.shift_logits
    (128, 32, False)
    >>> tensor_names(config)["model.transformer.blocks.0.ff_proj.weight"]
    'blocks.0.mlp.gate.weight'
"""

from __future__ import annotations

from dllm_mcmc.denoisers.native.checkpoint import CheckpointError, refuse_unsupported
from dllm_mcmc.denoisers.native.transformer import ArchitectureConfig, first_id

MODEL_TYPES = ("llada",)
ARCHITECTURES = ("LLaDAModelLM",)

# OLMo fields whose non-default values would change the computation: (field, accepted values).
_REFUSED = (
    ("block_type", (None, "llama")),
    ("activation_type", (None, "silu")),
    ("layer_norm_type", (None, "rms")),
    ("layer_norm_with_affine", (None, True)),
    ("bias_for_layer_norm", (None, False)),
    ("include_bias", (None, False)),
    ("alibi", (None, False)),
    ("rope", (None, True)),
    ("attention_layer_norm", (None, False)),
    ("input_emb_norm", (None, False)),
    ("scale_logits", (None, False)),
    ("weight_tying", (None, False)),
    ("clip_qkv", (None,)),
)


def architecture_config(config: dict) -> ArchitectureConfig:
    """The `ArchitectureConfig` of a LLaDA ``config.json``."""
    refuse_unsupported(config, _REFUSED, "LLaDA")
    try:
        hidden, heads, layers = int(config["d_model"]), int(config["n_heads"]), int(config["n_layers"])
    except KeyError as error:
        raise CheckpointError(f"LLaDA config: missing field {error.args[0]!r}") from None
    kv_heads = 1 if config.get("multi_query_attention") else config.get("n_kv_heads") or heads
    intermediate = config.get("mlp_hidden_size") or int(config.get("mlp_ratio", 4)) * hidden
    vocab = config.get("embedding_size") or config.get("vocab_size")
    if vocab is None:
        raise CheckpointError("LLaDA config: missing field 'vocab_size'")
    if config.get("mask_token_id") is None:
        raise CheckpointError("LLaDA config: missing field 'mask_token_id'")
    return ArchitectureConfig(
        hidden=hidden, layers=layers, heads=heads, kv_heads=int(kv_heads), head_dim=hidden // heads,
        intermediate=int(intermediate), vocab=int(vocab),
        rope_theta=float(config.get("rope_theta", 10000.0)),
        rms_eps=float(config.get("rms_norm_eps", 1e-5)),
        qkv_bias=bool(config.get("include_qkv_bias", False)),
        shift_logits=False,
        mask_id=int(config["mask_token_id"]),
        eos_id=first_id(config.get("eos_token_id")), pad_id=first_id(config.get("pad_token_id")),
    )


def tensor_names(config: ArchitectureConfig) -> dict[str, str]:
    """Checkpoint tensor name -> `BidirectionalTransformer` parameter name."""
    names = {"model.transformer.wte.weight": "embed.weight",
             "model.transformer.ln_f.weight": "norm.weight",
             "model.transformer.ff_out.weight": "head.weight"}
    parts = {"attn_norm.weight": "attn_norm.weight", "ff_norm.weight": "mlp_norm.weight",
             "q_proj.weight": "attn.q.weight", "k_proj.weight": "attn.k.weight",
             "v_proj.weight": "attn.v.weight", "attn_out.weight": "attn.o.weight",
             "ff_proj.weight": "mlp.gate.weight", "up_proj.weight": "mlp.up.weight",
             "ff_out.weight": "mlp.down.weight"}
    if config.qkv_bias:
        parts.update({f"{p}_proj.bias": f"attn.{p}.bias" for p in "qkv"})
    for i in range(config.layers):
        names.update({f"model.transformer.blocks.{i}.{ours}": f"blocks.{i}.{theirs}"
                      for ours, theirs in parts.items()})
    return names
