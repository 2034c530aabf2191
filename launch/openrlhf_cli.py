"""OpenRLHF 0.11.2's own command line, without importing ray, vllm or deepspeed.

`openrlhf.cli.train_ppo_ray` builds its parser inline under `if __name__ == "__main__":` and imports the GPU
stack at module level. We read that block from the installed file and run it: up to `parser.parse_args()`
to get the parser, or whole, with `train` replaced, to run the post-parse checks OpenRLHF itself applies.

    from launch.openrlhf_cli import check
    args = check(["--actor.model_name_or_path", "Qwen/Qwen2.5-3B", ...])   # raises CommandLineError
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import functools
import importlib.util
import io
import os
from datetime import datetime
from pathlib import Path

from reward_funcs.cli import UsageError

MODULE = "openrlhf.cli.train_ppo_ray"


# Flat names from before OpenRLHF 0.10.2, still in most examples on the web, and what replaced them.
OLD_FLAGS = {
    "pretrain": "actor.model_name_or_path",
    "remote_rm_url": "reward.remote_url",
    "prompt_data": "data.prompt_dataset",
    "advantage_estimator": "algo.advantage.estimator",
    "use_wandb": "logger.wandb.key",
    "prompt_max_len": "data.max_len",
    "generate_max_len": "rollout.max_new_tokens",
    "actor_learning_rate": "actor.adam.lr",
    "critic_learning_rate": "critic.adam.lr",
    "init_kl_coef": "algo.kl.init_coef",
    "use_kl_loss": "algo.kl.use_loss",
    "n_samples_per_prompt": "rollout.n_samples_per_prompt",
    "rollout_batch_size": "rollout.batch_size",
    "train_batch_size": "train.batch_size",
    "micro_train_batch_size": "train.micro_batch_size",
    "micro_rollout_batch_size": "rollout.micro_batch_size",
    "max_epochs": "train.max_epochs",
    "num_episodes": "train.num_episodes",
    "vllm_num_engines": "vllm.num_engines",
    "vllm_tensor_parallel_size": "vllm.tensor_parallel_size",
    "colocate_all_models": "train.colocate_all",
    "zero_stage": "ds.zero_stage",
    "gradient_checkpointing": "actor.gradient_checkpointing_enable",
    "eval_dataset": "eval.dataset",
    "label_key": "data.label_key",
    "input_key": "data.input_key",
    "apply_chat_template": "data.apply_chat_template",
    "save_path": "ckpt.output_dir",
    "ckpt_path": "ckpt.path",
    "save_steps": "ckpt.save_steps",
    "load_checkpoint": "ckpt.load_enable",
    "bf16": "ds.param_dtype",
}


class CommandLineError(UsageError):
    """OpenRLHF would refuse this command line; the message is OpenRLHF's own."""


@functools.lru_cache(maxsize=1)
def _main_block() -> tuple[list[ast.stmt], str]:
    spec = importlib.util.find_spec("openrlhf")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("openrlhf is not installed: run `make test` (CPU) or install requirements.txt (GPU)")
    path = Path(next(iter(spec.submodule_search_locations))) / "cli" / "train_ppo_ray.py"
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return node.body, str(path)
    raise ImportError(f"{path} has no __main__ block: not the OpenRLHF 0.11.2 this project builds on")


def _is_parse_args(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Assign) and "parser.parse_args()" in ast.unparse(stmt.value)


def _namespace(**extra) -> dict:
    return {"argparse": argparse, "os": os, "datetime": datetime, "__name__": "__openrlhf_cli__", **extra}


def parser() -> argparse.ArgumentParser:
    """A fresh copy of train_ppo_ray's ArgumentParser."""
    body, path = _main_block()
    upto = next(i for i, stmt in enumerate(body) if _is_parse_args(stmt))
    namespace = _namespace()
    exec(compile(ast.Module(body=body[:upto], type_ignores=[]), path, "exec"), namespace)
    return namespace["parser"]


@functools.lru_cache(maxsize=1)
def flag_names() -> frozenset[str]:
    return frozenset(s for action in parser()._actions for s in action.option_strings)


def _hint(name: str, known: frozenset[str]) -> str:
    new = OLD_FLAGS.get(name[2:])
    if new:
        return f": it is --{new} since OpenRLHF 0.10.2"
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
    return f": did you mean {close[0]}?" if close else " (OpenRLHF 0.11.2 has no such flag)"


# Counts that OpenRLHF takes as they come and fails on deep inside when they are not positive.
POSITIVE = (
    "batch_size",
    "micro_batch_size",
    "num_episodes",
    "max_epochs",
    "n_samples_per_prompt",
    "num_nodes",
    "num_gpus_per_node",
    "tensor_parallel_size",
    "max_len",
    "max_new_tokens",
    "max_samples",
)


def check_values(flat: dict[str, object]) -> None:
    """Values the parser cannot judge: a switch given anything but true/false, a count that is not positive."""
    actions = {a.option_strings[0]: a for a in parser()._actions if a.option_strings}
    for key, value in flat.items():
        action = actions.get(f"--{key}")
        if action is None or value is None:
            continue  # unknown flags are check()'s to report
        if isinstance(action, argparse._StoreTrueAction) and not isinstance(value, bool):
            raise CommandLineError(f"{key} is a switch: give true or false, not {value!r}")
        if key.rsplit(".", 1)[-1] in POSITIVE and action.type is int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CommandLineError(f"{key} must be a whole number of at least 1, not {value!r}")


def check(argv: list[str]) -> argparse.Namespace:
    """Parse `argv` as train_ppo_ray would and run its post-parse checks; return the hierarchical args it
    would hand to `train`. Flags must be spelled exactly (argparse alone also accepts unambiguous prefixes)."""
    known = flag_names()
    for token in argv:
        name = token.split("=", 1)[0]
        if token.startswith("--") and name not in known:
            raise CommandLineError(f"unrecognized argument {name}{_hint(name, known)}")
    body, path = _main_block()
    for stmt in body:
        if _is_parse_args(stmt):
            stmt.value = ast.parse("parser.parse_args(__argv__)", mode="eval").body
    captured = []
    namespace = _namespace(__argv__=list(argv), train=captured.append)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            exec(compile(ast.fix_missing_locations(ast.Module(body=body, type_ignores=[])), path, "exec"), namespace)
    except SystemExit:
        message = stderr.getvalue().strip().splitlines()
        raise CommandLineError(message[-1] if message else "OpenRLHF's parser refused the command line") from None
    except AssertionError as e:
        raise CommandLineError(str(e) or "one of OpenRLHF's post-parse assertions failed") from None
    except Exception as e:  # OpenRLHF's own checks crashed on this combination of flags
        raise CommandLineError(
            f"OpenRLHF's post-parse code fails on this recipe ({type(e).__name__}: {e}); with "
            "the gae estimator the critic needs reward.remote_url or reward.model_name_or_path"
        ) from None
    finally:
        for stmt in body:  # leave the cached block as it was
            if isinstance(stmt, ast.Assign) and "parse_args(__argv__)" in ast.unparse(stmt.value):
                stmt.value = ast.parse("parser.parse_args()", mode="eval").body
    return captured[0]
