"""Rule-based rewards, one module per task, chosen by the `"task"` field of each sample's label.

    from reward_funcs import score_sample
    score_sample(query, prompt, '{"task": "countdown", "target": 60, "numbers": [44, 19, 35]}')

The task protocol. A task is one module in `TASKS` (its key is the label's `"task"`) that defines:
  score(response, label, **constants) -> Score
      a pure function of the model's text and the parsed label: reward 0 (no answer), FORMAT_SCORE (an answer
      that is wrong) or CORRECT_SCORE; `constants` (format_score, correct_score) override those two. It never
      raises on the model's text; it raises LabelError on a label it cannot score.
  check_label(label) -> object
      raises LabelError, naming the fix, for a label `score` could not use; what it returns is unused here.
  reference_answer(label) -> str | None
      a correct answer to put between <answer> tags, or None when the label holds none; preflight scores it
      through the reward file and expects CORRECT_SCORE.
  RESPONSE_MARKERS: tuple[str, ...]
      where TinyZero cuts a decoded prompt + response that does not start with the prompt given.
Adding a task is one module plus one line in `TASKS`; see README.md.

OpenRLHF reaches these scorers through `reward_funcs/openrlhf_reward.py` (a `--reward.remote_url` file) or the
HTTP service `reward_funcs/server.py`.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from reward_funcs import countdown, multiply
from reward_funcs.scoring import CORRECT_SCORE, FORMAT_SCORE, LabelError, Score, cut_response, no_answer

TASKS = {
    "countdown": countdown,
    "multiply": multiply,
}

__all__ = [
    "CORRECT_SCORE",
    "FORMAT_SCORE",
    "TASKS",
    "LabelError",
    "Score",
    "load_reward_file",
    "parse_label",
    "score_sample",
]


def parse_label(label: str | Mapping) -> Mapping:
    """The label as a mapping with a known `"task"`; `label` is a JSON string (as stored in datasets) or a mapping."""
    if isinstance(label, str):
        if not label.strip():
            raise LabelError(
                "the label is empty: pass --data.label_key label so OpenRLHF forwards the dataset's label column"
            )
        try:
            label = json.loads(label)
        except json.JSONDecodeError as e:
            raise LabelError(f"the label is not valid JSON ({e}): write labels with json.dumps") from None
    if not isinstance(label, Mapping):
        raise LabelError(f"the label must be a JSON object, got {type(label).__name__}: write a dict with json.dumps")
    task = label.get("task")
    if task not in TASKS:
        raise LabelError(f'the label\'s "task" is {task!r}; it must be one of {sorted(TASKS)}: set it in the dataset')
    return label


def score_sample(query: str, prompt: str | None, label: str | Mapping, **constants: float) -> Score:
    """Score one OpenRLHF sample: `query` is the decoded prompt + response, `prompt` the prompt as given to the
    model, `label` the dataset's label. `constants` (format_score, correct_score) go to the task's scorer."""
    parsed = parse_label(label)
    task = TASKS[parsed["task"]]
    response = cut_response(query, prompt, task.RESPONSE_MARKERS)
    if response is None:
        task.check_label(parsed)  # a bad label is reported even when the response cannot be found
        return no_answer("no_response_marker")
    return task.score(response, parsed, **constants)


def load_reward_file(path: str | Path) -> Callable:
    """The `reward_func` of a reward file, loaded by path as OpenRLHF's SingleTurnAgentExecutor loads it."""
    spec = importlib.util.spec_from_file_location("reward_func", path)
    if spec is None:
        raise ImportError(f"{path} is not a Python file: --reward.remote_url takes a .py file or an http URL")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reward_func
