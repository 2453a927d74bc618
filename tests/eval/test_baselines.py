"""The selection baselines at equal compute: best-of-K by the decoder's log p and majority vote over K,
checked against a plain `decode` of the same n·K rows with the same seed; and both in the runner."""

import pytest
import torch

from dllm_mcmc.decoding import decode
from dllm_mcmc.eval.engine import load_engine
from dllm_mcmc.eval.experiment import load_config, run_experiment
from dllm_mcmc.eval.family_tasks import FamilyTask
from dllm_mcmc.eval.methods import Method, generate, generate_pack, majority_index
from dllm_mcmc.eval.records import read_records

SAMPLES, K, SEED = 3, 4, 5


@pytest.fixture(scope="module")
def engine():
    return load_engine("tasks-small")


def _candidates(engine, prompt, method, rows=None):
    """The n·K candidates of a selection method: the plain decode the method runs, same seed."""
    return decode(engine.denoiser, prompt if rows is None else rows, engine.gen_length, rule=method.decoding_rule,
                  temperature=method.temperature, num_samples=SAMPLES * K if rows is None else len(rows),
                  generator=torch.Generator().manual_seed(SEED))


def test_best_of_keeps_the_candidate_with_the_highest_log_p(engine):
    method = Method.from_config({"name": "best", "sampler": "best_of", "candidates": K, "temperature": 1.0})
    prompt = engine.encode("7+5*3=")
    generation = generate(method, engine, prompt, SAMPLES, SEED)
    trajectory = _candidates(engine, prompt, method)
    log_p = trajectory.log_p.view(SAMPLES, K)
    tokens = trajectory.tokens.view(SAMPLES, K, -1)
    for i in range(SAMPLES):
        # the same text can be decoded along several orders, with different log p: one of them is the best
        kept = [c for c in range(K) if torch.equal(tokens[i, c], generation.tokens[i])]
        assert kept and max(log_p[i, c] for c in kept) == log_p[i].max()
        assert torch.equal(generation.tokens[i], tokens[i, log_p[i].argmax()])
    assert (generation.nfe, generation.forward_rows) == (trajectory.nfe, trajectory.forward_rows)
    assert generation.forward_rows == SAMPLES * K * engine.gen_length


def test_majority_keeps_a_candidate_with_the_most_frequent_answer(engine):
    task = FamilyTask("arith")
    problem = task.problems(1)[0]
    method = Method.from_config({"name": "vote", "sampler": "majority", "candidates": K, "temperature": 1.0})
    prompt = engine.encode(task.prompt_text(problem))
    answer_of = lambda text: task.answer(problem, text)  # noqa: E731
    generation = generate(method, engine, prompt, SAMPLES, SEED, answer_of=answer_of)
    trajectory = _candidates(engine, prompt, method)
    disagreements = 0
    for i in range(SAMPLES):
        answers = [answer_of(engine.decode(trajectory.tokens[i * K + c].tolist())) for c in range(K)]
        disagreements += len(set(answers)) > 1
        kept = answer_of(engine.decode(generation.tokens[i].tolist()))
        votes = {a: answers.count(a) for a in answers if a is not None}
        assert kept == answers[majority_index(answers)]
        assert not votes or votes[kept] == max(votes.values())
        assert torch.equal(generation.tokens[i], trajectory.tokens[i * K + majority_index(answers)])
    assert disagreements  # the vote had something to decide
    with pytest.raises(ValueError, match="answer"):
        generate(method, engine, prompt, SAMPLES, SEED)


def test_majority_index_counts_answers_and_breaks_ties_by_first_occurrence():
    assert majority_index(["a", "b", "b", "a", "c"]) == 0  # tie a/b: a occurs first
    assert majority_index([None, "b", None, "c", "c"]) == 3
    assert majority_index([None, None]) == 0


@pytest.mark.parametrize("sampler", ["best_of", "majority"])
def test_selection_in_a_pack_keeps_each_prompt_candidates(engine, sampler):
    task = FamilyTask("arith")
    problems = task.problems(2)
    prompts = [engine.encode(task.prompt_text(p)) for p in problems]
    method = Method.from_config({"name": "m", "sampler": sampler, "candidates": K})
    answer_of = [lambda text, p=p: task.answer(p, text) for p in problems]
    per_unit, generation = generate_pack(method, engine, prompts, SAMPLES, SEED, answer_of)
    rows = [p for p in prompts for _ in range(SAMPLES * K)]
    trajectory = _candidates(engine, None, method, rows=rows)
    assert [t.shape[0] for t in per_unit] == [SAMPLES, SAMPLES]
    assert generation.forward_rows == trajectory.forward_rows == 2 * SAMPLES * K * engine.gen_length
    for u, tokens in enumerate(per_unit):
        for i in range(SAMPLES):
            first = (u * SAMPLES + i) * K
            group = trajectory.tokens[first:first + K]
            assert any(torch.equal(tokens[i], c) for c in group)  # kept from its own prompt's K
            if sampler == "best_of":
                assert torch.equal(tokens[i], group[trajectory.log_p[first:first + K].argmax()])


def test_selection_methods_validate_their_options():
    with pytest.raises(ValueError, match="candidates"):
        Method.from_config({"name": "b", "sampler": "best_of", "candidates": 0})
    with pytest.raises(ValueError, match="warmup"):
        Method.from_config({"name": "b", "sampler": "majority", "proposal_batch": 2, "warmup": -1})
    with pytest.raises(ValueError, match="proposal_batch"):
        Method.from_config({"name": "b", "sampler": "majority", "proposal_batch": 2})
    method = Method.from_config({"name": "b", "sampler": "best_of"})
    assert method.candidates == 8 and "warmup" not in method.spec()


def test_run_experiment_with_both_baselines_writes_records(tmp_path):
    path = tmp_path / "baselines.toml"
    path.write_text("""
model = "tasks-small"
samples = 2
problems = 2
seed = 1
tasks = ["arith"]

[[methods]]
name = "best-of-3"
sampler = "best_of"
candidates = 3

[[methods]]
name = "majority-3"
sampler = "majority"
candidates = 3
rule = "egi"
""")
    config = load_config(path, {"output": str(tmp_path / "r.jsonl")})
    run_experiment(config, progress=False)
    records = read_records(tmp_path / "r.jsonl")
    assert sorted({r["method"] for r in records}) == ["best-of-3", "majority-3"]
    assert len(records) == 2 * 2 * 2
    assert all(r["forward_rows"] == 3 * 16 and r["nfe"] == 16 for r in records)  # K·s rows per kept sample
