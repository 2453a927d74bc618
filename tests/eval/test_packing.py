"""Packed units: several problems of a task drawn by one batched run, resumable, refused when mixed."""

import json

import pytest
import torch

from dllm_mcmc.decoding import decode
from dllm_mcmc.eval.engine import load_engine
from dllm_mcmc.eval.experiment import load_config, run_experiment
from dllm_mcmc.eval.records import read_records

CONFIG = """
model = "tasks-small"
samples = 3
problems = 3
seed = 5
pack = 2
tasks = ["arith"]

[[methods]]
name = "random"

[[methods]]
name = "imh"
sampler = "imh"
warmup = 1
proposal_batch = 2
"""


def key(record):
    return record["unit"], record["sample"]


def strip(records):
    return sorted((key(r), {k: v for k, v in r.items() if k != "seconds"}) for r in records)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "eval.toml"
    path.write_text(CONFIG)
    return load_config(path, {"output": str(tmp_path / "packed.jsonl")})


def test_packs_cover_every_unit_and_share_one_run(config):
    summary = run_experiment(config, progress=False)
    assert summary.ran == 6  # 3 problems x 2 methods, in packs of [p0, p1] and [p2]
    records = [r for r in read_records(config["output"])]
    assert len(records) == 6 * 3 and len({key(r) for r in records}) == 18
    random = [r for r in records if r["method"] == "random"]
    packs = {json.dumps(r.get("pack")) for r in random}
    assert len(packs) == 2 and any(r.get("pack") is None for r in random)  # the last group has one problem
    first_pack = [r for r in random if r.get("pack")]
    assert len({r["seed"] for r in first_pack}) == 1 and len({r["problem"] for r in first_pack}) == 2
    # one batched decode of 2 problems x 3 samples: 6 rows per step, the cost shared by the 6 samples
    assert all(r["nfe"] == 16 and r["forward_rows"] == 16 for r in first_pack)
    assert run_experiment(config, progress=False).ran == 0  # nothing left


def test_packed_decode_equals_the_batched_library_call(config):
    run_experiment(config, progress=False)
    engine = load_engine("tasks-small")
    first = [r for r in read_records(config["output"]) if r["method"] == "random" and r.get("pack")]
    problems = first[0]["pack"]
    from dllm_mcmc.eval.experiment import load_task

    task = load_task("arith")
    by_id = {p.id: p for p in task.problems(3)}
    prompts = [engine.encode(task.prompt_text(by_id[i])) for i in problems for _ in range(3)]
    traj = decode(engine.denoiser, prompts, engine.gen_length, rule="random", temperature=0.5, num_samples=6,
                  generator=torch.Generator().manual_seed(first[0]["seed"]))
    expected = [engine.decode(row.tolist()) for row in traj.tokens]
    got = [r["completion"] for r in sorted(first, key=lambda r: (problems.index(r["problem"]), r["sample"]))]
    assert got == expected


def test_a_missing_unit_of_a_pack_is_redrawn_identically(config, tmp_path):
    run_experiment(config, progress=False)
    full = read_records(config["output"])
    victim = next(r["unit"] for r in full if r["method"] == "imh" and r.get("pack"))
    kept = [line for line in open(config["output"], encoding="utf-8") if json.loads(line).get("unit") != victim]
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(kept))
    summary = run_experiment({**config, "output": str(partial)}, progress=False)
    assert summary.ran == 1 and summary.skipped == 5
    assert strip(read_records(partial)) == strip(full)


def test_pack_and_problem_count_are_part_of_the_settings(config):
    run_experiment(config, progress=False)
    before = open(config["output"], "rb").read()
    for change in ({"pack": 3}, {"problems": 2}, {"pack": None}):
        with pytest.raises(ValueError, match="other settings"):
            run_experiment({**config, **change}, progress=False)
    assert open(config["output"], "rb").read() == before


def test_bad_pack_is_refused(config):
    with pytest.raises(ValueError, match="pack must be a positive integer, got 0"):
        run_experiment({**config, "pack": 0}, progress=False)


def test_prompts_of_different_lengths_are_packed_with_padding(config, tmp_path):
    """A tiny BERT with a character tokenizer: countdown prompts differ in length; a pack left-pads them."""
    from hf_fixtures import char_tokenizer, tiny_model

    tokenizer = char_tokenizer()
    model_dir = tmp_path / "bert"
    tiny_model("bert", len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    engine = load_engine(str(model_dir), gen_length=4)
    from dllm_mcmc.eval.experiment import load_task

    task = load_task("countdown")
    lengths = {len(engine.encode(task.prompt_text(p))) for p in task.problems(3)[:2]}
    packed = {**config, "model": str(model_dir), "gen_length": 4, "tasks": ["countdown"],
              "output": str(tmp_path / "bert.jsonl")}
    assert run_experiment(packed, progress=False).ran == 6
    records = read_records(packed["output"])
    assert len(records) == 18 and all(isinstance(r["completion"], str) for r in records)
    assert len(lengths) == 2, lengths  # the first pack really mixes two prompt lengths
