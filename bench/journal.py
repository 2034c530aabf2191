"""The rollout journal's cost and size, and how fast a full run's journal reads back.

    .venv/bin/python -m bench.journal [--completions 3000] [--rounds 5] [--steps 19200] [--per-step 256]

1. The reward file's call (reward_funcs/openrlhf_reward.py, `reward_func([query], [prompt], [label])` as OpenRLHF
   calls it) on bench.rewards' realistic corpus, journal off and on, in alternating rounds; the ratio is what the
   journal adds to the call (budget: 1.05x). The background thread's work per sample (cutting, behaviour phrases,
   hashing, compression, writing) is timed apart: it runs beside the calls, not in them.
2. Bytes per sample on disk, texts kept for every sample, and the projection for TinyZero's full run (19,200
   steps of 256 samples, 192 evaluations of 1,024 prompts) against its checkpoints (budget: 1%).
3. `write_synthetic_run`: a full-size run folder (two processes' journals through the real writer, TensorBoard
   files as OpenRLHF writes them) with an "aha" at 30% of the run, then `analysis.journal.load_run` timed on it.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.rewards import CHARS_PER_TOKEN, puzzle, realistic_corpus
from reference import tinyzero
from reward_funcs import journal, load_reward_file, score_sample
from reward_funcs.cli import REPO

START = 1_767_225_600.0  # 2026-01-01, the synthetic run's first second
STEP_SECONDS = 60.0  # generation in the first 25 s of a step's minute, the log at its end, then any evaluation
FLUSHES_PER_STEP = 12  # the writer's flushes every 2 s of a 25 s generation
TRAIN_PUZZLES, EVAL_PUZZLES = 300, 256  # pooled, so that each response's behaviour phrases are matched once


def time_calls(corpus, rounds: int, flush_every: int = 500) -> dict[str, list[float]]:
    """Per-call seconds of the reward file, journal off and on, alternating call by call (in alternating order, so
    that a machine shared with other work slows both alike); the journal is flushed every `flush_every` calls,
    outside the timed calls, and that time is the background thread's."""
    reward_func = load_reward_file(REPO / "reward_funcs" / "openrlhf_reward.py")
    folder = Path(tempfile.mkdtemp(prefix="bench-journal-"))
    on = journal.Journal(folder, interval=3600)  # the timed calls run without the thread's competition
    times = {"off": [], "on": [], "background": []}
    modes = {"off": None, "on": on}
    calls = corpus * rounds
    for index, (query, prompt, label) in enumerate(calls):
        for mode in ("off", "on")[:: 1 if index % 2 else -1]:
            reward_func.__globals__["JOURNAL"] = modes[mode]
            t = time.perf_counter()
            reward_func([query], [prompt], [label])
            times[mode].append(time.perf_counter() - t)
        if (index + 1) % flush_every == 0 or index + 1 == len(calls):
            t = time.perf_counter()
            on.flush()
            times["background"].append((time.perf_counter() - t) / ((index % flush_every) + 1))
    on.close()
    times["bytes"] = [sum(p.stat().st_size for p in folder.glob(f"*.{kind}")) for kind in ("rows", "texts")]
    times["samples"] = [len(corpus) * rounds]
    shutil.rmtree(folder)
    return times


def full_run_projection(bytes_per_sample: float) -> tuple[int, float, float]:
    """(samples, journal GB, checkpoints GB) of TinyZero's run as recipes/countdown/qwen2.5-3b-ppo.yaml sets it."""
    from launch import estimates, models
    from launch.recipe import load

    args = load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml").args()
    plan = estimates.checkpoint_plan(args, models.shape(args.actor.model_name_or_path), 327_680)
    samples = estimates.journal_samples(args, plan.steps, eval_rows=1024)
    return samples, samples * bytes_per_sample / 1e9, plan.total_gb


# ---- a synthetic full-size run ----------------------------------------------------------------------------------

THOUGHTS = {  # (template, how many times its middle repeats); the late ones search, check and revise
    "early": ("{a} + {b} = {s}. ", 1),
    "late": (
        "Let me try {a} + {b} = {s}. Wait, that doesn't work, too small. Alternatively, what if {a} * {b} = {p}? "
        "That is too big. Let me check another combination: {a} - {b} = {d}. ",
        6,
    ),
}


