"""Training curves from OpenRLHF's TensorBoard logs, several runs overlaid: where the "aha moment" shows, as
accuracy and response length rising together.

    python -m analysis.curves runs/countdown-qwen2.5-3b-ppo/20260101-120000 [more runs] [--out curves] [--smooth 0.9]

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
import statistics
import struct
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml
from google.protobuf.message import DecodeError  # noqa: E402
from tensorboard.compat.proto import event_pb2  # noqa: E402
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

from analysis import writable  # noqa: E402
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


def read_scalars(run: Path, warn=None) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series under `run` (all event files, any depth): tag -> [(step, value)] sorted by step.
    `warn(line)` (default: stderr) hears of each event file that could not be read to its end."""
    series: dict[str, dict[int, float]] = {}
    for events in sorted(run.rglob("events.out.tfevents.*")):
        scalars, problem = read_event_file(events)
        for tag, points in scalars.items():
            series.setdefault(tag, {}).update(points)
        if problem:
            read = [step for points in scalars.values() for step in points]
            what = f"read {len(read)} values, steps {min(read)} to {max(read)}" if read else "nothing read"
            (warn or warning)(f"{events}: {problem}; {what}")
    return {tag: sorted(points.items()) for tag, points in series.items()}


def read_event_file(path: Path) -> tuple[dict[str, dict[int, float]], str | None]:
    """The scalars of one TensorBoard event file, tag -> {step: value}, and what stopped the reading before the
    end of the file (None when nothing did). A record is an 8-byte length, its checksum, the Event, its checksum:
    TensorBoard's own reader stops silently at the first one that is cut short or fails its checksum."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return {}, f"cannot be read ({e.strerror or e})"
    if not data:
        return {}, "empty (0 bytes: the run wrote nothing, or was killed before it did)"
    scalars: dict[str, dict[int, float]] = {}
    at = 0
    while at < len(data):
        if at + 12 > len(data):
            return scalars, f"truncated: its last record is cut short at byte {len(data):,}"
        length, length_checksum = struct.unpack_from("<QI", data, at)
        if masked_crc32c(data[at : at + 8]) != length_checksum:
            return scalars, damaged(at, len(data), "a record's length fails its checksum")
        end = at + 12 + length
        if end + 4 > len(data):
            return scalars, f"truncated: its last record is cut short at byte {len(data):,}"
        body = data[at + 12 : end]
        if masked_crc32c(body) != struct.unpack_from("<I", data, end)[0]:
            return scalars, damaged(at, len(data), "an event fails its checksum")
        try:
            event = event_pb2.Event.FromString(body)
        except DecodeError:
            return scalars, damaged(at, len(data), "a record that is no event")
        for value in event.summary.value:
            number = scalar(value)
            if number is not None:
                scalars.setdefault(value.tag, {})[event.step] = number
        at = end + 4
    return scalars, None


def damaged(at: int, size: int, what: str) -> str:
    if at == 0:
        return f"not a TensorBoard event file, or corrupt from its first byte ({what})"
    return f"corrupt at byte {at:,} of {size:,} ({what}; nothing after it is read)"


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


def plot(runs: list[Path], out: Path, weight: float = 0.9, warn=None) -> dict[str, dict[str, list]]:
    """Write one PNG per quantity found; return what was plotted: quantity -> run name -> [(step, value)]."""
    out.mkdir(parents=True, exist_ok=True)
    data = {run_name(r): read_scalars(r, warn) for r in runs}
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
            if every_step(points):
                ax.plot(steps, values, color=color, alpha=0.25, linewidth=1)
                ax.plot(steps, smooth(list(values), weight), color=color, linewidth=2, label=f"{run}")
            else:  # one point per evaluation: averaging them would drag each toward one made hundreds of steps before
                ax.plot(steps, values, color=color, linewidth=1.5, marker="o", markersize=4, label=f"{run}")
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
        help="weight of the exponential moving average drawn on top of series logged every step, 0 to 0.99; 0 is "
        "no smoothing (default: 0.9)",
    )
    cli.add_force(parser)
    return parser


def run(args) -> int:
    missing = [str(r) for r in args.runs if not r.is_dir()]
    if missing:
        raise cli.UsageError(f"no such run folder: {', '.join(missing)}")
    if not 0 <= args.smooth < 1:
        raise cli.UsageError(f"--smooth must be in [0, 1); got {args.smooth}")
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
