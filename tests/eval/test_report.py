"""The report's curves, paired differences against baselines and plots (`dllm_mcmc.eval.report`,
`dllm_mcmc.eval.paired`), on records made here with known per-problem scores."""

import json

import pytest
import torch

from dllm_mcmc.cli import main
from dllm_mcmc.eval.experiment import load_config
from dllm_mcmc.eval.paired import correct_counts, paired_difference
from dllm_mcmc.eval.passk import bootstrap_interval, per_problem_pass_at_k
from dllm_mcmc.eval.report import build_report, curve_of, write_report


def records_of(task: str, method: str, correct_per_problem: list[int], samples: int = 4) -> list[dict]:
    """``samples`` records per problem ``p0, p1, ...``, the first ``correct_per_problem[i]`` of them correct."""
    return [{"task": task, "method": method, "problem": f"p{i}", "sample": s, "unit": f"{method}/{task}/p{i}",
             "correct": s < c, "answer": str(s < c), "nfe": 4, "forward_rows": 4, "seconds": 0.01}
            for i, c in enumerate(correct_per_problem) for s in range(samples)]


def append_records(path, records: list[dict]) -> None:
    with open(path, "a") as file:
        file.writelines(json.dumps(record) + "\n" for record in records)


def difficulty(problems: int, seed: int) -> list[int]:
    """Correct counts out of 4 that vary a lot from problem to problem (easy and hard problems)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, (problems,), generator=generator).tolist()


def test_curve_of_reads_the_swept_temperature_from_the_name():
    assert curve_of("random-t0.3") == ("random", "τ", 0.3)
    assert curve_of("imh8-T0.25") == ("imh8", "T", 0.25)
    assert curve_of("best-of-8") == ("best-of-8", "", None)
    assert curve_of("confidence") == ("confidence", "", None)


def test_paired_difference_resamples_problems_jointly():
    """The estimate is the mean per-problem difference, and its interval is the percentile bootstrap of the
    per-problem differences, i.e. both methods resampled on the same problems: recomputed here by an
    explicit loop with the same generator."""
    base = difficulty(60, seed=1)
    better = [min(4, c + (i % 3 == 0)) for i, c in enumerate(base)]
    records = records_of("t", "a", better) + records_of("t", "b", base)
    difference = paired_difference(records, "t", "a", "b", k=1, resamples=500, seed=3)
    a = per_problem_pass_at_k([4] * 60, better, 1)
    b = per_problem_pass_at_k([4] * 60, base, 1)
    generator = torch.Generator().manual_seed(3)
    picks = torch.randint(0, 60, (500, 60), generator=generator)
    means = (torch.tensor(a, dtype=torch.float64)[picks] - torch.tensor(b, dtype=torch.float64)[picks]).mean(-1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    assert difference.estimate.mean == pytest.approx(sum(a) / 60 - sum(b) / 60)
    assert (difference.estimate.low, difference.estimate.high) == pytest.approx((low, high))
    assert difference.problems == 60 and difference.excludes_zero and str(difference).startswith("+0.")


def test_pairing_is_narrower_than_the_unpaired_intervals_when_problems_differ_in_difficulty():
    """Problem difficulty dominates the spread; a constant small gain shows only when paired."""
    base = difficulty(80, seed=2)
    better = [min(4, c + 1) if i % 2 == 0 else c for i, c in enumerate(base)]
    records = records_of("t", "a", better) + records_of("t", "b", base)
    paired = paired_difference(records, "t", "a", "b", k=1, seed=0).estimate
    unpaired_a = bootstrap_interval(per_problem_pass_at_k([4] * 80, better, 1))
    unpaired_b = bootstrap_interval(per_problem_pass_at_k([4] * 80, base, 1))
    assert paired.high - paired.low < 0.5 * (unpaired_a.high - unpaired_a.low)
    assert paired.low > 0  # the gain is measured ...
    assert unpaired_a.low < unpaired_b.high  # ... where the unpaired intervals overlap


def test_identical_methods_differ_by_exactly_zero():
    base = difficulty(20, seed=4)
    records = records_of("t", "a", base) + records_of("t", "b", base)
    difference = paired_difference(records, "t", "a", "b", k=4)
    assert (difference.estimate.mean, difference.estimate.low, difference.estimate.high) == (0.0, 0.0, 0.0)
    assert not difference.excludes_zero


def test_pairs_only_the_common_problems():
    """A costly method run on the first 10 of a cheap method's 30 problems is compared on those 10."""
    cheap, costly = difficulty(30, seed=5), difficulty(10, seed=6)
    records = records_of("t", "cheap", cheap) + records_of("t", "costly", costly)
    difference = paired_difference(records, "t", "costly", "cheap", k=1)
    assert difference.problems == 10
    expected = (sum(costly) - sum(cheap[:10])) / 40
    assert difference.estimate.mean == pytest.approx(expected)
    assert correct_counts(records, "t", "costly")["p3"] == (4, costly[3])


