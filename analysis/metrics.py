"""Metrics over scored completions: accuracy, TinyZero's mean reward, format rate, pass@k, lengths, truncation,
and how often the thinking shows verification, backtracking and enumeration of attempts."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable

from reward_funcs.behaviours import BEHAVIOURS


def behaviours(text: str) -> dict[str, bool]:
    return {name: bool(pattern.search(text)) for name, pattern in BEHAVIOURS.items()}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), for n samples of which c are correct."""
    if not 0 < k <= n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n = {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def length_stats(lengths: Iterable[int]) -> dict[str, float]:
    values = sorted(lengths)
    if not values:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0}
    p90 = values[min(len(values) - 1, math.ceil(0.9 * len(values)) - 1)]
    return {"mean": statistics.fmean(values), "median": float(statistics.median(values)), "p90": float(p90)}


def summarize(samples: list[dict], n: int) -> dict:
    """Metrics for samples (each: prompt_index, reward, correct, formatted, tokens, truncated, response);
    `n` samples per prompt."""
    if not samples:
        return {"samples": 0}
    by_prompt: dict[int, list[dict]] = {}
    for s in samples:
        by_prompt.setdefault(s["prompt_index"], []).append(s)
    metrics = {
        "prompts": len(by_prompt),
        "samples": len(samples),
        "accuracy": statistics.fmean(s["correct"] for s in samples),
        "mean_reward": statistics.fmean(s["reward"] for s in samples),
        "format_rate": statistics.fmean(s["formatted"] for s in samples),
        "truncation_rate": statistics.fmean(s["truncated"] for s in samples),
        "length": length_stats(s["tokens"] for s in samples),
    }
    for k in range(1, n + 1):
        metrics[f"pass@{k}"] = statistics.fmean(
            pass_at_k(len(group), sum(s["correct"] for s in group), k) for group in by_prompt.values()
        )
    for name in BEHAVIOURS:
        metrics[f"{name}_rate"] = statistics.fmean(behaviours(s["response"])[name] for s in samples)
    return metrics


def by_group(samples: list[dict], key, n: int) -> dict[str, dict]:
    """`summarize` per value of key(sample) (e.g. how many numbers, difficulty band), in numeric order ("3" before
    "10", "9-32" before "33+ (easy)"); a sample whose key is None belongs to no group."""
    groups: dict[str, list[dict]] = {}
    for s in samples:
        if (name := key(s)) is not None:
            groups.setdefault(str(name), []).append(s)
    return {name: summarize(groups[name], n) for name in sorted(groups, key=numeric_order)}


def numeric_order(name: str) -> tuple[float, str]:
    """Sort key: the number a group's name starts with, then the name; names without one last."""
    found = re.match(r"\d+", name)
    return (int(found.group()) if found else math.inf, name)


def difficulty_band(solutions: int | None) -> str:
    """Bands of the solver's rating (combinations reaching the target): fewer is harder."""
    if solutions is None:
        return "unrated"
    for upper, name in ((2, "1-2 (hard)"), (8, "3-8"), (32, "9-32")):
        if solutions <= upper:
            return name
    return "33+ (easy)"


# ---- what OpenRLHF logs during training, read back ---------------------------------------------------------------


def task_accuracy(means: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per task, its training accuracy and format rate in one step, from the step means OpenRLHF logs of
    reward_funcs.task_logs' keys (`<task>_share`, `<task>_correct`, `<task>_format`, each 1 or 0 per sample and
    averaged over every sample of the step):

        accuracy = mean(<task>_correct) / mean(<task>_share)      format = mean(<task>_format) / mean(<task>_share)

    exact whatever the mix, since the three are averaged over the same samples. A task without samples in the step
    (share 0) or without the three means is left out. {task: {"share", "accuracy", "format"}}."""
    found = {}
    for key, share in means.items():
        if not key.endswith("_share"):
            continue
        task = key[: -len("_share")]
        correct, tagged = means.get(f"{task}_correct"), means.get(f"{task}_format")
        if share and share > 0 and correct is not None and tagged is not None:
            found[task] = {"share": share, "accuracy": correct / share, "format": tagged / share}
    return found


def kept_prompt_rate(logged: float, n_samples_per_prompt: int) -> float:
    """The fraction of prompts dynamic filtering kept in a step (groups whose samples did not all score the same),
    from the `dynamic_filtering_pass_rate` OpenRLHF 0.11.2 logs. It logs accepted samples / prompts consumed x 100
    (SamplesGenerator.generate_samples) and every accepted prompt brings n samples, so the logged value is
    100 x n x the true rate: 800 for n = 8 when nothing is filtered (OpenRLHF #1282, not fixed in 0.11.2):

        kept = logged / (100 x n)
    """
    if n_samples_per_prompt < 1:
        raise ValueError(f"n_samples_per_prompt must be at least 1, got {n_samples_per_prompt}")
    return logged / (100.0 * n_samples_per_prompt)
