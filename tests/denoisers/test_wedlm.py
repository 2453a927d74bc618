"""Native WeDLM against transformers' own Qwen3 (WeDLM-8B's layout) and Qwen2 (WeDLM-7B's), on tiny checkpoints.

Each test writes a checkpoint with ``save_pretrained`` of a random ``Qwen3ForCausalLM`` / ``Qwen2ForCausalLM``
(2 layers, 4 query heads sharing 2 key-value heads; Qwen3 with ``head_dim`` 24 != hidden / heads) and
rewrites ``config.json`` to WeDLM's layout (`native_fixtures.wedlm_json`).

The reference is WeDLM's definition applied row by row in plain Python (`native_fixtures.wedlm_reference_logits`):
observed tokens then masks, each with its logical position, through the causal transformers model; a mask's
logits are read at its own slot. The denoiser returns zeros wherever the canvas holds no mask, and so does
the reference.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from native_fixtures import (
    EOS,
    MASK,
    PAD,
    VOCAB,
    WEDLM_VARIANTS,
    canvas,
    checkpoint,
    left_pad,
    max_diff,
    wedlm_checkpoint,
    wedlm_reference_logits,
)

from dllm_mcmc import decode, load_model, sample
from dllm_mcmc.denoisers.native import (
    FALLBACK_MASK_ID,
    ArchitectureConfig,
    BidirectionalTransformer,
    CheckpointError,
    NativeDenoiser,
    WeDLMDenoiser,
    load_native,
)
from dllm_mcmc.denoisers.native.transformer import token_positions

torch.set_num_threads(1)


def mixed_canvas(seed: int = 0) -> torch.Tensor:
    """Four rows of 12 (prompt 6): response all masked, some masked (two patterns), none masked."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, MASK, (4, 12), generator=generator)
    tokens[0, 6:] = MASK
    tokens[1, [6, 8, 9, 11]] = MASK
    tokens[2, [7, 10]] = MASK
    tokens[2, 3] = MASK  # a mask inside the prompt part: any position may be masked
    return tokens


@pytest.fixture(params=WEDLM_VARIANTS)
def wedlm(request, tmp_path):
    path, model = wedlm_checkpoint(tmp_path, request.param)
    return load_native(path), model, request.param


def test_wedlm_equals_the_reordered_causal_qwen(wedlm):
    denoiser, model, variant = wedlm
    assert isinstance(denoiser, WeDLMDenoiser) and isinstance(denoiser, NativeDenoiser)
    assert denoiser.architecture == "wedlm" and denoiser.mask_id_source == "config"
    config = denoiser.config
    assert config.causal and not config.shift_logits and (config.heads, config.kv_heads) == (4, 2)
    if variant == "8b":
        assert config.qk_norm and not config.qkv_bias and config.head_dim == 24
    else:
        assert not config.qk_norm and config.qkv_bias and config.head_dim == 16
    assert (denoiser.mask_id, denoiser.eos_id, denoiser.pad_id, denoiser.vocab_size) == (MASK, EOS, PAD, VOCAB)
    tokens = mixed_canvas()
    expected = wedlm_reference_logits(model, tokens)
    assert expected.abs().max() > 1  # not a comparison of near-zero logits
    for kv_cache in (False, True):
        denoiser.kv_cache = kv_cache
        got = denoiser(tokens)
        assert got.dtype == torch.float32 and got.shape == (4, 12, VOCAB)
        assert max_diff(got, expected) < 1e-4, kv_cache
        assert (got[3] == 0).all() and (got[tokens != MASK] == 0).all()  # no mask: nothing predicted
        assert (got[tokens == MASK].abs().sum(-1) > 0).all()


def test_the_order_matters(wedlm):
    """Guards the reference: a plain causal run in logical order, or a bidirectional one, differs."""
    denoiser, model, _ = wedlm
    tokens = mixed_canvas(1)
    got = denoiser(tokens)
    with torch.no_grad():
        plain = model(input_ids=tokens, attention_mask=torch.ones_like(tokens)).logits
    masked = tokens == MASK
    masked[0] = False  # row 0 is prompt then masks: already in reordered form
    assert max_diff(got[masked], plain[masked]) > 1e-2


