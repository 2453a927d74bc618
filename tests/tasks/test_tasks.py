"""Verifiable task families: determinism, disjoint splits, verifiers, parsers and the alphabet."""

import pytest

from dllm_mcmc.tasks import ALPHABET, END_MARKER, FAMILIES, SPLITS, Problem, extract_answer, get_family
from dllm_mcmc.tasks.arith import check_work
from dllm_mcmc.tasks.countdown import ExpressionError, parse_expression
from dllm_mcmc.tasks.program import MAX_SOURCE_CHARS, MAX_STATEMENTS, ProgramError, run_program

NAMES = sorted(FAMILIES)


def _sample(name, split, count, seed=0):
    return FAMILIES[name].generate(split, count, seed)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_problems_and_other_seed_differs(name):
    first = _sample(name, "train", 200, seed=3)
    assert first == _sample(name, "train", 200, seed=3)
    assert [p.prompt for p in first] != [p.prompt for p in _sample(name, "train", 200, seed=4)]


@pytest.mark.parametrize("name", NAMES)
def test_splits_are_disjoint(name):
    family = FAMILIES[name]
    if name == "program":  # sampled space: compare large samples
        train = {p.prompt for p in _sample(name, "train", 2000, seed=1)}
        validation = {p.prompt for p in _sample(name, "validation", 1000, seed=1)}
        test = {p.prompt for p in _sample(name, "test", 2000, seed=1)}
    else:  # enumerated space: compare whole splits
        train, validation, test = ({p.prompt for p in family.problem_space(s)} for s in SPLITS)
        assert len(train) >= 800 and len(test) >= 300
    assert not train & test and not train & validation and not validation & test
    # Membership is a property of the problem, so it holds for every seed.
    assert all(family.split_of(p) == "train" for p in _sample(name, "train", 300, seed=9))


@pytest.mark.parametrize("name", NAMES)
def test_test_split_has_at_least_300_distinct_problems(name):
    problems = _sample(name, "test", 300, seed=0)
    assert len({p.prompt for p in problems}) == 300


