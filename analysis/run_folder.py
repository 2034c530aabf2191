"""A run folder as `analysis.evaluate --run` reads it: the test files of its recipe, its models (the final one,
then the Hugging Face checkpoints in step order), the final model's step, and the held-out accuracy curve.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
from pathlib import Path

from data_tools import output
from reward_funcs import cli
from reward_funcs.cli import UsageError


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
