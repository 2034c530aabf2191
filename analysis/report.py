"""Ablation report: for each variant of an ablation, its latest evaluated run, in one table and two pictures,
next to the figures the recipes say were published.

    python -m analysis.report recipes/ablations/model-size.yaml [--runs-dir runs] [--out reports/model-size]

A variant's runs are runs/<ablation>-<variant>/<timestamp>/ (what `make sweep` creates); its numbers come from
the newest run that has an evaluation (eval/*/results.json from analysis.evaluate; for a curriculum, its last
stage's: stage-N/eval/*/results.json), and its curves join a curriculum's stages into one. Variants without one are
listed as missing, never dropped silently; a results.json the report cannot use (not JSON, figures missing, not
numbers, NaN, a fraction outside [0, 1]) makes its variant "unreadable", with the reason, and the report goes on.
The report goes into --out whole or not at all; an existing one is replaced only with --force.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis import curves, run_report, writable  # noqa: E402
from data_tools.output import atomic_folder  # noqa: E402
from launch.recipe import Recipe, RecipeError, load_ablation  # noqa: E402
from reward_funcs import cli  # noqa: E402

PROG = "python -m analysis.report"


def latest_results(runs_dir: Path, name: str) -> tuple[Path, Path] | None:
    """The newest run of `name` with an evaluation: (run folder, the results.json of its last-evaluated model). A
    curriculum's model is its last stage's (`analysis.evaluate --run RUN/stage-N`); its curves join the stages."""
    for run in sorted((runs_dir / name).glob("*"), reverse=True):
        stages = curves.stage_folders(run)
        results = sorted((stages[-1] if stages else run).glob("eval/*/results.json"))
        if results:
            final = [r for r in results if r.parent.name == "final"]
            return run, (final or results)[-1]
    return None


FRACTIONS = ("accuracy", "mean_reward", "format_rate")  # what the table shows, each in [0, 1]


def read_metrics(path: Path) -> dict:
    """The figures the report shows from one results.json (analysis.evaluate's): accuracy, mean reward and format
    rate, fractions in [0, 1], and the mean length, a number >= 0. A ValueError saying what is wrong otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse_constant)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot be read ({getattr(e, 'strerror', None) or e})") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"not JSON ({e or 'nested too deep'})") from None
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict):
        raise ValueError('no "metrics" object: not written by analysis.evaluate')
    figures = {key: number(metrics, key, 1.0) for key in FRACTIONS}
    if not isinstance(metrics.get("length"), dict):
        raise ValueError(f'"length" is {metrics.get("length")!r}, not an object with a "mean"')
    return figures | {"length": number(metrics["length"], "mean", math.inf, 'the "length" mean')}


def number(figures: dict, key: str, most: float, name: str | None = None) -> float:
    name = name or f'"{key}"'
    value = figures.get(key)
    if key not in figures:
        raise ValueError(f"no {name}")
    if type(value) not in (int, float):  # bools are ints to isinstance
        raise ValueError(f"{name} is not a number: {value!r}")
    if not 0 <= value <= most:  # NaN and the infinities included
        raise ValueError(f"{name} is {value}, outside [0, {most:g}]")
    return float(value)


def refuse_constant(name: str):
    raise ValueError(f"holds {name}, which is not a number (JSON has no {name})")


def collect(variants: list[Recipe], runs_dir: Path, warn=None) -> tuple[list[dict], list[str], list[Path]]:
    """One row per variant (its newest evaluated run's metrics, or none, or why they cannot be read), the variants
    missing, the runs found. `warn(line)` is told of each results.json that cannot be used."""
    rows, missing, found_runs = [], [], []
    for recipe in variants:
        hit = latest_results(runs_dir, recipe.name)
        published = "; ".join(f"{e.get('value')} ({e.get('source')})" for e in recipe.meta.get("expected") or [])
        row = {"variant": recipe.meta["variant"], "name": recipe.name, "run": None, "published": published}
        if hit is None:
            missing.append(recipe.name)
            rows.append(row)
            continue
        run, path = hit
        row["run"] = str(run)
        try:
            m = read_metrics(path)
        except ValueError as e:
            row["unreadable"] = f"{path}: {e}"
            if warn:
                warn(f"{path}: {e}; {recipe.name} is reported as unreadable")
        else:
            found_runs.append(run)
            row |= {
                "accuracy": m["accuracy"],
                "mean_reward": m["mean_reward"],
                "format_rate": m["format_rate"],
                "length": m["length"],
            }
        rows.append(row)
    return rows, missing, found_runs


