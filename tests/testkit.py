"""What several test modules share: paths, OpenRLHF stand-ins for the GPU side, label builders."""

import json
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
REWARD_FILE = REPO / "reward_funcs" / "openrlhf_reward.py"


class CharTokenizer:
    """One token per character, so token counts are string lengths; decodes exactly what it encodes."""

    def __call__(self, text, add_special_tokens=False, return_tensors=None):
        import torch

        ids = [ord(c) for c in text]
        return {"input_ids": torch.tensor([ids]) if return_tensors == "pt" else [ids]}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids)


class StandInEngine:
    """Stands in for a vLLM engine: `generate` returns a fixed completion, cut at `max_tokens` like vLLM does."""

    def __init__(self, completion):
        self.completion = completion

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        text = self.completion[: sampling_params.max_tokens]
        finish = "length" if len(text) < len(self.completion) else "stop"
        return SimpleNamespace(
            outputs=[SimpleNamespace(token_ids=[ord(c) for c in text], text=text, finish_reason=finish, logprobs=None)]
        )


def countdown_label(numbers, target, **extra):
    return json.dumps({"task": "countdown", "target": target, "numbers": list(numbers), **extra})


def multiply_label(a, b):
    return json.dumps({"task": "multiply", "numbers": [a, b], "product": a * b})
