"""The tempering-headroom check (`dllm_mcmc.diagnostics.tempering_headroom`, `dllm_mcmc.eval.headroom_pilot`,
``dllm-mcmc headroom``).

The statistical tests draw a τ = 1 random-order pilot from the exact toy ``ExactDenoiser.random(vocab_size=3,
length=4, seed=0)`` (a consistent joint: ``p(x | σ) = p(x)`` for every order) with a known reward ("at least two
zeros") and compare the reweighted estimates with the values enumerated over all 81 sequences. Each pilot is
``PROBLEMS`` independent "problems" of ``SAMPLES`` draws of the same law, from a fixed seed; an estimate must lie
within ``SE_TOLERANCE`` bootstrap standard errors of the exact value (a standard error from the 95% interval's
width / 3.92), and the interval must be narrow enough (``< 0.1``) for the check to mean something.
"""

from __future__ import annotations

import contextlib
import io
import math
import re

import pytest
import torch

from dllm_mcmc import ExactDenoiser, decode, replay
from dllm_mcmc.cli import main
from dllm_mcmc.diagnostics import PilotProblem, tempering_headroom
from dllm_mcmc.diagnostics.headroom import (
    MIN_AUC,
    MIN_ESS_FRACTION,
    Interval,
    TemperatureRow,
    mean_auc,
    plug_in_pass_at_k,
    reweighted,
    verdict,
    within_problem_auc,
)
from dllm_mcmc.likelihood import left_to_right_log_likelihood

PROBLEMS, SAMPLES, SE_TOLERANCE = 40, 100, 3.5


@pytest.fixture(scope="module")
def toy() -> ExactDenoiser:
    return ExactDenoiser.random(vocab_size=3, length=4, seed=0)


def reward(tokens: torch.Tensor) -> torch.Tensor:
    """The sequence holds at least two zeros."""
    return (tokens == 0).sum(-1) >= 2


def exact(toy: ExactDenoiser, temperature: float) -> tuple[float, float]:
    """``(E_{π_T}[reward], Cov_{π_T}(reward, log p))`` enumerated over every sequence."""
    weights = toy.tempered(temperature)
    r = reward(toy.sequences).double()
    log_p = toy.probs.log().reshape(-1)
    mean = float(weights @ r)
    return mean, float(weights @ (r * log_p)) - mean * float(weights @ log_p)


@pytest.fixture(scope="module")
def toy_pilot(toy) -> dict[str, list[PilotProblem]]:
    generator = torch.Generator().manual_seed(0)
    problems = []
    for index in range(PROBLEMS):
        drawn = decode(toy, None, toy.length, rule="random", temperature=1.0, num_samples=SAMPLES, generator=generator)
        problems.append(PilotProblem(correct=reward(drawn.tokens).tolist(), log_p=drawn.log_p.tolist(),
                                     problem=str(index)))
    return {"toy": problems}


def standard_error(interval: Interval) -> float:
    return (interval.high - interval.low) / 3.92


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_reweighted_pass1_matches_the_enumerated_tempered_law(toy, toy_pilot, temperature):
    report = tempering_headroom(toy_pilot, temperatures=(temperature,), k=4)
    row = report.family("toy").row(temperature)
    truth, _ = exact(toy, temperature)
    assert row.pass1.high - row.pass1.low < 0.1
    assert abs(row.pass1.mean - truth) < SE_TOLERANCE * standard_error(row.pass1), (row.pass1, truth)
    assert row.pass1.low - 0.01 < truth < row.pass1.high + 0.01
    # the tempering moves the estimate the way the exact law moves: away from the pilot's own law
    base_truth, _ = exact(toy, 1.0)
    assert math.copysign(1, row.delta_pass1.mean) == math.copysign(1, truth - base_truth)
    assert 0 < row.ess_fraction <= 1 and row.ess == pytest.approx(row.ess_fraction * SAMPLES)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_reweighted_covariance_matches_enumeration(toy, toy_pilot, temperature):
    row = tempering_headroom(toy_pilot, temperatures=(temperature,)).family("toy").row(temperature)
    _, truth = exact(toy, temperature)
    assert abs(row.covariance.mean - truth) < SE_TOLERANCE * standard_error(row.covariance) + 0.01, (row, truth)


