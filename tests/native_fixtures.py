"""Tiny LLaDA / Dream / WeDLM checkpoints written here (random weights, a small tokenizer) and their
transformers references (bidirectional Llama / Qwen2; causal Qwen3 / Qwen2 on reordered canvases), shared
by the native-model tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from dllm_mcmc.denoisers.native.transformer import shift_logits, token_positions

VOCAB = 100
PAD = EOS = 3  # LLaDA and Dream pad with their end-of-text token
MASK = 90  # inside the vocabulary, as in both released models
TEMPLATE = "{% for m in messages %}<u>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<a>{% endif %}"


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Characters, ``<|endoftext|>`` (pad = eos) and ``<|mask|>``, padded to ``VOCAB`` ids."""
    tokens = ["<unk>", "<u>", "<a>", "<|endoftext|>"] + list("abcdefghij0123456789+=? ")
    tokens += [f"<extra_{i}>" for i in range(MASK - len(tokens))] + ["<|mask|>"]
    tokens += [f"<tail_{i}>" for i in range(VOCAB - len(tokens))]
    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", mask_token="<|mask|>",
                                        additional_special_tokens=["<u>", "<a>"])
    tokenizer.chat_template = TEMPLATE
    return tokenizer


def llada_json(kv_heads: int) -> dict:
    """LLaDA-8B-Instruct's config.json, every field kept, shrunk."""
    return {
        "activation_type": "silu", "alibi": False, "alibi_bias_max": 8.0, "architectures": ["LLaDAModelLM"],
        "attention_dropout": 0.0, "attention_layer_norm": False, "attention_layer_norm_with_affine": True,
        "auto_map": {"AutoConfig": "configuration_llada.LLaDAConfig",
                     "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
                     "AutoModel": "modeling_llada.LLaDAModelLM"},
        "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama", "d_model": 64,
        "embedding_dropout": 0.0, "embedding_size": VOCAB, "eos_token_id": EOS, "flash_attention": False,
        "include_bias": False, "include_qkv_bias": False, "init_cutoff_factor": None, "init_device": "meta",
        "init_fn": "mitchell", "init_std": 0.02, "input_emb_norm": False, "layer_norm_type": "rms",
        "layer_norm_with_affine": True, "mask_token_id": MASK, "max_sequence_length": 4096,
        "mlp_hidden_size": 96, "mlp_ratio": 4, "model_type": "llada", "multi_query_attention": None,
        "n_heads": 4, "n_kv_heads": kv_heads, "n_layers": 2, "pad_token_id": PAD, "precision": "amp_bf16",
        "residual_dropout": 0.0, "rms_norm_eps": 1e-05, "rope": True, "rope_full_precision": True,
        "rope_theta": 500000.0, "scale_logits": False, "transformers_version": "4.46.3", "use_cache": False,
        "vocab_size": VOCAB, "weight_tying": False,
    }


def dream_json() -> dict:
    """Dream-v0-Instruct-7B's config.json (Qwen2 fields), shrunk; 4 query heads share 2 key-value heads."""
    return {
        "architectures": ["DreamModel"], "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
        "bos_token_id": EOS, "eos_token_id": EOS, "hidden_act": "silu", "hidden_size": 64,
        "initializer_range": 0.02, "intermediate_size": 96, "mask_token_id": MASK,
        "max_position_embeddings": 131072, "max_window_layers": 28, "model_type": "Dream",
        "num_attention_heads": 4, "num_hidden_layers": 3, "num_key_value_heads": 2, "pad_token_id": PAD,
        "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": None,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.46.2",
        "use_cache": False, "use_sliding_window": False, "vocab_size": VOCAB,
    }


def reference(kind: str, kv_heads: int = 2) -> torch.nn.Module:
    """The transformers model with the same computation, random weights of order one."""
    torch.manual_seed(0 if kind == "llada" else 1)
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                  tie_word_embeddings=False, attn_implementation="eager", pad_token_id=PAD, eos_token_id=EOS,
                  bos_token_id=EOS)
    if kind == "llada":
        model = LlamaForCausalLM(LlamaConfig(**common, num_hidden_layers=2, num_key_value_heads=kv_heads,
                                             rms_norm_eps=1e-5,
                                             rope_parameters={"rope_type": "default", "rope_theta": 5e5}))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common, num_hidden_layers=3, num_key_value_heads=2,
                                             rms_norm_eps=1e-6,
                                             rope_parameters={"rope_type": "default", "rope_theta": 1e6}))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
            else:  # large enough that a wrong rotation, mask or bias moves the logits by O(1)
                parameter.normal_(0, 0.15)
    return model.eval()


def llada_names(name: str) -> str:
    """A Llama parameter name -> LLaDA's released name."""
    fixed = {"model.embed_tokens.weight": "model.transformer.wte.weight",
             "model.norm.weight": "model.transformer.ln_f.weight",
             "lm_head.weight": "model.transformer.ff_out.weight"}
    if name in fixed:
        return fixed[name]
    parts = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ff_norm",
             "self_attn.q_proj": "q_proj", "self_attn.k_proj": "k_proj", "self_attn.v_proj": "v_proj",
             "self_attn.o_proj": "attn_out", "mlp.gate_proj": "ff_proj", "mlp.up_proj": "up_proj",
             "mlp.down_proj": "ff_out"}
    _, _, layer, rest = name.split(".", 3)
    module, leaf = rest.rsplit(".", 1)
    return f"model.transformer.blocks.{layer}.{parts[module]}.{leaf}"


