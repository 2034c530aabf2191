"""A stand-in for vLLM on a machine without a GPU: the tests put tests/stand_in_vllm on PYTHONPATH so that
`--backend vllm` runs on CPU. It offers what analysis.evaluate uses (`LLM(model=...)`, `get_tokenizer()`,
`generate(prompts, SamplingParams(...))` returning `.outputs[i].text/.token_ids/.finish_reason`) and the
behaviour that decides how several models can be evaluated: vLLM reserves gpu_memory_utilization (90% by
default) of the GPU at startup and first checks that this much is free, and an LLM's memory is not given back
while its process lives (the engine and CUDA's caching allocator keep it after the object is dropped), so a
second LLM built in the same process fails that check with vLLM's ValueError.

A model folder may hold `stand_in.json` to choose what the model does:
  {"completion": "..."}   the text every sample gets (cut at max_tokens characters, one token per character)
  {"fail": "load"}        LLM() raises vLLM's ValueError about free memory, as if another process held the GPU
  {"fail": "generate"}    generate raises RuntimeError("CUDA out of memory ..."), as torch does
  {"fail": "crash"}       the process is killed by SIGKILL while generating, as the out-of-memory killer does
"""

import json
import os
import signal
from pathlib import Path
from types import SimpleNamespace

DEFAULT_COMPLETION = " Let me check. </think>\n<answer>1 + 2</answer><|endoftext|>"
GPU_GIB = 79.19

_alive = []  # every LLM built in this process: its memory stays taken until the process exits


def _free_memory_error(utilization: float, free_gib: float) -> ValueError:
    return ValueError(
        f"Free memory on device ({free_gib:.2f}/{GPU_GIB} GiB) on startup is less than desired GPU memory "
        f"utilization ({utilization}, {utilization * GPU_GIB:.2f} GiB). Decrease GPU memory utilization or reduce "
        "GPU memory used by other processes."
    )


class SamplingParams:
    def __init__(self, n=1, temperature=1.0, top_p=1.0, max_tokens=16, seed=None, skip_special_tokens=True):
        self.n, self.temperature, self.top_p, self.max_tokens = n, temperature, top_p, max_tokens
        self.seed, self.skip_special_tokens = seed, skip_special_tokens


class LLM:
    def __init__(self, model, gpu_memory_utilization=0.9, seed=0, max_model_len=None, **kwargs):
        folder = Path(model)
        if not (folder / "config.json").is_file():  # what transformers' config loader says of a bad path
            raise OSError(f"{model} is not a local folder and is not a valid model identifier")
        self.options = json.loads((folder / "stand_in.json").read_text()) if (folder / "stand_in.json").exists() else {}
        if _alive:
            raise _free_memory_error(gpu_memory_utilization, GPU_GIB * (1 - gpu_memory_utilization) - 0.8)
        if self.options.get("fail") == "load":
            raise _free_memory_error(gpu_memory_utilization, 12.5)
        self.model = model
        _alive.append(self)

    def get_tokenizer(self):
        return None  # the tests' prompts are plain strings (the base template), which need no tokenizer

    def generate(self, prompts, sampling_params):
        fail = self.options.get("fail")
        if fail == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if fail == "generate":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        full = self.options.get("completion", DEFAULT_COMPLETION)
        text = full[: sampling_params.max_tokens]
        finish = "length" if len(text) < len(full) else "stop"
        out = SimpleNamespace(text=text, token_ids=[ord(c) for c in text], finish_reason=finish)
        return [SimpleNamespace(prompt=p, outputs=[out] * sampling_params.n) for p in prompts]