def test_covariance_is_the_derivative_in_beta(toy):
    """Tomihari & Sato: d/dβ E_β[reward] = Cov_β(reward, log p), β = 1/T (a finite difference, enumerated)."""
    for temperature in (0.5, 1.0, 2.0):
        beta, h = 1 / temperature, 1e-4
        derivative = (exact(toy, 1 / (beta + h))[0] - exact(toy, 1 / (beta - h))[0]) / (2 * h)
        assert derivative == pytest.approx(exact(toy, temperature)[1], rel=1e-5, abs=1e-8)


def test_plug_in_pass_at_k_is_the_plug_in_of_each_problem(toy_pilot):
    row = tempering_headroom(toy_pilot, temperatures=(0.5,), k=4).family("toy").row(0.5)
    per_problem = [reweighted(p.log_p, p.correct, 0.5)[0] for p in toy_pilot["toy"]]
    expected = sum(plug_in_pass_at_k(p, 4) for p in per_problem) / len(per_problem)
    assert row.passk.mean == pytest.approx(expected)


def test_reweighting_at_t1_is_the_plain_mean():
    p, ess, cov = reweighted([-1.0, -5.0, -2.0, -0.5], [True, False, False, True], 1.0)
    assert p == 0.5 and ess == pytest.approx(4.0)
    assert cov == pytest.approx(((-1.0 - 0.5) / 4) - 0.5 * (-8.5 / 4))


def test_low_temperature_concentrates_on_the_most_likely_sample():
    p, ess, _ = reweighted([-1.0, -9.0, -8.0], [True, False, False], 0.05)
    assert p == pytest.approx(1.0) and ess == pytest.approx(1.0)


def test_auc_on_a_hand_made_example():
    # correct 3, 2; wrong 1, 2: pairs (3>1, 3>2, 2>1, 2=2) -> (1 + 1 + 1 + 0.5) / 4
    assert within_problem_auc([3.0, 1.0, 2.0, 2.0], [True, False, True, False]) == 0.875
    assert within_problem_auc([0.0, 1.0], [True, False]) == 0.0
    assert within_problem_auc([0.0, 1.0], [False, False]) is None
    value, count = mean_auc([([3.0, 1.0, 2.0, 2.0], [True, False, True, False]), ([0.0, 1.0], [True, False]),
                             ([5.0], [True])])
    assert (value, count) == (pytest.approx(0.4375), 2)


def test_family_aucs_and_order_inconsistency_by_hand():
    problems = [
        PilotProblem(correct=[True, False], log_p=[-1.0, -2.0], left_to_right=[-3.0, -1.0],
                     orders=[[-1.0, -3.0], [-2.0, -2.0]]),
        PilotProblem(correct=[True, True], log_p=[-1.0, -1.0], left_to_right=[-1.0, -1.0],
                     orders=[[-1.0, -1.0], [-3.0, -3.0]]),
    ]
    family = tempering_headroom({"f": problems}, temperatures=(1.0,), resamples=50).family("f")
    assert (family.auc_own, family.auc_left_to_right, family.auc_problems) == (1.0, 0.0, 1)
    # order-averaged: own + replays, (-1-1-3)/3 = -5/3 against -2: correct above
    assert family.auc_order_averaged == 1.0
    order = family.order
    assert order is not None and order.orders == 3
    sds = [torch.tensor(row).std().item() for row in ([-1.0, -1.0, -3.0], [-2.0, -2.0, -2.0], [-1.0, -1.0, -1.0],
                                                      [-1.0, -3.0, -3.0])]
    assert order.across_orders == pytest.approx(sum(sds) / 4)
    between = [torch.tensor([-5 / 3, -2.0]).std().item(), torch.tensor([-1.0, -7 / 3]).std().item()]
    assert order.between_answers == pytest.approx(sum(between) / 2)
    assert order.ratio == pytest.approx(order.across_orders / order.between_answers)
    assert family.pilot_pass1 == 0.75 and family.pilot_passk == 1.0  # k = n = 2: one correct suffices


