"""The closing table of a smoke run (`make smoke`): each stage ok or the line that failed, the step time as
OpenRLHF splits it, generated tokens/s, peak GPU memory, and the full recipe's projected wall time and GPU-hours.

    python -m analysis.smoke runs/countdown-qwen2.5-3b-ppo-smoke/20260101-120000 [--force]

Reads the run folder as the smoke run writes it: `smoke.jsonl` (the stages), `gpu_memory.jsonl` (nvidia-smi
polls), `recipe.yaml` (`recipe.smoke`: the full recipe's steps and GPUs) and the TensorBoard logs OpenRLHF
writes for the first job (`tensorboard/train`: `train/timing/*`, `train/rollout/*`; the resumed job starts cold);
writes `smoke.md` beside them and prints it. Exit status 0 only when every stage ran and passed.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

from analysis import writable
from analysis.curves import read_scalars
from analysis.events import saved_recipe
from analysis.journal import load_run
from reward_funcs import cli

PROG = "python -m analysis.smoke"
PARTS = ("generation", "make_experience", "ppo_train", "broadcast")  # OpenRLHF's timing/* of one step
STAGES = ("preflight", "train", "resume", "evaluate")  # what a smoke run that got through did
TIMED_JOB = "train"  # the TensorBoard folder of the first job: the resumed one starts cold


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _typical(points: list[tuple[int, float]]) -> float | None:
    """The median over the steps after the first (which warms up), or the only one there is."""
    values = [v for _, v in points]
    return statistics.median(values[1:] if len(values) > 1 else values) if values else None


def step_times(series: dict) -> dict[str, float]:
    found = {part: _typical(series.get(f"train/timing/{part}", [])) for part in (*PARTS, "step_total")}
    return {part: seconds for part, seconds in found.items() if seconds is not None}


def tokens_per_second(series: dict) -> float | None:
    """Generated tokens per second of generation: samples x mean response length / generation time, per step."""
    samples = dict(series.get("train/rollout/num_samples", []))
    length = dict(series.get("train/rollout/response_length_mean", []))
    generation = dict(series.get("train/timing/generation", []))
    rates = [(step, samples[step] * length[step] / generation[step]) for step in generation if step in samples]
    rates = [(step, rate) for step, rate in sorted(rates) if step in length and generation[step] > 0]
    return _typical(rates)


def peak_memory(polls: list[dict]) -> dict[int, float]:
    """The most memory each GPU held while polled, in GB (10^9 bytes)."""
    peaks: dict[int, float] = {}
    for poll in polls:
        peaks[poll["gpu"]] = max(peaks.get(poll["gpu"], 0.0), poll["used_mib"] * 2**20 / 1e9)
    return dict(sorted(peaks.items()))


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return (
        f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours" if hours >= 1 else f"{seconds / 60:.0f} min"
    )


def build(run: Path) -> str:
    """The table, as markdown."""
    saved = saved_recipe(run)
    full = (saved.get("recipe") or {}).get("smoke") or {}
    stages = _jsonl(run / "smoke.jsonl")
    if not stages:
        raise cli.UsageError(f"{run} has no smoke.jsonl: pass the folder of a smoke run (runs/<recipe>-smoke/...)")
    lines = [f"# Smoke run of {full.get('recipe', run.parent.name)}", "", "| stage | status | |", "|---|---|---|"]
    lines += [f"| {s['stage']} | {s['status']} | {s['line']} |" for s in stages]
    done = {s["stage"] for s in stages}
    missing = [stage for stage in STAGES if stage not in done]
    lines += [f"| {stage} | - | did not run |" for stage in missing]
    logs = run / "tensorboard" / TIMED_JOB
    series = read_scalars(logs, warn=warning) if logs.is_dir() else {}
    times = step_times(series)
    if times:
        total = times.get("step_total") or sum(times.get(p, 0.0) for p in PARTS)
        lines += ["", "Step time (median of the steps after the first):", "", "| part | seconds | share |"]
        lines += ["|---|---|---|"]
        lines += [f"| {p} | {times[p]:.1f} | {times[p] / total:.0%} |" for p in PARTS if p in times and total]
        lines.append(f"| **step** | **{total:.1f}** | |")
    rate = tokens_per_second(series)
    lines += ["", f"Generated tokens/s: {rate:,.0f}" if rate else "Generated tokens/s: not logged"]
    peaks = peak_memory(_jsonl(run / "gpu_memory.jsonl"))
    shown = ", ".join(f"GPU {gpu} {gb:.1f} GB" for gpu, gb in peaks.items())
    lines.append(f"Peak GPU memory: {shown}" if peaks else "Peak GPU memory: not polled (no nvidia-smi here)")
    if times and full.get("steps"):
        wall = full["steps"] * times.get("step_total", total)
        lines.append(
            f"Projected full run: {full['steps']:,} steps x {times.get('step_total', total):.1f} s = {_duration(wall)} "
            f"on {full['gpus']} GPUs, {wall / 3600 * full['gpus']:,.0f} GPU-hours (evaluations and checkpoints "
            "not counted)"
        )
    trained = any(s["stage"] == "train" and s["status"] == "ok" for s in stages)
    line, recorded = journal_line(run, saved) if trained else ("", True)
    lines += [line] if line else []
    failed = [s["stage"] for s in stages if s["status"] == "FAIL"] + ([] if recorded else ["journal"])
    if failed:
        lines += ["", f"Smoke run FAILED at: {', '.join(failed)}"]
    elif missing:
        lines += ["", f"Smoke run INCOMPLETE: {', '.join(missing)} did not run"]
    else:
        lines += ["", "Smoke run passed: every stage ok."]
    return "\n".join(lines) + "\n"


def journal_line(run: Path, saved: dict) -> tuple[str, bool]:
    """What the rollout journal holds after the jobs, and whether that is right: a run whose reward recorded no
    sample while the journal was on has a journal that will not show the full run either."""
    env = (saved.get("recipe") or {}).get("env") or {}
    if not str(env.get("REWARD_JOURNAL_DIR", "-")).strip():
        return "Rollout journal: off (recipe.env sets REWARD_JOURNAL_DIR empty)", True
    found = load_run(run, samples_per_step=1, held_out_prompts=0, sample_steps=1)
    if not found.rows:
        return (
            f"Rollout journal: EMPTY: the reward recorded no sample in {run / 'journal'}; look in the job's log for "
            "`reward_funcs: journal` lines (a folder the engines cannot write, on a node that does not mount it)",
            False,
        )
    held_out = sum(s.n for s in found.stats if s.split == "eval")
    steps = len({s.step for s in found.stats if s.split == "train"})
    return (
        f"Rollout journal: {found.rows:,} samples ({found.rows - held_out:,} training over {steps} steps, "
        f"{held_out:,} held-out); see them with python -m analysis.run_report {run}",
        True,
    )


def warning(line: str) -> None:
    print(f"{PROG}: warning: {line}", file=sys.stderr, flush=True)


def build_parser() -> cli.Parser:
    parser = cli.parser(PROG, __doc__)
    parser.add_argument("run", type=Path, help="the smoke run's folder")
    cli.add_force(parser, "smoke.md")
    return parser


@cli.entry_point(PROG, build_parser)
def main(args) -> int:
    if not args.run.is_dir():
        raise cli.UsageError(f"no such run folder: {args.run}")
    out = args.run / "smoke.md"
    if out.exists() and not out.is_file():
        raise cli.UsageError(f"{out} exists and is not a file: remove it")
    writable.check(out, args.force, kind="file", fix="make the run folder writable")
    text = build(args.run)
    tmp = out.with_name(f".smoke.md.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        tmp.replace(out)
    except OSError as e:  # a full disk, the folder made read-only meanwhile
        raise cli.UsageError(f"cannot write {out} ({e.strerror or e}): make room, or the run folder writable") from None
    finally:
        tmp.unlink(missing_ok=True)
    print(text, end="")
    return 0 if "Smoke run passed" in text else 1


if __name__ == "__main__":
    raise SystemExit(main())