def table(title: str, rows: list[dict], missing: list[str]) -> str:
    lines = [
        f"# {title}",
        "",
        "| variant | accuracy | mean reward | format | mean length | published | run |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["run"] is None:
            lines.append(f"| {r['variant']} | missing | | | | {r['published']} | |")
        elif "unreadable" in r:
            lines.append(f"| {r['variant']} | unreadable | | | | {r['published']} | {r['run']} |")
        else:
            lines.append(
                f"| {r['variant']} | {r['accuracy']:.3f} | {r['mean_reward']:.3f} | {r['format_rate']:.3f} | "
                f"{r['length']:.0f} | {r['published']} | {r['run']} |"
            )
    if missing:
        lines += ["", "Missing (no evaluated run): " + ", ".join(missing)]
    unreadable = [r for r in rows if "unreadable" in r]
    if unreadable:
        lines += ["", "Unreadable (an evaluation the report cannot use):", ""]
        lines += [f"- {r['name']}: {r['unreadable']}" for r in unreadable]
    lines += [
        "",
        "The variants' curves, aha steps and samples, in one page: [runs.html](runs.html).",
        "",
        "accuracy: correct answers only (greedy unless the evaluation said otherwise); mean reward: "
        "TinyZero's, with 0.1 for a wrong answer in tags.",
    ]
    return "\n".join(lines) + "\n"


def accuracy_chart(title: str, done: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(done)), 4))
    ax.bar([r["variant"] for r in done], [r["accuracy"] for r in done], color="C0")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}: final accuracy per variant")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(title: str, variants: list[Recipe], runs_dir: Path, out: Path, warn=None) -> dict:
    """report.md, accuracy.png, curves/ and runs.html (analysis.run_report's page of the variants' runs) into
    `out` (an existing folder); returns the rows, the missing and the unreadable."""
    rows, missing, found_runs = collect(variants, runs_dir, warn)
    (out / "report.md").write_text(table(title, rows, missing))
    done = [r for r in rows if "accuracy" in r]
    if done:
        accuracy_chart(title, done, out / "accuracy.png")
        curves.plot(found_runs, out / "curves", warn=warn)
        try:
            run_report.write(out / "runs.html", run_report.render(run_report.build(found_runs, warn=warn)))
        except cli.UsageError as e:  # a run with neither journal nor TensorBoard logs: the table still stands
            (warn or warning)(f"no runs.html: {e}")
    return {"rows": rows, "missing": missing, "unreadable": [r["name"] for r in rows if "unreadable" in r]}


def build(ablation: Path, runs_dir: Path, out: Path, warn=None) -> dict:
    """The report of `ablation` into `out`, written in place (main writes it atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    return write_report(ablation.stem, load_ablation(ablation), runs_dir, out, warn)


def warning(line: str) -> None:
    print(f"{PROG}: warning: {line}", file=sys.stderr, flush=True)


def build_parser() -> cli.Parser:
    parser = cli.parser(PROG, __doc__)
    parser.add_argument("ablation", type=Path, help="the ablation recipe, e.g. recipes/ablations/model-size.yaml")
    cli.add_runs_dir(parser, help="where to look for the variants' runs, as `make sweep` wrote them")
    parser.add_argument(
        "--out", type=Path, help="folder for report.md and its pictures (default: reports/<ablation's file name>)"
    )
    cli.add_force(parser)
    return parser


def run(args) -> int:
    out = args.out or Path("reports") / args.ablation.stem
    writable.check(out, args.force)  # before anything is read
    try:
        variants = load_ablation(args.ablation)
    except RecipeError as e:  # one line and status 2, whichever exception class launch.recipe derives it from
        raise cli.UsageError(str(e)) from None
    if not args.runs_dir.is_dir():
        raise cli.UsageError(f"--runs-dir {args.runs_dir}: no such folder; pass the one `make sweep` wrote runs into")
    with atomic_folder(out, args.force, parents=True) as tmp:
        result = write_report(args.ablation.stem, variants, args.runs_dir, tmp, warning)
    print(
        f"wrote {out / 'report.md'}"
        + "".join(f"; {what}: {', '.join(result[what])}" for what in ("missing", "unreadable") if result[what])
    )
    return 0


main = cli.entry_point(PROG, build_parser)(run)  # main(argv) -> exit status: 0, or 2 with one line on bad input

if __name__ == "__main__":
    raise SystemExit(main())