def test_paired_difference_refuses_what_cannot_be_paired():
    records = records_of("t", "a", [1, 2]) + [dict(r, problem="q" + r["problem"]) for r in records_of("t", "b", [1])]
    with pytest.raises(ValueError, match="share no problem"):
        paired_difference(records, "t", "a", "b", k=1)
    with pytest.raises(ValueError, match="no records of 'c'"):
        paired_difference(records, "t", "a", "c", k=1)
    with pytest.raises(ValueError, match="pass@8 needs at least 8"):
        paired_difference(records + records_of("t", "c", [1, 1]), "t", "a", "c", k=8)


def test_report_compares_every_method_with_each_baseline(tmp_path):
    base = difficulty(40, seed=7)
    worse = [max(0, c - 2) for c in base]
    records = []
    for task in ("x", "y"):
        records += records_of(task, "base", base) + records_of(task, "worse", worse) + records_of(task, "same", base)
    report = build_report(records, resamples=300, baselines=["base"])
    pairs = {(d.task, d.method, d.k): d for task in report.paired for d in report.paired[task]}
    assert set(pairs) == {(t, m, k) for t in ("x", "y") for m in ("worse", "same") for k in (1, 4)}
    assert pairs["x", "worse", 1].estimate.high < 0 and pairs["x", "same", 4].estimate.mean == 0.0
    text = report.markdown()
    assert "Against **base**" in text and "▼" in text
    with pytest.raises(ValueError, match="baseline 'nope' not in the records"):
        build_report(records, resamples=10, baselines=["nope"])
    results = tmp_path / "results.jsonl"
    append_records(results, records)
    out = write_report(results, tmp_path / "report", baselines=["base"])
    written = sorted(p.name for p in out.parent.iterdir())
    assert written == ["compute.png", "frontier.png", "paired.png", "passk.png", "report.md"]
    assert "![paired](paired.png)" in out.read_text()


def test_report_command_takes_baselines(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    append_records(results, records_of("t", "random-t0.5", [1, 3, 2]) + records_of("t", "random-t1.0", [2, 4, 2])
                   + records_of("t", "base", [1, 1, 1]))
    assert main(["report", str(results), "--out", str(tmp_path / "r"), "--baseline", "base"]) == 0
    assert "Against **base**" in capsys.readouterr().out
    assert main(["report", str(results), "--out", str(tmp_path / "r"), "--baseline", "nope"]) == 2


def test_config_baselines_are_checked(tmp_path):
    config = tmp_path / "c.toml"
    table = 'model = "tasks-small"\ntasks = ["arith"]\n[[methods]]\nname = "a"\n'
    config.write_text(table)
    assert load_config(config)["baselines"] == []
    for bad, message in (('"a"', "baselines must be a list"), ('["a", "a"]', "given more than once")):
        config.write_text(f"baselines = {bad}\n" + table)
        with pytest.raises(ValueError, match=message):
            load_config(config)


def test_paired_table_with_fewer_samples_on_one_method():
    """A method with 2 samples per problem is paired at Pass@2 against a baseline with 4 (not at Pass@4)."""
    records = (records_of("t", "base", [1, 3, 2]) + records_of("t", "short", [1, 2, 0], samples=2)
               + records_of("t", "other", [0, 4, 2]))
    report = build_report(records, resamples=50, baselines=["base"])
    assert sorted((d.method, d.k) for d in report.paired["t"]) == [("other", 1), ("other", 4), ("short", 1),
                                                                  ("short", 2)]
    text = report.markdown()
    assert "| Δ Pass@1 | Δ Pass@4 |" in text and "(Pass@2)" in text


def test_the_front_leaves_out_methods_run_on_fewer_problems():
    """A method that looks best on a subset of the problems is not put on the front of the full set."""
    records = (records_of("t", "a", [2, 2, 2, 2]) + records_of("t", "b", [1, 3, 1, 3])
               + records_of("t", "subset", [4, 4]))
    report = build_report(records, resamples=20)
    assert {r.method: r.on_front for r in report.scores["t"]} == {"a": True, "b": True, "subset": False}
    assert "taken among the methods run on all 4 problems" in report.markdown()
