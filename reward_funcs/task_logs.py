"""Training accuracy per task, through OpenRLHF's extra_logs, for runs that mix tasks in one dataset.

    from reward_funcs.task_logs import task_logs
    task_logs(['{"task": "countdown", ...}', '{"task": "multiply", ...}'], correct=[1.0, 0.0], formatted=[1.0, 1.0])
    # {"countdown_share": [1.0, 0.0], "countdown_correct": [1.0, 0.0], "countdown_format": [1.0, 0.0],
    #  "multiply_share": [0.0, 1.0], "multiply_correct": [0.0, 0.0], "multiply_format": [0.0, 1.0]}

How OpenRLHF 0.11.2 treats extra_logs decides the shape. Each sample's `extra_logs[key]` becomes `info[key]` of
its Experience (`SamplesGenerator._process_response_into_experience`); a micro-batch concatenates each key over
the samples that have it (`Experience.concat_experiences`), and the replay buffer splits every key back per sample,
raising "Size of info[key] ... does not match batch_size" when a key is missing from some of them
(`split_experience_batch`). The actor then logs each key's mean over every sample of the step, weighted by samples
(`PolicyModelActor.fit`). So a key such as `countdown_accuracy` sent for Countdown samples only would stop the run
at the first micro-batch that mixes tasks, and a 0 sent for the other tasks' samples would log the accuracy
diluted by the task's share.

Instead every sample carries the same keys, three per registered task (all of `TASKS`, whatever its own task):
`<task>_share` (1 for a sample of that task), `<task>_correct` and `<task>_format` (1 for a sample of that task
that is correct, or has an answer tag). Their step means are exact over any mix:

    accuracy of <task> = mean(<task>_correct) / mean(<task>_share)    (undefined when the share is 0)

`analysis.metrics.task_accuracy` computes it from the logged means and `analysis.curves` draws it per task.
The reward file and the service add these keys when REWARD_TASK_LOGS=1, which the launcher sets for a recipe with
`recipe.task: mixed` (any other recipe may set it in `recipe.env`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from reward_funcs import TASKS, parse_label

SUFFIXES = ("share", "correct", "format")
ENV = "REWARD_TASK_LOGS"  # "1": the reward adds these logs (the launcher sets it for `recipe.task: mixed`)


def wanted(environ=None) -> bool:
    """Whether the reward adds the per-task logs: only when asked, so a one-task run logs no six constant series."""
    return (os.environ if environ is None else environ).get(ENV, "").strip() not in ("", "0")


def keys(task: str) -> tuple[str, ...]:
    """The extra_logs keys of one task: `<task>_share`, `<task>_correct`, `<task>_format`."""
    return tuple(f"{task}_{suffix}" for suffix in SUFFIXES)


def task_logs(
    labels: Sequence[str | Mapping], correct: Sequence[float], formatted: Sequence[float]
) -> dict[str, list[float]]:
    """The per-task extra_logs of a batch of scored samples, as lists of floats (one per sample), the same keys for
    every sample: for each task of TASKS, its share, correct and format indicators (see the module's docstring)."""
    if not len(labels) == len(correct) == len(formatted):
        raise ValueError(f"{len(labels)} labels, {len(correct)} correct and {len(formatted)} formatted: one each")
    tasks = [parse_label(label)["task"] for label in labels]
    logs: dict[str, list[float]] = {}
    for task in TASKS:
        share, right, tagged = keys(task)
        mine = [float(t == task) for t in tasks]
        logs[share] = mine
        logs[right] = [m * float(bool(c)) for m, c in zip(mine, correct, strict=True)]
        logs[tagged] = [m * float(bool(f)) for m, f in zip(mine, formatted, strict=True)]
    return logs
