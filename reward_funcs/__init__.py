"""Rule-based rewards, one module per task, chosen by the `"task"` field of each sample's label.

    from reward_funcs import score_sample
    score_sample(query, prompt, '{"task": "countdown", "target": 60, "numbers": [44, 19, 35]}')

A task module defines `score(response, label) -> Score` (a pure function of the model's text and the label),
`RESPONSE_MARKERS` (where TinyZero cuts a decoded prompt + response that does not start with its prompt),
`check_label(label)`, and `reference_answer(label)` (a correct answer or None; preflight scores it). Adding a
task is one module plus one line in `TASKS`; see README.md.

OpenRLHF reaches these scorers through `reward_funcs/openrlhf_reward.py` (a `--reward.remote_url` file).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from reward_funcs import countdown, multiply
from reward_funcs.scoring import CORRECT_SCORE, FORMAT_SCORE, LabelError, Score, cut_response, no_answer

TASKS = {
    "countdown": countdown,
    "multiply": multiply,
}

__all__ = ["CORRECT_SCORE", "FORMAT_SCORE", "TASKS", "LabelError", "Score", "parse_label", "score_sample"]


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
