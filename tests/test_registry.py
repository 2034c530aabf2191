"""The task registry: labels name their task, one reward entry scores mixed datasets, a new task is one module."""

import inspect
import json
import re
import sys
import textwrap
import types

import pytest
from testkit import REPO

from reference import tinyzero
from reward_funcs import (
    CORRECT_SCORE,
    TASKS,
    LabelError,
    Score,
    countdown,
    load_reward_file,
    parse_label,
    score_sample,
)

# A valid label of each task, with a reference answer: a new task adds its own line here.
VALID_LABELS = {
    "countdown": {"task": "countdown", "target": 60, "numbers": [44, 19, 35], "solution": "44 - 19 + 35"},
    "multiply": {"task": "multiply", "numbers": [12, 34], "product": 408},
}
CONSTANTS = ("format_score", "correct_score")
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def signature_problems(task) -> list[str]:
    """How the task's functions' signatures differ from the protocol in reward_funcs/__init__.py."""
    problems = []
    params = inspect.signature(task.score).parameters.values()
    positional = [p.name for p in params if p.kind in POSITIONAL]
    if positional != ["response", "label"]:
        problems.append(f"score must take (response, label, **constants), its positional parameters are {positional}")
    keywords = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    takes_any_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    if not takes_any_keyword and not set(CONSTANTS) <= keywords:
        problems.append(f"score must take {' and '.join(CONSTANTS)} as keyword-only parameters, it takes {keywords}")
    if any(p.default is p.empty for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY):
        problems.append("score's keyword-only parameters need defaults: score(response, label) must work")
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        problems.append("score must not take *args")
    for name in ("check_label", "reference_answer"):
        names = [(p.name, p.kind in POSITIONAL) for p in inspect.signature(getattr(task, name)).parameters.values()]
        if names != [("label", True)]:
            problems.append(f"{name} must take (label), it takes {[n for n, _ in names]}")
    return problems


def raises_label_error(function, *args) -> bool:
    try:
        function(*args)
    except LabelError:
        return True
    except Exception:
        return False
    return False


def behaviour_problems(task, label) -> list[str]:
    """How the task scores a correct answer, no answer and bad labels, against what the protocol promises."""
    problems = []
    answer = task.reference_answer(label)
    if not isinstance(answer, str):
        problems.append(f"reference_answer gave {answer!r} for the valid label {label}, not a string")
    else:
        response = " </think>\n<answer>" + answer + "</answer>"
        scored = task.score(response, label)
        if not isinstance(scored, Score) or (scored.reward, scored.correct) != (CORRECT_SCORE, True):
            problems.append(f"score of the reference answer {answer!r} is {scored!r}, not a correct Score")
        elif task.score(response, label, format_score=0.5, correct_score=2.0).reward != 2.0:
            problems.append("correct_score does not set the reward of a correct answer")
    if task.score(" </think>\nno answer here", label).reward != 0:
        problems.append("a response without an answer tag does not score 0")
    for bad in ({}, {"task": label["task"]}):
        if not raises_label_error(task.check_label, bad):
            problems.append(f"check_label({bad}) does not raise LabelError")
        if not raises_label_error(task.score, " <answer>1</answer>", bad):
            problems.append(f"score(..., {bad}) does not raise LabelError")
    return problems


def protocol_problems(task, label) -> list[str]:
    """What `task` lacks of the task protocol (reward_funcs/__init__.py's docstring); `label` is a valid label."""
    functions = ("score", "check_label", "reference_answer")
    problems = [f"{name} is missing or not callable" for name in functions if not callable(getattr(task, name, None))]
    markers = getattr(task, "RESPONSE_MARKERS", None)
    if type(markers) is not tuple or not markers or not all(isinstance(m, str) and m for m in markers):
        problems.append(f"RESPONSE_MARKERS must be a non-empty tuple of non-empty strings, it is {markers!r}")
    if problems:  # the checks below call the functions
        return problems
    return signature_problems(task) or behaviour_problems(task, label)


def test_registry_holds_the_shipped_tasks():
    assert {"countdown", "multiply"} <= set(TASKS)
    assert set(VALID_LABELS) == set(TASKS), "add a valid label of each new task to VALID_LABELS"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_follows_the_protocol(name):
    assert protocol_problems(TASKS[name], VALID_LABELS[name]) == []


def stand_in(**changes):
    """A copy of the countdown module with some names replaced (or, given None, removed)."""
    module = types.ModuleType("stand_in")
    module.__dict__.update({k: v for k, v in vars(countdown).items() if not k.startswith("__")})
    for name, value in changes.items():
        if value is None:
            delattr(module, name)
        else:
            setattr(module, name, value)
    return module


@pytest.mark.parametrize(
    "changes, complaint",
    [
        ({"score": None}, "score is missing"),
        ({"check_label": None}, "check_label is missing"),
        ({"reference_answer": None}, "reference_answer is missing"),
        ({"RESPONSE_MARKERS": None}, "RESPONSE_MARKERS must be"),
        ({"RESPONSE_MARKERS": ["Assistant:"]}, "RESPONSE_MARKERS must be"),
        ({"RESPONSE_MARKERS": ("Assistant:", "")}, "RESPONSE_MARKERS must be"),
        ({"score": lambda text, label, **constants: countdown.score(text, label)}, "score must take (response"),
        ({"score": lambda response, label: countdown.score(response, label)}, "keyword-only parameters"),
        ({"reference_answer": lambda row: "44 - 19 + 35"}, "reference_answer must take (label)"),
        ({"reference_answer": lambda label: "44 + 19 + 35"}, "score of the reference answer"),
        ({"reference_answer": lambda label: None}, "reference_answer gave None"),
        ({"check_label": lambda label: None}, "check_label({}) does not raise LabelError"),
        (
            {"score": lambda response, label, **constants: countdown.score(response, VALID_LABELS["countdown"])},
            "score(..., {}) does not raise LabelError",
        ),
    ],
)
def test_the_protocol_check_reports_what_a_task_lacks(changes, complaint):
    problems = protocol_problems(stand_in(**changes), VALID_LABELS["countdown"])
    assert any(complaint in p for p in problems), problems


def test_load_reward_file_returns_the_reward_func(monkeypatch):
    monkeypatch.chdir(REPO)
    reward_func = load_reward_file("reward_funcs/openrlhf_reward.py")
    prompt = tinyzero.countdown_prompt([44, 19, 35], 60)
    out = reward_func(
        [prompt + " </think>\n<answer>44 - 19 + 35</answer>"], [prompt], [json.dumps(VALID_LABELS["countdown"])]
    )
    assert out["rewards"].tolist() == [1.0] and out["scores"].tolist() == [1.0]


def test_load_reward_file_refuses_a_file_python_cannot_load(tmp_path):
    with pytest.raises(ImportError, match="not a Python file"):
        load_reward_file(tmp_path / "reward.txt")


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
        tinyzero.countdown_prompt([44, 19, 35], 60),
        tinyzero.multiply_prompt(12, 34),
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
    assert protocol_problems(module, json.loads(namespace["label"])) == []
    sys.modules.pop(f"reward_funcs_example.{name}", None)
