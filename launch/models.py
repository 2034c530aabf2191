"""Model shapes preflight needs: from a local config.json (a path, or the HF cache) or a built-in Qwen2.5 table."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelShape:
    params: float  # parameters, in billions
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    max_positions: int
    vocab: int = 151_936
    source: str = "built-in Qwen2.5 table"


# From the published config.json files (see shared/reference/qwen2.5.md).
QWEN25 = {
    "Qwen2.5-0.5B": ModelShape(0.49, 24, 896, 14, 2, 32_768),
    "Qwen2.5-1.5B": ModelShape(1.54, 28, 1536, 12, 2, 131_072),
    "Qwen2.5-1.5B-Instruct": ModelShape(1.54, 28, 1536, 12, 2, 32_768),
    "Qwen2.5-Math-1.5B": ModelShape(1.54, 28, 1536, 12, 2, 4_096),
    "Qwen2.5-3B": ModelShape(3.09, 36, 2048, 16, 2, 32_768),
    "Qwen2.5-7B": ModelShape(7.62, 28, 3584, 28, 4, 131_072),
    "Qwen2.5-7B-Instruct": ModelShape(7.62, 28, 3584, 28, 4, 32_768),
}
QWEN25["Qwen2.5-0.5B-Instruct"] = QWEN25["Qwen2.5-0.5B"]
QWEN25["Qwen2.5-3B-Instruct"] = QWEN25["Qwen2.5-3B"]


def _from_config(path: Path) -> ModelShape:
    config = json.loads(path.read_text())
    layers, hidden = config["num_hidden_layers"], config["hidden_size"]
    heads = config["num_attention_heads"]
    inter, vocab = config.get("intermediate_size", 4 * hidden), config.get("vocab_size", 151_936)
    kv = config.get("num_key_value_heads", heads)
    # attention (q, o full; k, v by KV heads), SwiGLU MLP, embeddings (tied or not)
    per_layer = 2 * hidden * hidden + 2 * hidden * (hidden // heads) * kv + 3 * hidden * inter
    embeddings = vocab * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return ModelShape(
        (layers * per_layer + embeddings) / 1e9,
        layers,
        hidden,
        heads,
        kv,
        config.get("max_position_embeddings", 32_768),
        vocab,
        f"config.json at {path}",
    )


def _cached_config(name: str) -> Path | None:
    hub = Path(
        os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "hub"
    )
    snapshots = hub / f"models--{name.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json")) if snapshots.is_dir() else []
    return found[-1] if found else None


# Model folders a run writes before it loads them (a curriculum's stages: launch/stages.py), each -> the model
# it is trained from, so that preflight knows their shape before they exist.
_PRODUCED: dict[str, str] = {}


@contextlib.contextmanager
def produced(folders: dict[str, str]):
    """Within the block, `shape` answers for each folder of `folders` as for the model it will be trained from."""
    before = dict(_PRODUCED)
    _PRODUCED.update(folders)
    try:
        yield
    finally:
        _PRODUCED.clear()
        _PRODUCED.update(before)


def shape(name: str) -> ModelShape | None:
    """The shape of model `name` (a hub id or a local folder), or None when nothing is known about it."""
    local = Path(name) / "config.json"
    if local.is_file():
        try:
            return _from_config(local)
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):  # not a config a model was saved with
            return None
    if name in _PRODUCED:
        return shape(_PRODUCED[name])
    cached = _cached_config(name)
    if cached:
        return _from_config(cached)
    return QWEN25.get(name.split("/")[-1])


def valid_tp_sizes(model: ModelShape, up_to: int = 64) -> list[int]:
    """vLLM shards attention heads: TP must divide the heads, and divide the KV heads or be a multiple of them."""
    return [
        tp
        for tp in range(1, up_to + 1)
        if model.heads % tp == 0 and (model.kv_heads % tp == 0 or tp % model.kv_heads == 0)
    ]
