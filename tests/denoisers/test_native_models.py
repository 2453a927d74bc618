"""Native LLaDA and Dream against transformers' own Llama and Qwen2, on tiny random checkpoints.

No hub access: each test writes a checkpoint directory with the released tensor names and
``config.json`` field layout (LLaDA: OLMo names under ``model.transformer.``; Dream: Qwen2 names),
sharded over three files with a ``model.safetensors.index.json``, and a tiny tokenizer.

The reference: LLaDA is a Llama and Dream a Qwen2 without the causal mask, so the same weights
loaded into ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` (``attn_implementation="eager"``) give the
expected logits when run bidirectionally. How, on the installed transformers (5.24 when written):
pass ``attention_mask`` as a 4-D float additive mask ``[B, 1, N, N]`` (0 where a query may attend,
the dtype's minimum on padded keys). ``create_causal_mask`` returns a 4-D mask unchanged (the
early exit of ``_preprocess_mask_arguments``, also in 4.4x), so no causal mask is added and eager
attention adds ours. Positions go in as ``position_ids``: ``cumsum(mask) - 1``, counted from each
row's first valid token, the native convention. `test_reference_is_really_bidirectional` checks
that the reference does differ from a causal run. For Dream the reference's logits are shifted
(position ``j`` reads ``j - 1``, position 0 keeps its own) before comparing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from native_fixtures import (  # noqa: F401
    EOS,
    MASK,
    PAD,
    TEMPLATE,
    VOCAB,
    canvas,
    checkpoint,
    dream_json,
    left_pad,
    llada_json,
    llada_names,
    max_diff,
    reference,
    reference_logits,
    tiny_tokenizer,
    write_checkpoint,
)
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from dllm_mcmc import HFDenoiser, decode, load_model, sample
from dllm_mcmc.denoisers.native import CheckpointError, NativeDenoiser, load_native
from dllm_mcmc.eval.engine import load_engine


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["mha", "gqa"])
def test_llada_equals_bidirectional_llama(tmp_path, kv_heads):
    path, model = checkpoint(tmp_path, "llada", kv_heads)
    denoiser = load_native(path)
    assert isinstance(denoiser, NativeDenoiser) and denoiser.architecture == "llada"
    assert (denoiser.mask_id, denoiser.eos_id, denoiser.pad_id, denoiser.vocab_size) == (MASK, EOS, PAD, VOCAB)
    assert denoiser.dtype == torch.float32 and denoiser.device == torch.device("cpu")
    assert denoiser.config.kv_heads == kv_heads and not denoiser.config.shift_logits
    tokens = canvas()
    with torch.no_grad():
        expected = reference_logits(model, tokens)
    got = denoiser(tokens)
    assert got.dtype == torch.float32 and got.shape == (3, 12, VOCAB)
    assert max_diff(got, expected) < 1e-5
    assert expected.abs().max() > 1  # the comparison is not between near-zero logits


def test_dream_equals_bidirectional_qwen2_shifted(tmp_path):
    path, model = checkpoint(tmp_path, "dream")
    denoiser = load_native(path)
    assert denoiser.architecture == "dream"
    assert (denoiser.config.heads, denoiser.config.kv_heads, denoiser.config.qkv_bias) == (4, 2, True)
    tokens = canvas(1)
    with torch.no_grad():
        expected = reference_logits(model, tokens, shift=True)
        raw = reference_logits(model, tokens)
    got = denoiser(tokens)
    assert max_diff(got, expected) < 1e-5
    assert torch.equal(got[:, 0], denoiser.model(tokens)[:, 0])
    assert max_diff(got[:, 1:], raw[:, :-1]) < 1e-5 and max_diff(got[:, 1:], raw[:, 1:]) > 1e-2
    # HFDenoiser's shift on the in-memory reference is the same rule
    assert torch.allclose(got[:, 1:], torch.cat([raw[:, :1], raw[:, :-1]], 1)[:, 1:], atol=1e-5)


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_reference_is_really_bidirectional(tmp_path, kind):
    path, model = checkpoint(tmp_path, kind)
    tokens = canvas(2)
    with torch.no_grad():
        causal = reference_logits(model, tokens, causal=True, shift=kind == "dream")
    got = load_native(path)(tokens)
    # the last position sees everything either way; earlier ones must differ from a causal run
    assert max_diff(got[:, :-2], causal[:, :-2]) > 1e-2


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_left_padding_leaves_the_valid_positions_unchanged(tmp_path, kind):
    path, model = checkpoint(tmp_path, kind)
    denoiser = load_native(path)
    rows = [canvas(3, 1, 8)[0], canvas(4, 1, 6)[0], canvas(5, 1, 9)[0]]
    tokens, mask = left_pad(rows)
    width = tokens.shape[1]
    padded = denoiser(tokens, mask)
    assert torch.isfinite(padded).all()
    with torch.no_grad():
        expected = reference_logits(model, tokens, mask, shift=kind == "dream")
    for i, row in enumerate(rows):
        alone = denoiser(row[None])[0]
        assert max_diff(padded[i, width - len(row):], alone) < 1e-5
        assert max_diff(padded[i, width - len(row):], expected[i, width - len(row):]) < 1e-5
    # a mask of ones is the same as no mask
    assert max_diff(denoiser(tokens, torch.ones_like(mask)), denoiser(tokens)) < 1e-6


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_bfloat16_load_gives_float32_logits_near_the_float32_ones(tmp_path, kind):
    path, _ = checkpoint(tmp_path, kind)
    full, half = load_native(path), load_native(path, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in half.model.parameters())
    tokens = canvas(6)
    low, high = half(tokens), full(tokens)
    assert low.dtype == torch.float32
    # bf16 keeps 8 significant bits: a few 1e-2 relative to the logits' scale after a few layers
    assert max_diff(low, high) < 0.05 * float(high.abs().max())
    assert (low.argmax(-1) == high.argmax(-1)).float().mean() > 0.9


def test_stored_dtype_is_the_default(tmp_path):
    model = reference("llada")
    tensors = {llada_names(k): v.to(torch.bfloat16) for k, v in model.state_dict().items()
               if not k.endswith("inv_freq")}
    path = write_checkpoint(tmp_path / "bf16", tensors, llada_json(2), shards=1)
    assert load_native(path).dtype == torch.bfloat16
    assert load_native(path, dtype=torch.float32).dtype == torch.float32
    assert load_native(path, dtype="float16").dtype == torch.float16  # as a run config names it
    with pytest.raises(ValueError, match="dtype"):
        load_native(path, dtype="int8")


def test_single_file_checkpoint_loads(tmp_path):
    path, model = checkpoint(tmp_path, "dream", shards=1)
    assert not (path / "model.safetensors.index.json").exists()
    tokens = canvas(7)
    with torch.no_grad():
        expected = reference_logits(model, tokens, shift=True)
    assert max_diff(load_native(path)(tokens), expected) < 1e-5


def _rewrite_shard(path: Path, change) -> None:
    from safetensors.torch import load_file

    index = json.loads((path / "model.safetensors.index.json").read_text())
    file = index["weight_map"]["model.layers.1.mlp.up_proj.weight"]
    tensors = load_file(str(path / file))
    change(tensors, index)
    save_file(tensors, str(path / file))
    (path / "model.safetensors.index.json").write_text(json.dumps(index))


def test_missing_shard_names_the_file(tmp_path):
    path, _ = checkpoint(tmp_path, "dream")
    (path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"shard model-00002-of-00003\.safetensors .* missing"):
        load_native(path)


def test_shape_mismatch_names_the_tensor(tmp_path):
    path, _ = checkpoint(tmp_path, "dream")
    _rewrite_shard(path, lambda t, _: t.update({"model.layers.1.mlp.up_proj.weight": torch.zeros(80, 64)}))
    with pytest.raises(CheckpointError, match=r"'model\.layers\.1\.mlp\.up_proj\.weight' has shape \[80, 64\].*"
                                              r"needs \[96, 64\]"):
        load_native(path)


def test_missing_tensor_names_the_tensor(tmp_path):
    path, _ = checkpoint(tmp_path, "dream")

    def drop(tensors, index):
        del tensors["model.layers.1.mlp.up_proj.weight"], index["weight_map"]["model.layers.1.mlp.up_proj.weight"]

    _rewrite_shard(path, drop)
    with pytest.raises(CheckpointError, match=r"lacks tensor 'model\.layers\.1\.mlp\.up_proj\.weight'"):
        load_native(path)


def test_tensor_missing_from_its_shard_names_tensor_and_file(tmp_path):
    path, _ = checkpoint(tmp_path, "dream")
    _rewrite_shard(path, lambda t, _: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"'model\.layers\.1\.mlp\.up_proj\.weight' is listed"):
        load_native(path)


def test_unexpected_tensor_names_the_tensor(tmp_path):
    path, _ = checkpoint(tmp_path, "llada")
    config = llada_json(2)
    config["n_layers"] = 1  # the checkpoint has a second block the config does not describe
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"tensor 'model\.transformer\.blocks\.1\..*' that the architecture"):
        load_native(path)


def test_unknown_architecture_and_unsupported_options_are_refused(tmp_path):
    path, _ = checkpoint(tmp_path, "dream")
    (path / "config.json").write_text(json.dumps({**dream_json(), "model_type": "mistral",
                                                  "architectures": ["MistralForCausalLM"]}))
    with pytest.raises(ValueError, match="model_type='mistral'"):
        load_native(path)
    (path / "config.json").write_text(json.dumps({**dream_json(), "use_sliding_window": True}))
    with pytest.raises(CheckpointError, match="use_sliding_window"):
        load_native(path)
    (path / "config.json").write_text(json.dumps({**llada_json(2), "weight_tying": True}))
    with pytest.raises(CheckpointError, match="weight_tying"):
        load_native(path)


def test_no_code_from_the_directory_runs_and_dreams_tokenizer_loads_without_it(tmp_path):
    """Dream ships ``tokenization_dream.py`` and names ``DreamTokenizer``: AutoTokenizer refuses it
    without remote code; the files are read by built-in classes instead (tokenizer.json, or Qwen2's
    vocab.json + merges.txt)."""
    path, model = checkpoint(tmp_path, "dream")
    marker = tmp_path / "executed"
    for module in ("tokenization_dream.py", "modeling_dream.py", "configuration_dream.py"):
        (path / module).write_text(f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(3)\n")
    settings = json.loads((path / "tokenizer_config.json").read_text())
    settings.update(tokenizer_class="DreamTokenizer",
                    auto_map={"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]})
    (path / "tokenizer_config.json").write_text(json.dumps(settings))
    denoiser = load_native(path)
    assert not marker.exists()
    assert denoiser.tokenizer.mask_token_id == MASK and denoiser.tokenizer.eos_token_id == EOS
    assert denoiser.tokenizer.chat_template == TEMPLATE

    # vocab.json + merges.txt only (byte-level BPE, as Dream ships): Qwen2's built-in tokenizer
    (path / "tokenizer.json").unlink()
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = [bytes_to_unicode()[b] for b in b"abc12+= "] + ["ab"]
    (path / "vocab.json").write_text(json.dumps({s: i for i, s in enumerate(symbols)}))
    (path / "merges.txt").write_text("#version: 0.2\na b\n")
    # special tokens right after the BPE vocabulary, as in Dream (151643 <|endoftext|> ... 151666 <|mask|>)
    specials = {len(symbols): "<|endoftext|>", len(symbols) + 1: "<|mask|>"}
    settings["added_tokens_decoder"] = {
        str(i): {"content": c, "special": True, "lstrip": False, "rstrip": False, "normalized": False,
                 "single_word": False} for i, c in specials.items()}
    settings.pop("additional_special_tokens", None)
    settings.pop("extra_special_tokens", None)
    (path / "tokenizer_config.json").write_text(json.dumps(settings))
    tokenizer = load_native(path).tokenizer
    assert not marker.exists()
    assert type(tokenizer).__name__.startswith("Qwen2Tokenizer")
    assert (tokenizer.eos_token_id, tokenizer.mask_token_id) == (len(symbols), len(symbols) + 1)
    ids = tokenizer("ab 12")["input_ids"]
    assert ids[0] == symbols.index("ab") and tokenizer.decode(ids) == "ab 12"


def test_without_tokenizer_files_the_tokenizer_is_none(tmp_path):
    path, _ = checkpoint(tmp_path, "llada", tokenizer=False)
    denoiser, codec = load_model(path)
    assert codec.tokenizer is None and denoiser.tokenizer is None and codec.config["model_type"] == "llada"
    with pytest.raises(ValueError, match="no tokenizer"):
        codec.encode("12+7=")


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_load_model_decodes_and_samples_with_every_kernel(tmp_path, kind):
    path, _ = checkpoint(tmp_path, kind)
    denoiser, codec = load_model(str(path))
    assert isinstance(denoiser, NativeDenoiser) and codec.config == json.loads((path / "config.json").read_text())
    prompt = torch.tensor(codec.tokenizer("12+7=")["input_ids"])
    traj = decode(denoiser, prompt, 4, rule="confidence", num_samples=3, generator=torch.Generator().manual_seed(0))
    assert traj.tokens.shape == (3, 4) and (traj.tokens != MASK).all()
    assert torch.isfinite(traj.log_q).all()
    for kernel in ("imh", "power", "stepwise"):
        result = sample(denoiser, prompt, 3, kernel=kernel, num_chains=2, num_samples=2, warmup=1, seed=0,
                        progress=False)
        assert result.tokens.shape == (2, 2, 3) and (result.tokens != MASK).all(), kernel
    with pytest.raises(ValueError, match="dtype: not options of the small model"):
        load_model("tasks-small", dtype=torch.bfloat16)


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_load_engine_uses_the_chat_template(tmp_path, kind):
    path, _ = checkpoint(tmp_path, kind)
    with pytest.raises(ValueError, match="gen_length"):
        load_engine(str(path))
    with pytest.raises(ValueError, match="shift_logits"):
        load_engine(str(path), gen_length=4, shift_logits=True)
    engine = load_engine(str(path), gen_length=4, dtype=torch.bfloat16)
    assert isinstance(engine.denoiser, NativeDenoiser) and engine.denoiser.dtype == torch.bfloat16
    tokenizer = engine.denoiser.tokenizer
    assert engine.encode("1+2=").tolist() == tokenizer.convert_tokens_to_ids(["<u>", "1", "+", "2", "=", "<a>"])
    ids = tokenizer.convert_tokens_to_ids(["4", "2", "<|endoftext|>", "9"])
    assert engine.decode(ids) == "42"


def test_hf_denoiser_refuses_an_uninitialised_rotary_buffer():
    """Dream through ``trust_remote_code`` on transformers 5.x leaves ``inv_freq`` uninitialised."""
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    HFDenoiser(model, mask_id=MASK)  # an intact buffer passes
    names = [name for name, _ in model.named_buffers() if name.endswith("inv_freq")]
    assert names
    buffer = model.get_buffer(names[0])
    for corrupt in (float("nan"), 0.0, float("inf"), -1.0):
        saved = buffer.clone()
        buffer.fill_(corrupt)
        with pytest.raises(ValueError, match=f"rotary buffer {names[0]!r}"):
            HFDenoiser(model, mask_id=MASK)
        buffer.copy_(saved)
    buffer[1] = float("nan")  # one bad entry is enough
    with pytest.raises(ValueError, match="1 of"):
        HFDenoiser(model, mask_id=MASK)


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_logit_positions_give_the_same_logits(tmp_path, kind):
    """The head at ``K`` indices only equals those columns of the full logits, shift rule included (Dream:
    index 0 and each row's first valid token keep their own logits)."""
    path, _ = checkpoint(tmp_path, kind)
    denoiser = load_native(path)
    tokens = canvas(8)
    index = torch.tensor([0, 11, 1, 6, 6, 3])
    full = denoiser(tokens)
    part = denoiser(tokens, logit_positions=index)
    assert part.shape == (3, 6, VOCAB) and max_diff(part, full[:, index]) < 1e-5
    mask = torch.ones_like(tokens)
    mask[0, :3], mask[1, :1] = 0, 0  # first valid tokens at 3, 1 and 0
    padded = denoiser(tokens, mask, logit_positions=index)
    assert max_diff(padded, denoiser(tokens, mask)[:, index]) < 1e-5
    assert denoiser(tokens, logit_positions=index[:0]).shape == (3, 0, VOCAB)
