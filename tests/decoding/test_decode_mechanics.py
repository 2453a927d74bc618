import pytest
import torch
from conftest import CountingDenoiser, seeded

from dllm_mcmc import ExactDenoiser, decode


def test_sixteen_samples_cost_one_forward_of_batch_sixteen_per_step(toy):
    counted = CountingDenoiser(toy)
    traj = decode(counted, None, 4, rule="entropy", num_samples=16, generator=seeded(0))
    assert counted.batch_sizes == [16] * 4
    assert traj.nfe == 4 and traj.forward_rows == 64


@pytest.mark.parametrize("block_length,k,expected_calls", [(None, 1, 8), (4, 1, 8), (4, 2, 4), (4, 3, 4), (None, 3, 3)])
def test_steps_follow_blocks_and_tokens_per_step(block_length, k, expected_calls):
    toy = ExactDenoiser.random(vocab_size=2, length=8, seed=0)
    counted = CountingDenoiser(toy)
    traj = decode(counted, None, 8, block_length=block_length, tokens_per_step=k, num_samples=5, generator=seeded(0))
    assert len(counted.batch_sizes) == expected_calls == traj.nfe
    assert traj.log_q_steps.shape == (5, expected_calls)
    # every row's order is a permutation, and blocks are filled left to right
    assert torch.equal(traj.order.sort(-1).values, torch.arange(8).expand(5, 8))
    if block_length:
        assert (traj.order[:, :block_length] < block_length).all()


def test_same_seed_same_result_and_different_seed_different_result(toy):
    for rule in ("random", "confidence", "stochastic"):
        a = decode(toy, None, 4, rule=rule, temperature=0.7, num_samples=32, generator=seeded(3))
        b = decode(toy, None, 4, rule=rule, temperature=0.7, num_samples=32, generator=seeded(3))
        c = decode(toy, None, 4, rule=rule, temperature=0.7, num_samples=32, generator=seeded(4))
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.order, b.order)
        assert torch.equal(a.log_q_steps, b.log_q_steps)
        assert not (torch.equal(a.tokens, c.tokens) and torch.equal(a.order, c.order))


def test_no_generator_draws_its_seed_from_the_global_rng(toy):
    torch.manual_seed(123)
    a = decode(toy, None, 4, num_samples=32)
    torch.manual_seed(123)
    b = decode(toy, None, 4, num_samples=32)
    assert torch.equal(a.tokens, b.tokens)


def test_confidence_is_flagged_inexact_and_commits_its_most_confident_draw(toy):
    traj = decode(toy, None, 4, rule="confidence", num_samples=8, generator=seeded(0))
    assert not traj.exact_density and not traj.config.exact_density
    assert torch.isfinite(traj.log_q).all()


def test_per_row_prompts(toy):
    toy = ExactDenoiser.random(vocab_size=3, length=2, seed=0)
    traj = decode(toy, torch.zeros(6, 0, dtype=torch.long), 2, num_samples=6, generator=seeded(0))
    assert traj.tokens.shape == (6, 2)


class PeakedOnSpecialTokens:
    """A denoiser that puts most mass on the mask and EOS ids (both inside the vocabulary)."""

    mask_id, eos_id, vocab_size = 0, 1, 4

    def __call__(self, tokens, attention_mask=None):
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], self.vocab_size)
        logits[..., 0] = 10.0
        logits[..., 1] = 8.0
        return logits


def test_mask_token_is_never_committed_and_eos_can_be_suppressed():
    model = PeakedOnSpecialTokens()
    traj = decode(model, torch.tensor([2, 3]), 6, num_samples=50, generator=seeded(0))
    assert (traj.tokens != 0).all()
    assert (traj.tokens == 1).float().mean() > 0.9  # EOS dominates once the mask is removed
    suppressed = decode(model, torch.tensor([2, 3]), 6, num_samples=50, suppress_eos=True, generator=seeded(0))
    assert not (suppressed.tokens <= 1).any()
    # log p keeps the model's own probability of the committed token (mask removed)
    expected = torch.log(torch.tensor(1.0) / (torch.tensor(8.0).exp() + 2))
    assert torch.allclose(suppressed.log_p_steps, expected.expand_as(suppressed.log_p_steps), atol=1e-5)
    half = torch.full_like(suppressed.log_q_steps, -torch.tensor(2.0).log())
    expected = half + torch.log(1 / torch.arange(6, 0, -1.0))
    assert torch.allclose(suppressed.log_q_steps, expected, atol=1e-5)


def test_decoding_a_trainable_module_builds_no_autograd_graph():
    class Linear(torch.nn.Module):
        mask_id, vocab_size = 4, 4

        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(5, 4)

        def forward(self, tokens, attention_mask=None):
            return self.embed(tokens)

    traj = decode(Linear(), None, 3, num_samples=2, generator=seeded(0))
    assert not traj.log_q.requires_grad
