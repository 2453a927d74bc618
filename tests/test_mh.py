"""The stepwise sampler's candidate selection rules, `dllm_mcmc.mh.mh_scan` and `dllm_mcmc.mh.sir`, directly.

Statistical tolerance. Candidates are drawn i.i.d. from ``q = (0.4, 0.3, 0.2, 0.1)`` over four values
and weighted by ``w = log π − log q`` with ``π = (0.1, 0.2, 0.3, 0.4)``. Both rules select from ``π``
only as ``K → ∞``. With ``N = 20,000`` rows, the plug-in TV of ``N`` exact draws from ``π`` is about
0.005 (0.003–0.009 over seeds 0..4). At ``K = 256`` both rules land at that floor (measured MH
0.002–0.010, SIR 0.004–0.007 over seeds 0..4); the bound 0.02 is four times the floor. ``K = 1``
returns the ``q`` draw (TV 0.40), and SIR's ``O(1/K)`` bias shows at ``K = 4`` (TV 0.16).
"""

import math

import pytest
import torch
from conftest import seeded

from dllm_mcmc.mh import mh_scan, sir

INF = float("inf")
Q = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
PI = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)


def _selected_law(select, num_candidates, seed, rows=20_000):
    generator = seeded(seed)
    candidates = torch.multinomial(Q.expand(rows, -1), num_candidates, replacement=True, generator=generator)
    selected, _, invalid = select((PI.log() - Q.log())[candidates], generator)
    assert not invalid
    values = candidates.gather(1, selected[:, None]).squeeze(1)
    return torch.bincount(values, minlength=4).double() / rows


def _tv(p, q):
    return 0.5 * float((p - q).abs().sum())


@pytest.mark.parametrize("select", [mh_scan, sir])
def test_selection_approaches_q_times_exp_w_for_many_candidates(select):
    for seed in range(3):
        assert _tv(_selected_law(select, 256, seed), PI) < 0.02
    assert _tv(_selected_law(select, 1, 0), Q) < 0.02  # one candidate: the proposal itself
    assert _tv(_selected_law(select, 1, 0), PI) > 0.3


def test_sir_bias_shrinks_with_the_number_of_candidates():
    assert _tv(_selected_law(sir, 4, 0), PI) > 0.1 > 0.02 > _tv(_selected_law(sir, 256, 0), PI)


def test_mh_scan_forced_accepts_and_rejects():
    log_weight = torch.tensor([
        [0.0, 100.0, 200.0, 300.0],    # every move uphill: all accepted, the last candidate kept
        [300.0, 0.0, -100.0, -200.0],  # every move 100+ nats down: all refused, the first kept
        [0.0, -INF, -INF, 50.0],       # zero-mass candidates are never accepted
        [-INF, -INF, 1.0, 2.0],        # a zero-mass start accepts the first move of positive mass
    ], dtype=torch.float64)
    for seed in range(20):
        selected, fraction, invalid = mh_scan(log_weight, seeded(seed))
        assert selected.tolist() == [3, 0, 3, 3] and not invalid
        assert torch.allclose(fraction, torch.tensor([1.0, 0.0, 1 / 3, 2 / 3], dtype=torch.float64))


def test_mh_scan_accepts_a_downhill_move_with_its_ratio():
    rows = 20_000
    log_weight = torch.tensor([[0.0, math.log(0.3)]], dtype=torch.float64).expand(rows, 2)
    selected, fraction, _ = mh_scan(log_weight, seeded(1))
    assert abs(float(selected.double().mean()) - 0.3) < 4 * math.sqrt(0.21 / rows)
    assert torch.equal(fraction, selected.double())


def test_one_candidate_is_always_kept():
    for select in (mh_scan, sir):
        selected, statistic, invalid = select(torch.tensor([[-3.0], [5.0]], dtype=torch.float64), seeded(0))
        assert selected.tolist() == [0, 0] and statistic.tolist() == [1.0, 1.0] and not invalid


def test_sir_forced_choice_and_effective_sample_size():
    log_weight = torch.tensor([[0.0, 500.0, 0.0, 0.0], [-INF, -INF, 0.0, -INF], [1.0, 1.0, 1.0, 1.0]],
                              dtype=torch.float64)
    for seed in range(20):
        selected, ess, invalid = sir(log_weight, seeded(seed))
        assert selected[:2].tolist() == [1, 2] and not invalid
        assert torch.allclose(ess, torch.tensor([0.25, 0.25, 1.0], dtype=torch.float64))
    _, ess, _ = sir(torch.tensor([[0.0, 0.0, -INF, -INF]], dtype=torch.float64), seeded(0))
    assert torch.allclose(ess, torch.tensor([0.5], dtype=torch.float64))


@pytest.mark.parametrize("select", [mh_scan, sir])
def test_invalid_flag_on_nan_or_an_all_zero_mass_row(select):
    fine = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    assert not select(fine, seeded(0))[2]
    nan = torch.tensor([[0.0, float("nan"), 2.0]], dtype=torch.float64)
    assert select(nan, seeded(0))[2]
    all_zero_mass = torch.cat([fine, torch.full((1, 3), -INF, dtype=torch.float64)])
    assert select(all_zero_mass, seeded(0))[2]


def test_mh_scan_never_moves_to_a_nan_candidate():
    log_weight = torch.tensor([[0.0, float("nan")]], dtype=torch.float64).expand(100, 2)
    selected, fraction, invalid = mh_scan(log_weight, seeded(0))
    assert (selected == 0).all() and (fraction == 0).all() and invalid
