"""The suffix-mass estimators (`dllm_mcmc.decoding.suffix`) against hand computations and enumeration.

Everything here is deterministic: values are compared with ``atol=1e-5`` (the toy's logits are
float32 logs of float64 conditionals)."""

import math

import pytest
import torch
from conftest import CountingDenoiser, seeded

from dllm_mcmc import ExactDenoiser
from dllm_mcmc.decoding.suffix import (
    exact_log_suffix,
    mean_field_log_suffix,
    scope_count,
    scope_index,
    suffix_counts,
)


def _brute_log_suffix(toy, canvas, in_scope, temperature):
    """``log Σ_y p(y | x_O)^(1/T)`` over the completions ``y`` of the masked response positions in
    ``in_scope``, from the toy's joint table: condition on every observed response token, then
    marginalise the masked positions outside the scope."""
    response = canvas[toy.prompt.numel():]
    keep = torch.ones(toy.sequences.shape[0], dtype=torch.bool)
    for position, token in enumerate(response.tolist()):
        if token != toy.mask_id:
            keep &= toy.sequences[:, position] == token
    summed = [j for j in range(toy.length) if response[j] == toy.mask_id and in_scope[j]]
    mass = {}
    for sequence, prob in zip(toy.sequences[keep].tolist(), toy.probs[keep].tolist()):
        completion = tuple(sequence[j] for j in summed)
        mass[completion] = mass.get(completion, 0.0) + prob
    total = sum(mass.values())
    return math.log(sum((m / total) ** (1 / temperature) for m in mass.values()))


def test_mean_field_matches_a_hand_computation():
    """V = 4 with the mask id 3 inside the vocabulary (removed before normalising), T = 0.7."""
    logits = torch.randn(2, 3, 4, generator=seeded(0))
    scope = torch.tensor([[True, False, True], [False, True, True]])
    temperature = 0.7
    expected = []
    for row in range(2):
        total = 0.0
        for j in range(3):
            if scope[row, j]:
                weights = [math.exp(float(logits[row, j, u])) for u in range(3)]  # mask id 3 dropped
                total += math.log(sum((w / sum(weights)) ** (1 / temperature) for w in weights))
        expected.append(total)
    value = mean_field_log_suffix(logits, scope, temperature, mask_id=3)
    assert torch.allclose(value.double(), torch.tensor(expected, dtype=torch.float64), atol=1e-5)
    assert torch.equal(mean_field_log_suffix(logits, scope, temperature, 3, count=2), value)
    assert torch.equal(mean_field_log_suffix(logits, scope & False, temperature, 3), torch.zeros(2))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_exact_matches_enumeration_of_the_joint(temperature):
    """Random toy V = 3, L = 4: canvases with 1..4 masked positions, scope all or a block of columns
    (masked positions outside it are marginalised). At T = 1 the suffix mass of a consistent model is 1."""
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0)
    m = toy.mask_id
    cases = [
        (torch.tensor([[m, 0, m, m], [m, 1, m, m], [m, 2, m, m], [m, m, m, 2]]), [True] * 4),
        (torch.tensor([[m, m, m, m]]), [True] * 4),
        (torch.tensor([[0, m, m, m], [2, m, m, m], [1, m, m, 0]]), [False, True, True, False]),
        (torch.tensor([[1, m, 2, 0], [m, 0, 0, 1]]), [True] * 4),
    ]
    for canvases, in_scope in cases:
        in_scope = torch.tensor(in_scope)
        exact = exact_log_suffix(canvases, toy(canvases), in_scope, temperature, m, forward=toy)
        expected = [_brute_log_suffix(toy, canvas, in_scope, temperature) for canvas in canvases]
        assert torch.allclose(exact, torch.tensor(expected, dtype=torch.float64), atol=1e-5)
        if temperature == 1.0:
            assert torch.allclose(exact, torch.zeros_like(exact), atol=1e-5)


