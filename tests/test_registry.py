"""The task registry: labels name their task, one reward entry scores mixed datasets, a new task is one module."""

import json
import re
import sys
import textwrap

import pytest
from testkit import REPO

from bench import tinyzero_baseline
from reward_funcs import TASKS, LabelError, parse_label, score_sample


def test_registry_holds_the_shipped_tasks():
    assert {"countdown", "multiply"} <= set(TASKS)
    for name, task in TASKS.items():
        assert callable(task.score) and callable(task.check_label) and task.RESPONSE_MARKERS, name


def test_label_is_json_string_or_mapping():
    label = {"task": "countdown", "target": 60, "numbers": [44, 19, 35]}
    assert parse_label(json.dumps(label)) == parse_label(label) == label


@pytest.mark.parametrize(
    "label, complaint",
    [
        ("", "--data.label_key label"),
        ("   ", "--data.label_key label"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"target": 60, "numbers": [1]}', "must be one of \\['countdown', 'multiply'"),
        ('{"task": "sudoku"}', "'sudoku'"),
    ],
)
def test_bad_labels_name_the_fix(label, complaint):
    with pytest.raises(LabelError, match=complaint):
        parse_label(label)


def test_one_entry_scores_a_mixed_dataset():
    cd_prompt, mul_prompt = (
        tinyzero_baseline.countdown_prompt([44, 19, 35], 60),
        tinyzero_baseline.multiply_prompt(12, 34),
    )
    cd_label = '{"task": "countdown", "target": 60, "numbers": [44, 19, 35]}'
    mul_label = '{"task": "multiply", "numbers": [12, 34], "product": 408}'
    assert score_sample(cd_prompt + "</think>\n<answer>44-19+35</answer>", cd_prompt, cd_label).reward == 1.0
    assert score_sample(mul_prompt + "</think> <answer>408</answer>\n", mul_prompt, mul_label).reward == 1.0
    # each label goes to its own scorer: the countdown rule (last line) would score this multiply answer 0
    assert score_sample(mul_prompt + "<answer>408</answer>\n", mul_prompt, mul_label).reward == 1.0


def test_bad_label_is_reported_even_without_a_response_marker():
    with pytest.raises(LabelError, match="'target'"):
        score_sample("no marker", None, '{"task": "countdown", "numbers": [1]}')


def test_readme_worked_example_adds_a_task(tmp_path, monkeypatch):
    """The README's "add your own task" example, run as written: one module and one registry line."""
    text = (REPO / "README.md").read_text()
    module_src = re.search(r"```python\n# reward_funcs/(\w+)\.py\n(.*?)```", text, re.S)
    assert module_src, "README lost its worked example"
    name, code = module_src.group(1), module_src.group(2)
    registry_line = re.search(r'^\s*"(\w+)": (\w+),\s*# the new line$', text, re.M)
    assert registry_line and registry_line.group(2) == name
    example = re.search(r"```python\n# try it\n(.*?)```", text, re.S).group(1)

    package = tmp_path / "reward_funcs_example"
    package.mkdir()
    (package / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(f"reward_funcs_example.{name}", fromlist=[name])
    monkeypatch.setitem(TASKS, registry_line.group(1), module)
    namespace = {}
    exec(textwrap.dedent(example), namespace)  # the README's own asserts run here
    assert namespace["scored"].reward == 1.0
    sys.modules.pop(f"reward_funcs_example.{name}", None)
