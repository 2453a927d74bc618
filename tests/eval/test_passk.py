"""pass@k against brute-force enumeration, and the bootstrap interval's coverage of a known mean."""

import itertools
import math
import random

import pytest
import torch

from dllm_mcmc.eval.passk import bootstrap_interval, mean_pass_at_k, pass_at_k, pass_at_k_estimate


def brute_force(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


def test_pass_at_k_equals_enumeration_over_all_subsets():
    rng = random.Random(0)
    cases = [(n, rng.randint(0, n), rng.randint(1, n)) for n in (rng.randint(1, 12) for _ in range(300))]
    cases += [(1, 0, 1), (1, 1, 1), (12, 0, 12), (12, 12, 1), (12, 11, 12)]
    for n, c, k in cases:
        assert pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_where_binomials_overflow_floats():
    n, c, k = 400, 3, 200  # C(400, 200) ~ 1e119; the exact answer in rationals:
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)  # Python ints: exact until the final division
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12)
    assert 0.0 <= pass_at_k(10_000, 1, 1) <= 1.0


def test_pass_at_1_is_the_fraction_correct_and_pass_at_k_grows_with_k():
    assert pass_at_k(16, 5, 1) == pytest.approx(5 / 16)
    values = [pass_at_k(16, 3, k) for k in range(1, 17)]
    assert all(a <= b for a, b in zip(values, values[1:])) and values[-1] == 1.0


@pytest.mark.parametrize("n, c, k, message", [(4, 5, 1, "exceed"), (4, 1, 0, "k must"), (4, 1, 5, "k must"),
                                              (4, -1, 1, "non-negative"), (4.0, 1, 1, "non-negative")])
def test_bad_counts_are_refused(n, c, k, message):
    with pytest.raises(ValueError, match=message):
        pass_at_k(n, c, k)


def test_mean_weighs_problems_equally():
    assert mean_pass_at_k([4, 16], [4, 0], 1) == 0.5
    with pytest.raises(ValueError, match="differ"):
        mean_pass_at_k([4], [1, 2], 1)


def test_bootstrap_interval_covers_the_true_mean_about_as_often_as_stated():
    """200 data sets of 100 Bernoulli(0.3) problems: a 90% interval should cover 0.3 in ~90% of them.

    Binomial(200, 0.9) has standard deviation 2.1%; the band 0.82..0.96 is about ±3.5 sd (percentile
    bootstrap undercovers slightly at n = 100).
    """
    data_generator, boot_generator = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    covered = 0
    for _ in range(200):
        values = (torch.rand(100, generator=data_generator) < 0.3).double().tolist()
        estimate = bootstrap_interval(values, level=0.9, resamples=500, generator=boot_generator)
        covered += estimate.low <= 0.3 <= estimate.high
    assert 0.82 <= covered / 200 <= 0.96


def test_bootstrap_is_reproducible_and_centred_on_the_mean():
    a = pass_at_k_estimate([8] * 20, [i % 9 for i in range(20)], 2,
                           generator=torch.Generator().manual_seed(5))
    b = pass_at_k_estimate([8] * 20, [i % 9 for i in range(20)], 2, generator=torch.Generator().manual_seed(5))
    assert a == b and a.low <= a.mean <= a.high
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval([1.0], level=1.5)
