"""Logits only where needed: `forward_in_chunks(..., logit_positions=...)` and the samplers that use it give
the same results as computing every position, for denoisers that run the head at those positions only
(native LLaDA / Dream / WeDLM) and for those that do not (the selection happens after the call)."""

import pytest
import torch
from native_fixtures import MASK, checkpoint, wedlm_checkpoint

from dllm_mcmc import ExactDenoiser, decode, replay
from dllm_mcmc.decoding.smc import smc_decode
from dllm_mcmc.decoding.stepwise import stepwise_decode
from dllm_mcmc.denoisers.base import model_log_probs
from dllm_mcmc.denoisers.batching import accepts_logit_positions, forward_in_chunks
from dllm_mcmc.denoisers.load import load_model
from dllm_mcmc.denoisers.metered import MeteredDenoiser


class FullOnly:
    """A native denoiser seen through a wrapper that hides ``accepts_logit_positions``: every call computes
    all positions, and records what it was asked."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.mask_id, self.vocab_size, self.eos_id = inner.mask_id, inner.vocab_size, inner.eos_id

    def __call__(self, tokens, attention_mask=None):
        self.calls.append(tokens.shape)
        return self.inner(tokens, attention_mask)


@pytest.fixture(params=["llada", "dream", "wedlm"])
def native(request, tmp_path):
    torch.set_num_threads(1)
    if request.param == "wedlm":
        folder, _ = wedlm_checkpoint(tmp_path)
        return load_model(folder, kv_cache=False).denoiser
    folder, _ = checkpoint(tmp_path, request.param)
    return load_model(folder).denoiser


def test_forward_in_chunks_selects_positions_alike_with_and_without_support(native):
    canvas = torch.randint(4, MASK, (5, 12), generator=torch.Generator().manual_seed(0))
    canvas[:, 6:] = MASK
    canvas[1, 8] = 5  # rows with different masked sets
    positions = torch.tensor([6, 7, 9, 11])
    assert accepts_logit_positions(native) and not accepts_logit_positions(FullOnly(native))
    full = forward_in_chunks(native, canvas)
    restricted = forward_in_chunks(native, canvas, max_rows=2, logit_positions=positions)
    selected = forward_in_chunks(FullOnly(native), canvas, logit_positions=positions)
    masked = canvas[:, positions] == MASK  # WeDLM's logits are defined at masked positions only
    assert restricted.shape == (5, 4, native.vocab_size)
    assert (restricted - full[:, positions])[masked].abs().max() < 1e-5
    assert torch.equal(selected, full[:, positions])
    with pytest.raises(ValueError, match="logit_positions"):
        forward_in_chunks(native, canvas, logit_positions=positions[None])


@pytest.mark.parametrize("sampler", ["decode", "smc", "stepwise"])
def test_samplers_give_the_same_draws_with_restricted_logits(native, sampler):
    prompt = torch.randint(4, MASK, (5,), generator=torch.Generator().manual_seed(1))
    hidden = FullOnly(native)

    def run(denoiser):
        generator = torch.Generator().manual_seed(0)
        if sampler == "decode":
            traj = decode(denoiser, prompt, 8, rule="top_prob", block_length=4, num_samples=3, generator=generator)
            return traj.tokens, traj.log_q, replay(denoiser, prompt, traj.tokens, traj.order, traj.config).log_q
        if sampler == "smc":
            draw = smc_decode(denoiser, prompt, 8, target_temperature=0.5, temperature=0.5, num_particles=3,
                              rule="random", generator=generator)
            return draw.tokens, draw.log_normalizer, draw.log_p
        draw = stepwise_decode(denoiser, prompt, 8, target_temperature=0.5, num_candidates=2, num_samples=2,
                               generator=generator)
        return draw.tokens, draw.log_p, draw.log_position

    metered = MeteredDenoiser(native)
    restricted, full = run(metered), run(hidden)
    assert torch.equal(restricted[0], full[0])
    for a, b in zip(restricted[1:], full[1:]):
        assert torch.allclose(a, b, atol=1e-4)
    assert metered.nfe > 0 and all(shape[1] == 13 for shape in hidden.calls)  # the full path saw whole canvases


def test_decode_records_the_chain_rule_of_full_forward_calls(native):
    """An independent check of which positions `decode` asks for: the recorded ``log p`` equals the chain
    rule recomputed from whole-canvas calls of the denoiser itself along the recorded order."""
    prompt = torch.randint(4, MASK, (5,), generator=torch.Generator().manual_seed(2))
    traj = decode(native, prompt, 8, rule="random", block_length=4, num_samples=2,
                  generator=torch.Generator().manual_seed(0))
    canvas = torch.cat([prompt.expand(2, -1), torch.full((2, 8), MASK)], 1)
    rows, expected = torch.arange(2), torch.zeros(2)
    for step in range(8):
        position = traj.order[:, step] + 5
        token = traj.tokens[rows, traj.order[:, step]]
        expected += model_log_probs(native(canvas), MASK)[rows, position, token]
        canvas[rows, position] = token
    assert torch.allclose(traj.log_p_steps.sum(-1), expected, atol=1e-4)


def test_exact_toy_unchanged():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    assert not accepts_logit_positions(toy)
    canvas = torch.full((2, 4), toy.mask_id)
    assert torch.equal(forward_in_chunks(toy, canvas, logit_positions=torch.tensor([1, 3])),
                       forward_in_chunks(toy, canvas)[:, [1, 3]])