@pytest.mark.parametrize("kv_cache", [False, True], ids=["plain", "cached"])
def test_left_padding_leaves_each_row_as_alone(wedlm, kv_cache):
    denoiser, model, _ = wedlm
    denoiser.kv_cache = kv_cache
    full = mixed_canvas(2)
    rows = [full[0, 2:], full[1], full[2, 5:], full[3, 1:]]
    tokens, attention = left_pad(rows)
    width = tokens.shape[1]
    padded = denoiser(tokens, attention)
    expected = wedlm_reference_logits(model, tokens, attention_mask=attention)
    assert max_diff(padded, expected) < 1e-4
    for i, row in enumerate(rows):
        alone = denoiser(row[None])[0]
        assert max_diff(padded[i, width - len(row):], alone) < 1e-5
        assert (padded[i, : width - len(row)] == 0).all()
    assert max_diff(denoiser(tokens, torch.ones_like(attention)), denoiser(tokens)) == 0.0


def test_logit_positions_select_the_same_logits(wedlm):
    denoiser, _, _ = wedlm
    tokens = mixed_canvas(3)
    index = torch.tensor([11, 0, 7, 7, 9, 3])  # any order, repeats, observed and masked positions
    for kv_cache in (False, True):
        denoiser.kv_cache = kv_cache
        full = denoiser(tokens)
        part = denoiser(tokens, logit_positions=index)
        assert part.shape == (4, 6, VOCAB) and max_diff(part, full[:, index]) < 1e-5
        attention = torch.ones_like(tokens)
        attention[:, :2] = 0
        padded = denoiser(tokens, attention, logit_positions=index)
        assert max_diff(padded, denoiser(tokens, attention)[:, index]) < 1e-5
        assert denoiser(tokens, logit_positions=index[:0]).shape == (4, 0, VOCAB)
    with pytest.raises(ValueError, match="logit_positions"):
        denoiser(tokens, logit_positions=torch.tensor([[1, 2]]))


def test_causal_stack_with_left_padding_matches_qwen(wedlm):
    """The transformer's causal mode on its own (no reordering): a left-padded Qwen run."""
    denoiser, model, _ = wedlm
    tokens = canvas(4, 3, 9)
    attention = torch.ones_like(tokens)
    attention[0, :3], attention[2, :1] = 0, 0
    got = denoiser.model(tokens, attention)
    with torch.no_grad():
        expected = model(input_ids=tokens, attention_mask=attention,
                         position_ids=token_positions(tokens, attention)).logits
    assert max_diff(got[attention.bool()], expected[attention.bool()]) < 1e-4
    assert torch.isfinite(got).all()


class Twin:
    """A `Denoiser` calling a cached and an uncached WeDLM denoiser on every canvas; it returns the cached
    logits and records the largest difference."""

    def __init__(self, denoiser: WeDLMDenoiser) -> None:
        self.cached = WeDLMDenoiser(denoiser.model, kv_cache=True)
        self.plain = WeDLMDenoiser(denoiser.model, kv_cache=False)
        self.mask_id, self.vocab_size, self.eos_id, self.pad_id = (denoiser.mask_id, denoiser.vocab_size,
                                                                   denoiser.eos_id, denoiser.pad_id)
        self.worst, self.calls = 0.0, 0

    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        cached = self.cached(tokens, attention_mask)
        self.worst = max(self.worst, max_diff(cached, self.plain(tokens, attention_mask)))
        self.calls += 1
        return cached


@pytest.mark.parametrize("rule,block_length", [("random", None), ("random", 1), ("top_prob", 4)],
                         ids=["random-order", "left-to-right", "top-prob-blocks"])
def test_cache_equals_no_cache_over_a_decode(wedlm, rule, block_length):
    denoiser, _, _ = wedlm
    twin = Twin(denoiser)
    prompt = torch.tensor([5, 6, 7, 8])
    traj = decode(twin, prompt, 8, rule=rule, block_length=block_length, num_samples=3,
                  generator=torch.Generator().manual_seed(0))
    assert (traj.tokens != MASK).all() and twin.calls == 8
    assert twin.worst < 1e-5
    stats = twin.cached.stats
    assert stats.reused_tokens > 0 and stats.computed_tokens < stats.requested_tokens
    if block_length == 1:
        # In lockstep left to right the prompt is computed once (the three rows start identical), then
        # each row recomputes only its newest token and its masks: at most 3 * (9 - t) slots at step t.
        assert stats.computed_tokens <= 4 + 8 + 3 * sum(9 - t for t in range(1, 8)) < stats.requested_tokens / 2


