"""Prompts of different lengths in one forward call: every row is decoded as it would be alone.

A list of prompts is left-padded to the longest, and the denoiser gets an attention mask that hides the
padding and counts each row's positions from its first real token. Per-row random streams differ between
a one-row call and a mixed batch (the draws of a batch are made together), so rows are compared draw for
draw by teacher forcing: decode the mixed batch, replay each row alone with its own prompt, and compare
the per-step ``log q`` and ``log p``; for a deterministic rule at a tiny temperature the tokens themselves
must match too. Checked for a tiny native LLaDA and Dream, tiny BERT and RoBERTa through `HFDenoiser`
(also with Dream's logit shift), and the bundled small model.
"""

from __future__ import annotations

import pytest
import torch
from conftest import seeded
from hf_fixtures import char_tokenizer, tiny_model
from native_fixtures import checkpoint

from dllm_mcmc import ExactDenoiser, HFDenoiser, decode, load_model, replay, stepwise_decode
from dllm_mcmc.decoding.canvas import canvas_attention, masked_canvas, padding_id, prompt_batch
from dllm_mcmc.decoding.decode import redecode
from dllm_mcmc.denoisers.native import load_native
from dllm_mcmc.likelihood import elbo_log_likelihood, left_to_right_log_likelihood
from dllm_mcmc.small_model.model import CharTokenizer, SmallConfig, SmallDLM

LENGTHS = (3, 7, 5)
GEN = 6
KINDS = ["llada", "dream", "bert", "roberta", "bert-shifted", "small"]


@pytest.fixture(scope="module", params=KINDS)
def model(request, tmp_path_factory):
    """``(kind, denoiser, lowest, highest)``: prompts draw their ids from ``[lowest, highest)``."""
    kind = request.param
    if kind in ("llada", "dream"):
        path, _ = checkpoint(tmp_path_factory.mktemp(kind), kind)
        return kind, load_native(path), 4, 90  # below the mask id 90; 3 is pad = eos
    if kind == "small":
        denoiser, _ = load_model("tasks-small")
        return kind, denoiser, 3, denoiser.vocab_size  # the characters, none of <pad> <mask> <eos>
    tokenizer = char_tokenizer()
    network = tiny_model(kind.split("-")[0], len(tokenizer)).eval()
    return kind, HFDenoiser(network, tokenizer=tokenizer, shift_logits=kind.endswith("shifted")), 4, len(tokenizer)


def prompts_of(model, lengths=LENGTHS, seed=0) -> list[torch.Tensor]:
    _, _, low, high = model
    generator = seeded(seed)
    return [torch.randint(low, high, (n,), generator=generator) for n in lengths]


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return bool(torch.allclose(a, b, atol=atol, rtol=0))


