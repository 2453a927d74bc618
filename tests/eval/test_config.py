"""Bad config input is refused when the config is read, with a message naming the field and the value."""

import pytest

from dllm_mcmc.cli import main
from dllm_mcmc.eval.experiment import load_config
from dllm_mcmc.eval.methods import Method

HEAD = 'model = "tasks-small"\nsamples = 2\n'
TASKS = 'tasks = ["arith"]\n'
METHOD = '[[methods]]\nname = "random"\n'


def load_toml(tmp_path, text):
    path = tmp_path / "eval.toml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize("text, message", [
    (HEAD + "problems = -1\n" + TASKS + METHOD, "problems must be a positive integer, got -1"),
    (HEAD + "problems = 0\n" + TASKS + METHOD, "problems must be a positive integer, got 0"),
    (HEAD + "gen_length = 0\n" + TASKS + METHOD, "gen_length must be a positive integer, got 0"),
    (HEAD + 'seed = "x"\n' + TASKS + METHOD, "seed must be a non-negative integer, got 'x'"),
    (HEAD + "seed = 1.5\n" + TASKS + METHOD, "seed must be a non-negative integer, got 1.5"),
    ('model = "tasks-small"\nsamples = true\n' + TASKS + METHOD, "samples must be a positive integer, got True"),
    (HEAD + 'tasks = "arith"\n' + METHOD, "tasks must be a list of task names, got 'arith'"),
    (HEAD + 'tasks = ["arith", 3]\n' + METHOD, r"tasks must be a list of task names, got \['arith', 3\]"),
    (HEAD + 'tasks = ["arith", "arith"]\n' + METHOD, "tasks 'arith' is given more than once"),
    (HEAD + TASKS + '[methods]\nname = "random"\n',
     r"methods must be a list of tables .*got a table \{'name': 'random'\} \(\[methods\] for \[\[methods\]\]\?\)"),
    (HEAD + TASKS + 'methods = ["random"]\n', r"methods must be a list of tables .*got \['random'\]"),
    (HEAD + TASKS + "[[methods]]\nname = 5\n", r"methods\[0\].name must be a non-empty string, got 5"),
    (HEAD + TASKS + '[[methods]]\nname = ""\n', r"methods\[0\].name must be a non-empty string, got ''"),
    (HEAD + TASKS + '[[methods]]\nrule = "random"\n', r"methods\[0\] needs a name"),
    (HEAD + TASKS + METHOD + METHOD, "methods: name 'random' is given more than once"),
    (HEAD + TASKS + METHOD + "temperature = 0\n", "method 'random': temperature must be a finite number > 0, got 0"),
    (HEAD + TASKS + METHOD + "sampler = 3\n", "method 'random': sampler must be a sampler's name, got 3"),
    (HEAD + TASKS + METHOD + "warmup = -1\n", "method 'random': warmup must be a non-negative integer, got -1"),
    (HEAD + TASKS + METHOD + "num_candidates = 3\n",
     "method 'random': num_candidates is not an option of sampler 'decode'"),
    ('model = 5\nsamples = 2\n' + TASKS + METHOD, "model must be a bundled model name or a model directory, got 5"),
    (HEAD + 'output = ""\n' + TASKS + METHOD, "output must be a file path, got ''"),
    (HEAD + 'output = 3\n' + TASKS + METHOD, "output must be a file path, got 3"),
    (HEAD + "model_options = 3\n" + TASKS + METHOD, "model_options must be a table, got 3"),
    (HEAD + TASKS + "[task_paths]\narith = 3\n" + METHOD, "task_paths.arith must be a file path, got 3"),
    (HEAD + TASKS + METHOD + "samples = ", r"config .*eval.toml: "),
])
def test_bad_fields_are_named_with_their_value(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_toml(tmp_path, text)


def test_unknown_method_fields_still_go_to_options(tmp_path):
    config = load_toml(tmp_path, HEAD + TASKS + METHOD + "block_length = 4\n")
    assert Method.from_config(config["methods"][0]).options == {"block_length": 4}
    assert config["seed"] == 0 and config["output"] == "runs/eval/results.jsonl"


def test_a_yaml_config_that_is_not_a_table_is_refused(tmp_path):
    pytest.importorskip("yaml")
    path = tmp_path / "eval.yaml"
    path.write_text("- model\n- tasks\n")
    with pytest.raises(ValueError, match="must be a table of keys, got list"):
        load_config(path)
    path.write_text("model: [\n")
    with pytest.raises(ValueError, match="eval.yaml: "):
        load_config(path)


def test_overrides_are_checked_like_the_file(tmp_path):
    path = tmp_path / "eval.toml"
    path.write_text(HEAD + TASKS + METHOD)
    with pytest.raises(ValueError, match="problems must be a positive integer, got 0"):
        load_config(path, {"problems": 0})
    with pytest.raises(ValueError, match="tasks 'arith' is given more than once"):
        load_config(path, {"tasks": ["arith", "arith"]})


def test_the_command_line_reports_a_bad_field_in_one_line(tmp_path, capsys):
    path = tmp_path / "eval.toml"
    path.write_text(HEAD + TASKS + "[methods]\nname = 'random'\n")
    assert main(["eval", str(path), "--out", str(tmp_path / "r.jsonl"), "--no-progress"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "methods must be a list of tables" in error[0]
    assert not (tmp_path / "r.jsonl").exists()