def test_cache_with_repeated_rows_and_changing_batches(wedlm):
    """Stepwise-style batches: a state and its candidates, rows repeated, states going back and forth."""
    denoiser, _, _ = wedlm
    twin = Twin(denoiser)
    generator = torch.Generator().manual_seed(5)
    state = torch.randint(4, MASK, (10,), generator=generator)
    state[6:] = MASK
    for step in range(6):
        candidates = state.repeat(5, 1)
        for k in range(1, 5):  # each candidate commits one more masked position, or remasks one
            position = int(torch.randint(0, 10, (1,), generator=generator))
            candidates[k, position] = MASK if k == 4 else int(torch.randint(4, MASK, (1,), generator=generator))
        batch = torch.cat([candidates, candidates[:2]])  # repeated rows
        twin(batch)
        state = candidates[1 + step % 3]
    assert twin.worst < 1e-5
    stats = twin.cached.stats
    assert stats.unique_rows < stats.rows and stats.reused_tokens > 0
    twin.cached.clear_cache()
    assert twin.cached.stats.calls == 0
    twin(batch)  # a cleared cache reuses nothing, and still agrees
    assert twin.worst < 1e-5 and twin.cached.stats.reused_tokens == 0


def test_shared_prefix_is_computed_once_and_rows_reuse_their_own_entries(wedlm):
    denoiser, _, _ = wedlm
    twin = Twin(denoiser)
    generator = torch.Generator().manual_seed(6)
    rows = torch.randint(4, MASK, (1, 16), generator=generator).repeat(3, 1)
    rows[:, 12:] = MASK
    rows[:, 12] = torch.tensor([10, 11, 12])  # three rows sharing 12 prompt tokens
    twin(rows)
    assert twin.cached.stats.computed_tokens == 12 + 3 * 4  # the shared prompt once, then each row
    rows[0, 15], rows[1, 14], rows[2, 13] = 20, 21, 22  # each row resumes from its own stored row
    twin(rows)
    assert twin.worst < 1e-5
    stats = twin.cached.stats
    assert stats.reused_tokens == 3 * 13 and stats.computed_tokens == 24 + 3 * 3  # prompt + own first token


def test_cache_through_sample_with_every_kernel(wedlm):
    denoiser, _, _ = wedlm
    twin = Twin(denoiser)
    prompt = torch.tensor([5, 6, 7])
    for kernel in ("imh", "stepwise"):
        result = sample(twin, prompt, 4, kernel=kernel, num_chains=2, num_samples=2, warmup=1, seed=0,
                        progress=False)
        assert (result.tokens != MASK).all()
    assert twin.worst < 1e-5 and twin.cached.stats.unique_rows < twin.cached.stats.rows


def test_mask_id_fallback_and_override(tmp_path):
    path, _ = wedlm_checkpoint(tmp_path, "8b", mask=None)
    with pytest.warns(UserWarning, match=f"no mask_token_id; using {FALLBACK_MASK_ID}"):
        fallback = load_native(path)
    assert (fallback.mask_id, fallback.mask_id_source, fallback.config.mask_id) == (151665, "fallback", 151665)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chosen = load_native(path, mask_id=MASK)
        denoiser, codec = load_model(path, mask_id=MASK, kv_cache=False)
    assert (chosen.mask_id, chosen.mask_id_source) == (MASK, "argument")
    assert isinstance(denoiser, WeDLMDenoiser) and not denoiser.kv_cache and denoiser.mask_id == MASK
    assert codec.config["model_type"] == "wedlm"
    with pytest.raises(ValueError, match="mask_id"):
        load_native(path, mask_id=-1)
    with pytest.raises(ValueError, match="not options of the native directory"):
        load_model(path, shift_logits=True)
    llada, _ = checkpoint(tmp_path, "llada")
    with pytest.raises(ValueError, match="kv_cache: only WeDLM"):
        load_native(llada, kv_cache=True)
    assert load_native(llada, mask_id=7).mask_id == 7  # the override is general


@pytest.mark.parametrize("field,value", [
    ("tie_word_embeddings", True), ("use_sliding_window", True), ("hidden_act", "gelu"),
    ("rope_scaling", {"rope_type": "yarn", "factor": 4.0}),
    ("rope_parameters", {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6}),
])
def test_unsupported_options_are_refused_by_name(tmp_path, field, value):
    path, _ = wedlm_checkpoint(tmp_path, "7b", tokenizer=False)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, field: value}))
    with pytest.raises(CheckpointError, match=field):
        load_native(path)