def pooled_responses(rng: random.Random, puzzles: int) -> list[tuple[str, str, str, dict]]:
    """(prompt, label, outcomes) per puzzle: outcomes maps (phase, kind) to (query, Score), each scored by the real
    scorer once."""
    pool = []
    for _ in range(puzzles):
        numbers, target, solution = puzzle(rng)
        prompt = tinyzero.countdown_prompt(numbers, target)
        label = json.dumps({"task": "countdown", "target": target, "numbers": numbers})
        a, b = numbers[:2]
        outcomes = {}
        for phase, (template, repeat) in THOUGHTS.items():
            thought = " " + template.format(a=a, b=b, s=a + b, p=a * b, d=a - b) * repeat
            endings = {
                "right": f"</think>\n<answer> {solution} </answer><|endoftext|>",
                "wrong": f"</think>\n<answer> {a} + {b} </answer><|endoftext|>",
                "none": "so it must be close to that.<|endoftext|>",
                "cut": "Let me verify again: " * 30,  # no end token: the length ran out
            }
            for kind, ending in endings.items():
                query = prompt + thought + ending
                outcomes[phase, kind] = (query, score_sample(query, prompt, label))
        pool.append((prompt, label, outcomes))
    return pool


KINDS = ("right", "wrong", "none", "cut")
WEIGHTS = {"early": (0.05, 0.65, 1.0, 1.0), "late": (0.65, 0.9, 0.92, 1.0)}  # cumulative, over KINDS


def outcomes(rng: random.Random, progress: float, count: int) -> list[tuple[str, str]]:
    """(phase, kind) of `count` samples `progress` of the way through the run: searching, checking and revising
    replace guessing around 30% of the run, and answers get right more often."""
    late = 1 / (1 + math.exp(-(progress - 0.3) / 0.04))
    phases = ["late" if rng.random() < late else "early" for _ in range(count)]
    return [(phase, rng.choices(KINDS, cum_weights=WEIGHTS[phase])[0]) for phase in phases]


def expected(progress: float) -> dict[str, float]:
    """The mean reward, accuracy and format rate `outcomes` gives at `progress`, for the TensorBoard logs."""
    late = 1 / (1 + math.exp(-(progress - 0.3) / 0.04))
    shares = {phase: [b - a for a, b in zip((0.0, *WEIGHTS[phase]), WEIGHTS[phase], strict=False)] for phase in WEIGHTS}
    mixed = [(1 - late) * e + late * m for e, m in zip(shares["early"], shares["late"], strict=True)]
    right, wrong = mixed[0], mixed[1]
    return {"reward": right + 0.1 * wrong, "accuracy": right, "format": right + wrong}


