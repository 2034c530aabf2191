"""Training curves from OpenRLHF's TensorBoard logs, several runs overlaid: where the "aha moment" shows, as
accuracy and response length rising together.

    python -m analysis.curves runs/countdown-qwen2.5-3b-ppo/20260101-120000 [more runs] [--out curves] [--smooth 0.9]

A curriculum's run folder (stage-1/, stage-2/, ...: launch/stages.py) is one run: each stage's steps follow the
previous stage's last step (its planned steps, else the last step it logged), and a dotted line marks where each
stage begins. Besides OpenRLHF's own series: training accuracy per task when a run mixes tasks
(reward_funcs.task_logs), held-out reward per datasource (`eval_<datasource>_pass1`), the fraction of prompts
dynamic filtering kept (its logged pass rate is 100 x n_samples_per_prompt times too high:
analysis.metrics.kept_prompt_rate), and held-out accuracy from analysis.evaluate's accuracy_by_step.json.
`python -m analysis.run_report RUN...` draws these series and the rollout journal's behaviour rates as one HTML
page, with the aha step and the samples.

Reads the event files record by record, checksums included, and draws one PNG per quantity (reward, accuracy,
format rate, response length, KL, entropy, held-out accuracy) with matplotlib. A series logged every step is drawn
raw and faint with an exponential moving average on top; a sparser one (the held-out evaluation, every eval_steps)
as its points, never averaged across them. An event file that is truncated (a run still writing, or killed),
corrupt or not an event file at all is one warning line on stderr naming it and what was read from it; the curves
show what was read. A run's name comes from its recipe.yaml when there is one. The PNGs go into --out whole or not
at all; an existing --out is replaced only with --force.
"""

from __future__ import annotations

import itertools
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

from analysis import metrics, writable  # noqa: E402
from analysis.events import events, saved_recipe  # noqa: E402
from data_tools.output import atomic_folder  # noqa: E402
from reward_funcs import cli  # noqa: E402

PROG = "python -m analysis.curves"
DERIVED = "derived/"  # series computed here from the logged ones (never a TensorBoard tag of OpenRLHF's)

# (file name, title, y label, tag suffixes to look for, in order of preference)
QUANTITIES = [
    ("reward", "Training reward", "mean reward (0 / 0.1 / 1)", ("train/reward",)),
    ("accuracy", "Training accuracy", "fraction correct", ("train/accuracy",)),
    ("format", "Answer format", "fraction with an answer tag", ("train/format",)),
    ("response_length", "Response length", "tokens", ("train/response_length",)),
    ("kl", "KL to the reference", "KL (nats per token)", ("train/kl",)),
    ("entropy", "Policy entropy", "nats per token", ("train/entropy_loss", "train/entropy")),
    (
        "eval_reward",
        "Held-out mean reward (greedy; TinyZero's validation score)",
        "mean reward (0 / 0.1 / 1)",
        ("_pass1",),
    ),
    ("accuracy_by_task", "Training accuracy per task", "fraction correct", (f"{DERIVED}task_accuracy/",)),
    ("kept_prompts", "Prompts kept by dynamic filtering", "fraction of prompts", (f"{DERIVED}kept_prompts",)),
    ("held_out_accuracy", "Held-out accuracy (analysis.evaluate)", "fraction correct", (f"{DERIVED}held_out",)),
]
# Quantities drawn as one line per tag found (per datasource, per task), named after it when a run has several.
EVERY_TAG = {"eval_reward": ("eval/eval_", "_pass1"), "accuracy_by_task": (f"{DERIVED}task_accuracy/", "")}
STAGE = re.compile(r"stage-(\d+)")


def run_name(run: Path) -> str:
    if (run / "recipe.yaml").is_file():
        meta = saved_recipe(run).get("recipe") or {}
        return f"{meta.get('name', run.parent.name)} ({run.name})"
    return run.name


def read_scalars(run: Path, warn=None) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a run: tag -> [(step, value)] sorted by step; a curriculum's stages joined into one
    (`read_run`), and series of DERIVED tags computed from them. `warn(line)` (default: stderr) hears of each event
    file that could not be read to its end."""
    return read_run(run, warn)[0]


@dataclass(frozen=True)
class Stage:
    folder: Path
    name: str
    offset: int  # the joined step its step 0 is drawn at
    steps: int | None  # its last step: planned, else logged; None when neither is known


def stage_folders(run: Path) -> list[Path]:
    """A curriculum run's stage folders (stage-1, stage-2, ... as launch/stages.py writes them) in order; [] for a
    plain run."""
    if not run.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run.iterdir() if p.is_dir() and (m := STAGE.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def read_run(run: Path, warn=None) -> tuple[dict[str, list[tuple[int, float]]], list[Stage]]:
    """(series, stages): a plain run's series, or a curriculum's, each stage's steps shifted to follow the
    previous stage's last step; its stages ([] for a plain run)."""
    folders = stage_folders(run)
    if not folders:
        return with_derived(run, read_folder(run, warn), None), []
    joined: dict[str, dict[int, float]] = {}
    stages, offset = [], 0
    for folder in folders:
        series = read_folder(folder, warn)
        steps = stage_steps(folder, series)
        stages.append(Stage(folder, stage_name(folder), offset, steps))
        for tag, points in with_derived(folder, series, steps).items():
            joined.setdefault(tag, {}).update((offset + step, value) for step, value in points)
        offset += steps or 0
    return {tag: sorted(points.items()) for tag, points in joined.items()}, stages