def test_config_layouts(tmp_path):
    path, model = wedlm_checkpoint(tmp_path, "8b", tokenizer=False)
    config = json.loads((path / "config.json").read_text())
    tokens = mixed_canvas(6)
    expected = wedlm_reference_logits(model, tokens)
    # transformers >= 5 layout: rope_theta inside rope_parameters
    moved = {k: v for k, v in config.items() if k not in ("rope_theta", "rope_scaling")}
    (path / "config.json").write_text(json.dumps({**moved, "rope_parameters": {"rope_type": "default",
                                                                               "rope_theta": 1e6}}))
    assert max_diff(load_native(path)(tokens), expected) < 1e-4
    # without qk_norm, WeDLM's engine rule: q/k norms exactly when there are no biases
    (path / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "qk_norm"}))
    assert load_native(path).config.qk_norm
    # a wrong qk_norm fails at load, naming a norm tensor
    (path / "config.json").write_text(json.dumps({**config, "qk_norm": False}))
    with pytest.raises(CheckpointError, match="q_norm|k_norm"):
        load_native(path)
    # recognised by architectures alone; an unknown one lists WeDLM among the known
    (path / "config.json").write_text(json.dumps({**config, "model_type": None}))
    assert isinstance(load_native(path), WeDLMDenoiser)
    (path / "config.json").write_text(json.dumps({**config, "model_type": "x", "architectures": ["Y"]}))
    with pytest.raises(ValueError, match="WeDLM \\(wedlm, WeDLM, WeDLMForCausalLM\\)"):
        load_native(path)


def test_bfloat16_load_and_call(tmp_path):
    path, _ = wedlm_checkpoint(tmp_path, "8b")
    full, half = load_native(path), load_native(path, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and all(p.dtype == torch.bfloat16 for p in half.model.parameters())
    tokens = mixed_canvas(7)
    high = full(tokens)
    for kv_cache in (False, True, True):  # the second cached call reuses bfloat16 keys and values
        half.kv_cache = kv_cache
        low = half(tokens)
        assert low.dtype == torch.float32 and torch.isfinite(low).all()
        assert max_diff(low, high) < 0.05 * float(high.abs().max())
    assert half.stats.reused_tokens > 0


def test_load_model_decodes_with_the_tokenizer(tmp_path):
    path, _ = wedlm_checkpoint(tmp_path, "7b")
    denoiser, codec = load_model(str(path), dtype="bfloat16")
    prompt = torch.tensor(codec.tokenizer("12+7=")["input_ids"])
    traj = decode(denoiser, prompt, 4, rule="confidence", num_samples=2, generator=torch.Generator().manual_seed(0))
    assert traj.tokens.shape == (2, 4) and (traj.tokens != MASK).all() and torch.isfinite(traj.log_q).all()


def test_the_denoiser_needs_a_causal_stack():
    config = ArchitectureConfig(hidden=16, layers=1, heads=2, kv_heads=1, head_dim=8, intermediate=32,
                                vocab=11, mask_id=10)
    with pytest.raises(ValueError, match="causal"):
        WeDLMDenoiser(BidirectionalTransformer(config))
    with pytest.raises(ValueError, match="past"):
        BidirectionalTransformer(config).hidden_states(torch.zeros(1, 2, dtype=torch.long),
                                                       torch.zeros(1, 2, dtype=torch.long), past=[])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_kernel_samples_on_a_wedlm_directory(tmp_path, dtype):
    """Issue 14's acceptance: every kernel decodes and samples on the tiny WeDLM directories, in float32 and
    bfloat16, with WeDLM's own rule as the proposal and order law (one token per step, a window of 3)."""
    from dllm_mcmc import Rule
    from dllm_mcmc.mcmc.registry import kernel_names

    torch.set_num_threads(1)
    prompt = torch.tensor([5, 6, 7])
    rule = Rule("wedlm", window=3)
    for variant in WEDLM_VARIANTS:
        path, _ = wedlm_checkpoint(tmp_path / variant, variant)
        denoiser = load_native(path, dtype=dtype)
        traj = decode(denoiser, prompt, 5, rule=rule, temperature=0.7, num_samples=2,
                      generator=torch.Generator().manual_seed(0))
        assert traj.exact_density and torch.isfinite(traj.log_q).all() and (traj.tokens != MASK).all()
        for kernel in kernel_names():
            options = {"num_particles": 2} if kernel in ("pgibbs", "smc") else {}
            result = sample(denoiser, prompt, 5, kernel=kernel, rule=rule, target_temperature=0.7, num_chains=2,
                            num_samples=2, warmup=1, seed=0, progress=False, **options)
            assert result.tokens.shape == (2, 2, 5) and (result.tokens != MASK).all(), (variant, kernel)
