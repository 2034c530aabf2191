"""What the rollout journal records of a scored sample, besides its score: which behaviour phrases the response
shows (a literal prefilter derived from each regex, so most texts skip most patterns), the label's task and text,
the prompt's key, the response without its end-of-sequence token and whether it was cut at the length limit, and
the labels that make a sample an evaluation one."""

from __future__ import annotations

import hashlib
import json
import logging
from functools import lru_cache
from pathlib import Path

from reward_funcs import TASKS
from reward_funcs.behaviours import BEHAVIOURS

try:  # the regex parser, for the behaviour phrases' literal prefilter
    from re import _parser as sre_parse  # Python 3.11+
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse

logger = logging.getLogger("reward_funcs")

# Tokens a finished response ends with (OpenRLHF decodes with special tokens kept); vLLM stops on nothing else
# unless the length runs out, as OpenRLHF sets no stop strings.
END_TOKENS = (
    "<|endoftext|>",  # Qwen2.5 base
    "<|im_end|>",  # Qwen2.5 instruct
    "</s>",
    "<|eot_id|>",  # Llama 3
    "<|eom_id|>",
    "<|end_of_text|>",
    "<eos>",
    "<end_of_turn>",  # Gemma
    "<｜end▁of▁sentence｜>",  # DeepSeek-R1 distills
    "<|end|>",
)


def behaviour_patterns() -> dict:
    """The phrase families of reward_funcs.behaviours (verification, backtracking, enumeration), which the evaluation
    counts too."""
    return dict(BEHAVIOURS)


def needles(pattern):
    """What every match of `pattern` must contain, from its parsed form: a lowercase string, `("any", [...])` or
    `("all", [...])` of such; None when nothing is certain. A lowercased ASCII text for which `present` is false
    cannot match, and the regex need not run: most responses skip most of them. Only literals, groups,
    alternations whose every branch requires something, and repeats of at least one count; anything else
    (classes, anchors, lookarounds) is taken to promise nothing."""
    return _needles(sre_parse.parse(pattern.pattern, pattern.flags))


def _needles(nodes):
    found, run = [], []
    for op, arg in [*nodes, (None, None)]:
        if op == sre_parse.LITERAL and chr(arg).isascii():
            run.append(chr(arg).lower())
            continue
        if run:
            found.append("".join(run))
            run = []
        if op == sre_parse.SUBPATTERN:
            found.append(_needles(arg[-1]))
        elif op == sre_parse.BRANCH:
            branches = [_needles(branch) for branch in arg[1]]
            found.append(None if None in branches else ("any", branches))
        elif op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT) and arg[0] >= 1:
            found.append(_needles(arg[2]))
    found = [f for f in found if f is not None]
    return None if not found else found[0] if len(found) == 1 else ("all", found)


def present(needle, text: str) -> bool:
    if isinstance(needle, str):
        return needle in text
    how, parts = needle
    return (any if how == "any" else all)(present(part, text) for part in parts)


class Behaviours:
    """Which phrase families a response shows, as a bit mask; the regexes run only where the prefilter allows."""

    def __init__(self, patterns: dict):
        self.names = list(patterns)
        self._checks = [(1 << i, p, needles(p)) for i, p in enumerate(patterns.values())]
        self.mask = lru_cache(maxsize=4096)(self._mask)  # repeated texts (greedy evals, degenerate answers)

    def _mask(self, text: str) -> int:
        lowered = text.lower() if text.isascii() else None
        bits = 0
        for bit, pattern, words in self._checks:
            if lowered is not None and words is not None and not present(words, lowered):
                continue
            if pattern.search(text):
                bits |= bit
        return bits


@lru_cache(maxsize=65536)
def label_task(label: str) -> str | None:
    try:
        task = json.loads(label).get("task")
    except (ValueError, AttributeError):
        return None
    return task if task in TASKS else None


def label_text(label) -> str:
    """The label as the journal keeps and matches it: a string as given, anything else as sorted JSON."""
    return label if isinstance(label, str) else json.dumps(label, sort_keys=True, default=str)


@lru_cache(maxsize=4096)  # n samples of a prompt, the same eval prompts at every evaluation
def prompt_key(prompt: str | None) -> int:
    digest = hashlib.blake2b((prompt or "").encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def split_end(response: str) -> tuple[str, int]:
    """(the response without its end-of-sequence token, whether it was truncated: 1 when it has none)."""
    if not response.endswith(END_TOKENS):
        return response, 1
    token = next(t for t in END_TOKENS if response.endswith(t))
    return response[: -len(token)], 0


def eval_labels(files: list[str], key: str = "label") -> frozenset[str]:
    """The labels of the eval dataset files (parquet, arrow, csv, json or jsonl), as `label_text` writes them. A
    file that cannot be read is a warning and its samples count as training ones: the journal never stops a run."""
    labels: set[str] = set()
    for name in files:
        try:
            values = _column(Path(name), key)
        except Exception as e:  # any reason the file cannot give its labels
            logger.warning(
                "reward_funcs: journal: cannot read the labels of the eval file %s (%s: %s); its samples are "
                "recorded as training ones (%s, %s)",
                name,
                type(e).__name__,
                e,
                "REWARD_JOURNAL_EVAL",
                "REWARD_JOURNAL_LABEL_KEY",
            )
            continue
        labels.update(label_text(v) for v in values if v is not None)
    return frozenset(labels)


def _column(path: Path, key: str) -> list:
    """Column `key` of a dataset file, read the way OpenRLHF's loader reads that format."""
    if path.suffix in (".parquet", ".arrow", ".csv"):
        import pyarrow as pa
        import pyarrow.csv
        import pyarrow.parquet

        if path.suffix == ".parquet":
            return pyarrow.parquet.read_table(path, columns=[key]).column(key).to_pylist()
        if path.suffix == ".csv":
            return pyarrow.csv.read_csv(path).column(key).to_pylist()
        with pa.memory_map(str(path)) as source:  # HF datasets' arrow files are streams
            return pa.ipc.open_stream(source).read_all().column(key).to_pylist()
    text = path.read_text(encoding="utf-8")
    try:
        records = json.loads(text)  # one JSON document: a list of records
    except json.JSONDecodeError:
        records = [json.loads(line) for line in text.splitlines() if line.strip()]  # one record per line
    if isinstance(records, dict):
        records = [records]
    return [r.get(key) for r in records if isinstance(r, dict)]