def test_exact_toy_orders_agree(toy):
    """A consistent joint gives every order the same log p: the order inconsistency is 0."""
    generator = torch.Generator().manual_seed(1)
    drawn = decode(toy, None, toy.length, rule="random", temperature=1.0, num_samples=8, generator=generator)
    orders = torch.stack([torch.randperm(toy.length, generator=generator) for _ in range(8)])
    again = replay(toy, None, drawn.tokens, orders, rule="random")
    problem = PilotProblem(correct=reward(drawn.tokens).tolist(), log_p=drawn.log_p.tolist(),
                           orders=again.log_p[:, None].tolist())
    order = tempering_headroom({"toy": [problem]}, temperatures=(1.0,), resamples=20).families[0].order
    assert order is not None and order.across_orders < 1e-5 and order.between_answers > 0.1


def row(temperature: float, delta: tuple[float, float, float], ess_fraction: float) -> TemperatureRow:
    interval = Interval(*delta)
    return TemperatureRow(temperature, interval, interval, interval, interval, ess=16 * ess_fraction,
                          ess_fraction=ess_fraction, covariance=interval)


ZERO = (0.0, 0.0, 0.0)


def test_verdict_can_names_the_largest_trusted_lift():
    rows = [row(0.25, (0.20, 0.10, 0.30), MIN_ESS_FRACTION / 2),  # larger, but on too few effective samples
            row(0.5, (0.13, 0.10, 0.16), 0.3), row(0.75, (0.05, 0.02, 0.08), 0.6), row(1.0, ZERO, 1.0)]
    line = verdict(rows, 0.8, 16)
    assert line.startswith("can:") and "+0.130 [+0.100, +0.160] at T = 0.5" in line


def test_verdict_cannot_when_log_p_does_not_rank_and_nothing_lifts():
    rows = [row(0.25, (0.01, -0.02, 0.04), 0.1), row(1.0, ZERO, 1.0)]
    line = verdict(rows, 0.55, 16)
    assert line.startswith("cannot:") and "AUC 0.55" in line
    assert MIN_AUC == 0.6


def test_verdict_unclear_otherwise():
    informative = verdict([row(0.5, (0.01, -0.02, 0.04), 0.5), row(1.0, ZERO, 1.0)], 0.8, 16)
    assert informative.startswith("unclear:") and "AUC 0.80" in informative
    starved = verdict([row(0.25, (0.1, 0.05, 0.15), 0.1), row(1.0, ZERO, 1.0)], 0.55, 16)
    assert starved.startswith("unclear:") and "ESS" in starved
    assert verdict([row(1.0, ZERO, 1.0)], None, 16).startswith("unclear:")


def test_report_markdown_and_bad_inputs(toy_pilot):
    report = tempering_headroom(toy_pilot, temperatures=(0.5, 2.0), k=8)
    assert report.temperatures == (0.5, 1.0, 2.0)  # T = 1 is added: the differences are against it
    text = report.markdown()
    assert "### toy" in text and "Pass@8 plug-in*" in text and "approximation" in text
    assert text.count("| 0.5 |") == 1 and "verdict toy:" in text
    with pytest.raises(ValueError, match="temperatures"):
        tempering_headroom(toy_pilot, temperatures=(0.0,))
    with pytest.raises(ValueError, match="k must lie"):
        tempering_headroom(toy_pilot, k=SAMPLES + 1)
    with pytest.raises(ValueError, match="log p values"):
        PilotProblem(correct=[True], log_p=[-1.0, -2.0])


