"""Evaluate a model or a run's checkpoints on held-out prompts, scored by the training reward itself.

    python -m analysis.evaluate --model runs/qwen2.5-3b-ppo/20260101-120000/final --data data/countdown/test.parquet
    python -m analysis.evaluate --run runs/qwen2.5-3b-ppo/20260101-120000          # final model and checkpoints
    python -m analysis.evaluate --model Qwen/Qwen2.5-3B --data data/countdown/test.parquet --n 8 --temperature 1.0

Greedy by default, as TinyZero validates. Reports strict accuracy (correct answers only), TinyZero's mean
reward (with its 0.1 format credit, to compare with its validation curve), format rate, pass@k for every
k <= n (unbiased estimator), response lengths and truncation, and how often the thinking verifies, backtracks
and enumerates attempts; each also by how many numbers a puzzle has and by the solver's difficulty band.
Writes results.json, samples.jsonl and summary.md into --out (default: <model>/eval or <run>/eval/<model>).
Backend: vLLM when installed and a GPU is present, transformers otherwise (`--backend` to choose).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from analysis import metrics
from data_tools import output
from data_tools.output import Parser
from reward_funcs import score_sample


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


class UsageError(Exception):
    pass


# ---- data ----------------------------------------------------------------------------------------------------


def read_rows(path: Path, limit: int | None = None) -> list[dict]:
    if not path.is_file():
        raise UsageError(f"{path}: no such dataset (make one with python -m data_tools.countdown)")
    rows = output.read_rows(path, limit)
    if rows and not {"prompt", "label"} <= set(rows[0]):
        raise UsageError(f"{path}: needs 'prompt' and 'label' columns (the data_tools layout)")
    return rows


def prompt_text(prompt, tokenizer) -> str:
    """The string the model continues: as written, or a message list through the model's chat template."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


# ---- backends ------------------------------------------------------------------------------------------------


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
    if name == "auto":
        import importlib.util

        import torch

        name = "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "transformers"
    return (VLLMBackend if name == "vllm" else TransformersBackend)(model, settings)


# ---- evaluation ----------------------------------------------------------------------------------------------


def evaluate(backend, rows: list[dict], settings: Settings, progress: bool = True) -> tuple[dict, list[dict]]:
    samples = []
    bar = tqdm(total=len(rows), desc="evaluating", unit="prompt", disable=not progress)
    for start in range(0, len(rows), settings.batch_size):
        part = rows[start : start + settings.batch_size]
        prompts = [prompt_text(r["prompt"], backend.tokenizer) for r in part]
        for offset, (row, prompt, group) in enumerate(zip(part, prompts, backend.generate(prompts), strict=True)):
            label = json.loads(row["label"]) if isinstance(row["label"], str) else row["label"]
            for j, completion in enumerate(group):
                score = score_sample(prompt + completion.text, prompt, row["label"])
                samples.append(
                    {
                        "prompt_index": start + offset,
                        "sample": j,
                        "task": label.get("task"),
                        "numbers": len(label.get("numbers") or []),
                        "solutions": row.get("solutions"),
                        "response": completion.text,
                        "tokens": completion.tokens,
                        "truncated": completion.truncated,
                        "reward": score.reward,
                        "correct": score.correct,
                        "formatted": score.formatted,
                        "reason": score.reason,
                        "answer": score.answer,
                    }
                )
        bar.update(len(part))
    bar.close()
    results = metrics.summarize(samples, settings.n)
    results["by_numbers"] = metrics.by_group(samples, lambda s: s["numbers"], settings.n)
    results["by_difficulty"] = metrics.by_group(samples, lambda s: metrics.difficulty_band(s["solutions"]), settings.n)
    return results, samples


