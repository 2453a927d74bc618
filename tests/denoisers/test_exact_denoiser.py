import itertools

import pytest
import torch

from dllm_mcmc import ExactDenoiser


def brute_force_conditional(toy, response, position):
    """p(x_position = v | observed positions of response) by direct enumeration."""
    weights = torch.zeros(toy.vocab_size, dtype=torch.float64)
    for sequence in itertools.product(range(toy.vocab_size), repeat=toy.length):
        if all(r == toy.mask_id or r == s for r, s in zip(response, sequence)):
            weights[sequence[position]] += toy.probs[toy.index(torch.tensor(sequence))]
    return weights / weights.sum()


def test_conditionals_are_exact_marginals_of_the_joint(toy):
    m = toy.mask_id
    canvases = torch.tensor([[m, m, m, m], [0, m, 2, m], [m, 1, 1, m], [2, 0, 1, m]])
    log_probs = toy(canvases).log_softmax(-1)
    for row, canvas in enumerate(canvases.tolist()):
        for position, token in enumerate(canvas):
            if token == m:
                expected = brute_force_conditional(toy, canvas, position)
                assert torch.allclose(log_probs[row, position].exp().double(), expected, atol=1e-6)


def test_joint_is_normalised_and_tempering_sums_to_one(toy):
    assert abs(float(toy.probs.sum()) - 1.0) < 1e-12
    for temperature in (0.5, 1.0, 2.0):
        tempered = toy.tempered(temperature)
        assert abs(float(tempered.sum()) - 1.0) < 1e-12
    assert torch.allclose(toy.tempered(1.0), toy.probs)
    # colder targets concentrate on the mode
    assert toy.tempered(0.5).max() > toy.probs.max() > toy.tempered(2.0).max()


def test_index_and_log_prob_agree_with_sequences(toy):
    assert torch.equal(toy.index(toy.sequences), torch.arange(81))
    assert torch.allclose(toy.log_prob(toy.sequences).double(), toy.probs.log(), atol=1e-6)


def test_prompt_is_required_in_front():
    toy = ExactDenoiser.random(vocab_size=3, length=2, seed=1, prompt=torch.tensor([7, 8]))
    m = toy.mask_id
    logits = toy(torch.tensor([[7, 8, m, m]]))
    assert logits.shape == (1, 4, 3)
    with pytest.raises(ValueError, match="prompt"):
        toy(torch.tensor([[7, 9, m, m]]))


def test_zero_probability_evidence_is_an_error():
    probs = torch.tensor([[0.5, 0.0], [0.0, 0.5]])
    toy = ExactDenoiser(probs)
    with pytest.raises(ValueError, match="probability zero"):
        toy(torch.tensor([[0, 1]]))


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="probs"):
        ExactDenoiser(torch.ones(2, 3))
    with pytest.raises(ValueError, match="probs"):
        ExactDenoiser(-torch.ones(2, 2))
    with pytest.raises(ValueError, match="mask_id"):
        ExactDenoiser(torch.ones(2, 2), mask_id=1)


def test_random_builder_is_seeded():
    a = ExactDenoiser.random(3, 3, seed=5)
    b = ExactDenoiser.random(3, 3, seed=5)
    c = ExactDenoiser.random(3, 3, seed=6)
    assert torch.equal(a.probs, b.probs)
    assert not torch.equal(a.probs, c.probs)
