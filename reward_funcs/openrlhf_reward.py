"""The reward as an OpenRLHF reward file:

    python -m openrlhf.cli.train_ppo_ray ... --reward.remote_url reward_funcs/openrlhf_reward.py --data.label_key label

OpenRLHF 0.11.2 loads this file by path (`importlib.util.spec_from_file_location`) inside every vLLM engine
actor, then calls `reward_func([query], [prompt], [label])` once per sample, from many threads at once.
The file finds its own package next to it, so it works from any working directory, including the copy of the
repository that `ray job submit --runtime-env-json '{"working_dir": "."}'` unpacks on each node.

Returns rewards 0 / 0.1 / 1.0 (TinyZero's), scores 1.0 for a correct answer and 0.0 otherwise (read by OpenRLHF's
dynamic filtering; its eval pass@k averages the rewards, like TinyZero's validation score), and extra_logs
`accuracy` and `format` (an answer tag was found), which OpenRLHF logs as training metrics; with
REWARD_TASK_LOGS=1 (the launcher sets it for a `recipe.task: mixed` run) also three per task
(reward_funcs.task_logs). A malformed completion is scored, never raised on; a malformed label is our bug: it is
logged at ERROR with the fix, then raised.

Set REWARD_SAMPLE_EVERY=N to print one scored sample in N (off by default). With REWARD_JOURNAL_DIR set (the
launcher sets it to the run's `journal/`), every scored sample also goes to the rollout journal
(reward_funcs/journal.py: one append here, the rest in a background thread), which `analysis.journal` reads.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
if _PACKAGE_DIR.name != "reward_funcs" or not (_PACKAGE_DIR / "__init__.py").is_file():
    raise ImportError(
        f"{Path(__file__).name} must stay inside the reward_funcs package (it is in {_PACKAGE_DIR}): pass "
        "--reward.remote_url reward_funcs/openrlhf_reward.py from the repository or the Ray working_dir"
    )
if str(_PACKAGE_DIR.parent) not in sys.path:
    sys.path.insert(0, str(_PACKAGE_DIR.parent))

import torch  # noqa: E402  (OpenRLHF's engine actors always have it)

import reward_funcs  # noqa: E402
from reward_funcs import LabelError, journal, score_sample  # noqa: E402
from reward_funcs.task_logs import task_logs, wanted  # noqa: E402

if Path(reward_funcs.__file__).resolve().parent != _PACKAGE_DIR:
    raise ImportError(
        f"reward_funcs was imported from {Path(reward_funcs.__file__).parent}, not from {_PACKAGE_DIR} next to this "
        "file: uninstall or rename the other copy"
    )

logger = logging.getLogger("reward_funcs")

SAMPLE_EVERY_ENV = "REWARD_SAMPLE_EVERY"
_calls = 0
_calls_lock = threading.Lock()
# This process's rollout journal, or None; made when OpenRLHF loads this file in an engine actor, whose
# environment is the job's. A bad setting fails the load with its fix, before any sample is generated.
JOURNAL = journal.Journal.from_env()
TASK_LOGS = wanted()  # per-task extra_logs, for runs that mix tasks (REWARD_TASK_LOGS; see task_logs)


def reward_func(queries, prompts, labels, **kwargs):
    scored = []
    for query, prompt, label in zip(queries, prompts, labels, strict=True):
        try:
            scored.append(score_sample(query, prompt, label))
        except LabelError as e:
            logger.error("reward_funcs: cannot score a sample, its label is wrong: %s. Label: %r", e, label)
            raise
        except Exception:
            logger.exception("reward_funcs: bug while scoring a sample; please report it with this label: %r", label)
            raise
        _maybe_print_sample(query, prompt, label, scored[-1])
        if JOURNAL is not None:
            JOURNAL.record(query, prompt, label, scored[-1])
    correct = [float(s.correct) for s in scored]
    logs = {"accuracy": correct, "format": [float(s.formatted) for s in scored]}
    if TASK_LOGS:
        logs.update(task_logs(labels, correct, logs["format"]))
    return {
        "rewards": torch.tensor([s.reward for s in scored], dtype=torch.float32),
        "scores": torch.tensor(correct, dtype=torch.float32),
        "extra_logs": {key: torch.tensor(values, dtype=torch.float32) for key, values in logs.items()},
    }


def _maybe_print_sample(query, prompt, label, score) -> None:
    every = os.environ.get(SAMPLE_EVERY_ENV, "")
    if not every.strip():
        return
    try:
        every = int(every)
    except ValueError:
        logger.error("reward_funcs: %s=%r is not an integer; sample printing is off", SAMPLE_EVERY_ENV, every)
        return
    global _calls
    with _calls_lock:
        _calls += 1
        number = _calls
    if every <= 0 or number % every:
        return
    response = query[len(prompt) :] if prompt and query.startswith(prompt) else query
    print(
        f"---- reward sample {number} (one in {every}) ----\n"
        f"label: {label}\nreward: {score.reward}  reason: {score.reason}  answer: {score.answer!r}\n"
        f"response:\n{response}\n---- end of sample {number} ----",
        flush=True,
    )