def summary_markdown(results: dict, settings: dict) -> str:
    lines = [
        f"# Evaluation of {settings['model']}",
        "",
        f"{settings['data']}: {results.get('prompts', 0)} prompts x {settings['n']} sample(s), temperature "
        f"{settings['temperature']}, {settings['backend']} backend",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key in [
        "accuracy",
        "mean_reward",
        "format_rate",
        *[k for k in results if k.startswith("pass@")],
        "truncation_rate",
        "verification_rate",
        "backtracking_rate",
        "enumeration_rate",
    ]:
        if key in results:
            lines.append(f"| {key} | {results[key]:.3f} |")
    length = results.get("length", {})
    lines.append(
        f"| response tokens (mean / median / p90) | {length.get('mean', 0):.0f} / "
        f"{length.get('median', 0):.0f} / {length.get('p90', 0):.0f} |"
    )
    for title, key in (("By how many numbers", "by_numbers"), ("By difficulty (solver's solutions)", "by_difficulty")):
        if results.get(key):
            lines += [
                "",
                f"## {title}",
                "",
                "| group | prompts | accuracy | mean reward | format |",
                "|---|---|---|---|---|",
            ]
            for name, m in results[key].items():
                lines.append(
                    f"| {name} | {m['prompts']} | {m['accuracy']:.3f} | {m['mean_reward']:.3f} | "
                    f"{m['format_rate']:.3f} |"
                )
    lines += ["", "accuracy counts correct answers only; mean_reward is TinyZero's (0.1 for a wrong answer in tags)."]
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, results: dict, samples: list[dict], settings: dict, force: bool) -> None:
    if out.exists() and not force:
        raise UsageError(f"{out} already exists: pass --force to replace it, or choose another --out")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "results.json").write_text(json.dumps({"settings": settings, "metrics": results}, indent=2) + "\n")
    with open(tmp / "samples.jsonl", "w") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    (tmp / "summary.md").write_text(summary_markdown(results, settings))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def write_step_curve(folder: Path, by_step: list[tuple]) -> None:
    """Held-out accuracy of a run's checkpoints against their step (the final model after the last one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = max((s for s, *_ in by_step if s is not None), default=0)
    points = sorted((s if s is not None else last + 1, acc, reward) for s, _, acc, reward in by_step)
    (folder / "accuracy_by_step.json").write_text(
        json.dumps([{"step": s, "accuracy": a, "mean_reward": r} for s, a, r in points], indent=2) + "\n"
    )
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label="accuracy (correct only)")
    ax.plot([p[0] for p in points], [p[2] for p in points], marker=".", alpha=0.5, label="mean reward (TinyZero's)")
    ax.set_xlabel("step (the final model last)")
    ax.set_ylabel("held-out")
    ax.set_title("Held-out accuracy over training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "accuracy_by_step.png", dpi=120)
    plt.close(fig)


def run_models(run: Path) -> list[Path]:
    """A run's final model, then its Hugging Face checkpoints by step. OpenRLHF writes `ckpt/global_step{N}_hf`
    every ckpt.save_steps and `ckpt/best_global_step{N}_hf` when the eval metric improves; a best copy is
    evaluated only when no regular one exists for its step (they hold the same weights)."""
    by_step: dict[int, Path] = {}
    others = []
    for config in sorted((run / "ckpt").glob("**/config.json")):
        found = re.fullmatch(r"(best_)?global_step(\d+)_hf", config.parent.name)
        if not found:
            others.append(config.parent)
        elif found.group(1) is None or int(found.group(2)) not in by_step:
            by_step[int(found.group(2))] = config.parent
    final = [run / "final"] if (run / "final" / "config.json").is_file() else []
    return final + [by_step[step] for step in sorted(by_step)] + others


def main(argv=None) -> int:
    parser = Parser(
        prog="python -m analysis.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="a local model folder or a hub name")
    target.add_argument("--run", type=Path, help="a run folder: evaluate its final model and checkpoints")
    parser.add_argument("--data", type=Path, help="test file (default with --run: the recipe's eval.dataset)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--n", type=int, default=1, help="samples per prompt (pass@k for every k <= n)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 is greedy (default)")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, help="only the first N prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("auto", "vllm", "transformers"), default="auto")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    try:
        if args.n < 1 or (args.n > 1 and args.temperature == 0):
            raise UsageError("--n above 1 needs --temperature above 0 (greedy decoding repeats itself)")
        settings = Settings(args.n, args.temperature, args.top_p, args.max_new_tokens, args.seed, args.batch_size)
        if args.run:
            models = run_models(args.run)
            if not models:
                raise UsageError(f"{args.run}: no final model or Hugging Face checkpoint (config.json) in it")
            data = args.data
            if data is None:
                import yaml

                data = Path(yaml.safe_load((args.run / "recipe.yaml").read_text())["eval"]["dataset"])
            targets = [
                (
                    str(m),
                    args.out / m.relative_to(args.run)
                    if args.out
                    else args.run / "eval" / str(m.relative_to(args.run)).replace("/", "_"),
                )
                for m in models
            ]
        else:
            if args.data is None:
                raise UsageError("--model needs --data (a test file written by data_tools)")
            data = args.data
            targets = [(args.model, args.out or Path(args.model if os.path.isdir(args.model) else ".") / "eval")]
        taken = [str(out) for _, out in targets if out.exists() and not args.force]
        if taken:  # before any model is loaded or run
            raise UsageError(f"{', '.join(taken)} already exists: pass --force to replace it, or choose another --out")
        rows = read_rows(data, args.limit)
        by_step = []
        for model, out in targets:
            backend = make_backend(args.backend, model, settings)
            results, samples = evaluate(backend, rows, settings)
            record = {
                "model": model,
                "data": str(data),
                "backend": backend.name,
                **asdict(settings),
                "limit": args.limit,
            }
            write_outputs(out, results, samples, record, args.force)
            print(
                f"{model}: accuracy {results['accuracy']:.3f}, mean reward {results['mean_reward']:.3f}, "
                f"format {results['format_rate']:.3f} -> {out}"
            )
            step = re.search(r"global_step(\d+)", model)
            by_step.append((int(step.group(1)) if step else None, model, results["accuracy"], results["mean_reward"]))
        if args.run and len(by_step) > 1:
            write_step_curve(args.run / "eval", by_step)
    except UsageError as e:
        print(f"python -m analysis.evaluate: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # transformers/vLLM could not load the model
        print(f"python -m analysis.evaluate: error: cannot load the model: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
