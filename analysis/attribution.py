"""Which training step each journal sample belongs to.

The journal (reward_funcs/journal.py) has no step: OpenRLHF does not pass it to the reward. Each sample gets
the step of OpenRLHF's own TensorBoard log. In its synchronous loop a step generates its samples, scores them,
trains, then logs every `train/*` scalar of that step, then evaluates (every eval.steps) and logs `eval/*`. So a
training sample belongs to the first step whose `train/*` log comes after it, and an eval sample to the last
step logged before it. A step logged twice (a resumed run repeats the steps after its checkpoint) is two
boundaries, in time order. Samples after the last log belong to the step in progress. With train.async_enable
the rollouts run ahead of training by up to train.async_queue_size steps: they are counted that many steps
later, which is right for a full queue and approximate otherwise. Without TensorBoard files, training samples
are counted in time order, rollout.batch_size x n_samples_per_prompt to a step. Each step's count is checked
against OpenRLHF's `train/rollout/num_samples` (without dynamic filtering they must match): a mismatch (lost
journal files, clocks of different nodes apart by more than the gap between steps) is a warning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.events import events, flag, saved_recipe
from reward_funcs.journal import EVAL


def tensorboard_marks(run_dir: Path, warn) -> tuple[list, list, dict]:
    """([(wall time, step)] of each `train/*` log, the same of each `eval/*` log, {step: train/rollout/num_samples})
    from every event file of the run (analysis.events). A record cut short ends its file's reading (one warning);
    checksums are not verified here (analysis.curves does), for speed: a run logs some 40 scalars a step."""
    where = run_dir / "tensorboard" if (run_dir / "tensorboard").is_dir() else run_dir
    train, evals, counts = {}, {}, {}
    for index, path in enumerate(sorted(where.rglob("events.out.tfevents.*"))):
        problems: list[str] = []
        for event in events(path, problems, verify=False):
            for value in event.summary.value:
                marks = train if value.tag.startswith("train/") else evals if value.tag.startswith("eval/") else None
                if marks is not None:
                    key = (index, event.step)
                    marks[key] = min(marks.get(key, event.wall_time), event.wall_time)
                if value.tag == "train/rollout/num_samples":
                    counts[event.step] = value.simple_value
        for problem in problems:
            warn(f"{path}: {problem}")
    return sorted((w, s) for (_, s), w in train.items()), sorted((w, s) for (_, s), w in evals.items()), counts


def attribute(run_dir: Path, cols: dict, warn) -> tuple[np.ndarray, str]:
    """Each sample's training step (see the module's docstring), and how it was found."""
    t, is_eval, recipe = cols["t"], cols["split"] == EVAL, saved_recipe(run_dir)
    train_marks, _, counts = tensorboard_marks(run_dir, warn)
    steps = np.zeros(len(t), np.int64)
    if train_marks:
        walls = np.array([w for w, _ in train_marks])
        logged = np.array([s for _, s in train_marks], np.int64)
        after = np.searchsorted(walls, t, "left")
        steps = np.where(after < len(walls), logged[np.minimum(after, len(walls) - 1)], logged[-1] + 1)
        before = np.searchsorted(walls, t, "right") - 1
        steps[is_eval] = np.where(before >= 0, logged[np.maximum(before, 0)], 0)[is_eval]
        repeated = np.unique(logged)[np.unique(logged, return_counts=True)[1] > 1]
        if len(repeated):  # a resumed run repeats the steps after its checkpoint: each log takes its own samples
            warn(f"steps {repeated[0]} to {repeated[-1]} were run twice (resumed): both runs' samples counted")
            counts = {s: n for s, n in counts.items() if s not in set(repeated.tolist())}
        pending = int(np.sum(~is_eval & (after == len(walls))))
        if pending:
            warn(f"{pending} training samples come after the last step logged: counted as step {logged[-1] + 1}")
        how = "the wall times of OpenRLHF's train/* TensorBoard logs"
    else:
        per_step = flag(recipe, "rollout.batch_size", 1024) * flag(recipe, "rollout.n_samples_per_prompt", 1)
        order = np.argsort(t[~is_eval], kind="stable")
        in_order = 1 + np.arange(len(order)) // per_step  # the step of the k-th training sample in time
        train_steps = np.empty(len(order), np.int64)
        train_steps[order] = in_order
        steps[~is_eval] = train_steps
        if is_eval.any() and len(order):
            before = np.searchsorted(t[~is_eval][order], t[is_eval], "right") - 1
            steps[is_eval] = np.where(before >= 0, in_order[np.maximum(before, 0)], 0)
        warn(f"no TensorBoard logs under {run_dir}: training samples counted {per_step} to a step, in time order")
        how = f"counting {per_step} training samples to a step (no TensorBoard logs)"
    generate = flag(recipe, "rollout.vllm_generate_batch_size", None)
    if generate and generate > flag(recipe, "rollout.batch_size", 1024):  # later steps served from a buffer
        warn(
            f"rollout.vllm_generate_batch_size {generate} > rollout.batch_size: OpenRLHF scores samples ahead and "
            "trains on them at later steps, so steps here are when samples were scored, not trained on"
        )
    if int(flag(recipe, "logger.logging_steps", 1) or 1) > 1:  # the steps between two logs share the later one
        warn("logger.logging_steps > 1: the samples of the steps between two logs are counted at the later one")
    if flag(recipe, "train.async_enable", False):
        shift = int(flag(recipe, "train.async_queue_size", 1))
        steps[~is_eval] += shift
        warn(f"train.async_enable: rollouts run ahead of training; samples counted {shift} step(s) later, roughly")
        how += f", shifted by {shift} (asynchronous training)"
    elif counts and not flag(recipe, "algo.dynamic_filtering_enable", False):
        _check_counts(steps[~is_eval], counts, warn)
    return steps, how


def _check_counts(train_steps: np.ndarray, counts: dict, warn) -> None:
    found, number = np.unique(train_steps, return_counts=True)
    ours = dict(zip(found.tolist(), number.tolist(), strict=True))
    wrong = [s for s, n in sorted(counts.items()) if ours.get(s, 0) != int(n)]
    if wrong:
        s = wrong[0]
        warn(
            f"{len(wrong)} of {len(counts)} steps hold a different number of training samples than OpenRLHF "
            f"logged (train/rollout/num_samples), e.g. step {s}: {ours.get(s, 0)} in the journal, {int(counts[s])} "
            "trained on; a journal file missing, or clocks apart between nodes"
        )
