"""Preflight's checks of what a run writes: the runs folder (writable), the checkpoints (estimates.CheckpointPlan)
against the free space where they go, and the rollout journal's size against the checkpoints'."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

from data_tools.output import count_rows, dataset_files
from launch import estimates, jobs, models
from launch.check import Check, fail, ok, warn
from launch.recipe import Recipe


def check_disk(args, repo: Path) -> list[Check]:
    """What the run's checkpoints will take on disk (estimates.CheckpointPlan), against the free space where the
    run writes them (ckpt.path)."""
    shape = models.shape(args.actor.model_name_or_path)
    files = dataset_files(args.data.prompt_dataset, repo)
    if shape is None or not files or not all(f.is_file() for f in files):
        return []
    plan = estimates.checkpoint_plan(args, shape, sum(count_rows(f) for f in files))
    where = Path(args.ckpt.path) if Path(args.ckpt.path).is_absolute() else repo / args.ckpt.path
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free / 1e9
    copies = f"{plan.hf_saves} Hugging Face copies of {plan.model_gb:.1f} GB (every {plan.every} steps, never deleted)"
    if plan.best and args.ckpt.save_hf:
        copies += f", plus one more each time the eval metric improves (at most {plan.steps // args.eval.steps})"
    saved = f"{copies}, {plan.ds_saves} DeepSpeed checkpoints of {plan.ds_gb:.0f} GB (rotated), "
    line = (
        f"checkpoints take about {plan.total_gb:,.0f} GB over {plan.steps:,} steps: "
        + (saved if plan.saves else "none saved, ")
        + f"the final model; {free:,.0f} GB free at {where}"
    )
    if plan.total_gb <= free:
        return [ok("disk", line)]
    if not plan.saves:
        return [warn("disk", f"{line}: not even the final model fits; free space, or pass --runs-dir elsewhere")]
    return [
        warn(
            "disk",
            f"{line}: the disk fills near step {plan.fill_step(free):,}; raise ckpt.save_steps, lower ckpt.max_num, "
            "set ckpt.save_hf false (the final model is still saved), or stop the run before then",
        )
    ]


def check_journal(recipe: Recipe, args, repo: Path) -> list[Check]:
    """The rollout journal's size over the full run (estimates.journal_gb: every response at its length limit),
    against the checkpoints' (estimates.CheckpointPlan); REWARD_JOURNAL_SAMPLE as the job will get it."""
    env = {**(recipe.meta.get("env") or {}), **{k: os.environ[k] for k in jobs.FORWARDED_ENV if os.environ.get(k)}}
    if not str(env.get("REWARD_JOURNAL_DIR", "-")).strip():
        return [ok("journal", "off (recipe.env sets REWARD_JOURNAL_DIR empty)")]
    raw = str(env.get("REWARD_JOURNAL_SAMPLE", "")).strip() or "1"
    try:
        share = float(raw)
    except ValueError:
        share = -1.0
    if not 0 <= share <= 1:
        return [
            fail("journal", f"REWARD_JOURNAL_SAMPLE={raw!r}: give the share of prompts whose texts to keep, 0 to 1")
        ]
    shape, files = models.shape(args.actor.model_name_or_path), dataset_files(args.data.prompt_dataset, repo)
    if shape is None or not files or not all(f.is_file() for f in files):
        return []
    plan = estimates.checkpoint_plan(args, shape, sum(count_rows(f) for f in files))
    eval_rows = sum(count_rows(f) for f in dataset_files(args.eval.dataset, repo) if f.is_file())
    samples = estimates.journal_samples(args, plan.steps, eval_rows)
    tokens = args.rollout.max_new_tokens or args.data.max_len
    size = estimates.journal_gb(samples, share, tokens)
    line = (
        f"the rollout journal takes at most {size:,.1f} GB: {samples:,} samples, the texts of {share:.0%} of the "
        f"prompts, every response at its {tokens:,}-token limit; {size / plan.total_gb:.2%} of the checkpoints' "
        f"{plan.total_gb:,.0f} GB"
    )
    if size <= estimates.JOURNAL_SHARE * plan.total_gb:
        return [ok("journal", line)]
    rows, texts = estimates.journal_gb(samples, 0, tokens), estimates.journal_gb(samples, 1, tokens)
    fits = max(0.0, estimates.JOURNAL_SHARE * plan.total_gb - rows) / (texts - rows)
    fix = f"export REWARD_JOURNAL_SAMPLE={math.floor(fits * 100) / 100:.2f} (or set it in recipe.env)"
    return [warn("journal", f"{line}: {fix} to keep fewer texts; every sample's numbers are kept whatever it is")]


def check_runs_dir(recipe: Recipe) -> list[Check]:
    """The run folder can be made: its nearest existing parent is a folder we may write into (tried for real)."""
    run = Path(recipe.meta.get("run_dir") or Path(recipe.args().ckpt.path).parent)
    where = run
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        return [fail("runs", f"cannot write {run} ({where}: {reason}): pass --runs-dir a folder you can write")]
    return [ok("runs", f"{run.parent} is writable")]
