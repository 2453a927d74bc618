"""Answer extraction (`dllm_mcmc.eval.checking.extract`) and the AIME integer check: pure string work."""

import pytest

from dllm_mcmc.eval.checking.checkers import check_integer, integer_value
from dllm_mcmc.eval.checking.extract import fenced_blocks, fenced_code, last_boxed, last_number, math_answer


@pytest.mark.parametrize("text, expected", [
    (r"\boxed{5}", "5"),
    (r"so \boxed{ 12 } .", "12"),
    (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}"),
    (r"first \boxed{1} then \boxed{2}", "2"),
    (r"\fbox{x+1}", "x+1"),
    (r"\boxed{1} and \fbox{2}", "2"),
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),                    # escaped braces are not grouping
    (r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    (r"\boxed{a \\}", r"a \\"),                              # \\ is a line break, then a real }
    (r"\boxed {7}", "7"),
    (r"The answer is $\boxed 5$.", "5"),                   # TeX's unbraced argument
    (r"\boxed{3} but later \boxed{4", "3"),                 # a cut-off box yields to the complete one
    (r"\boxedsomething{3}", None),
    (r"\boxed{", None),
    ("no box at all", None),
])
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("The answer is 42.", "42"),
    ("It costs 1,000,000 dollars", "1000000"),
    ("values 1,2,3", "3"),
    ("x = -7", "-7"),
    ("7-5", "5"),
    ("f(x)-3", "3"),
    ("between 2 and 3.25, roughly", "3.25"),
    ("about .5", ".5"),
    ("ratio 3/4", "3/4"),
    ("ratio -3 / 4", "-3/4"),
    (r"so it is \frac{5}{12}", "5/12"),
    (r"so it is -\dfrac{5}{12}", "-5/12"),
    ("version 2 of 10 items", "10"),
    ("nothing numeric", None),
    ("", None),
])
def test_last_number(text, expected):
    assert last_number(text) == expected


def test_math_answer_prefers_the_box_and_falls_back_to_the_last_number():
    assert math_answer(r"we get 3, so \boxed{4} (not 5)") == "4"
    assert math_answer("so the total is 17 apples") == "17"
    assert math_answer(r"an empty \boxed{} then 8") == "8"
    assert math_answer("no idea") is None


RESPONSE = """Here is my solution:
```python
def add(a, b):
    return a + b
```
Example usage:
```python
print(add(1, 2))
```
And the shell:
```bash
python add.py
```
"""


def test_fenced_code_picks_last_or_first_python_block():
    assert fenced_code(RESPONSE) == "print(add(1, 2))\n"
    assert fenced_code(RESPONSE, pick="first") == "def add(a, b):\n    return a + b\n"
    assert fenced_blocks(RESPONSE) == ["def add(a, b):\n    return a + b\n", "print(add(1, 2))\n"]
    assert fenced_blocks(RESPONSE, language=None)[-1] == "python add.py\n"
    assert fenced_code(RESPONSE, language="bash") == "python add.py\n"
    with pytest.raises(ValueError):
        fenced_code(RESPONSE, pick="middle")


@pytest.mark.parametrize("info", ["", "python", "py", "Python3", "py3", "python title=x.py"])
def test_python_info_strings(info):
    assert fenced_code(f"```{info}\nx = 1\n```") == "x = 1\n"


def test_fenced_code_edge_cases():
    assert fenced_code("no code here") is None
    assert fenced_code("```javascript\nlet x = 1;\n```") is None
    # A decode that stops before the closing fence: take the rest.
    assert fenced_code("```python\ndef f():\n    return 1") == "def f():\n    return 1"
    assert fenced_code("```python\na = 1\n```\n```python\nb = 2\n") == "b = 2\n"
    # Fences glued to text, as a diffusion model writes them.
    assert fenced_code("Sure:```python\nx = 2\nreturn x```done") == "x = 2\nreturn x"
    # A longer fence may hold a shorter one.
    assert fenced_code("````python\ns = '```'\n````") == "s = '```'\n"


@pytest.mark.parametrize("answer, reference, expected", [
    ("204", 204, True),
    ("0204", "204", True),
    (r"\boxed{033}", "33", True),
    ("$\\boxed{ 33 }$", 33, True),
    ("1,000", 1000, True),
    (r"1{,}000", "1000", True),
    (r"\text{ 25 }", "25", True),
    ("25.0", "25", True),
    ("25.5", "25", False),
    ("-4", "-4", True),
    ("3/4", "3/4", False),
    ("x", "5", False),
    (None, "5", False),
    ("5", None, False),
    (True, 1, False),
    (7, 7.0, True),
])
def test_check_integer(answer, reference, expected):
    assert check_integer(answer, reference) is expected


def test_integer_value():
    assert integer_value("  007 ") == 7
    assert integer_value(r"1\,234") == 1234
    assert integer_value(2.5) is None