def read_folder(run: Path, warn=None) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series under `run` (all event files, any depth): tag -> [(step, value)] sorted by step."""
    series: dict[str, dict[int, float]] = {}
    for path in sorted(run.rglob("events.out.tfevents.*")):
        scalars, problem = read_event_file(path)
        for tag, points in scalars.items():
            series.setdefault(tag, {}).update(points)
        if problem:
            read = [step for points in scalars.values() for step in points]
            what = f"read {len(read)} values, steps {min(read)} to {max(read)}" if read else "nothing read"
            (warn or warning)(f"{path}: {problem}; {what}")
    return {tag: sorted(points.items()) for tag, points in series.items()}


def stage_name(folder: Path) -> str:
    stage = (saved_recipe(folder).get("recipe") or {}).get("stage") or {}
    return str(stage.get("name") or folder.name)


def stage_steps(folder: Path, series: dict) -> int | None:
    """The step a stage ends on: what its recipe plans (analysis.run_folder.planned_steps), else the last step it
    logged a training value at."""
    from analysis.run_folder import planned_steps

    planned = planned_steps(folder)
    if planned is not None:
        return planned
    logged = [step for tag, points in series.items() if tag.startswith("train/") for step, _ in points]
    return max(logged, default=None)


# ---- series computed from the logged ones --------------------------------------------------------------------


def with_derived(folder: Path, series: dict, steps: int | None) -> dict:
    """`series` plus the DERIVED ones: accuracy per task, prompts kept by dynamic filtering, held-out accuracy."""
    derived = {**task_series(series), **kept_series(folder, series), **held_out_series(folder, steps)}
    return {**series, **{DERIVED + tag: points for tag, points in derived.items() if points}}


def task_series(series: dict) -> dict[str, list[tuple[int, float]]]:
    """task_accuracy/<task>: training accuracy per task, step by step (analysis.metrics.task_accuracy), when the
    run holds samples of more than one task."""
    by_step: dict[int, dict[str, float]] = {}
    for tag, points in series.items():
        if tag.startswith("train/") and tag.rsplit("_", 1)[-1] in ("share", "correct", "format"):
            for step, value in points:
                by_step.setdefault(step, {})[tag[len("train/") :]] = value
    found: dict[str, list[tuple[int, float]]] = {}
    for step in sorted(by_step):
        for task, figures in metrics.task_accuracy(by_step[step]).items():
            found.setdefault(f"task_accuracy/{task}", []).append((step, figures["accuracy"]))
    return found if len(found) > 1 else {}


def kept_series(folder: Path, series: dict) -> dict[str, list[tuple[int, float]]]:
    """kept_prompts: the fraction of prompts dynamic filtering kept (analysis.metrics.kept_prompt_rate)."""
    logged = series.get("train/dynamic_filtering_pass_rate")
    n = (saved_recipe(folder).get("rollout") or {}).get("n_samples_per_prompt", 1)
    if not logged or not isinstance(n, int) or n < 1:
        return {}
    return {"kept_prompts": [(step, metrics.kept_prompt_rate(value, n)) for step, value in logged]}


def held_out_series(folder: Path, steps: int | None) -> dict[str, list[tuple[int, float]]]:
    """held_out: analysis.evaluate's accuracy by step (eval/accuracy_by_step.json). A final model without a step
    of its own is drawn at `steps` (a stage's end) when that is known and it is not a checkpoint's copy."""
    try:
        points = json.loads((folder / "eval" / "accuracy_by_step.json").read_text())
    except (OSError, ValueError):
        return {}
    found = []
    for point in points if isinstance(points, list) else []:
        if not isinstance(point, dict) or type(point.get("accuracy")) not in (int, float):
            continue
        step = point.get("step")
        if step is None and point.get("final") and steps is not None and "same_weights_as" not in point:
            step = steps
        if isinstance(step, int):
            found.append((step, float(point["accuracy"])))
    return {"held_out": sorted(found)}


def read_event_file(path: Path) -> tuple[dict[str, dict[int, float]], str | None]:
    """The scalars of one TensorBoard event file, tag -> {step: value}, and what stopped the reading before the
    end of the file (None when nothing did; analysis.events)."""
    scalars: dict[str, dict[int, float]] = {}
    problems: list[str] = []
    for event in events(path, problems):
        for value in event.summary.value:
            number = scalar(value)
            if number is not None:
                scalars.setdefault(value.tag, {})[event.step] = number
    return scalars, problems[0] if problems else None


def scalar(value) -> float | None:
    """A summary value's number: `simple_value` (torch's SummaryWriter, OpenRLHF's), or a one-element tensor."""
    if value.HasField("simple_value"):
        return value.simple_value
    if value.HasField("tensor"):
        array = tensor_util.make_ndarray(value.tensor)
        if array.size == 1 and array.dtype.kind in "fiu":
            return float(array.reshape(()))
    return None


def warning(line: str) -> None:
    print(f"{PROG}: warning: {line}", file=sys.stderr, flush=True)


def pick(series: dict, suffixes: tuple[str, ...]) -> tuple[str, list] | None:
    for suffix in suffixes:
        for tag in sorted(series):
            if tag.endswith(suffix):
                return tag, series[tag]
    return None


def smooth(values: list[float], weight: float) -> list[float]:
    out, last = [], None
    for v in values:
        last = v if last is None else weight * last + (1 - weight) * v
        out.append(last)
    return out


def every_step(points: list[tuple[int, float]]) -> bool:
    """Whether a series is logged at every step, so that a moving average over its points is one over steps."""
    steps = [step for step, _ in points]
    return len(steps) > 1 and statistics.median(b - a for a, b in itertools.pairwise(steps)) <= 1


def lines(name: str, suffixes: tuple[str, ...], series: dict) -> list[tuple[str, list]]:
    """The lines quantity `name` draws for one run: [(what it is, points)]. One, the first tag found in order of
    preference; or, for EVERY_TAG quantities, one per tag found (per datasource, per task), each named after it
    when there are several."""
    if name not in EVERY_TAG:
        hit = pick(series, suffixes)
        return [("", hit[1])] if hit else []
    prefix, suffix = EVERY_TAG[name]
    found = [
        (tag[len(prefix) : len(tag) - len(suffix)], points)
        for tag, points in sorted(series.items())
        if tag.startswith(prefix) and tag.endswith(suffix)
    ]
    return found if len(found) > 1 else [("", points) for _, points in found]


def plot(runs: list[Path], out: Path, weight: float = 0.9, warn=None) -> dict[str, dict[str, list]]:
    """Write one PNG per quantity found; return what was plotted: quantity -> line (the run's name, and the
    datasource or task in brackets when a run has several) -> [(step, value)]."""
    out.mkdir(parents=True, exist_ok=True)
    data = {run_name(r): read_run(r, warn) for r in runs}
    plotted: dict[str, dict[str, list]] = {}
    for name, title, ylabel, suffixes in QUANTITIES:
        found = {
            (run, what): points for run, (series, _) in data.items() for what, points in lines(name, suffixes, series)
        }
        if not found:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for index, ((run, what), points) in enumerate(found.items()):
            label = f"{run} [{what}]" if what else run
            draw(ax, points, f"C{index}", label, weight)
            plotted.setdefault(name, {})[label] = list(points)
        for index, run in enumerate(data):
            for stage in data[run][1][1:]:  # where each stage after the first begins
                ax.axvline(stage.offset, color=f"C{index}", linestyle=":", alpha=0.6, linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=120)
        plt.close(fig)
    return plotted


def draw(ax, points: list, color: str, label: str, weight: float) -> None:
    steps, values = zip(*points, strict=True)
    if every_step(points):
        ax.plot(steps, values, color=color, alpha=0.25, linewidth=1)
        ax.plot(steps, smooth(list(values), weight), color=color, linewidth=2, label=label)
    else:  # one point per evaluation: averaging them would drag each toward one made hundreds of steps before
        ax.plot(steps, values, color=color, linewidth=1.5, marker="o", markersize=4, label=label)


def build_parser() -> cli.Parser:
    parser = cli.parser(PROG, __doc__)
    parser.add_argument(
        "runs", nargs="+", type=Path, help="run folders (runs/<recipe>/<timestamp>) whose TensorBoard logs to draw"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("curves"), help="folder to write the PNGs into (default: ./curves)"
    )
    parser.add_argument(
        "--smooth",
        type=float,
        default=0.9,
        help="weight of the exponential moving average drawn on top of series logged every step, 0 to 0.99; 0 is "
        "no smoothing (default: 0.9)",
    )
    cli.add_force(parser)
    return parser


def check_runs(runs: list[Path], smooth: float) -> None:
    """What a command drawing run folders checks first: every folder exists, and --smooth is in [0, 1)."""
    missing = [str(r) for r in runs if not r.is_dir()]
    if missing:
        raise cli.UsageError(f"no such run folder: {', '.join(missing)}")
    if not 0 <= smooth < 1:
        raise cli.UsageError(f"--smooth must be in [0, 1); got {smooth}")


def run(args) -> int:
    check_runs(args.runs, args.smooth)
    writable.check(args.out, args.force)  # before any event file is read
    with atomic_folder(args.out, args.force, parents=True) as tmp:
        plotted = plot(args.runs, tmp, args.smooth, warning)
        if not plotted:
            raise cli.UsageError(f"no TensorBoard scalars under {', '.join(map(str, args.runs))}; nothing written")
    print(f"wrote {', '.join(sorted(plotted))} to {args.out}")
    return 0


main = cli.entry_point(PROG, build_parser)(run)  # main(argv) -> exit status: 0, or 2 with one line on bad input

if __name__ == "__main__":
    raise SystemExit(main())
