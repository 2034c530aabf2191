"""`make smoke RECIPE=...`: the recipe, proven on your GPUs in minutes, before the days-long run.

    python -m launch smoke recipes/countdown/qwen2.5-3b-ppo.yaml

The smoke recipe is the recipe itself (the same models, per-GPU sizes, lengths, tensor parallelism, colocation and
sleep) cut down to STEPS training steps on a slice of the data, one evaluation on EVAL_PROMPTS held-out prompts at
step SAVE_AT, and one Hugging Face checkpoint there. The run then resumes from that checkpoint for one more step,
and `analysis.evaluate` scores the checkpoint. Each stage is recorded in the run folder's `smoke.jsonl` (ok, or
the one line that failed), GPU memory is polled with nvidia-smi into `gpu_memory.jsonl`, and
`python -m analysis.smoke RUN` turns them and the TensorBoard logs into the closing table (`smoke.md`): step time
as OpenRLHF splits it, generated tokens/s, peak memory per GPU, and the full recipe's projected wall time and
GPU-hours.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from data_tools.output import count_rows, dataset_files, read_rows
from launch import cluster, estimates, jobs, preflight, runs, session
from launch.recipe import Recipe, apply_overrides, merge
from reward_funcs.cli import REPO, UsageError

STEPS = 3  # training steps of the first job
SAVE_AT = 2  # the step evaluated and checkpointed; the resume runs the steps after it again
EVAL_PROMPTS = 32
STAGE_LOG = "smoke.jsonl"
LOADED = (
    "checkpoint_states"  # what OpenRLHF's trainer logs when it loads a checkpoint (PPOTrainer.init_checkpoint_states)
)
GPU_LOG = "gpu_memory.jsonl"


def full_run(recipe: Recipe, repo: Path = REPO) -> dict:
    """What the full recipe would run: steps over its training files, GPUs placed (for the projection)."""
    args = recipe.args()
    files = dataset_files(args.data.prompt_dataset, repo)
    prompts = sum(count_rows(f) for f in files) if files and all(f.is_file() for f in files) else None
    steps = estimates.training_steps(args, prompts) if prompts else None
    return {"recipe": recipe.name, "steps": steps, "gpus": estimates.gpus_needed(args), "prompts": prompts}


def write_eval_slice(recipe: Recipe, folder: Path, repo: Path = REPO) -> Path:
    """The first EVAL_PROMPTS rows of the recipe's first test file, as a jsonl file OpenRLHF loads."""
    tests = dataset_files(recipe.get("eval.dataset"), repo)
    if not tests or not tests[0].is_file():
        raise UsageError(f"{recipe.path}: the smoke run evaluates on eval.dataset, which is missing: set it")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "test.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for row in read_rows(tests[0], EVAL_PROMPTS):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def derive(recipe: Recipe, eval_slice: Path, full: dict) -> Recipe:
    """The smoke version of `recipe`: only what makes it short changes (steps, data, evaluation, checkpoints)."""
    batch = recipe.args().rollout.batch_size  # OpenRLHF's default when the recipe leaves it out
    changes = {
        "train": {"num_episodes": 1},
        "data": {"max_samples": STEPS * batch},  # OpenRLHF caps the prompts (train and eval) at this
        "eval": {"dataset": str(eval_slice), "steps": SAVE_AT},
        # the resume needs the DeepSpeed checkpoint; no best-model copies
        "ckpt": {"save_steps": SAVE_AT, "save_hf": True, "max_num": 1, "best_metric_key": "none", "disable_ds": None},
        # out of W&B; the run name only names each job's TensorBoard folder (tensorboard/train, tensorboard/resume)
        "logger": {"logging_steps": 1, "wandb": {"key": None, "run_name": "train"}},
    }
    # a curriculum's smoke run is its shared settings, as one plain run: the stages are left out
    meta = {**{k: v for k, v in recipe.meta.items() if k != "stages"}, "name": f"{recipe.name}-smoke", "smoke": full}
    return Recipe(f"{recipe.name}-smoke", recipe.path, merge(recipe.flags, changes), meta, dict(recipe.secrets))


