"""The lm-evaluation-harness model ``dllm-mcmc`` end to end, offline, on the bundled model.

Two tiny generation tasks (tests/data/lm_eval/): six arith problems of the bundled task family, graded by
``exact_match`` against the reference work, and the same problems with ``repeats: 4`` graded by the
family's verifier as unbiased pass@1 / pass@4. The runs are shared per module (lm-eval's import and the
task loading cost more than the draws).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
import datasets.config
import lm_eval
from lm_eval.api.registry import get_model
from lm_eval.tasks import TaskManager

import dllm_mcmc.lm_eval_model as lm_eval_model
from dllm_mcmc import cli
from dllm_mcmc.lm_eval_model import NO_LIKELIHOOD, DllmMcmcLM

DATA = Path(__file__).parent / "data" / "lm_eval"
REPO = Path(__file__).resolve().parents[1]
QUESTIONS = [json.loads(line)["question"] for line in (DATA / "arith.jsonl").read_text().splitlines()]
IMH = "pretrained=tasks-small,sampler=imh,target_temperature=0.5,warmup=2,batch_size=3"
CONFIDENCE = "pretrained=tasks-small,rule=confidence,temperature=0.5,seed=3,batch_size=2,device=cpu"


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """No network, the datasets cache in a temporary folder, and the task folder as working directory (the
    task's data_files are relative to it)."""
    patch = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("hf-datasets")
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        patch.setenv(name, "1")
        patch.setattr(datasets.config, name, True)
    patch.setenv("HF_DATASETS_CACHE", str(cache))
    patch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    patch.chdir(DATA)
    yield cache
    patch.undo()


def evaluate(model_args: str, tasks: list[str]) -> dict:
    return lm_eval.simple_evaluate(model="dllm-mcmc", model_args=model_args, tasks=tasks, log_samples=True,
                                   task_manager=TaskManager(include_path=str(DATA), include_defaults=False))


def responses(results: dict, task: str) -> dict[str, list[str]]:
    """question -> the request's completions (all ``n`` of them)."""
    return {s["doc"]["question"]: s["resps"][0] for s in sorted(results["samples"][task], key=lambda s: s["doc_id"])}


@pytest.fixture(scope="module")
def imh_run(offline):
    """IMH towards p^(1/T), both tasks, 3 prompts per batched run; every generate_pack call recorded."""
    calls = []
    real = lm_eval_model.generate_pack

    def spy(method, engine, prompts, samples, seed, answer_of=None):
        calls.append((len(prompts), samples, engine.gen_length))
        return real(method, engine, prompts, samples, seed, answer_of)

    patch = pytest.MonkeyPatch()
    patch.setattr(lm_eval_model, "generate_pack", spy)
    try:
        results = evaluate(IMH, ["dllm_arith", "dllm_arith_pass"])
    finally:
        patch.undo()
    return results, calls


@pytest.fixture(scope="module")
def confidence_run(offline):
    return evaluate(CONFIDENCE, ["dllm_arith"])


def test_the_model_is_registered_beside_lm_evals_own():
    assert get_model("dllm-mcmc") is DllmMcmcLM
    assert get_model("dummy").__name__ == "DummyLM"  # lm-eval's own models still load
    lm_eval_model.register()  # again: harmless
    assert get_model("dllm-mcmc") is DllmMcmcLM


def test_imh_run_reports_the_metrics(imh_run):
    results, _ = imh_run
    assert set(results["results"]["dllm_arith"]) >= {"exact_match,none"}
    assert 0 <= results["results"]["dllm_arith"]["exact_match,none"] <= 1
    passk = results["results"]["dllm_arith_pass"]
    assert 0 <= passk["pass@1,all"] <= passk["pass@4,all"] <= 1
    method = results["config"]["dllm_mcmc_method"]
    assert (method["sampler"], method["target_temperature"], method["warmup"]) == ("imh", 0.5, 2)


def test_outputs_respect_until(imh_run, confidence_run):
    for results, task in ((imh_run[0], "dllm_arith"), (imh_run[0], "dllm_arith_pass"),
                          (confidence_run, "dllm_arith")):
        completions = [text for texts in responses(results, task).values() for text in texts]
        assert completions and all("." not in text for text in completions)
        assert all(text and text[0].isdigit() for text in completions)  # work, cut before the stop


def test_repeats_are_n_samples_of_one_batched_run(imh_run):
    results, calls = imh_run
    # 6 problems, 3 per run: 2 runs of one sample each (dllm_arith), 2 runs of 4 samples (repeats: 4)
    assert sorted(calls) == [(3, 1, 16), (3, 1, 16), (3, 4, 16), (3, 4, 16)]
    samples = responses(results, "dllm_arith_pass")
    assert list(samples) == QUESTIONS and all(len(texts) == 4 for texts in samples.values())
    assert any(len(set(texts)) > 1 for texts in samples.values())  # distinct draws, not one repeated


def test_plain_confidence_decoding(confidence_run):
    assert confidence_run["results"]["dllm_arith"]["exact_match,none"] >= 0.5
    assert confidence_run["config"]["dllm_mcmc_method"]["rule"] == "confidence"


def test_the_same_seed_gives_the_same_outputs(imh_run, offline):
    again = evaluate(IMH, ["dllm_arith_pass"])
    assert responses(again, "dllm_arith_pass") == responses(imh_run[0], "dllm_arith_pass")
    other = evaluate(IMH + ",seed=1", ["dllm_arith_pass"])
    assert responses(other, "dllm_arith_pass") != responses(imh_run[0], "dllm_arith_pass")


@pytest.mark.parametrize(("args", "key"), [
    ("temprature=0.3", "temprature"),
    ("sampler=imh,block_lenght=4", "block_lenght"),
    ("sampler=decode,proposal_batch=4", "proposal_batch"),
    ("sampler=mystery", "sampler"),
    ("sampler=imh,warmup=-1", "warmup"),
    ("temperature=0", "temperature"),
    ("sampler=imh,rule=confidence", "confidence"),
    ("gen_length=0", "gen_length"),
    ("batch_size=many", "batch_size"),
    ("dtype=bfloat16", "dtype"),
])
def test_bad_model_args_name_the_key(args, key):
    """What lm-eval does with ``--model_args`` (a string; the command line hands over a dict)."""
    with pytest.raises(ValueError, match=key):
        get_model("dllm-mcmc").create_from_arg_string(f"pretrained=tasks-small,{args}", {"batch_size": None})
    as_dict = dict(item.split("=") for item in args.split(","))
    with pytest.raises(ValueError, match=key):
        get_model("dllm-mcmc").create_from_arg_obj({"pretrained": "tasks-small", **as_dict})


def test_a_bad_key_stops_simple_evaluate_before_any_draw(offline):
    with pytest.raises(ValueError, match="temprature is not a key of dllm-mcmc"):
        evaluate("pretrained=tasks-small,temprature=0.3", ["dllm_arith"])


@pytest.mark.parametrize("args", [
    {"rule": "wedlm"},
    {"rule": "stochastic", "tokens_per_step": "2"},
    {"sampler": "best_of", "candidates": "2"},
    {"sampler": "majority", "candidates": "3"},
    {"sampler": "particles"},
    {"sampler": "smc", "num_particles": 2},
    {"sampler": "power", "warmup": "1"},
    {"sampler": "stepwise", "num_candidates": "2"},
    {"sampler": "pgibbs", "warmup": "1", "num_particles": "2"},
    {"sampler": "imh", "rule": "entropy", "block_length": "4", "warmup": "1", "proposal_batch": "2"},
], ids=lambda args: ",".join(f"{k}={v}" for k, v in args.items()))
def test_every_sampler_answers_requests(args):
    """generate_until called as lm-eval calls it: 3 problems, each request twice (repeats: 2)."""
    from lm_eval.api.instance import Instance

    requests = []
    for doc_id, question in enumerate(QUESTIONS[:3]):
        request = Instance("generate_until", {}, (question, {"until": ["."], "max_gen_toks": 16}), 0,
                           ("t", doc_id, 2))
        requests += [request, request]
    lm = DllmMcmcLM(pretrained="tasks-small", batch_size=2, device="cpu", **args)
    completions = lm.generate_until(requests, disable_tqdm=True)
    assert len(completions) == 6 and all(text[:1].isdigit() and "." not in text for text in completions)


def test_loglikelihood_is_refused_with_the_reason():
    lm = DllmMcmcLM(pretrained="tasks-small", rule="confidence")
    for request in (lm.loglikelihood, lm.loglikelihood_rolling):
        with pytest.raises(NotImplementedError, match="no exact log-likelihood"):
            request([])
    assert "generate_until" in NO_LIKELIHOOD


def test_response_length_precedence():
    lm = DllmMcmcLM(pretrained="tasks-small", device="cpu", threads="1")
    assert lm.response_length({"max_gen_toks": 8}) == 16  # the bundled model's trained canvas
    lm = DllmMcmcLM(pretrained="tasks-small", gen_length="12", device="cpu")
    assert lm.response_length({"max_gen_toks": 8}) == 12
    lm.codec = lm.codec.__class__(lm.codec.encode, lm.codec.decode)  # a model with no length of its own
    assert lm.response_length({"max_gen_toks": 8}) == 12
    lm.gen_length = None
    assert (lm.response_length({"max_new_tokens": 8}), lm.response_length({})) == (8, 256)


def test_lm_evals_batch_size_and_device_yield_to_model_args():
    lm = get_model("dllm-mcmc").create_from_arg_string("pretrained=tasks-small", {"batch_size": 4, "device": "cpu"})
    assert (lm.batch_size, lm.device.type) == (4, "cpu")
    lm = get_model("dllm-mcmc").create_from_arg_obj({"pretrained": "tasks-small", "batch_size": "auto"},
                                                    {"batch_size": 1, "max_batch_size": 8, "device": "cpu"})
    assert (lm.batch_size, lm.max_batch_size) == ("auto", 8)


def test_command_line(confidence_run, offline, tmp_path):
    """``python -m dllm_mcmc lm-eval`` (what the ``dllm-mcmc`` script runs) in a fresh process: the same
    outputs as the in-process run with the same model_args (whose batch_size and device win over the ones
    lm-eval's command line always passes)."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "HF_DATASETS_CACHE": str(offline), "PYTHONPATH": str(REPO)}
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "dllm_mcmc", "lm-eval", "--model", "dllm-mcmc", "--model_args",
                           CONFIDENCE, "--tasks", "dllm_arith", "--include_path", str(DATA), "--output_path",
                           str(out), "--log_samples"], cwd=DATA, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exact_match" in done.stdout and "dllm_arith" in done.stdout
    [samples_file] = out.rglob("samples_dllm_arith_*.jsonl")
    logged = {s["doc"]["question"]: s["resps"][0] for s in map(json.loads, samples_file.read_text().splitlines())}
    assert logged == responses(confidence_run, "dllm_arith")


def test_python_m_entry_registers_the_model():
    done = subprocess.run([sys.executable, "-m", "dllm_mcmc.lm_eval_model", "run", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--model_args" in done.stdout


def test_cli_reports_a_user_error_in_one_line(monkeypatch, capsys):
    def fail(argv):
        assert argv == ["--model", "dllm-mcmc", "--model_args", "pretrained=tasks-small,temprature=1"]
        raise ValueError("model_args: temprature is not a key of dllm-mcmc")

    monkeypatch.setattr(lm_eval_model, "main", fail)
    argv = sys.argv
    assert cli.main(["lm-eval", "--model", "dllm-mcmc", "--model_args", "pretrained=tasks-small,temprature=1"]) == 2
    assert sys.argv == argv
    assert capsys.readouterr().err.strip() == "dllm-mcmc: error: model_args: temprature is not a key of dllm-mcmc"
    with pytest.raises(ValueError, match="temprature"):
        cli.main(["--debug", "lm-eval", "--model", "dllm-mcmc", "--model_args", "pretrained=tasks-small,temprature=1"])


def test_a_native_checkpoint_with_prompts_of_different_lengths(offline, tmp_path, caplog):
    """A tiny random LLaDA directory (tests/native_fixtures.py) through an lm-eval model instance, with
    lm-eval's chat template: prompts of 4 lengths in one batched run, the canvas from max_gen_toks."""
    from native_fixtures import checkpoint

    folder, _ = checkpoint(tmp_path, "llada")
    lm = DllmMcmcLM(pretrained=str(folder), sampler="imh", temperature=1.0, target_temperature=1.0, warmup=1,
                    batch_size="auto", device="cpu")
    calls = []
    real = lm_eval_model.generate_pack

    def spy(method, engine, prompts, samples, seed, answer_of=None):
        calls.append(([int(p.shape[-1]) for p in prompts], samples, engine.gen_length))
        return real(method, engine, prompts, samples, seed, answer_of)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lm_eval_model, "generate_pack", spy)
        results = lm_eval.simple_evaluate(model=lm, tasks=["dllm_letters"], apply_chat_template=True,
                                          log_samples=True, task_manager=TaskManager(include_path=str(DATA),
                                                                                     include_defaults=False))
    [(lengths, samples, gen_length)] = calls
    assert len(set(lengths)) == 4 and (samples, gen_length) == (2, 8)
    assert lengths == sorted(lengths, reverse=True)  # longest first
    logged = results["samples"]["dllm_letters"]
    assert all(s["arguments"][0][0].startswith("<u>") for s in logged), logged[0]["arguments"]  # the template
    completions = [text for s in logged for text in s["resps"][0]]
    assert len(completions) == 8 and all("a" not in text and len(text) <= 8 for text in completions)
    assert "do_sample, temperature ignored" in caplog.text
