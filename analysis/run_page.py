"""What the run report's page holds for one run: its curves, its aha step, and a bounded set of samples.

The numbers come from every scored sample: the journal's per-step statistics (analysis.journal), or OpenRLHF's
TensorBoard scalars for a run without a journal and for what only TensorBoard has (KL, entropy). The page draws
a curve from at most MAX_POINTS points: a longer series logged every step is cut into consecutive buckets of
steps, each drawn as its mean, its range (a faint band) and the moving average at its last step. The samples are
bounded so that the page stays small and quick: the journal keeps a few per step, and beyond SAMPLE_CHARS of
text only every k-th training step's are embedded; a held-out prompt is followed across every evaluation, for
as many prompts as HELD_OUT_CHARS of text allows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from analysis import aha, curves

MAX_POINTS = 1000  # points per drawn curve; more steps than that are drawn as buckets
SAMPLE_CHARS = 12_000_000  # characters of embedded sample text, all runs together
HELD_OUT_CHARS = 4_000_000  # characters of embedded held-out evaluations, all runs together
EVAL_SHARE = 0.25  # of a run's sample budget, at most, for held-out evaluation samples
SAMPLE_KEYS = ("step", "task", "prompt", "response", "reward", "correct", "answer", "reason", "tokens", "chars")

# (key, title, y label, fraction in [0, 1], split the chart's steps open in the sample browser)
QUANTITIES = [
    ("reward", "Training reward", "mean reward (0 / 0.1 / 1)", True, "train"),
    ("accuracy", "Training accuracy", "fraction correct", True, "train"),
    ("format", "Answer format", "fraction with a well-formed answer", True, "train"),
    ("length", "Response length", "{unit}", False, "train"),
    ("truncated", "Truncated responses", "fraction cut at the token limit", True, "train"),
    ("eval_accuracy", "Held-out accuracy", "fraction correct", True, "eval"),
    ("eval_reward", "Held-out mean reward (TinyZero's validation score)", "mean reward (0 / 0.1 / 1)", True, "eval"),
    ("kl", "KL to the reference", "KL (nats per token)", False, "train"),
    ("entropy", "Policy entropy", "nats per token", False, "train"),
]
BEHAVIOUR_TITLES = "Responses showing {name}"

# TensorBoard tags for each quantity, in order of preference (OpenRLHF logs train/<metric> and eval/<metric>)
TENSORBOARD = {
    "reward": ("train/reward",),
    "accuracy": ("train/accuracy",),
    "format": ("train/format",),
    "length": ("train/response_length",),
    "eval_reward": ("_pass1",),
    "kl": ("train/kl",),
    "entropy": ("train/entropy_loss", "train/entropy"),
}
ONLY_TENSORBOARD = ("kl", "entropy")  # what the journal never holds


# ---- the journal's statistics, one point per step -------------------------------------------------------------


def weighted(stats: list, field: str) -> float | None:
    """The mean of `field` over the statistics of one step (one per task), weighted by their sample counts; None
    when no statistic has it."""
    pairs = [(s.n, getattr(s, field)) for s in stats if getattr(s, field) is not None and s.n]
    total = sum(n for n, _ in pairs)
    return math.fsum(n * v for n, v in pairs) / total if total else None


def by_step(stats: Iterable, split: str) -> dict[int, list]:
    grouped: dict[int, list] = {}
    for s in stats:
        if s.split == split:
            grouped.setdefault(s.step, []).append(s)
    return dict(sorted(grouped.items()))


def length_field(stats: Iterable) -> tuple[str, str]:
    """Response length in tokens when every statistic counted them, else in characters: (field, unit)."""
    return ("tokens", "tokens") if all(s.tokens is not None for s in stats) else ("chars", "characters")


def journal_series(stats: list, behaviours: Iterable[str]) -> tuple[dict[str, list], str]:
    """Per-step series (key -> [(step, value)]) from the journal's statistics, and the unit of length."""
    train, held_out = by_step(stats, "train"), by_step(stats, "eval")
    field, unit = length_field([s for group in train.values() for s in group])
    wanted = {
        "reward": (train, "reward"),
        "accuracy": (train, "accuracy"),
        "format": (train, "format_rate"),
        "length": (train, field),
        "truncated": (train, "truncated"),
        "eval_accuracy": (held_out, "accuracy"),
        "eval_reward": (held_out, "reward"),
    }
    series = {key: points(groups, lambda group, f=f: weighted(group, f)) for key, (groups, f) in wanted.items()}
    for name in behaviours:
        series[name] = points(train, lambda group, name=name: behaviour_rate(group, name))
    return {key: found for key, found in series.items() if found}, unit


