"""Training curves from OpenRLHF's TensorBoard logs, several runs overlaid: where the "aha moment" shows, as
accuracy and response length rising together.

    python -m analysis.curves runs/qwen2.5-3b-ppo/20260101-120000 [more runs] [--out curves] [--smooth 0.9]

Reads the event files with TensorBoard's own reader and draws one PNG per quantity (reward, accuracy, format
rate, response length, KL, entropy, held-out accuracy) with matplotlib; the raw series faint, an exponential
moving average on top. A run's name comes from its recipe.yaml when there is one. The PNGs go into --out whole
or not at all; an existing --out is replaced only with --force.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from data_tools.output import atomic_folder  # noqa: E402
from reward_funcs import cli  # noqa: E402

PROG = "python -m analysis.curves"

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
]


def run_name(run: Path) -> str:
    recipe = run / "recipe.yaml"
    if recipe.is_file():
        meta = (yaml.safe_load(recipe.read_text()) or {}).get("recipe") or {}
        return f"{meta.get('name', run.parent.name)} ({run.name})"
    return run.name


def read_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series under `run` (all event files, any depth): tag -> [(step, value)] sorted by step."""
    series: dict[str, dict[int, float]] = {}
    for events in sorted(run.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars(tag):
                series.setdefault(tag, {})[event.step] = event.value
    return {tag: sorted(points.items()) for tag, points in series.items()}


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


def plot(runs: list[Path], out: Path, weight: float = 0.9) -> dict[str, dict[str, list]]:
    """Write one PNG per quantity found; return what was plotted: quantity -> run name -> [(step, value)]."""
    out.mkdir(parents=True, exist_ok=True)
    data = {run_name(r): read_scalars(r) for r in runs}
    plotted: dict[str, dict[str, list]] = {}
    for name, title, ylabel, suffixes in QUANTITIES:
        found = {run: pick(series, suffixes) for run, series in data.items()}
        found = {run: hit for run, hit in found.items() if hit}
        if not found:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for index, (run, (_, points)) in enumerate(found.items()):
            steps, values = zip(*points, strict=True)
            color = f"C{index}"
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=1)
            ax.plot(steps, smooth(list(values), weight), color=color, linewidth=2, label=f"{run}")
            plotted.setdefault(name, {})[run] = list(points)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=120)
        plt.close(fig)
    return plotted


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
        help="weight of the exponential moving average drawn on top, 0 to 0.99; 0 is no smoothing (default: 0.9)",
    )
    cli.add_force(parser)
    return parser


def run(args) -> int:
    missing = [str(r) for r in args.runs if not r.is_dir()]
    if missing:
        raise cli.UsageError(f"no such run folder: {', '.join(missing)}")
    if not 0 <= args.smooth < 1:
        raise cli.UsageError(f"--smooth must be in [0, 1); got {args.smooth}")
    cli.refuse_overwrite(args.out, force=args.force)  # before any event file is read
    with atomic_folder(args.out, args.force, parents=True) as tmp:
        plotted = plot(args.runs, tmp, args.smooth)
        if not plotted:
            raise cli.UsageError(f"no TensorBoard scalars under {', '.join(map(str, args.runs))}; nothing written")
    print(f"wrote {', '.join(sorted(plotted))} to {args.out}")
    return 0


main = cli.entry_point(PROG, build_parser)(run)  # main(argv) -> exit status: 0, or 2 with one line on bad input

if __name__ == "__main__":
    raise SystemExit(main())
