import pytest
import torch

# The tests push tiny tensors: one thread avoids oversubscribing a small (or shared) machine,
# where torch's spinning worker threads made a 0.3 s chain run take 30 s.
torch.set_num_threads(1)

from dllm_mcmc import ExactDenoiser


class CountingDenoiser:
    """Wraps a denoiser and records the batch size of every forward call."""

    def __init__(self, inner):
        self.inner = inner
        self.mask_id = inner.mask_id
        self.vocab_size = inner.vocab_size
        self.eos_id = getattr(inner, "eos_id", None)
        self.batch_sizes = []

    def __call__(self, tokens, attention_mask=None):
        self.batch_sizes.append(tokens.shape[0])
        return self.inner(tokens, attention_mask)


@pytest.fixture
def toy():
    """V=3, L=4 random joint (81 sequences), seed 0."""
    return ExactDenoiser.random(vocab_size=3, length=4, seed=0)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p.double() - q.double()).abs().sum())


def empirical(toy: ExactDenoiser, tokens: torch.Tensor) -> torch.Tensor:
    counts = torch.bincount(toy.index(tokens), minlength=toy.probs.numel()).double()
    return counts / counts.sum()