def behaviour_rate(stats: list, name: str) -> float | None:
    pairs = [(s.n, s.behaviours[name]) for s in stats if s.n and name in (s.behaviours or {})]
    total = sum(n for n, _ in pairs)
    return math.fsum(n * v for n, v in pairs) / total if total else None


def points(groups: dict[int, list], value) -> list[tuple[int, float]]:
    found = ((step, value(group)) for step, group in groups.items())
    return [(step, v) for step, v in found if v is not None and math.isfinite(v)]


def tensorboard_series(scalars: dict[str, list], keys: Iterable[str]) -> dict[str, list]:
    """The series of `keys` that OpenRLHF's TensorBoard scalars hold."""
    series = {}
    for key in keys:
        hit = curves.pick(scalars, TENSORBOARD.get(key, ()))
        if hit:
            series[key] = [(step, v) for step, v in hit[1] if math.isfinite(v)]
    return {key: found for key, found in series.items() if found}


# ---- drawing a series: buckets, moving average ------------------------------------------------------------------


def curve(points: list[tuple[int, float]], weight: float) -> dict:
    """A series as the page draws it: {steps, values, dense} and, for a series logged every step, `smooth` (the
    moving average over every point) and, past MAX_POINTS, `lo`/`hi` (each bucket's range)."""
    steps = [s for s, _ in points]
    values = [v for _, v in points]
    if not curves.every_step(points):
        return {"steps": steps, "values": rounded(values), "dense": False}
    smooth = curves.smooth(values, weight)
    if len(points) <= MAX_POINTS:
        return {"steps": steps, "values": rounded(values), "smooth": rounded(smooth), "dense": True}
    size = math.ceil(len(points) / MAX_POINTS)
    cuts = range(0, len(points), size)
    buckets = [values[i : i + size] for i in cuts]
    return {
        "steps": [steps[min(i + size, len(steps)) - 1] for i in cuts],
        "values": rounded(math.fsum(b) / len(b) for b in buckets),
        "lo": rounded(min(b) for b in buckets),
        "hi": rounded(max(b) for b in buckets),
        "smooth": rounded(smooth[min(i + size, len(smooth)) - 1] for i in cuts),
        "dense": True,
    }


def rounded(values: Iterable[float]) -> list[float]:
    """Five significant digits: what a chart can show, at a third of the JSON."""
    return [float(f"{v:.5g}") for v in values]


def quantities(behaviours: Iterable[str], unit: str) -> list[dict]:
    """The charts, in page order, with the behaviour rates after the truncation rate."""
    out = []
    for key, title, ylabel, fraction, split in QUANTITIES:
        out.append(
            {"key": key, "title": title, "ylabel": ylabel.format(unit=unit), "fraction": fraction, "split": split}
        )
        if key == "truncated":
            for name in behaviours:
                title = BEHAVIOUR_TITLES.format(name=name)
                out.append({"key": name, "title": title, "ylabel": "fraction of responses", "fraction": True})
                out[-1]["split"] = "train"
    return out


# ---- the aha step -------------------------------------------------------------------------------------------------


def find_aha(series: dict[str, list]) -> dict:
    """`aha.detect` on the run's training length and accuracy, as JSON (a perfect line's infinite t as None)."""
    found = aha.detect(dict(series.get("length", [])), dict(series.get("accuracy", [])))
    result = found.as_dict()
    for fit in [*result["windows"], result["stretch"] or {}]:
        for key, value in fit.items():
            if isinstance(value, float) and not math.isfinite(value):
                fit[key] = None
    return result