def write_checkpoint(folder: Path, tensors: dict[str, torch.Tensor], config: dict, shards: int = 3,
                     tokenizer: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    names = sorted(tensors)
    if shards == 1:
        save_file({n: tensors[n].contiguous() for n in names}, str(folder / "model.safetensors"))
    else:
        weight_map = {}
        for k in range(shards):
            file = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
            part = names[k::shards]
            save_file({n: tensors[n].contiguous() for n in part}, str(folder / file), metadata={"format": "pt"})
            weight_map.update({n: file for n in part})
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    if tokenizer:
        tiny_tokenizer().save_pretrained(folder)
    return folder


def checkpoint(tmp_path: Path, kind: str, kv_heads: int = 2, **options) -> tuple[Path, torch.nn.Module]:
    model = reference(kind, kv_heads)
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("inv_freq")}
    if kind == "llada":
        tensors, config = {llada_names(k): v for k, v in state.items()}, llada_json(kv_heads)
    else:
        tensors, config = state, dream_json()
    return write_checkpoint(tmp_path / kind, tensors, config, **options), model


def reference_logits(model: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor | None = None,
                     shift: bool = False, causal: bool = False) -> torch.Tensor:
    mask = torch.ones_like(tokens) if mask is None else mask
    if causal:
        logits = model(input_ids=tokens, attention_mask=mask).logits
    else:
        additive = torch.zeros(tokens.shape[0], 1, tokens.shape[1], tokens.shape[1])
        additive = additive.masked_fill(mask[:, None, None, :] == 0, torch.finfo(torch.float32).min)
        logits = model(input_ids=tokens, attention_mask=additive, position_ids=token_positions(tokens, mask)).logits
    return shift_logits(logits.float(), mask) if shift else logits.float()


def left_pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` of different lengths left-padded with `PAD` to the longest: ``(tokens, attention_mask)``."""
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), PAD)
    attention = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, width - len(row):], attention[i, width - len(row):] = row, 1
    return tokens, attention


def canvas(seed: int = 0, batch: int = 3, length: int = 12) -> torch.Tensor:
    tokens = torch.randint(4, MASK, (batch, length), generator=torch.Generator().manual_seed(seed))
    tokens[:, length // 2:] = MASK  # a decoding canvas: prompt, then masks
    return tokens


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# -- WeDLM ---------------------------------------------------------------------------------------------
# WeDLM-8B is a Qwen3 stack, WeDLM-7B a Qwen2.5 one, both causal: the tiny checkpoints are transformers'
# own Qwen3ForCausalLM / Qwen2ForCausalLM written by save_pretrained, with config.json rewritten to the
# layout of WeDLM's configuration_wedlm.py (model_type "wedlm", qk_norm, mask_token_id, rope_theta).

WEDLM_VARIANTS = ("8b", "7b")


def wedlm_reference(variant: str) -> torch.nn.Module:
    """Qwen3 (``"8b"``: q/k norms, no biases, head_dim 24 != hidden / heads) or Qwen2 (``"7b"``: biases)
    with 4 query heads sharing 2 key-value heads, random weights of order one."""
    torch.manual_seed(2 if variant == "8b" else 3)
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                  num_key_value_heads=2, num_hidden_layers=2, tie_word_embeddings=False,
                  attn_implementation="eager", pad_token_id=PAD, eos_token_id=EOS, bos_token_id=EOS,
                  rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    if variant == "8b":
        model: torch.nn.Module = Qwen3ForCausalLM(Qwen3Config(**common, head_dim=24))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
            else:
                parameter.normal_(0, 0.15)
    return model.eval()


def wedlm_json(saved: dict, variant: str, mask: int | None = MASK) -> dict:
    """A saved Qwen3 / Qwen2 config.json rewritten to WeDLM's layout (transformers 4.5x field names)."""
    config = {k: v for k, v in saved.items() if k not in ("rope_parameters", "layer_types", "dtype")}
    config.update(
        model_type="wedlm", architectures=["WeDLMForCausalLM"],
        auto_map={"AutoConfig": "configuration_wedlm.WeDLMConfig",
                  "AutoModelForCausalLM": "modeling_wedlm.WeDLMForCausalLM"},
        attention_bias=variant == "7b", qk_norm=variant == "8b", mask_token_id=mask,
        rope_theta=saved["rope_parameters"]["rope_theta"], rope_scaling=None, torch_dtype="bfloat16",
    )
    return config


def wedlm_checkpoint(tmp_path: Path, variant: str = "8b", mask: int | None = MASK,
                     tokenizer: bool = True) -> tuple[Path, torch.nn.Module]:
    """A WeDLM directory (``save_pretrained`` + rewritten config.json + tiny tokenizer) and its reference."""
    model = wedlm_reference(variant)
    folder = tmp_path / f"wedlm-{variant}"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(wedlm_json(config, variant, mask), indent=2))
    if tokenizer:
        tiny_tokenizer().save_pretrained(folder)
    return folder, model


def wedlm_reference_logits(model: torch.nn.Module, tokens: torch.Tensor, mask_id: int = MASK,
                           attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """WeDLM's logits by the definition, one row at a time: the row's observed tokens then its masks,
    each with its logical position (from the first valid token), through the causal model; mask ``j``
    reads the logits at its own slot. Zeros elsewhere. The 2-D all-ones attention mask keeps transformers
    from reading the non-monotonic position ids as packed sequences."""
    out = torch.zeros(*tokens.shape, VOCAB)
    valid = torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    for b in range(tokens.shape[0]):
        first = int(valid[b].long().argmax())
        kept = [j for j in range(tokens.shape[1]) if valid[b, j]]
        observed = [j for j in kept if tokens[b, j] != mask_id]
        masked = [j for j in kept if tokens[b, j] == mask_id]
        order = observed + masked
        if not masked:
            continue
        ids = tokens[b, order][None]
        positions = torch.tensor([j - first for j in order])[None]
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions).logits[0]
        for slot, j in enumerate(order):
            if j in masked:
                out[b, j] = logits[slot].float()
    return out
