"""`make smoke`: the derived smoke recipe passes OpenRLHF's parser and preflight for every shipped recipe, and the
whole flow up to the GPU (stages, jobs, evaluation) ends in a table built from TensorBoard files written by
OpenRLHF's own TensorboardLogger, the stage log and nvidia-smi polls."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from testkit import REPO, countdown_label

from analysis import evaluate
from analysis import smoke as smoke_table
from data_tools import countdown, multiply
from launch import __main__ as cli
from launch import cluster, estimates, jobs, preflight, runs, session, smoke
from launch.recipe import apply_overrides, load
from reward_funcs import score_sample
from reward_funcs.cli import UsageError

RECIPES = sorted(p for p in (REPO / "recipes").glob("*/*.yaml") if p.parent.name != "ablations")
# What the smoke recipe must keep exactly as the recipe has it: the models, placement and per-GPU sizes.
KEPT = [
    "actor.model_name_or_path",
    "actor.num_gpus_per_node",
    "critic.num_gpus_per_node",
    "ref.num_gpus_per_node",
    "vllm.num_engines",
    "vllm.tensor_parallel_size",
    "vllm.gpu_memory_utilization",
    "vllm.enable_sleep",
    "ds.enable_sleep",
    "ds.zero_stage",
    "train.colocate_all",
    "train.micro_batch_size",
    "train.batch_size",
    "rollout.micro_batch_size",
    "rollout.batch_size",
    "rollout.n_samples_per_prompt",
    "rollout.max_new_tokens",
    "data.max_len",
    "algo.advantage.estimator",
    "actor.gradient_checkpointing_enable",
]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Small datasets with more prompts than three rollout batches of any recipe (256 prompts)."""
    root = tmp_path_factory.mktemp("data")
    assert countdown.main(["--out", str(root / "countdown"), "--train-size", "800", "--test-size", "40"]) == 0
    chat = ["--template", "qwen-instruct"]
    assert countdown.main(["--out", str(root / "instruct"), "--train-size", "800", "--test-size", "40", *chat]) == 0
    assert multiply.main(["--out", str(root / "multiply"), "--train-size", "800", "--test-size", "40"]) == 0
    return root


def with_data(path: Path, datasets: Path):
    recipe = load(path)
    if path.parent.name == "mixed":  # both tasks, blended: one training file per probability
        folders = [datasets / "countdown", datasets / "multiply"]
    else:
        task = "multiply" if path.parent.name == "multiply" else "instruct" if "instruct" in path.name else "countdown"
        folders = [datasets / task]
    return apply_overrides(
        recipe,
        [
            f"data.prompt_dataset={','.join(str(f / 'train.parquet') for f in folders)}",
            f"eval.dataset={','.join(str(f / 'test.parquet') for f in folders)}",
        ],
    )


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO)))
def test_the_smoke_recipe_is_the_recipe_cut_short_and_passes_preflight(path, datasets, tmp_path):
    recipe = with_data(path, datasets)
    full = smoke.full_run(runs.resolve(recipe, tmp_path / "full"))
    prompts = 800 * len(recipe.get("data.prompt_dataset").split(","))
    assert full["prompts"] == prompts and full["steps"] == estimates.training_steps(recipe.args(), prompts)
    eval_slice = smoke.write_eval_slice(recipe, tmp_path / "run" / "data")
    derived = runs.resolve(smoke.derive(recipe, eval_slice, full), tmp_path / "run")
    args = derived.args()  # OpenRLHF's parser and post-parse checks
    assert {key: derived.get(key) for key in KEPT} == {key: recipe.get(key) for key in KEPT}
    assert estimates.training_steps(args, 800) == smoke.STEPS
    assert (args.eval.steps, args.ckpt.save_steps, args.ckpt.save_hf) == (smoke.SAVE_AT, smoke.SAVE_AT, True)
    assert len(Path(args.eval.dataset).read_text().splitlines()) == smoke.EVAL_PROMPTS
    gpus = estimates.gpus_needed(args)
    checks = preflight.run(derived, REPO, gpus)
    assert not preflight.failed(checks), [c.line() for c in checks if c.status == "FAIL"]