class StageLog:
    """`smoke.jsonl`: one line per stage, appended and flushed as it ends."""

    def __init__(self, run: Path):
        self.path = run / STAGE_LOG

    def record(self, stage: str, status: str, line: str, seconds: float | None = None) -> None:
        entry = {"stage": stage, "status": status, "line": line, "seconds": seconds, "time": time.time()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        print(f"{status:>4}  {stage:10s} {line}", flush=True)


class GpuPoller:
    """Polls nvidia-smi every `every` seconds into `gpu_memory.jsonl` ({time, gpu, used_mib}), while in use."""

    def __init__(self, run: Path, every: float = 5.0):
        self.path, self.every = run / GPU_LOG, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _poll(self) -> None:
        query = ["nvidia-smi", "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"]
        while True:  # at least one poll, however short the block
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout
            except (OSError, subprocess.SubprocessError):
                out = ""
            now = time.time()
            with open(self.path, "a", encoding="utf-8") as f:
                for line in out.splitlines():
                    try:
                        index, used = (part.strip() for part in line.split(","))
                        poll = {"time": now, "gpu": int(index), "used_mib": float(used)}
                    except ValueError:  # "[N/A]", or an error message: not a reading
                        continue
                    f.write(json.dumps(poll) + "\n")
            if self._stop.wait(self.every):
                return


# ---- the flow ------------------------------------------------------------------------------------------------


def evaluate_command(run: Path, eval_slice: Path) -> list[str]:
    """`analysis.evaluate`'s arguments for the checkpoint saved at SAVE_AT, on the evaluation slice."""
    model = run / "ckpt" / f"global_step{SAVE_AT}_hf"
    out = run / "eval" / model.name
    return ["--model", str(model), "--data", str(eval_slice), "--out", str(out), "--backend", "vllm", "--force"]


def run_smoke(recipe: Recipe, args, repo: Path = REPO) -> int:
    """Check, train STEPS steps, resume from the step-SAVE_AT checkpoint, evaluate it, and print the table."""
    services = session.reward_services(recipe, args.address)
    python = jobs.python_for(args.address, args.python)
    if args.address:
        cluster.reachable(args.address)  # before any data is made
    run = runs.next_run_dir(args.runs_dir, f"{recipe.name}-smoke")
    if not session.passes(preflight.check_runs_dir(runs.resolve(recipe, run, wandb=False))):
        return 1
    session.ensure_dataset(recipe)
    full = full_run(recipe, repo)
    run.mkdir(parents=True)
    log = StageLog(run)
    eval_slice = write_eval_slice(recipe, run / "data", repo)
    resolved = runs.resolve(derive(recipe, eval_slice, full), run, reward_urls=services and services.urls, wandb=False)
    runs.save(run, resolved, "(nothing submitted yet)")  # the table reads the full run's figures from it
    try:
        _check_and_run(log, resolved, run, args, python, services, eval_slice, repo)
    except (UsageError, KeyboardInterrupt) as e:  # recorded, so that the table says where it stopped
        log.record("stopped", "FAIL", str(e) or "interrupted (Ctrl-C)")
        if isinstance(e, KeyboardInterrupt):
            raise
    finally:
        table = subprocess.run([sys.executable, "-m", "analysis.smoke", str(run), "--force"], cwd=repo)
    return table.returncode


def _check_and_run(log, resolved: Recipe, run: Path, args, python: str, services, eval_slice: Path, repo) -> None:
    gpus, memory, nodes = session.cluster_facts(args.address, resolved, python)
    config, parsed = preflight.check_config(resolved, gpus, memory)
    config += nodes
    with session.running(services, jobs.reward_env(resolved)):
        checks = config if preflight.failed(config) else config + preflight.check_files(resolved, parsed, repo)
        if not _preflight_stage(log, checks):
            return
        prepared = session.prepare_runtime(resolved, args.address, python, install=not args.no_install)
        if prepared is None:
            log.record("runtime", "FAIL", "the GPU runtime cannot run the job (see the lines above)")
            return
        with session.ray_head(args.address, gpus, python) as address, GpuPoller(run):
            _jobs(log, prepared, run, address, python, eval_slice)


def _preflight_stage(log: StageLog, checks) -> bool:
    session.passes(checks)
    failed = [c for c in checks if c.status == "FAIL"]
    line = f"{failed[0].name}: {failed[0].message}" if failed else f"{len(checks)} checks, none failed"
    log.record("preflight", "FAIL" if failed else "ok", line)
    return not failed


def _stage(log: StageLog, stage: str, started: float, status: str, tail, ok_line: str) -> bool:
    """Record a job's stage: ok, or the last thing it said that reads like an error."""
    passed = status == "SUCCEEDED"
    line = ok_line if passed else f"job {status}: {tail.last_error()}"
    log.record(stage, "ok" if passed else "FAIL", line, round(time.monotonic() - started, 1))
    return passed


def _jobs(log: StageLog, resolved: Recipe, run: Path, address: str, python: str, eval_slice: Path) -> None:
    started = time.monotonic()
    status, tail = session.submit_run(resolved, run, address, python, new_folder=False)
    if not _stage(log, "train", started, status, tail, f"{STEPS} steps"):
        return
    started = time.monotonic()
    resumed = runs.resolve(apply_overrides(resolved, ["logger.wandb.run_name=resume"]), run, resume=True, wandb=False)
    status, tail = session.submit_run(resumed, run, address, python, new_folder=False, watch=(LOADED,))
    if status == "SUCCEEDED" and not tail.saw(LOADED):
        status = f"SUCCEEDED without loading the checkpoint (no {LOADED!r} in its log)"
        tail.lines.append(f"the resumed job never said {LOADED!r}: it trained from the start")
    _stage(log, "resume", started, status, tail, f"resumed from the step-{SAVE_AT} checkpoint")
    started = time.monotonic()
    entry = jobs.entrypoint(python, evaluate_command(run, eval_slice), module="analysis.evaluate")
    job = jobs.submit(address, entry, jobs.runtime_env(resolved), num_gpus=1)
    tail = session.Tail()
    status = jobs.follow(address, job, tail)
    _stage(log, "evaluate", started, status, tail, f"analysis.evaluate on the step-{SAVE_AT} checkpoint")
