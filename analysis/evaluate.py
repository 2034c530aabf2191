"""Evaluate a model or a run's checkpoints on held-out prompts, scored by the training reward itself.

    python -m analysis.evaluate --model runs/qwen2.5-3b-ppo/20260101-120000/final --data data/countdown/test.parquet
    python -m analysis.evaluate --run runs/qwen2.5-3b-ppo/20260101-120000          # final model and checkpoints
    python -m analysis.evaluate --model Qwen/Qwen2.5-3B --data data/countdown/test.parquet --n 8 --temperature 1.0

Greedy by default, as TinyZero validates. Reports strict accuracy (correct answers only), TinyZero's mean
reward (with its 0.1 format credit, to compare with its validation curve), format rate, pass@k for every
k <= n (unbiased estimator), response lengths and truncation, and how often the thinking verifies, backtracks
and enumerates attempts; each also by how many numbers a puzzle has and by the solver's difficulty band.
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
Backend: vLLM when installed and a GPU is present, transformers otherwise (`--backend` to choose).
"""

from __future__ import annotations

import filecmp
import json
import os
import re
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from analysis import metrics
from analysis.backends import Settings, in_own_process, in_this_process, make_backend
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


def run_dataset(run: Path) -> list[Path]:
    """A run's eval set: the files of `eval.dataset` in its recipe.yaml (a comma-separated list, relative paths
    under the repository, as the launcher resolves them)."""
    import yaml

    recipe = run / "recipe.yaml"
    try:
        saved = yaml.safe_load(recipe.read_text()) if recipe.is_file() else None
    except yaml.YAMLError as e:
        raise UsageError(f"{recipe}: not valid YAML ({str(e).splitlines()[0]}): pass --data") from None
    spec = ((saved.get("eval") or {}) if isinstance(saved, dict) else {}).get("dataset")
    if not spec:
        raise UsageError(f"{run} has no recipe.yaml naming eval.dataset: pass --data (a test file from data_tools)")
    return output.dataset_files(spec, cli.REPO)


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
    results["by_numbers"] = metrics.by_group(samples, lambda s: s["numbers"], settings.n)
    results["by_difficulty"] = metrics.by_group(samples, lambda s: metrics.difficulty_band(s["solutions"]), settings.n)
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


# ---- a run: its models, their steps, the step curve ----------------------------------------------------------


def run_models(run: Path) -> list[Path]:
    """A run's final model, then its Hugging Face checkpoints by step. OpenRLHF writes `ckpt/global_step{N}_hf`
    every ckpt.save_steps and `ckpt/best_global_step{N}_hf` when the eval metric improves; a best copy is
    evaluated only when no regular one exists for its step (they hold the same weights)."""
    by_step: dict[int, Path] = {}
    others = []
    for config in sorted((run / "ckpt").glob("**/config.json")):
        found = re.fullmatch(r"(best_)?global_step(\d+)_hf", config.parent.name)
        if not found:
            others.append(config.parent)
        elif found.group(1) is None or int(found.group(2)) not in by_step:
            by_step[int(found.group(2))] = config.parent
    final = [run / "final"] if (run / "final" / "config.json").is_file() else []
    return final + [by_step[step] for step in sorted(by_step)] + others


def checkpoint_step(model: Path) -> int | None:
    found = re.fullmatch(r"(?:best_)?global_step(\d+)_hf", model.name)
    return int(found.group(1)) if found else None


def curve_points(run: Path, evaluated: list[tuple[Path, dict]]) -> list[dict]:
    """One point per evaluated model, by step (those without one last): its folder in the run, its step, whether
    it is the final model, its accuracy and mean reward."""
    checkpoints = {checkpoint_step(m): m for m, _ in evaluated if checkpoint_step(m) is not None}
    points = []
    for model, figures in evaluated:
        point = {"model": model.relative_to(run).as_posix(), "step": checkpoint_step(model), "final": False}
        if model == run / "final":
            step, same = final_step(run, checkpoints)
            point.update(step=step, final=True)
            if same:
                point["same_weights_as"] = same.relative_to(run).as_posix()
        points.append({**point, **figures})
    return sorted(points, key=lambda p: (p["step"] is None, p["step"] or 0))


def final_step(run: Path, checkpoints: dict[int, Path]) -> tuple[int | None, Path | None]:
    """The step OpenRLHF saved final/ at, the end of training as the run's recipe plans it; or None, with the
    checkpoint whose weights the final model holds if one does, when the final model has no step of its own."""
    last = max(checkpoints, default=None)
    if last is not None and same_weights(run / "final", checkpoints[last]):
        return None, checkpoints[last]
    step = planned_steps(run)
    if step is not None and last is not None and step <= last:
        # a checkpoint saved at the last step holds the final weights; an end before the last checkpoint means
        # the recipe is not what the run trained with
        return None, checkpoints[last] if step == last else None
    return step, None


WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")  # how Hugging Face names weights


def same_weights(a: Path, b: Path) -> bool:
    """Whether two model folders hold byte-identical weight files (read up to the first difference)."""
    names = [sorted(f.name for pattern in WEIGHT_FILES for f in folder.glob(pattern)) for folder in (a, b)]
    return bool(names[0]) and names[0] == names[1] and all(filecmp.cmp(a / n, b / n, shallow=False) for n in names[0])


def planned_steps(run: Path) -> int | None:
    """The global steps the run's resolved recipe trains for, counted over its training prompts as preflight
    counts them (launch.estimates). None when that cannot be known: no resolved recipe, its data gone, OpenRLHF
    not installed to read it, or dynamic filtering (then the steps depend on the rewards)."""
    import yaml

    from launch import estimates, runs

    try:
        args = runs.load(run).args()
        prompts = sum(output.count_rows(f) for f in output.dataset_files(args.data.prompt_dataset, cli.REPO))
    except (UsageError, ImportError, OSError, ValueError, yaml.YAMLError):
        return None
    if args.algo.dynamic_filtering_enable or not prompts:
        return None
    return estimates.training_steps(args, prompts)


def write_step_curve(folder: Path, points: list[dict]) -> None:
    """accuracy_by_step.json (`curve_points`) and its plot into `folder`, each file whole or as it was."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_step_curve(plt, points)
    try:
        replace_file(folder / "accuracy_by_step.json", lambda f: f.write_text(json.dumps(points, indent=2) + "\n"))
        replace_file(folder / "accuracy_by_step.png", lambda f: fig.savefig(f, dpi=120, format="png"))
    except OSError as e:
        raise UsageError(
            f"cannot write the step curve into {folder} ({e.strerror or e}): choose another --out"
        ) from None
    finally:
        plt.close(fig)


def plot_step_curve(plt, points: list[dict]):
    """Held-out accuracy and mean reward against the step; the models without a step (the final model when its
    step is unknown or a checkpoint's) on a panel of their own beside it, never at a made-up step."""
    stepped = [p for p in points if p["step"] is not None]
    apart = [p for p in points if p["step"] is None]
    if apart:
        fig, (ax, side) = plt.subplots(1, 2, figsize=(8, 4), sharey=True, gridspec_kw={"width_ratios": [6, 1]})
    else:
        fig, ax = plt.subplots(figsize=(7, 4))
    for key, color, style in (
        ("accuracy", "C0", {"marker": "o", "label": "accuracy (correct only)"}),
        ("mean_reward", "C1", {"marker": ".", "alpha": 0.5, "label": "mean reward (TinyZero's)"}),
    ):
        ax.plot([p["step"] for p in stepped], [p[key] for p in stepped], color=color, **style)
        if apart:
            side.plot(range(len(apart)), [p[key] for p in apart], linestyle="none", color=color, **style)
    for p in stepped:
        if p["final"]:
            ax.annotate("final", (p["step"], p["accuracy"]), textcoords="offset points", xytext=(0, 8), ha="center")
    ax.set_xlabel("step")
    ax.set_ylabel("held-out")
    ax.set_title("Held-out accuracy over training")
    ax.grid(alpha=0.3)
    ax.legend()
    if apart:
        side.set_xticks(range(len(apart)), [point_label(p) for p in apart], fontsize=8)
        side.set_xlim(-0.5, len(apart) - 0.5)
        side.set_xlabel("no step")
        side.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def point_label(point: dict) -> str:
    """ "final" (with the checkpoint whose weights it holds), or the folder's name."""
    if not point["final"]:
        return Path(point["model"]).name
    return f"final\n= {Path(point['same_weights_as']).name}" if "same_weights_as" in point else "final"


def replace_file(path: Path, write) -> None:
    """`write(tmp)` beside `path`, then put it in place: `path` is whole or as it was."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


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
    outs = folders + files
    for out in outs:
        for source in inputs:
            if out.resolve() == source.resolve() or out.resolve() in source.resolve().parents:
                raise UsageError(f"{out} would replace {source}, an input: choose another --out")
    cli.refuse_overwrite(*outs, force=force)
    for out in outs:
        if out in folders and out.exists() and not out.is_dir():
            raise UsageError(f"{out} exists and is not a folder: choose another --out")
        existing = next(p for p in out.parents if p.exists())  # where its missing folders will be made
        if not existing.is_dir():
            raise UsageError(f"cannot create {out}: {existing} is not a folder: choose another --out")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write into {existing} (permission denied): choose another --out")


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
