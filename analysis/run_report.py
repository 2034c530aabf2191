"""One HTML page for one or more runs: their curves overlaid, the "aha moment" with its evidence, and the samples
the training itself scored, to read what the model did at any step.

    python -m analysis.run_report runs/countdown-qwen2.5-3b-ppo/20260101-120000 [more runs] [--out report.html]

Reads each run's journal (analysis.journal: what the reward file recorded of every scored sample) and its
TensorBoard logs. The page shows, per step and runs overlaid, reward, accuracy, format rate, response length,
truncation rate, how often responses verify, backtrack and enumerate (analysis.metrics' phrase patterns),
held-out accuracy and reward, KL and entropy; marks each run's aha step (analysis.aha states the rule, and the
page the evidence, or "not found"); and has a sample browser (a step slider; filters for correct, wrong, no
answer, truncated and each behaviour; full-text search; behaviour phrases and the answer highlighted) and a
follower of one held-out prompt across every evaluation. A run without a journal gets its curves from
TensorBoard and the page says so. The file is self-contained (no network: styles, script and data inlined) and
stays small whatever the run's length (analysis.run_page says how samples are bounded); it is written whole or
not at all, by default as report.html in the first run's folder, and an existing one is replaced only with
--force.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
from pathlib import Path

from analysis import curves, journal, metrics, run_page, writable
from reward_funcs import cli

PROG = "python -m analysis.run_report"
PAGE = Path(__file__).resolve().parent / "page"
SAMPLES_PER_STEP = 8
SAMPLE_STEPS = 400  # steps per split whose samples the browser shows, evenly spaced
HELD_OUT_PROMPTS = 32


def load_journal(run: Path, samples_per_step: int, sample_steps: int, held_out_prompts: int):
    """The run's journal (analysis.journal.RunJournal), or None when the run has none. A curriculum's stages
    (stage-1/, stage-2/...: each keeps its own journal) are joined into one, each stage's steps following the
    previous stage's last, as analysis.curves joins their TensorBoard series."""
    options = {"samples_per_step": samples_per_step, "held_out_prompts": held_out_prompts}
    stages = curves.read_run(run)[1] if curves.stage_folders(run) else []
    if not stages:
        found = journal.load_run(run, sample_steps=sample_steps, **options)
        return found if found.stats else None
    per_stage = max(1, sample_steps // len(stages))
    parts = [(stage, journal.load_run(stage.folder, sample_steps=per_stage, **options)) for stage in stages]
    joined = journal.RunJournal(run, [], [], {}, [], attribution="; ".join({p.attribution for _, p in parts}))
    for stage, part in parts:
        joined.stats += [dataclasses.replace(s, step=s.step + stage.offset) for s in part.stats]
        joined.samples += [{**r, "step": r["step"] + stage.offset} for r in part.samples]
        for key, records in part.held_out.items():
            joined.held_out.setdefault(key, []).extend({**r, "step": r["step"] + stage.offset} for r in records)
        joined.warnings += [f"{stage.folder.name}: {w}" for w in part.warnings]
        joined.rows += part.rows
    return joined if joined.stats else None


def run_name(run: Path) -> str:
    """The recipe's name and the run's timestamp (analysis.curves'), or the two folder names without a recipe."""
    return curves.run_name(run) if (run / "recipe.yaml").is_file() else f"{run.parent.name} ({run.name})"


def run_payload(run: Path, loaded, scalars: dict, weight: float, share: float, tensorboard_notes: list[str]) -> dict:
    """Everything the page shows of one run. `loaded` is its journal or None; `share` its fraction of the budgets."""
    names = list(metrics.BEHAVIOURS)
    notes = [*(loaded.warnings if loaded else []), *tensorboard_notes]
    if loaded:
        series, unit = run_page.journal_series(loaded.stats, names)
        series |= run_page.tensorboard_series(scalars, run_page.ONLY_TENSORBOARD)
    else:
        notes.append(
            "no journal: the curves come from TensorBoard alone, and there are no samples, behaviour rates or "
            "truncation rate (the journal is written by the reward file during training)"
        )
        series, unit = run_page.tensorboard_series(scalars, run_page.TENSORBOARD), "tokens"
    payload = {
        "name": run_name(run),
        "dir": str(run),
        "journal": loaded is not None,
        "notes": notes,
        "length_unit": unit,
        "aha": run_page.find_aha(series),
        "series": {key: run_page.curve(points, weight) for key, points in series.items()},
        "samples": None,
        "held_out": [],
        "missing_samples": "no samples: this run has no journal",
        "missing_held_out": "no held-out prompts: this run has no journal",
    }
    if loaded:
        field = "tokens" if unit == "tokens" else "chars"
        payload["samples"] = run_page.embed_samples(loaded.samples, loaded.stats, field, run_page.SAMPLE_CHARS * share)
        payload["held_out"], payload["held_out_note"] = run_page.embed_held_out(
            loaded.held_out, run_page.HELD_OUT_CHARS * share
        )
        payload["missing_held_out"] = "no held-out evaluations in the journal (the run set no eval.dataset)"
    return payload


def build(runs: list[Path], weight: float = 0.9, warn=None, **journal_options) -> dict:
    """The page's data for `runs`: {title, generated, behaviours (name -> pattern), quantities, runs}."""
    payloads = []
    for run in runs:
        notes: list[str] = []
        scalars = curves.read_scalars(run, warn=noting(notes, warn or warning))
        loaded = load_journal(
            run,
            journal_options.get("samples_per_step", SAMPLES_PER_STEP),
            journal_options.get("sample_steps", SAMPLE_STEPS),
            journal_options.get("held_out_prompts", HELD_OUT_PROMPTS),
        )
        for line in loaded.warnings if loaded else []:
            (warn or warning)(f"{run}: {line}")
        if loaded is None and not scalars:
            raise cli.UsageError(
                f"{run} holds neither a journal nor TensorBoard scalars: pass a run folder "
                "(runs/<recipe>/<timestamp>) that has trained"
            )
        payloads.append(run_payload(run, loaded, scalars, weight, 1 / len(runs), notes))
    units = {p["length_unit"] for p in payloads}
    unit = units.pop() if len(units) == 1 else "tokens (characters where tokens were not counted)"
    return {
        "title": "Run report: " + ", ".join(p["name"] for p in payloads),
        "generated": datetime.datetime.now().isoformat(timespec="seconds"),
        "behaviours": {name: pattern.pattern for name, pattern in metrics.BEHAVIOURS.items()},
        "quantities": run_page.quantities(metrics.BEHAVIOURS, unit),
        "runs": payloads,
    }


def noting(notes: list[str], warn):
    """A warn(line) that also keeps the line for the page."""

    def hear(line: str) -> None:
        notes.append(line)
        warn(line)

    return hear


def render(data: dict) -> str:
    """The page: the template with its style, script and data inlined. The data is JSON in which every `<` is
    escaped, so no text a model wrote can close the script element that holds it."""
    template = (PAGE / "report.html").read_text(encoding="utf-8")
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    title = data["title"].replace("&", "&amp;").replace("<", "&lt;")
    head, _, tail = template.partition("@@DATA@@")  # the data last, so that nothing in it is taken for a marker
    head = head.replace("@@TITLE@@", title).replace("@@STYLE@@", (PAGE / "report.css").read_text(encoding="utf-8"))
    tail = tail.replace("@@SCRIPT@@", (PAGE / "report.js").read_text(encoding="utf-8"))
    return head + text + tail


def write(out: Path, text: str) -> None:
    """`out` whole or as it was."""
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as e:
        raise cli.UsageError(f"cannot write {out} ({e.strerror or e}): make room, or choose another --out") from None
    finally:
        tmp.unlink(missing_ok=True)


def warning(line: str) -> None:
    print(f"{PROG}: warning: {line}", file=sys.stderr, flush=True)


def build_parser() -> cli.Parser:
    parser = cli.parser(PROG, __doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<recipe>/<timestamp>) to report on")
    parser.add_argument("--out", type=Path, help="the HTML file to write (default: report.html in the first run)")
    parser.add_argument(
        "--smooth",
        type=float,
        default=0.9,
        help="weight of the moving average drawn over series logged every step, 0 to 0.99 (default: 0.9)",
    )
    parser.add_argument(
        "--samples-per-step",
        type=int,
        default=SAMPLES_PER_STEP,
        help=f"samples per step and split to embed, at most (default: {SAMPLES_PER_STEP})",
    )
    parser.add_argument(
        "--sample-steps",
        type=int,
        default=SAMPLE_STEPS,
        help=f"steps per split whose samples to embed, evenly spaced, at most (default: {SAMPLE_STEPS})",
    )
    parser.add_argument(
        "--held-out-prompts",
        type=int,
        default=HELD_OUT_PROMPTS,
        help=f"held-out prompts to follow across evaluations, at most (default: {HELD_OUT_PROMPTS})",
    )
    cli.add_force(parser)
    return parser


def run(args) -> int:
    curves.check_runs(args.runs, args.smooth)
    for flag in ("samples_per_step", "sample_steps", "held_out_prompts"):
        if getattr(args, flag) < 0:
            raise cli.UsageError(f"--{flag.replace('_', '-')} must be 0 or more; got {getattr(args, flag)}")
    out = args.out or args.runs[0] / "report.html"
    writable.check(out, args.force, kind="file")  # before any run is read
    options = {name: getattr(args, name) for name in ("samples_per_step", "sample_steps", "held_out_prompts")}
    data = build(args.runs, args.smooth, **options)
    text = render(data)
    write(out, text)
    verdicts = "; ".join(
        f"{r['name']}: aha at step {r['aha']['step']}" if r["aha"]["found"] else f"{r['name']}: no aha found"
        for r in data["runs"]
    )
    print(f"wrote {out} ({len(text.encode()) / 1e6:.1f} MB); {verdicts}")
    return 0


main = cli.entry_point(PROG, build_parser)(run)  # main(argv) -> exit status: 0, or 2 with one line on bad input

if __name__ == "__main__":
    raise SystemExit(main())
