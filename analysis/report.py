"""Ablation report: for each variant of an ablation, its latest evaluated run, in one table and two pictures,
next to the figures the recipes say were published.

    python -m analysis.report recipes/ablations/model-size.yaml [--runs-dir runs] [--out reports/model-size]

A variant's runs are runs/<ablation>-<variant>/<timestamp>/ (what `make sweep` creates); its numbers come from
the newest run that has an evaluation (eval/*/results.json from analysis.evaluate). Variants without one are
listed as missing, never dropped silently.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis import curves  # noqa: E402
from data_tools.output import Parser
from launch.recipe import RecipeError, load_ablation  # noqa: E402


def latest_results(runs_dir: Path, name: str) -> tuple[Path, dict] | None:
    """The newest run of `name` with an evaluation: (run folder, metrics of its last-evaluated model)."""
    for run in sorted((runs_dir / name).glob("*"), reverse=True):
        results = sorted(run.glob("eval/*/results.json"))
        if results:
            final = [r for r in results if r.parent.name == "final"]
            return run, json.loads((final or results)[-1].read_text())["metrics"]
    return None


def build(ablation: Path, runs_dir: Path, out: Path) -> dict:
    variants = load_ablation(ablation)
    rows, missing, found_runs = [], [], []
    for recipe in variants:
        hit = latest_results(runs_dir, recipe.name)
        published = "; ".join(f"{e.get('value')} ({e.get('source')})" for e in recipe.meta.get("expected") or [])
        if hit is None:
            missing.append(recipe.name)
            rows.append({"variant": recipe.meta["variant"], "run": None, "published": published})
            continue
        run, m = hit
        found_runs.append(run)
        rows.append(
            {
                "variant": recipe.meta["variant"],
                "run": str(run),
                "accuracy": m["accuracy"],
                "mean_reward": m["mean_reward"],
                "format_rate": m["format_rate"],
                "length": m["length"]["mean"],
                "published": published,
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# {ablation.stem}",
        "",
        "| variant | accuracy | mean reward | format | mean length | published | run |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["run"] is None:
            lines.append(f"| {r['variant']} | missing | | | | {r['published']} | |")
        else:
            lines.append(
                f"| {r['variant']} | {r['accuracy']:.3f} | {r['mean_reward']:.3f} | {r['format_rate']:.3f} | "
                f"{r['length']:.0f} | {r['published']} | {r['run']} |"
            )
    if missing:
        lines += ["", "Missing (no evaluated run): " + ", ".join(missing)]
    lines += [
        "",
        "accuracy: correct answers only (greedy unless the evaluation said otherwise); mean reward: "
        "TinyZero's, with 0.1 for a wrong answer in tags.",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    done = [r for r in rows if r["run"]]
    if done:
        fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(done)), 4))
        ax.bar([r["variant"] for r in done], [r["accuracy"] for r in done], color="C0")
        ax.set_ylabel("held-out accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(f"{ablation.stem}: final accuracy per variant")
        fig.tight_layout()
        fig.savefig(out / "accuracy.png", dpi=120)
        plt.close(fig)
        curves.plot(found_runs, out / "curves")
    return {"rows": rows, "missing": missing}


def main(argv=None) -> int:
    parser = Parser(
        prog="python -m analysis.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ablation", type=Path)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        result = build(args.ablation, args.runs_dir, args.out or Path("reports") / args.ablation.stem)
    except RecipeError as e:
        print(f"python -m analysis.report: error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {(args.out or Path('reports') / args.ablation.stem) / 'report.md'}"
        + (f"; missing: {', '.join(result['missing'])}" if result["missing"] else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