# ---- the flow, up to the GPU ---------------------------------------------------------------------------------


def write_like_a_run(recipe, run: Path, resumed: bool) -> None:
    """What OpenRLHF leaves in the run folder: TensorBoard scalars through its own TensorboardLogger, in the
    folder the recipe's run name gives (steps 1-3, an evaluation at step 2; a resume logs step 3 again, cold) and
    the step-2 Hugging Face checkpoint."""
    from openrlhf.utils.logging_utils import TensorboardLogger

    logger = TensorboardLogger(recipe.args())
    for step in [3] if resumed else [1, 2, 3]:
        cold = 200.0 if resumed or step == 1 else 0.0  # a job's first step warms up
        timing = {"generation": 40.0 + cold, "make_experience": 10.0, "ppo_train": 28.0}
        status = {f"timing/{k}": v for k, v in {**timing, "broadcast": 2.0}.items()}
        status["timing/step_total"] = sum(status.values())
        status["rollout/num_samples"] = 256.0
        status["rollout/response_length_mean"] = 500.0
        logger.log_train(step, status)
        if step == smoke.SAVE_AT and not resumed:
            logger.log_eval(step, {"eval_countdown_pass1": 0.1})
            (run / "ckpt" / "global_step2_hf").mkdir(parents=True)
            (run / "ckpt" / "global_step2_hf" / "config.json").write_text("{}")
    logger.close()
    write_journal(recipe, steps=1 if resumed else 3)


def write_journal(recipe, steps: int) -> None:
    """The rollout journal as the reward file writes it in the job: the real writer, with the environment the
    launcher gives the job (jobs.reward_env): 16 training samples a step, and the held-out slice once."""
    from reward_funcs.journal import Journal

    journal = Journal.from_env(environ=jobs.reward_env(recipe))
    held_out = [json.loads(line) for line in Path(recipe.get("eval.dataset")).read_text().splitlines()]
    training = [("Using the numbers [1, 2, 3], create an equation that equals 6.", countdown_label([1, 2, 3], 6))]
    for prompt, label in training * 16 * steps + [(row["prompt"], row["label"]) for row in held_out]:
        query = prompt + " 1 + 2 + 3 = 6 </think> <answer>1 + 2 + 3</answer>"
        journal.record(query, prompt, label, score_sample(query, prompt, label))
    journal.close()


@pytest.fixture
def stand_in_gpu_side(monkeypatch, datasets):
    """The jobs run here as the job would leave its files; the cluster reports 2 GPUs; nvidia-smi polls come from
    a stand-in that reports two GPUs."""

    class Submitted(list):
        loads_checkpoint = True

    submitted = Submitted()

    def submit_run(recipe, run, address, python, new_folder=True, watch=()):
        resumed = bool(recipe.get("ckpt.load_enable"))
        submitted.append(("resume" if resumed else "train", recipe.argv()))
        write_like_a_run(recipe, run, resumed)
        tail = session.Tail(watch=watch)
        if resumed and submitted.loads_checkpoint:  # as OpenRLHF's trainer logs it when it loads one
            tail.write("INFO ppo_trainer.py:439] checkpoint_states: {'episode': 0, 'global_step': 2}\n")
        return "SUCCEEDED", tail

    monkeypatch.setattr(cluster, "reachable", lambda address: None)

    monkeypatch.setattr(cluster, "cluster_probe", lambda address, recipe=None, python="python3": {"gpus": 2})
    monkeypatch.setattr(session, "submit_run", submit_run)
    monkeypatch.setattr(
        jobs,
        "submit",
        lambda address, entry, env, job_id=None, num_gpus=0: (
            submitted.append(("evaluate", entry, num_gpus)) or "eval-job"
        ),
    )
    monkeypatch.setattr(jobs, "follow", lambda address, job, out=None: "SUCCEEDED")
    return submitted


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\nprintf "0, 70000\\n1, 65000\\n"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}:{Path(sys.executable).parent}:/usr/bin:/bin")