def test_padded_rows_give_the_logits_of_the_rows_alone(model):
    kind, denoiser, low, high = model
    prompts = prompts_of(model)
    ids, prompt_mask = prompt_batch(denoiser, prompts, len(prompts))
    assert prompt_mask is not None and prompt_mask.sum(1).tolist() == list(LENGTHS)
    canvas = masked_canvas(ids, GEN, denoiser.mask_id)
    canvas[:, -GEN::2] = torch.randint(low, high, (len(prompts), GEN // 2), generator=seeded(1))  # some committed
    with torch.no_grad():
        padded = denoiser(canvas, canvas_attention(prompt_mask, GEN))
        for row, prompt in enumerate(prompts):
            alone = denoiser(torch.cat([prompt, canvas[row, -GEN:]])[None])[0]
            assert close(padded[row, ids.shape[1] - len(prompt):], alone), kind


@pytest.mark.parametrize("rule", ["random", "stochastic", "entropy"])
def test_a_mixed_batch_decode_replays_row_by_row_alone(model, rule):
    kind, denoiser, _, _ = model
    prompts = prompts_of(model) * 2  # six rows, each prompt twice
    traj = decode(denoiser, prompts, GEN, rule=rule, temperature=0.8, block_length=3, num_samples=6,
                  generator=seeded(2))
    assert traj.tokens.shape == (6, GEN) and (traj.tokens != denoiser.mask_id).all()
    assert torch.isfinite(traj.log_q).all() and torch.isfinite(traj.log_p).all()
    assert isinstance(traj.prompt, list) and all(torch.equal(a, b) for a, b in zip(traj.prompt, prompts))
    again = replay(denoiser, traj.prompt, traj.tokens, traj.order, traj.config)  # the record round-trips
    assert close(again.log_q_steps, traj.log_q_steps) and close(again.log_p_steps, traj.log_p_steps)
    for row, prompt in enumerate(prompts):
        alone = replay(denoiser, prompt, traj.tokens[row : row + 1], traj.order[row : row + 1], traj.config)
        assert close(alone.log_q_steps[0], traj.log_q_steps[row]), (kind, row)
        assert close(alone.log_p_steps[0], traj.log_p_steps[row]), (kind, row)
        assert close(alone.log_position_steps[0], traj.log_position_steps[row]), (kind, row)


def test_a_mixed_batch_draws_each_row_as_a_batch_of_its_own_prompt(model):
    """With the same seed and batch shape, row ``i`` of a mixed batch makes the draws of row ``i`` of a
    batch whose every row has prompt ``i`` (no padding there): the same tokens, order and densities."""
    kind, denoiser, _, _ = model
    prompts = prompts_of(model, seed=18)
    options = dict(rule="stochastic", temperature=0.9, block_length=3, tokens_per_step=2, num_samples=3)
    mixed = decode(denoiser, prompts, GEN, generator=seeded(19), **options)
    for row, prompt in enumerate(prompts):
        same = decode(denoiser, prompt, GEN, generator=seeded(19), **options)
        assert torch.equal(same.tokens[row], mixed.tokens[row]) and torch.equal(same.order[row], mixed.order[row])
        assert close(same.log_q[row], mixed.log_q[row]) and close(same.log_p[row], mixed.log_p[row]), kind


def test_a_deterministic_rule_decodes_every_row_as_alone(model):
    kind, denoiser, _, _ = model
    prompts = prompts_of(model, seed=3)
    options = dict(rule="top_prob", temperature=1e-4, block_length=3, tokens_per_step=2)
    mixed = decode(denoiser, prompts, GEN, num_samples=len(prompts), generator=seeded(4), **options)
    for row, prompt in enumerate(prompts):
        alone = decode(denoiser, prompt, GEN, num_samples=1, generator=seeded(5), **options)
        assert torch.equal(alone.tokens[0], mixed.tokens[row]), (kind, row)
        assert torch.equal(alone.order[0], mixed.order[row]), (kind, row)
        assert close(alone.log_p, mixed.log_p[row : row + 1]) and close(alone.log_q, mixed.log_q[row : row + 1])


def test_redecode_keeps_each_rows_prefix_and_its_record_replays_alone(model):
    _, denoiser, _, _ = model
    prompts = prompts_of(model, seed=6)
    traj = decode(denoiser, prompts, GEN, rule="stochastic", temperature=0.9, num_samples=3, generator=seeded(7))
    keep = torch.tensor([0, 2, 6])
    new = redecode(denoiser, prompts, traj, keep, seeded(8))
    for row, prompt in enumerate(prompts):
        kept = int(keep[row])
        assert torch.equal(new.order[row, :kept], traj.order[row, :kept])
        assert close(new.log_q_steps[row, :kept], traj.log_q_steps[row, :kept])
        alone = replay(denoiser, prompt, new.tokens[row : row + 1], new.order[row : row + 1], new.config)
        assert close(alone.log_q_steps[0], new.log_q_steps[row]) and close(alone.log_p_steps[0], new.log_p_steps[row])
    assert torch.equal(new.tokens[2], traj.tokens[2])  # everything kept


def test_the_likelihoods_of_a_mixed_batch_equal_those_alone(model):
    _, denoiser, low, high = model
    prompts = prompts_of(model, seed=9)
    tokens = torch.randint(low, high, (3, GEN), generator=seeded(10))
    ids, prompt_mask = prompt_batch(denoiser, prompts, 3)
    mixed = left_to_right_log_likelihood(denoiser, ids, tokens, max_rows=5, prompt_mask=prompt_mask)
    elbo = elbo_log_likelihood(denoiser, ids, tokens, 4, seeded(11), prompt_mask=prompt_mask)
    assert torch.isfinite(elbo).all()
    for row, prompt in enumerate(prompts):
        alone = left_to_right_log_likelihood(denoiser, prompt[None], tokens[row : row + 1])
        assert close(alone, mixed[row : row + 1])
    assert close(elbo_log_likelihood(denoiser, ids, tokens, 4, seeded(11), max_rows=2, prompt_mask=prompt_mask),
                 elbo)
    # the ELBO's maskings are drawn for the whole batch: row i draws the same maskings in a batch of
    # three rows of prompt i alone (no padding), and must give the same number
    for row, prompt in enumerate(prompts):
        unpadded = elbo_log_likelihood(denoiser, prompt[None].expand(3, -1), tokens, 4, seeded(11))
        assert close(unpadded[row], elbo[row])


def test_stepwise_decode_keeps_each_rows_padding_in_its_candidates(model):
    kind, denoiser, _, _ = model
    prompts = prompts_of(model, seed=12)
    options = dict(rule="top_prob", temperature=1e-4, target_temperature=0.5, num_candidates=4)
    mixed = stepwise_decode(denoiser, prompts, GEN, num_samples=3, generator=seeded(13), **options)
    deduped = stepwise_decode(denoiser, prompts, GEN, num_samples=3, generator=seeded(13), dedupe=True, **options)
    assert torch.equal(mixed.tokens, deduped.tokens) and close(mixed.log_p, deduped.log_p)
    assert mixed.forward_rows == 3 + (GEN - 1) * 3 * 4 and deduped.forward_rows < mixed.forward_rows
    for row, prompt in enumerate(prompts):
        alone = stepwise_decode(denoiser, prompt, GEN, num_samples=1, generator=seeded(14), **options)
        assert torch.equal(alone.tokens[0], mixed.tokens[row]) and torch.equal(alone.order[0], mixed.order[row])
        # log p reads the candidate calls' logits: equal only if every candidate canvas kept its padding
        assert close(alone.log_p, mixed.log_p[row : row + 1]), kind
        assert close(alone.log_position, mixed.log_position[row : row + 1])
    # one candidate per step is plain decoding, draw for draw, mixed prompts included
    plain = decode(denoiser, prompts, GEN, rule="random", temperature=0.7, num_samples=3, generator=seeded(15))
    single = stepwise_decode(denoiser, prompts, GEN, rule="random", temperature=0.7, num_candidates=1,
                             num_samples=3, generator=seeded(15))
    assert torch.equal(single.tokens, plain.tokens) and close(single.log_p, plain.log_p)


class PaddingWitness:
    """Wraps a denoiser; checks every padded call's rows against the prompts they came from."""

    def __init__(self, inner, prompts):
        self.inner, self.prompts = inner, prompts
        self.mask_id, self.vocab_size, self.pad_id = inner.mask_id, inner.vocab_size, inner.pad_id
        self.masks: list[torch.Tensor | None] = []

    def __call__(self, tokens, attention_mask=None):
        self.masks.append(attention_mask)
        assert (tokens >= 0).all()  # the stepwise canvases' padding id never reaches the model
        if attention_mask is not None:
            width = max(len(p) for p in self.prompts)
            for row, keep in zip(tokens, attention_mask):
                seen = row[:width][keep[:width]]
                assert keep[width:].all() and any(torch.equal(seen, p) for p in self.prompts)
        return self.inner(tokens, attention_mask)


def test_every_call_carries_the_padding_of_its_rows_also_in_the_exact_suffix():
    tokenizer = CharTokenizer("ab")  # 5 ids: <pad> <mask> <eos> a b
    torch.manual_seed(0)
    small = SmallDLM(SmallConfig(tokenizer.vocab_size, max_length=16, dim=16, layers=1, heads=2),
                     mask_id=tokenizer.mask_id, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id).eval()
    prompts = [torch.tensor(tokenizer.encode(text)) for text in ("ab", "babba", "a")]
    witness = PaddingWitness(small, prompts)
    draw = stepwise_decode(witness, prompts, 3, rule="random", temperature=0.7, target_temperature=0.5,
                           num_candidates=3, suffix="exact", suffix_scope="all", dedupe=True, num_samples=3,
                           generator=seeded(0), max_rows=4)
    assert torch.isfinite(draw.log_p).all() and len(witness.masks) > 3
    assert all(mask is not None for mask in witness.masks)
    # the exact suffix is the same whether the rows are decoded together or alone (greedy: same tokens)
    options = dict(rule="top_prob", temperature=1e-4, target_temperature=0.5, num_candidates=2, suffix="exact",
                   suffix_scope="all")
    mixed = stepwise_decode(small, prompts, 3, num_samples=3, generator=seeded(1), **options)
    for row, prompt in enumerate(prompts):
        alone = stepwise_decode(small, prompt, 3, num_samples=1, generator=seeded(2), **options)
        assert torch.equal(alone.tokens[0], mixed.tokens[row]) and close(alone.log_p, mixed.log_p[row : row + 1])


def test_micro_batches_split_the_attention_mask_with_the_rows(model):
    _, denoiser, _, _ = model
    prompts = prompts_of(model, seed=16) * 2
    witness = PaddingWitness(denoiser, prompts)
    whole = decode(denoiser, prompts, GEN, num_samples=6, generator=seeded(17))
    split = decode(witness, prompts, GEN, num_samples=6, generator=seeded(17), max_rows=4)
    assert torch.equal(whole.tokens, split.tokens) and close(whole.log_q, split.log_q)
    assert [m.shape[0] for m in witness.masks[:2]] == [4, 2]


def test_today_inputs_and_equal_length_lists_pass_no_mask():
    """``None``, ``[P]``, ``[S, P]`` and a list of equal lengths: the denoiser is called without a mask, and
    an equal-length list decodes bit for bit as the ``[S, P]`` tensor it stacks into."""
    tokenizer = char_tokenizer()
    denoiser = HFDenoiser(tiny_model("bert", len(tokenizer)).eval(), tokenizer=tokenizer)
    prompts = [torch.tensor([5, 6, 7]), torch.tensor([8, 9, 10])]
    witness = PaddingWitness(denoiser, prompts)
    stacked = decode(witness, torch.stack(prompts), 4, num_samples=2, generator=seeded(0))
    listed = decode(witness, prompts, 4, num_samples=2, generator=seeded(0))
    decode(witness, prompts[0], 4, num_samples=2, generator=seeded(0))
    decode(witness, None, 4, num_samples=2, generator=seeded(0))
    assert all(mask is None for mask in witness.masks)
    assert torch.equal(stacked.tokens, listed.tokens) and torch.equal(stacked.log_q_steps, listed.log_q_steps)


def test_prompt_lists_are_validated():
    toy = ExactDenoiser.random(vocab_size=3, length=2, seed=0)
    with pytest.raises(ValueError, match="one prompt per row; got 2 prompts for 3 rows"):
        decode(toy, [torch.tensor([0]), torch.tensor([1, 2])], 2, num_samples=3)
    with pytest.raises(ValueError, match=r"prompt\[1\]: each prompt of a list must be a 1-D"):
        decode(toy, [torch.tensor([0]), torch.tensor([[1, 2]])], 2, num_samples=2)
    with pytest.raises(ValueError, match="mask id 3"):
        decode(toy, [torch.tensor([0]), torch.tensor([1, 3])], 2, num_samples=2)
    with pytest.raises(ValueError, match=r"prompt\[0\] must hold integer token ids"):
        decode(toy, [torch.tensor([0.5]), torch.tensor([1, 2])], 2, num_samples=2)
    assert padding_id(toy) == 0 and padding_id(ExactDenoiser.random(3, 2, pad_id=1)) == 1
    assert padding_id(ExactDenoiser.random(3, 2, pad_id=7)) == 0  # not an id of the model: any valid one


def test_denoisers_that_cannot_take_padding_say_so():
    toy = ExactDenoiser.random(vocab_size=3, length=2, seed=0)
    with pytest.raises(ValueError, match="ExactDenoiser: its table is behind one fixed prompt"):
        decode(toy, [torch.tensor([0]), torch.tensor([1, 2])], 2, num_samples=2)

    class NoPositions(torch.nn.Module):  # a masked LM whose forward numbers positions itself
        def __init__(self):
            super().__init__()
            self.inner = tiny_model("bert", 26).eval()
            self.config = self.inner.config

        def forward(self, input_ids, attention_mask=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    denoiser = HFDenoiser(NoPositions(), mask_id=2)
    assert decode(denoiser, [torch.tensor([5, 6])] * 2, 2, num_samples=2).tokens.shape == (2, 2)
    with pytest.raises(ValueError, match="NoPositions: left-padded rows need position ids"):
        decode(denoiser, [torch.tensor([5]), torch.tensor([5, 6])], 2, num_samples=2)