def test_bundled_pilot_scores(toy):
    """The pilot's left-to-right score is `left_to_right_log_likelihood`'s, its own-order score the decode's
    record, and a pilot is reproducible from its seed."""
    from dllm_mcmc.eval.engine import load_engine
    from dllm_mcmc.eval.experiment import load_task, stable_seed
    from dllm_mcmc.eval.headroom_pilot import draw_pilot, draw_problem

    torch.set_num_threads(1)
    engine = load_engine("tasks-small")
    task = load_task("arith")
    problem = task.problems(1)[0]
    pilot = draw_problem(engine, task, problem, samples=4, orders=2, seed=0)
    generator = torch.Generator().manual_seed(stable_seed(0, "headroom", "arith", problem.id))
    prompt = engine.encode(task.prompt_text(problem))
    drawn = decode(engine.denoiser, prompt, engine.gen_length, rule="random", temperature=1.0, num_samples=4,
                   generator=generator)
    assert torch.allclose(drawn.log_p.double(), torch.tensor(pilot.log_p, dtype=torch.float64))
    l2r = left_to_right_log_likelihood(engine.denoiser, prompt.expand(4, -1), drawn.tokens).double()
    assert torch.allclose(l2r, torch.tensor(pilot.left_to_right, dtype=torch.float64), atol=1e-4)
    assert pilot.num_orders == 2
    again = draw_pilot(engine, [task], problems=1, samples=4, orders=2, seed=0, progress=False)
    assert again["arith"][0] == pilot
    cheapest = draw_problem(engine, task, problem, samples=4, orders=0, seed=0, left_to_right=False)
    assert cheapest.log_p == pilot.log_p and cheapest.left_to_right is None and cheapest.orders is None
    family = tempering_headroom({"arith": [cheapest]}, resamples=20).families[0]
    assert family.order is None and family.auc_left_to_right is None and family.auc_order_averaged is None


def test_plan_counts_rows():
    from dllm_mcmc.eval.headroom_pilot import plan_pilot

    plan = plan_pilot(256, {"math500": 60, "humaneval": 60}, samples=16, orders=4, block_length=32)
    assert plan.steps == 256 and plan.rows_per_problem == 16 * 256 * 6 and plan.forward_rows == 120 * 24_576
    assert plan_pilot(256, {"a": 60}, 16, 0, 32, left_to_right=False).rows_per_problem == 16 * 256
    assert "GPU-minutes" in plan.lines(12.6)[-1]


def test_cli_smoke(tmp_path):
    out = io.StringIO()
    path = tmp_path / "report.md"
    with contextlib.redirect_stdout(out):
        code = main(["headroom", "--problems", "2", "--samples", "4", "--orders", "1", "--no-progress",
                     "--temperatures", "0.5,1", "--out", str(path), "--forward-ms", "12.6"])
    text = out.getvalue()
    assert code == 0
    assert re.search(r"^Forward rows per problem: n·s \+ n·L \+ M·n·s = 64 \(decode\) \+ 64 \(left to right\) "
                     r"\+ 64 \(replays\) = 192; in all 768 rows\.$", text, flags=re.M)
    assert "GPU-minutes" in text
    assert text.index("Forward rows") < text.index("Pilot drawn")  # the plan comes first
    verdicts = re.findall(r"^verdict (countdown|arith): (can|cannot|unclear):", text, flags=re.M)
    assert [family for family, _ in verdicts] == ["countdown", "arith"]
    assert "### countdown" in path.read_text()


def test_cli_plan_only_and_errors(capsys):
    assert main(["headroom", "--plan", "--problems", "300", "--orders", "4"]) == 0
    assert "in all 921,600 rows" in capsys.readouterr().out
    for argv, flag in ((["--temperatures", "0.5,x"], "--temperatures"), (["--temperatures", "0"], "--temperatures"),
                       (["--orders", "-1"], "--orders"), (["--samples", "0"], "--samples")):
        assert main(["headroom", "--plan", *argv]) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("dllm-mcmc: error:") and flag in error and "\n" not in error


def test_cli_reads_a_saved_pilot(tmp_path, capsys, toy_pilot):
    from dllm_mcmc.eval.headroom_pilot import save_pilot

    path = save_pilot(tmp_path / "pilot.json", toy_pilot, {"seed": 0})
    assert main(["headroom", "--pilot", str(path), "--temperatures", "0.5"]) == 0
    assert "verdict toy:" in capsys.readouterr().out
