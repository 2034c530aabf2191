"""Evaluate a model or a run's checkpoints on held-out prompts, scored by the training reward itself.

    python -m analysis.evaluate --model runs/countdown-qwen2.5-3b-ppo/20260101-120000/final \
        --data data/countdown/test.parquet
    python -m analysis.evaluate --run runs/countdown-qwen2.5-3b-ppo/20260101-120000    # final model and checkpoints
    python -m analysis.evaluate --model Qwen/Qwen2.5-3B --data data/countdown/test.parquet --n 8 --temperature 1.0

Greedy by default, as TinyZero validates. Reports strict accuracy (correct answers only), TinyZero's mean
reward (with its 0.1 format credit, to compare with its validation curve), format rate, pass@k for every
k <= n (unbiased estimator), response lengths and truncation, and how often the thinking verifies, backtracks
and enumerates attempts; each also by how many numbers a Countdown puzzle has and by the solver's difficulty band
(when the data rates its puzzles), in numeric order; a task with neither (multiplication) has neither section.
Writes results.json, samples.jsonl and summary.md into --out (default: <model>/eval), whole or not at all; an
existing one is replaced only with --force, and never a model or the data. With --run, the prompts are the
run's `eval.dataset` (from its recipe.yaml): a comma-separated list is read file by file and evaluated as one
set, as OpenRLHF's own eval does, so the figures are over all of them together; pass --data to evaluate one
file. Each model's results go to <run>/eval/<model> (--out: DIR/<model>), and accuracy_by_step.json and .png
beside them plot held-out accuracy against the step: the final model at the step its recipe ends on, or apart,
labelled "final" (`"step": null`), when that step cannot be known or its weights are a checkpoint's.

One process per model: with several (--run), each is evaluated in a process spawned for it, which writes that
model's folder and exits before the next model loads. vLLM keeps a model's GPU memory until its process exits,
so a second model loaded in the same process would fail vLLM's check of free memory. A model that fails (cannot
be loaded, runs out of memory, its process killed) stops the evaluation with one line naming it; the models
before it keep their results.
Backend: vLLM when installed and a GPU is present, transformers otherwise (`--backend` to choose). A hub name is
looked for in the local cache only when the hub does not answer within 5 s: a missing one is one line in seconds,
not a minute of retries.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from analysis import metrics, writable
from analysis.backends import Settings, in_own_process, in_this_process, make_backend
from analysis.run_folder import curve_points, run_dataset, run_models, write_step_curve
from data_tools import output
from data_tools.templates import render_prompt
from reward_funcs import cli, score_sample
from reward_funcs.cli import UsageError

PROG = "python -m analysis.evaluate"


# ---- data ----------------------------------------------------------------------------------------------------


def read_rows(path: Path, limit: int | None = None) -> list[dict]:
    """The rows of one test file written by data_tools, the first `limit` of them if given."""
    if not path.is_file():
        raise UsageError(f"{path}: no such dataset (make one with python -m data_tools.countdown)")
    rows = output.read_rows(path, limit)
    if not rows:
        raise UsageError(f"{path}: no rows (an empty test file): give one with prompts, written by data_tools")
    if not {"prompt", "label"} <= set(rows[0]):
        raise UsageError(f"{path}: needs 'prompt' and 'label' columns (the data_tools layout)")
    return rows


def read_dataset(files: list[Path], limit: int | None = None) -> list[dict]:
    """The rows of every file, in order, as one set (OpenRLHF evaluates a list of eval files the same way,
    concatenated); the first `limit` of them if given."""
    rows = [row for path in files for row in read_rows(path, limit)]
    return rows[:limit] if limit else rows


# ---- evaluation ----------------------------------------------------------------------------------------------


def evaluate(backend, rows: list[dict], settings: Settings, progress: bool = True) -> tuple[dict, list[dict]]:
    samples = []
    off = None if progress else True  # None: a bar on a terminal only, none in logs and captured output
    bar = tqdm(total=len(rows), desc="evaluating", unit="prompt", disable=off)
    for start in range(0, len(rows), settings.batch_size):
        part = rows[start : start + settings.batch_size]
        prompts = [render_prompt(r["prompt"], backend.tokenizer) for r in part]
        for offset, (row, prompt, group) in enumerate(zip(part, prompts, backend.generate(prompts), strict=True)):
            label = json.loads(row["label"]) if isinstance(row["label"], str) else row["label"]
            for j, completion in enumerate(group):
                score = score_sample(prompt + completion.text, prompt, row["label"])
                samples.append(
                    {
                        "prompt_index": start + offset,
                        "sample": j,
                        "task": label.get("task"),
                        "numbers": len(label.get("numbers") or []),
                        "solutions": row.get("solutions"),
                        "response": completion.text,
                        "tokens": completion.tokens,
                        "truncated": completion.truncated,
                        "reward": score.reward,
                        "correct": score.correct,
                        "formatted": score.formatted,
                        "reason": score.reason,
                        "answer": score.answer,
                    }
                )
        bar.update(len(part))
    bar.close()
    results = metrics.summarize(samples, settings.n)
    # Only where the grouping means something: how many numbers a Countdown puzzle combines (a product always has
    # two operands), and the solver's difficulty bands when the data rates its puzzles; empty for a task with neither.
    results["by_numbers"] = metrics.by_group(
        samples, lambda s: s["numbers"] if s["task"] == "countdown" else None, settings.n
    )
    rated = any(s["solutions"] is not None for s in samples)
    band = metrics.difficulty_band
    results["by_difficulty"] = metrics.by_group(samples, lambda s: band(s["solutions"]), settings.n) if rated else {}
    return results, samples


def summary_markdown(results: dict, settings: dict) -> str:
    lines = [
        f"# Evaluation of {settings['model']}",
        "",
        f"{settings['data']}: {results.get('prompts', 0)} prompts x {settings['n']} sample(s), temperature "
        f"{settings['temperature']}, {settings['backend']} backend",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in [
        "accuracy",
        "mean_reward",
        "format_rate",
        *[k for k in results if k.startswith("pass@")],
        "truncation_rate",
        "verification_rate",
        "backtracking_rate",
        "enumeration_rate",
    ]:
        if key in results:
            lines.append(f"| {key} | {results[key]:.3f} |")
    length = results.get("length", {})
    lines.append(
        f"| response tokens (mean / median / p90) | {length.get('mean', 0):.0f} / "
        f"{length.get('median', 0):.0f} / {length.get('p90', 0):.0f} |"
    )
    for title, key in (("By how many numbers", "by_numbers"), ("By difficulty (solver's solutions)", "by_difficulty")):
        if results.get(key):
            lines += [
                "",
                f"## {title}",
                "",
                "| group | prompts | accuracy | mean reward | format |",
                "|---|---|---|---|---|",
            ]
            for name, m in results[key].items():
                lines.append(
                    f"| {name} | {m['prompts']} | {m['accuracy']:.3f} | {m['mean_reward']:.3f} | "
                    f"{m['format_rate']:.3f} |"
                )
    lines += ["", "accuracy counts correct answers only; mean_reward is TinyZero's (0.1 for a wrong answer in tags)."]
    return "\n".join(lines) + "\n"


def write_results(folder: Path, results: dict, samples: list[dict], settings: dict) -> None:
    """results.json, samples.jsonl and summary.md into `folder`."""
    (folder / "results.json").write_text(json.dumps({"settings": settings, "metrics": results}, indent=2) + "\n")
    with open(folder / "samples.jsonl", "w") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    (folder / "summary.md").write_text(summary_markdown(results, settings))


# ---- command line --------------------------------------------------------------------------------------------


def build_parser() -> cli.Parser:
    parser = cli.parser(PROG, __doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="a local model folder or a hub name to evaluate")
    target.add_argument("--run", type=Path, help="a run folder: evaluate its final model and every HF checkpoint")
    parser.add_argument(
        "--data",
        help="test file(s) written by data_tools, comma-separated for several, evaluated as one set "
        "(required with --model; default with --run: the run's eval.dataset)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for the results (default: <model>/eval, ./eval for a hub name); with --run, the folder that "
        "holds one folder per model and the step curve (default: <run>/eval)",
    )
    parser.add_argument("--n", type=int, default=1, help="samples per prompt; pass@k for every k <= n (default: 1)")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (default: 0, greedy)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling's top-p (default: 1.0, off)")
    parser.add_argument("--max-new-tokens", type=int, default=1024, help="longest completion (default: 1024)")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per generation call (default: 16)")
    parser.add_argument("--limit", type=int, help="only the first N prompts (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    parser.add_argument(
        "--backend",
        choices=("auto", "vllm", "transformers"),
        default="auto",
        help="auto: vLLM when installed and a GPU is present, else transformers (default: auto)",
    )
    cli.add_force(parser)
    return parser


def check_settings(args) -> Settings:
    if args.n < 1 or args.max_new_tokens < 1 or args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise UsageError("--n, --max-new-tokens, --batch-size and --limit must be at least 1")
    if args.n > 1 and args.temperature == 0:
        raise UsageError("--n above 1 needs --temperature above 0 (greedy decoding repeats itself)")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise UsageError("--temperature must be at least 0 and --top-p in (0, 1]")
    return Settings(args.n, args.temperature, args.top_p, args.max_new_tokens, args.seed, args.batch_size)


def plan(args) -> tuple[list[Path], list[tuple[str, Path]]]:
    """The test files, and each model to evaluate with the folder its results go to."""
    if args.model:
        if not args.data:
            raise UsageError("--model needs --data (a test file written by data_tools)")
        default = Path(args.model if os.path.isdir(args.model) else ".") / "eval"
        return output.dataset_files(args.data, Path()), [(args.model, args.out or default)]
    if not args.run.is_dir():
        raise UsageError(f"--run {args.run}: no such run folder")
    models = run_models(args.run)
    if not models:
        raise UsageError(f"{args.run}: no final model or Hugging Face checkpoint (config.json) in it")
    files = output.dataset_files(args.data, Path()) if args.data else run_dataset(args.run)
    folder = args.out or args.run / "eval"
    return files, [(str(m), folder / m.relative_to(args.run).as_posix().replace("/", "_")) for m in models]


def step_curve_files(args, targets) -> list[Path]:
    """Where a run's step curve goes when it has several models: beside their folders."""
    if not args.run or len(targets) < 2:
        return []
    folder = args.out or args.run / "eval"
    return [folder / "accuracy_by_step.json", folder / "accuracy_by_step.png"]


