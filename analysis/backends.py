"""The models `analysis.evaluate` generates with: vLLM on a GPU node, transformers anywhere (the tests use it on
a tiny random model). Both decode alike (`Settings`) and give `Completion`s: the text, its tokens, truncation.
"""

from __future__ import annotations

from dataclasses import dataclass

from reward_funcs.cli import UsageError


@dataclass(frozen=True)
class Settings:
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    seed: int = 0
    batch_size: int = 16


@dataclass(frozen=True)
class Completion:
    text: str
    tokens: int
    truncated: bool


def vllm_sampling_kwargs(settings: Settings) -> dict:
    """What vLLM's SamplingParams receives: the same decoding as the transformers backend."""
    return {
        "n": settings.n,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "max_tokens": settings.max_new_tokens,
        "seed": settings.seed,
        "skip_special_tokens": False,
    }


class VLLMBackend:
    name = "vllm"

    def __init__(self, model: str, settings: Settings):
        from vllm import LLM  # only on a GPU node

        self.settings = settings
        self.llm = LLM(model=model, seed=settings.seed, max_model_len=None)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: list[str]) -> list[list[Completion]]:
        from vllm import SamplingParams

        outputs = self.llm.generate(prompts, SamplingParams(**vllm_sampling_kwargs(self.settings)))
        return [
            [Completion(o.text, len(o.token_ids), o.finish_reason == "length") for o in out.outputs] for out in outputs
        ]


class TransformersBackend:
    name = "transformers"

    def __init__(self, model: str, settings: Settings):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device).eval()
        self.device = device

    def generate(self, prompts: list[str]) -> list[list[Completion]]:
        import torch

        s = self.settings
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling = s.temperature > 0
        torch.manual_seed(s.seed)
        with torch.no_grad():
            out = self.model.generate(
                **batch,
                max_new_tokens=s.max_new_tokens,
                do_sample=sampling,
                num_return_sequences=s.n,
                temperature=s.temperature if sampling else None,
                top_p=s.top_p if sampling else None,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        new = out[:, batch["input_ids"].shape[1] :].tolist()
        results = []
        for i in range(len(prompts)):
            group = []
            for ids in new[i * s.n : (i + 1) * s.n]:
                if self.tokenizer.eos_token_id in ids:  # keep the end-of-text token, as OpenRLHF's query does
                    ids = ids[: ids.index(self.tokenizer.eos_token_id) + 1]
                    truncated = False
                else:
                    ids = [t for t in ids if t != self.tokenizer.pad_token_id] if sampling else ids
                    truncated = len(ids) >= s.max_new_tokens
                group.append(Completion(self.tokenizer.decode(ids, skip_special_tokens=False), len(ids), truncated))
            results.append(group)
        return results


def make_backend(name: str, model: str, settings: Settings):
    """Load `model` with backend `name` (auto: vLLM when installed and a GPU is present). A model that cannot be
    loaded (no such folder or hub name, the hub unreachable, no weights) is a UsageError."""
    if name == "auto":
        import importlib.util

        import torch

        name = "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "transformers"
    try:
        return (VLLMBackend if name == "vllm" else TransformersBackend)(model, settings)
    except OSError as e:  # how transformers and vLLM report a model they cannot find or read
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise UsageError(f"cannot load the model {model}: {reason}") from None