# ---- samples ------------------------------------------------------------------------------------------------------


def sample_chars(samples: list[dict]) -> int:
    return sum(len(s.get("prompt") or "") + len(s.get("response") or "") for s in samples)


def thin(by_step: dict[int, list[dict]], budget: float) -> tuple[list[int], int]:
    """The steps whose samples to embed, every k-th one so that their text fits `budget`; and k."""
    steps = sorted(by_step)
    total = sum(sample_chars(by_step[s]) for s in steps)
    stride = max(1, math.ceil(total / budget)) if budget > 0 else len(steps) + 1
    return steps[::stride], stride


def slim(sample: dict) -> dict:
    """What the page shows of a journal record."""
    out = {key: sample.get(key) for key in SAMPLE_KEYS}
    out["truncated"] = bool(sample.get("truncated"))
    out["behaviours"] = list(sample.get("behaviours") or [])
    return out


def embed_samples(samples: list[dict], stats: list, unit_field: str, budget: float) -> dict:
    """{split: {steps, by_step, stats, note}}: the embedded samples by step, and the figures of each embedded step
    over all of its samples (the journal's statistics)."""
    out = {}
    grouped: dict[str, dict[int, list[dict]]] = {"train": {}, "eval": {}}
    for sample in samples:
        if sample.get("split") in grouped:
            grouped[sample["split"]].setdefault(int(sample["step"]), []).append(slim(sample))
    eval_budget = min(sum(sample_chars(v) for v in grouped["eval"].values()), budget * EVAL_SHARE)
    budgets = {"eval": eval_budget, "train": budget - eval_budget}
    for split, steps_samples in grouped.items():
        kept, stride = thin(steps_samples, budgets[split])
        per_step = by_step(stats, split)
        out[split] = {
            "steps": kept,
            "by_step": {str(s): steps_samples[s] for s in kept},
            "stats": [step_figures(per_step.get(s, []), unit_field) for s in kept],
            "note": embedded_note(len(kept), len(per_step), stride),
        }
    return out


def embedded_note(kept: int, steps: int, stride: int) -> str:
    """What the slider covers, when it is not every step."""
    if kept >= steps:
        return ""
    thinned = f", every {stride} of the steps the journal kept texts for" if stride > 1 else ""
    return f"Samples are embedded for {kept:,} of the {steps:,} steps (evenly spaced{thinned}), to keep this page small"


def step_figures(stats: list, unit_field: str) -> dict | None:
    if not stats:
        return None
    figures = {"n": sum(s.n for s in stats)}
    for key, field in (("accuracy", "accuracy"), ("reward", "reward"), ("length", unit_field)):
        value = weighted(stats, field)
        figures[key] = None if value is None else float(f"{value:.5g}")
    return figures


def embed_held_out(held_out: dict[str, list[dict]], budget: float) -> tuple[list[dict], str]:
    """The held-out prompts to follow (as many whole as `budget` characters allow), each with its evaluations in
    step order; and a note when some were left out."""
    out, used = [], 0
    for key, records in held_out.items():
        records = sorted(records, key=lambda r: r["step"])
        size = sample_chars(records)
        if out and used + size > budget:
            break
        used += size
        first = records[0] if records else {}
        out.append(
            {
                "key": key,
                "title": prompt_title(first.get("label"), key),
                "prompt": first.get("prompt") or "",
                "records": [slim(r) for r in records],
            }
        )
    note = (
        f"{len(out)} of the {len(held_out)} held-out prompts the journal follows are embedded, to keep this page small"
    )
    return out, note if len(out) < len(held_out) else ""


def prompt_title(label, key: str) -> str:
    """A short name for a held-out prompt: its puzzle when the label says it, else its key."""
    try:
        parsed = json.loads(label) if isinstance(label, str) else label
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("task") == "countdown":
        return f"countdown: {', '.join(map(str, parsed.get('numbers', [])))} -> {parsed.get('target')}"
    if isinstance(parsed, dict) and parsed.get("task") == "multiply":
        return f"multiply: {' x '.join(map(str, parsed.get('numbers', [])))}"
    return str(key)[:80]