def smoke_main(datasets, tmp_path, *extra):
    sets = ["--set", f"data.prompt_dataset={datasets / 'countdown/train.parquet'}"]
    sets += ["--set", f"eval.dataset={datasets / 'countdown/test.parquet'}"]
    recipe = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"
    return cli.main(
        ["smoke", str(recipe), *sets, "--runs-dir", str(tmp_path / "runs"), "--address", "http://x", *extra]
    )


def test_the_smoke_flow_ends_in_a_table(datasets, tmp_path, stand_in_gpu_side, fake_nvidia_smi, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "wandb-key-1")  # smoke runs stay out of W&B all the same
    status = smoke_main(datasets, tmp_path)
    assert status == 0, capsys.readouterr()
    (run,) = (tmp_path / "runs" / "countdown-qwen2.5-3b-ppo-smoke").iterdir()
    assert [s[0] for s in stand_in_gpu_side] == ["train", "resume", "evaluate"]
    train, resume = stand_in_gpu_side[0][1], stand_in_gpu_side[1][1]
    assert "--logger.wandb.key" not in train and train[train.index("--logger.wandb.run_name") + 1] == "train"
    at = resume.index("--logger.wandb.run_name") + 1  # the resume logs into a TensorBoard folder of its own
    assert resume == [*train[:at], "resume", *train[at + 1 :], "--ckpt.load_enable"]  # the same job, from the ckpt
    evaluate_entry, gpus = stand_in_gpu_side[2][1:]
    evaluate_argv = shlex.split(evaluate_entry)
    assert evaluate_argv[1:3] == ["-m", "analysis.evaluate"] and gpus == 1
    evaluate_args = evaluate.build_parser().parse_args(evaluate_argv[3:])
    assert evaluate_args.model == str(run / "ckpt" / "global_step2_hf") and evaluate_args.backend == "vllm"
    assert evaluate_args.data == str(run / "data" / "test.jsonl")
    table = (run / "smoke.md").read_text()
    stages = [json.loads(line) for line in (run / "smoke.jsonl").read_text().splitlines()]
    assert [(s["stage"], s["status"]) for s in stages] == [
        ("preflight", "ok"),
        ("train", "ok"),
        ("resume", "ok"),
        ("evaluate", "ok"),
    ]
    # the first job's steps 2 and 3 (its first warms up; the resumed job's cold step is left out too):
    # generation 40 s of an 80 s step
    assert "| generation | 40.0 | 50% |" in table and "| **step** | **80.0** |" in table
    assert "Generated tokens/s: 3,200" in table  # 256 samples x 500 tokens / 40 s
    assert "Peak GPU memory: GPU 0 73.4 GB, GPU 1 68.2 GB" in table  # 70,000 and 65,000 MiB
    steps = estimates.training_steps(load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml").args(), 800)
    assert f"Projected full run: {steps:,} steps x 80.0 s" in table and "on 2 GPUs" in table
    held_out = 2 * len((run / "data" / "test.jsonl").read_text().splitlines())  # the slice, by each job
    assert f"Rollout journal: {64 + held_out:,} samples (64 training over " in table  # 3 steps, then 1 resumed
    assert f"{held_out} held-out); see them with python -m analysis.run_report {run}" in table
    assert "Smoke run passed" in table
    assert "wandb-key-1" not in (run / "recipe.yaml").read_text() + capsys.readouterr().out
    for written in (run / "journal").iterdir():  # a reward that recorded nothing fails the smoke run
        written.unlink()
    assert smoke_table.main([str(run), "--force"]) == 1
    table = (run / "smoke.md").read_text()
    assert "Rollout journal: EMPTY" in table and "Smoke run FAILED at: journal" in table


def test_a_resume_that_does_not_load_the_checkpoint_fails(datasets, tmp_path, stand_in_gpu_side, capsys):
    stand_in_gpu_side.loads_checkpoint = False
    assert smoke_main(datasets, tmp_path) == 1
    (run,) = (tmp_path / "runs" / "countdown-qwen2.5-3b-ppo-smoke").iterdir()
    table = (run / "smoke.md").read_text()
    assert "| resume | FAIL | job SUCCEEDED without loading the checkpoint" in table
    assert "Smoke run FAILED at: resume" in table


def test_a_smoke_run_that_stops_early_is_incomplete_not_passed(datasets, tmp_path, stand_in_gpu_side, monkeypatch):
    def no_head(*args):
        raise session.LaunchError("could not start a local Ray head: ray start exited with status 1")

    monkeypatch.setattr(session, "ray_head", no_head)
    assert smoke_main(datasets, tmp_path) == 1
    (run,) = (tmp_path / "runs" / "countdown-qwen2.5-3b-ppo-smoke").iterdir()
    table = (run / "smoke.md").read_text()
    assert "| stopped | FAIL | could not start a local Ray head" in table
    assert "| train | - | did not run |" in table and "Smoke run FAILED at: stopped" in table
    (run / "smoke.jsonl").write_text(json.dumps({"stage": "preflight", "status": "ok", "line": "ok"}) + "\n")
    assert smoke_table.main([str(run), "--force"]) == 1
    assert "Smoke run INCOMPLETE: train, resume, evaluate did not run" in (run / "smoke.md").read_text()


def test_an_unwritable_runs_dir_fails_before_anything_is_made(datasets, tmp_path, stand_in_gpu_side, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    sets = ["--set", f"data.prompt_dataset={datasets / 'countdown/train.parquet'}"]
    args = ["smoke", str(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"), *sets, "--runs-dir", str(blocker / "r")]
    assert cli.main(args) == 1
    assert "FAIL  runs     cannot write" in capsys.readouterr().out and stand_in_gpu_side == []


def test_a_failed_stage_is_the_line_that_failed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    log = smoke.StageLog(run)
    log.record("preflight", "ok", "14 checks, none failed")
    tail = session.Tail()
    tail.write("step 1\nTraceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory\nbye\n")
    assert not smoke._stage(log, "train", 0.0, "FAILED", tail, "3 steps")
    result = subprocess.run(
        [sys.executable, "-m", "analysis.smoke", str(run)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert "| train | FAIL | job FAILED: torch.OutOfMemoryError: CUDA out of memory |" in result.stdout
    assert "Smoke run FAILED at: train" in result.stdout
    assert (run / "smoke.md").is_file()
    again = subprocess.run([sys.executable, "-m", "analysis.smoke", str(run)], cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr  # never replaced without --force


def test_peak_memory_and_the_typical_step():
    polls = [{"gpu": 0, "used_mib": 1000.0}, {"gpu": 1, "used_mib": 3000.0}, {"gpu": 0, "used_mib": 2000.0}]
    assert smoke_table.peak_memory(polls) == {0: pytest.approx(2.097, abs=1e-3), 1: pytest.approx(3.146, abs=1e-3)}
    assert smoke_table._typical([(1, 100.0), (2, 10.0), (3, 12.0)]) == 11.0  # the warm-up step left out
    assert smoke_table._typical([(1, 100.0)]) == 100.0
    assert smoke_table._typical([]) is None


def test_smoke_needs_an_eval_dataset(datasets, tmp_path):
    recipe = apply_overrides(with_data(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml", datasets), ["eval=null"])
    with pytest.raises(UsageError, match="evaluates on eval.dataset"):
        smoke.write_eval_slice(recipe, tmp_path)


def test_make_smoke_is_wired():
    result = subprocess.run(
        ["make", "-n", "smoke", "RECIPE=recipes/countdown/qwen2.5-3b-ppo.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert "-m launch smoke recipes/countdown/qwen2.5-3b-ppo.yaml" in result.stdout


def test_the_gpu_poller_keeps_readings_only(tmp_path, monkeypatch):
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\nprintf "0, [N/A]\\n1, 500\\nNVIDIA-SMI has failed\\n"\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}:/usr/bin:/bin")
    with smoke.GpuPoller(tmp_path, every=60):
        pass
    polls = [json.loads(line) for line in (tmp_path / smoke.GPU_LOG).read_text().splitlines()]
    assert [(p["gpu"], p["used_mib"]) for p in polls] == [(1, 500.0)]