def test_enumerated_split_sizes_and_too_many_requested():
    sizes = {s: len(FAMILIES["countdown"].problem_space(s)) for s in SPLITS}
    assert sizes == {"train": 898, "validation": 129, "test": 359}
    assert sum(len(FAMILIES["arith"].problem_space(s)) for s in SPLITS) == 4838
    with pytest.raises(ValueError, match="has 359 problems"):
        FAMILIES["countdown"].generate("test", 360, seed=0)
    with pytest.raises(ValueError, match="unknown split"):
        FAMILIES["arith"].generate("dev", 1, seed=0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", SPLITS)
def test_reference_solutions_verify_and_fit_the_limits(name, split):
    family = FAMILIES[name]
    for problem in _sample(name, split, 100, seed=2):
        reference = family.reference_solution(problem)
        assert family.verify(problem, reference + END_MARKER), (problem, reference)
        assert family.verify(problem, reference)
        assert len(family.format_prompt(problem)) <= 24 and 0 < len(reference) <= 24
        text = family.training_text(problem)
        assert text == family.format_prompt(problem) + reference + END_MARKER
        assert set(text) <= set(ALPHABET), set(text) - set(ALPHABET)
        assert END_MARKER not in family.format_prompt(problem) + reference


def test_alphabet_is_small_sorted_and_exact():
    assert ALPHABET == "".join(sorted(set(ALPHABET)))
    assert ALPHABET == " *+,-.0123456789:;=>?ab"


@pytest.mark.parametrize("name", NAMES)
def test_wrong_answers_fail(name):
    family = FAMILIES[name]
    for problem in _sample(name, "test", 50, seed=5):
        reference = family.reference_solution(problem)
        last = reference[-1]
        perturbed = reference[:-1] + ("1" if last != "1" else "2")
        assert not family.verify(problem, perturbed + END_MARKER), (problem, perturbed)
        for bad in ["", END_MARKER, " ", "abc.", reference + "+", "(" + reference + ")", reference + "x"]:
            assert not family.verify(problem, bad), (problem, bad)


def test_countdown_accepts_many_answers_and_rejects_wrong_multisets():
    family = FAMILIES["countdown"]
    problem = family.make_problem((7, 3, 2), 13)
    assert problem.prompt == "2 3 7>13:" and problem.answer is None
    assert set(problem.data["solutions"]) == {"2*3+7", "3*2+7", "7+2*3", "7+3*2"}
    for answer in problem.data["solutions"]:
        assert family.verify(problem, answer + ".")
    assert not family.verify(problem, "2*2+9.")  # value ok, numbers not the given ones
    assert not family.verify(problem, "2*3+7+0.")  # extra number
    assert not family.verify(problem, "13.")  # no numbers used
    assert not family.verify(problem, "3*3+4.")  # 3 twice, 2 and 7 unused
    twice = family.make_problem((2, 2, 9), 13)
    assert family.verify(twice, "2*2+9.") and not family.verify(twice, "2*9-2*2.")
    with pytest.raises(ValueError, match="cannot be reached"):
        family.make_problem((1, 1, 1), 50)


@pytest.mark.parametrize(
    "text", ["", "3*(4+2)", "3/4", "3**4", "-3+4", "3+", "3 +4", "3+4\n", "03+4", "eval(1)", "3+-4", "1e3"]
)
def test_countdown_parser_rejects_everything_else(text):
    with pytest.raises(ExpressionError):
        parse_expression(text)


def test_countdown_parser_precedence_and_numbers():
    assert parse_expression("3*4+2") == (14, [3, 4, 2])
    assert parse_expression("2+3*4") == (14, [2, 3, 4])
    assert parse_expression("9-2-3") == (4, [9, 2, 3])
    assert parse_expression("2*3*4-1") == (23, [2, 3, 4, 1])
    with pytest.raises(ExpressionError, match="longer"):
        parse_expression("1+" * 40 + "1")


def test_arith_accepts_precedence_respecting_orders_only():
    family = FAMILIES["arith"]
    problem = family.make_problem((2, 3, 4, 5), ("*", "+", "*"))
    assert problem.prompt == "2*3+4*5=" and problem.answer == "26"
    for work in ["2*3=6,4*5=20,6+20=26", "4*5=20,2*3=6,6+20=26", "5*4=20,3*2=6,20+6=26"]:
        assert family.verify(problem, work + "."), work
    assert not family.verify(problem, "3+4=7,2*7=14,14*5=70.")  # ignores precedence
    assert not family.verify(problem, "2*3=6,4*5=20,6+20=27.")  # wrong final sum
    assert not family.verify(problem, "2*3=7,4*5=20,7+20=27.")  # wrong step, consistent chain
    assert not family.verify(problem, "2*3=6,4*5=20.")  # unfinished
    assert not family.verify(problem, "2*3=6,4*5=20,6+20=26,26+0=26.")  # extra step
    assert not family.verify(problem, "26.")  # no work shown
    minus = family.make_problem((9, 2, 3), ("-", "+"))
    assert family.verify(minus, "9-2=7,7+3=10.")
    assert not family.verify(minus, "2+3=5,9-5=4.") and not family.verify(minus, "3+2=5,9-5=4.")
    assert check_work((9, 2, 3), ("-", "-"), "9-2=7,7-3=4") == 4
    assert check_work((9, 2, 3), ("-", "-"), "2-3=-1,9--1=10") is None
    with pytest.raises(ValueError, match="negative"):
        family.make_problem((1, 9, 1), ("-", "+"))


def test_program_interpreter_runs_and_refuses_unknown_syntax():
    assert run_program("a=3;b=a+2;a=b*a;a?") == 15
    assert run_program("b=a-4;b?") == -4  # registers start at 0
    assert run_program("a?") == 0
    bad = [
        "",
        "a=3",
        "a=3;a",
        "a=3;c?",
        "c=3;a?",
        "a=3;b=a/2;b?",
        "a=3;b=a+2*2;b?",
        "a=(3);a?",
        "a=__import__('os');a?",
        "a=3;;a?",
        "a==3;a?",
        "a=03;a?",
        "a=3 ;a?",
        "a=3;a?;",
        "a=3;b=-a;b?",
    ]
    for source in bad:
        with pytest.raises(ProgramError):
            run_program(source)


def test_program_interpreter_is_bounded():
    statements = ";".join(["a=1"] * (MAX_STATEMENTS + 1)) + ";a?"
    with pytest.raises(ProgramError, match="statements"):
        run_program(statements)
    with pytest.raises(ProgramError, match="longer"):
        run_program("a=" + "1" * MAX_SOURCE_CHARS + ";a?")
    growth = "a=9999;" + ";".join(["a=a*a"] * 3) + ";a?"
    with pytest.raises(ProgramError, match="exceeds"):
        run_program(growth)


def test_program_verify_uses_the_prompt_program():
    family = FAMILIES["program"]
    problem = family.make_problem("a=3;b=a+2;a=b*a;a?")
    assert family.verify(problem, "15.") and family.verify(problem, "15")
    # The stored answer is not trusted: the prompt is interpreted again.
    forged = Problem("program", problem.prompt, "16", problem.data)
    assert not family.verify(forged, "16.") and family.verify(forged, "15.")
    for bad in ["015.", "+15.", "15;", "15,0.", "a=15.", "1 5.", "-15."]:
        assert not family.verify(problem, bad), bad
    negative = family.make_problem("b=a-4;b?")
    assert family.verify(negative, "-4.") and not family.verify(negative, "4.")


def test_extract_answer():
    assert extract_answer("2*3+7.") == "2*3+7"
    assert extract_answer("2*3+7.9.9") == "2*3+7"
    assert extract_answer(" 22 .") == "22"
    assert extract_answer("22") == "22"
    assert extract_answer("") is None
    assert extract_answer(".22") is None
    assert extract_answer("   .") is None
    family = FAMILIES["arith"]
    problem = family.make_problem((7, 5, 3), ("+", "*"))
    assert family.verify(problem, "5*3=15,7+15=22.5*5=25")  # text after the marker is ignored
    assert not family.verify(problem, "5*3=15,7+15=225")  # no marker: everything counts


def test_get_family_lists_names():
    assert get_family("arith") is FAMILIES["arith"]
    with pytest.raises(ValueError, match="arith, countdown, program"):
        get_family("sudoku")