def check_outputs(folders: list[Path], files: list[Path], inputs: list[Path], force: bool) -> None:
    """Before any model is loaded, so that a model is never blamed for --out: refuse an output that exists
    (without --force), that would replace an input (a model folder, a test file), or that cannot be written."""
    for out in folders + files:
        for source in inputs:
            if out.resolve() == source.resolve() or out.resolve() in source.resolve().parents:
                raise UsageError(f"{out} would replace {source}, an input: choose another --out")
    cli.refuse_overwrite(*folders, *files, force=force)  # every one named at once
    for out in folders + files:
        writable.check(out, force, kind="folder" if out in folders else "file")


# ---- one model -----------------------------------------------------------------------------------------------


def evaluate_model(model: str, out: Path, rows: list[dict], settings: Settings, args, data: str) -> dict:
    """Evaluate one model and write its folder (in the process `run` gives it); its accuracy and mean reward."""
    backend = make_backend(args.backend, model, settings)
    results, samples = evaluate(backend, rows, settings)
    record = {"model": model, "data": data, "backend": backend.name, **asdict(settings), "limit": args.limit}
    try:
        with output.atomic_folder(out, args.force, parents=True) as tmp:
            write_results(tmp, results, samples, record)
    except OSError as e:  # the disk's doing, never the model's
        raise UsageError(f"cannot write {out} ({e.strerror or e}): choose another --out") from None
    print(
        f"{model}: accuracy {results['accuracy']:.3f}, mean reward {results['mean_reward']:.3f}, "
        f"format {results['format_rate']:.3f} -> {out}",
        flush=True,
    )
    return {"accuracy": results["accuracy"], "mean_reward": results["mean_reward"]}


def run(args) -> int:
    settings = check_settings(args)
    files, targets = plan(args)
    if not files:
        raise UsageError(f"--data {args.data!r} names no file: give a test file written by data_tools")
    curve = step_curve_files(args, targets)
    models = [Path(m) for m, _ in targets if os.path.isdir(m)]
    check_outputs([out for _, out in targets], curve, models + files, args.force)
    rows = read_dataset(files, args.limit)
    data = ",".join(map(str, files))
    # several models: each in a process of its own, so that vLLM gives its GPU memory back before the next loads
    evaluate_one = in_own_process if len(targets) > 1 else in_this_process
    evaluated = [(Path(m), evaluate_one(evaluate_model, m, out, rows, settings, args, data)) for m, out in targets]
    if curve:
        write_step_curve(curve[0].parent, curve_points(args.run, evaluated))
    return 0


main = cli.entry_point(PROG, build_parser)(run)  # main(argv) -> exit status: 0, or 2 with one line on bad input

if __name__ == "__main__":
    raise SystemExit(main())