def _engine(folder: Path, pools: tuple, run: dict, index: int) -> None:
    """One rollout process's journal for the whole run: its share of every step's samples, in FLUSHES_PER_STEP
    flushes over the step's generation, and its share of every evaluation's prompts."""
    train, evals = pools
    rng = random.Random(run["seed"] * 1000 + index)
    processes, per_step = run["processes"], run["per_step"]
    eval_labels = frozenset(label for _, label, _ in evals)
    # zlib's fastest level: the real default (6) is a third smaller and runs beside the engine, not in this loop
    writer = journal.Journal(folder, eval_set=eval_labels, interval=3600, level=1)

    def rollout(batch: list, progress: float, start: float, seconds: float, flushes: int) -> None:
        for flush in range(flushes):
            part = batch[flush * len(batch) // flushes : (flush + 1) * len(batch) // flushes]
            chosen = [o[which] for (_, _, o), which in zip(part, outcomes(rng, progress, len(part)), strict=True)]
            at = start + seconds * (flush + rng.random()) / flushes
            times = [at + k * 1e-3 for k in range(len(part))]
            prompts, labels = [p for p, _, _ in part], [lab for _, lab, _ in part]
            writer.record_batch([q for q, _ in chosen], prompts, labels, [s for _, s in chosen], times)
            writer.flush()

    mine = per_step * (index + 1) // processes - per_step * index // processes
    for step in range(1, run["steps"] + 1):
        begin = START + (step - 1) * STEP_SECONDS
        rollout([rng.choice(train) for _ in range(mine)], step / run["steps"], begin + 1, 25, FLUSHES_PER_STEP)
        if step % run["eval_every"] == 0:
            rollout(evals[index::processes], step / run["steps"], begin + 51, 6, 3)  # every eval prompt once
    writer.close()


def write_synthetic_run(
    run_dir: Path, steps: int = 19200, per_step: int = 256, seed: int = 0, eval_every: int = 100, processes: int = 2
) -> Path:
    """A run folder as a real run leaves it: `journal/` written by `processes` processes at once through the real
    writer, each flushing every 2 s of the run's (synthetic) clock, and `tensorboard/` written with the
    SummaryWriter OpenRLHF uses, its tags, a `train/*` log at the end of each step and `eval/*` after each
    evaluation. Steps are a minute apart: generation in the first 25 s, the log at 50 s, any evaluation after."""
    run_dir = Path(run_dir)
    (run_dir / "journal").mkdir(parents=True)
    rng = random.Random(seed)
    pools = pooled_responses(rng, TRAIN_PUZZLES), pooled_responses(rng, EVAL_PUZZLES)
    run = {"steps": steps, "per_step": per_step, "seed": seed, "eval_every": eval_every, "processes": processes}
    context = multiprocessing.get_context("spawn")  # safe whatever threads this process runs (Ray's, torch's)
    engines = [context.Process(target=_engine, args=(run_dir / "journal", pools, run, i)) for i in range(processes)]
    for engine in engines:
        engine.start()
    from torch.utils.tensorboard import SummaryWriter

    board = SummaryWriter(log_dir=str(run_dir / "tensorboard" / "synthetic"), flush_secs=3600)
    for step in range(1, steps + 1):
        end = START + (step - 1) * STEP_SECONDS + 50
        logs = {
            **expected(step / steps),
            "rollout/num_samples": float(per_step),
            "kl": 0.001 * step / steps,
            "timing/generation": 25.0,
        }
        for key, value in logs.items():
            board.add_scalar(f"train/{key}", value, step, walltime=end)
        if step % eval_every == 0:
            board.add_scalar("eval/eval_countdown_pass1", expected(step / steps)["reward"], step, walltime=end + 8)
    board.close()
    for engine in engines:
        engine.join()
    if any(engine.exitcode for engine in engines):
        raise RuntimeError(f"a synthetic rollout process failed: exit codes {[e.exitcode for e in engines]}")
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--completions", type=int, default=3000, help="size of the realistic corpus")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over the corpus, journal off and on each")
    parser.add_argument("--steps", type=int, default=19200, help="steps of the synthetic run (TinyZero: 19,200)")
    parser.add_argument("--per-step", type=int, default=256, help="samples per step of the synthetic run")
    args = parser.parse_args()

    corpus = [(q, p, json.dumps(lab)) for q, p, lab in realistic_corpus(args.completions)]
    tokens = statistics.fmean(len(q) - len(p) for q, p, _ in corpus) / CHARS_PER_TOKEN
    times = time_calls(corpus, args.rounds)
    off, on = statistics.fmean(times["off"]), statistics.fmean(times["on"])
    print(
        f"Reward file calls, realistic corpus: {len(corpus)} completions of {tokens:.0f} tokens, {args.rounds} rounds"
    )
    print(f"  journal off  mean {off * 1e6:6.2f} us   median {statistics.median(times['off']) * 1e6:6.2f} us per call")
    print(f"  journal on   mean {on * 1e6:6.2f} us   median {statistics.median(times['on']) * 1e6:6.2f} us per call")
    medians = statistics.median(times["on"]) / statistics.median(times["off"])
    # A shared machine stalls a call now and then for a millisecond or more, in either mode: the slowest 1% of all
    # calls weigh as much as the rest together, so the headline leaves them out of both means.
    cut = sorted(times["off"] + times["on"])[int(0.99 * 2 * len(times["on"]))]
    trimmed = statistics.fmean(t for t in times["on"] if t < cut) / statistics.fmean(t for t in times["off"] if t < cut)
    print(f"  ratio on / off: {trimmed:.3f}x (budget 1.05x; mean of the calls under the 99th percentile)")
    print(f"                  {medians:.3f}x (median), {on / off:.3f}x (mean of every call, the machine's stalls in)")
    background = statistics.median(times["background"])
    print(
        f"  background thread: {background * 1e6:.0f} us per sample, beside the calls ({background / off:.1f}x a call)"
    )
    rows, texts = (b / times["samples"][0] for b in times["bytes"])
    print(f"  on disk: {rows:.1f} bytes per sample of rows + {texts:.0f} of texts (every text kept)")
    samples, journal_gb, checkpoints_gb = full_run_projection(rows + texts)
    print(
        f"  TinyZero's full run: {samples:,} samples, journal {journal_gb:.2f} GB at this size per sample, "
        f"checkpoints {checkpoints_gb:,.0f} GB: {journal_gb / checkpoints_gb:.2%} (budget 1%)"
    )

    folder = Path(tempfile.mkdtemp(prefix="bench-journal-run-"))
    try:
        t = time.perf_counter()
        write_synthetic_run(folder / "run", steps=args.steps, per_step=args.per_step)
        written = time.perf_counter() - t
        size = sum(p.stat().st_size for p in (folder / "run").rglob("*") if p.is_file())
        print(
            f"\nSynthetic run: {args.steps:,} steps x {args.per_step} samples, written in {written:.1f} s, "
            f"{size / 1e6:,.0f} MB"
        )
        from analysis.journal import load_run

        t = time.perf_counter()
        loaded = load_run(folder / "run")
        seconds = time.perf_counter() - t
        print(
            f"  load_run: {seconds:.1f} s for {loaded.rows:,} samples ({len(loaded.stats):,} step stats, "
            f"{len(loaded.samples):,} samples, {sum(map(len, loaded.held_out.values())):,} held-out records, "
            f"{len(loaded.warnings)} warnings)"
        )
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
