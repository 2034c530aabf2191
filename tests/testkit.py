"""What several test modules share: paths, OpenRLHF stand-ins for the GPU side, labels, contract cases."""

import asyncio
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from reference import tinyzero

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


# ---- the contract cases: what OpenRLHF's executor must deliver for each kind of completion

CD_PROMPT = tinyzero.countdown_prompt([44, 19, 35], 60)
CD_LABEL = countdown_label([44, 19, 35], 60)
MUL_PROMPT = tinyzero.multiply_prompt(12, 34)
MUL_LABEL = multiply_label(12, 34)
LONG_THOUGHT = " 44 + 19 = 63, too big. 63 - 35 = 28, no. " * 20

# (prompt, label, completion, max_tokens, reward, accuracy, format)
CASES = {
    "countdown-correct": (
        CD_PROMPT,
        CD_LABEL,
        " 44-19=25 </think>\n<answer>(44 - 19) + 35</answer><|endoftext|>",
        1024,
        1.0,
        1.0,
        1.0,
    ),
    "countdown-wrong": (
        CD_PROMPT,
        CD_LABEL,
        " </think>\n<answer>44 + 19 - 35</answer><|endoftext|>",
        1024,
        0.1,
        0.0,
        1.0,
    ),
    "countdown-unformatted": (CD_PROMPT, CD_LABEL, " so (44 - 19) + 35 = 60.<|endoftext|>", 1024, 0.0, 0.0, 0.0),
    "countdown-truncated": (
        CD_PROMPT,
        CD_LABEL,
        LONG_THOUGHT + "</think>\n<answer>(44 - 19) + 35</answer>",
        64,
        0.0,
        0.0,
        0.0,
    ),
    "multiply-correct": (
        MUL_PROMPT,
        MUL_LABEL,
        " 12*34=408 </think> <answer>408</answer>\n<|endoftext|>",
        1024,
        1.0,
        1.0,
        1.0,
    ),
    "multiply-wrong": (MUL_PROMPT, MUL_LABEL, " </think> <answer>418</answer><|endoftext|>", 1024, 0.1, 0.0, 1.0),
    "multiply-unformatted": (MUL_PROMPT, MUL_LABEL, " it is 408<|endoftext|>", 1024, 0.0, 0.0, 0.0),
    "multiply-truncated": (
        MUL_PROMPT,
        MUL_LABEL,
        " 12*34 is " + "4" * 100 + " <answer>408</answer>",
        40,
        0.0,
        0.0,
        0.0,
    ),
}


def run_executor(executor, prompt, label, engine, tokenizer, max_tokens, max_length=4096):
    params = SimpleNamespace(max_tokens=max_tokens, logprobs=None)
    return asyncio.run(executor.execute(prompt, label, params, max_length, tokenizer, engine))


def run_launch(*args, env=None) -> subprocess.CompletedProcess:
    """`python -m launch ARGS` from the repository, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "launch", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def job_command(printed: str) -> list[str]:
    """The argv a printed `ray job submit ... -- WORDS` makes the job run: Ray's CLI joins WORDS with
    subprocess.list2cmdline and the job's shell splits that string."""
    words = shlex.split(printed)
    return shlex.split(subprocess.list2cmdline(words[words.index("--") + 1 :]))


def launch_dry_run(recipe, *args, env=None) -> str:
    """`python -m launch train RECIPE --dry-run ARGS`: its printed ray job submit command."""
    result = run_launch("train", str(recipe), "--dry-run", *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