def test_exact_with_a_prompt_costs_m_minus_one_forward_calls():
    prompt = torch.tensor([2, 0])
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=1, prompt=prompt)
    m = toy.mask_id
    canvases = torch.tensor([[2, 0, m, 1, m, m], [2, 0, m, 2, m, m], [2, 0, m, 2, m, m]])
    counting = CountingDenoiser(toy)
    in_scope = torch.ones(4, dtype=torch.bool)
    exact = exact_log_suffix(canvases, toy(canvases)[:, 2:], in_scope, 0.6, m,
                             forward=lambda rows: counting(rows)[:, 2:], count=3)
    expected = [_brute_log_suffix(toy, canvas, in_scope, 0.6) for canvas in canvases]
    assert torch.allclose(exact, torch.tensor(expected, dtype=torch.float64), atol=1e-5)
    # m = 3 masked positions: levels 1 and 2 need calls, over the distinct canvases (2 states × 3, × 9)
    assert counting.batch_sizes == [6, 18]


def test_mean_field_equals_exact_for_a_product_form_joint():
    """p(x) = Π_j p_j(x_j): the positions are independent given anything, so the mean-field suffix
    is exact for every canvas and scope."""
    marginals = torch.softmax(torch.randn(4, 3, generator=seeded(2), dtype=torch.float64), -1)
    probs = marginals[0].view(3, 1, 1, 1) * marginals[1].view(1, 3, 1, 1) * marginals[2].view(1, 1, 3, 1)
    toy = ExactDenoiser(probs * marginals[3].view(1, 1, 1, 3))
    m = toy.mask_id
    for canvas in ([m, m, m, m], [0, m, m, m], [m, 2, m, 1], [1, 1, m, m]):  # one at a time: counts differ
        canvases = torch.tensor([canvas])
        for in_scope in (torch.ones(4, dtype=torch.bool), torch.tensor([True, True, False, False])):
            scope = (canvases == m) & in_scope
            for temperature in (0.5, 1.7):
                exact = exact_log_suffix(canvases, toy(canvases), in_scope, temperature, m, forward=toy)
                mean_field = mean_field_log_suffix(toy(canvases), scope, temperature, m)
                assert torch.allclose(mean_field.double(), exact, atol=1e-5)
    # and on a correlated joint the two differ (the mean-field suffix is an approximation)
    correlated = ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=2.0)
    canvases = torch.tensor([[m, m, m, m]])
    everything = torch.ones(4, dtype=torch.bool)
    exact = exact_log_suffix(canvases, correlated(canvases), everything, 0.5, m, forward=correlated)
    mean_field = mean_field_log_suffix(correlated(canvases), canvases == m, 0.5, m)
    assert abs(float(exact - mean_field.double())) > 0.1


def test_mean_field_equals_exact_with_one_masked_position_in_scope():
    toy = ExactDenoiser.random(vocab_size=3, length=4, seed=0, sharpness=2.0)
    m = toy.mask_id
    canvases = torch.tensor([[m, 0, m, m], [2, m, 0, m], [m, 1, m, 0]])
    in_scope = torch.tensor([False, True, True, False])  # one masked position in scope per canvas
    scope = (canvases == m) & in_scope
    exact = exact_log_suffix(canvases, toy(canvases), in_scope, 0.5, m, forward=toy)
    mean_field = mean_field_log_suffix(toy(canvases), scope, 0.5, m)
    assert torch.allclose(mean_field.double(), exact, atol=1e-5)


def test_scope_helpers():
    scope = torch.tensor([[False, True, False, True, True], [True, True, False, False, True]])
    assert scope_count(scope) == 3 and scope_count(scope, 7) == 7 and scope_count(scope[:0]) == 0
    with pytest.raises(ValueError, match="same number"):
        scope_count(torch.tensor([[True, False], [True, True]]))
    assert scope_index(scope, 3).tolist() == [[1, 3, 4], [0, 1, 4]]
    steps = [(0, 4, 1)] * 4
    assert suffix_counts(steps, 4, "block") == suffix_counts(steps, 4, "all") == [3, 2, 1, 0]
