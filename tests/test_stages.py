"""launch.stages: a curriculum's stages planned, checked before the first is submitted, printed by a dry run, and
submitted one after another on a real local Ray cluster (CPU only), each from the previous stage's outputs, with
--resume continuing the stage that was interrupted."""

import json
import os
import re
import shlex
import stat
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from testkit import REPO, job_command

from data_tools import countdown
from launch import __main__ as cli
from launch import cluster, probe, runs, stages
from launch.check import failed
from launch.openrlhf_cli import check
from launch.recipe import RecipeError, apply_overrides, load, load_ablation

CURRICULUM = REPO / "recipes/countdown/qwen2.5-3b-ppo-curriculum.yaml"
GRPO = REPO / "recipes/countdown/qwen2.5-3b-grpo.yaml"
THREE = "recipe.stages=[{name: easy, band: easy}, {name: medium, band: medium}, {name: hard, band: hard}]"


def planned(recipe, run):
    return stages.plan(stages.resolve_top(recipe, run, None), run)


def flag(argv: list[str], name: str):
    return argv[argv.index(name) + 1] if name in argv else None


# ---- planning -----------------------------------------------------------------------------------------------------


def test_each_stage_starts_from_the_model_and_critic_the_stage_before_it_saves(tmp_path):
    run = tmp_path / "run"
    plan = planned(load(CURRICULUM), run)
    assert [(s.index, s.name, s.folder) for s in plan] == [
        (1, "easy", run / "stage-1"),
        (2, "medium", run / "stage-2"),
        (3, "hard", run / "stage-3"),
    ]
    argvs = [s.recipe.argv() for s in plan]
    for argv in argvs:
        check(argv)  # OpenRLHF's parser and post-parse checks, stage by stage
    assert flag(argvs[0], "--actor.model_name_or_path") == "Qwen/Qwen2.5-3B"
    assert flag(argvs[0], "--critic.model_name_or_path") is None  # OpenRLHF starts the critic from the actor
    for before, after in zip(argvs, argvs[1:], strict=False):
        final = flag(before, "--ckpt.output_dir")
        assert flag(after, "--actor.model_name_or_path") == final
        assert flag(after, "--critic.model_name_or_path") == final + "_critic"  # where OpenRLHF saves the critic
        assert "--critic.save_value_network" in before
    assert "--critic.save_value_network" not in argvs[2]  # no stage after the last to start from it
    bands = [flag(argv, "--data.prompt_dataset") for argv in argvs]
    assert bands == [str(REPO / f"data/countdown-bands/train-{b}.parquet") for b in ("easy", "medium", "hard")]
    assert {flag(argv, "--eval.dataset") for argv in argvs} == {str(REPO / "data/countdown-bands/test.parquet")}
    assert [flag(argv, "--train.num_episodes") for argv in argvs] == ["2", "2", "2"]
    assert [flag(argv, "--logger.tensorboard_dir") for argv in argvs] == [str(s.folder / "tensorboard") for s in plan]
    assert plan[1].recipe.meta["stage"] == {"index": 2, "count": 3, "name": "medium"}


def test_a_critic_free_curriculum_chains_the_actor_only_and_stages_change_what_they_name(tmp_path):
    recipe = apply_overrides(
        load(GRPO),
        [
            "recipe.stages=[{name: a, prompts: 4096, episodes: 3}, "
            "{name: b, dataset: [data/x/train.parquet, data/y/train.parquet], actor: {adam: {lr: 5.0e-7}}}]"
        ],
    )
    first, second = (s.recipe.argv() for s in planned(recipe, tmp_path / "run"))
    assert flag(first, "--data.max_samples") == "4096" and flag(first, "--train.num_episodes") == "3"
    assert flag(second, "--data.prompt_dataset") == f"{REPO / 'data/x/train.parquet'},{REPO / 'data/y/train.parquet'}"
    assert flag(second, "--actor.adam.lr") == "5e-07" and flag(first, "--actor.adam.lr") == "1e-06"
    assert flag(second, "--actor.model_name_or_path") == str(tmp_path / "run/stage-1/final")
    assert "--critic.model_name_or_path" not in second and "--critic.save_value_network" not in first


def test_wandb_names_each_stage_and_secrets_stay_out_of_the_saved_curriculum(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-1")
    recipe = apply_overrides(load(CURRICULUM), ["recipe.env.HF_TOKEN=hf-secret-2"])
    run = tmp_path / "run"
    top = stages.resolve_top(recipe, run, None)
    plan = stages.plan(top, run)
    names = [s.recipe.get("logger.wandb.run_name") for s in plan]
    assert names == [f"{recipe.name}-run-stage-{i}" for i in (1, 2, 3)]
    assert all(s.recipe.secrets["HF_TOKEN"] == "hf-secret-2" for s in plan)
    runs.save(run.parent, top, "# stages")
    saved = (run.parent / "recipe.yaml").read_text()
    assert "hf-secret-2" not in saved and "wandb-secret-1" not in saved
    assert not {"ckpt.path", "ckpt.output_dir", "logger.tensorboard_dir"} & set(top.flat())  # each stage's own


@pytest.mark.parametrize(
    "stages_, message",
    [
        ("[{name: a, band: tiny}]", "is not a band recipe.dataset makes (it makes easy, medium, hard)"),
        ("[{name: a, band: easy, dataset: x.parquet}]", "gives both band and dataset"),
        ("[{name: a, episode: 2}]", "did you mean episodes?"),
        ("[{name: a, prompts: 0}]", "prompts must be a whole number of prompts"),
        ("[{name: a}, {name: b, actor: {model_name_or_path: m}}]", "starts from the previous stage's model"),
        ("[{name: a}, {name: a}]", "two stages named alike"),
        ("[{name: ../a}]", "becomes a run folder"),
        ("[]", "recipe.stages must be a list of stages"),
    ],
)
def test_a_stage_that_cannot_be_run_is_refused_with_the_fix(stages_, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        apply_overrides(load(CURRICULUM), [f"recipe.stages={stages_}"])


def test_a_band_needs_a_dataset_made_with_bands():
    with pytest.raises(RecipeError, match="it makes none"):
        apply_overrides(load(GRPO), ["recipe.stages=[{name: a, band: easy}]"])


def test_the_ablations_orders_differ_only_in_their_stages():
    variants = {r.meta["variant"]: r for r in load_ablation(REPO / "recipes/ablations/curriculum.yaml")}
    bands = {name: [s["band"] for s in r.meta.get("stages") or []] for name, r in variants.items()}
    assert bands == {
        "easy-to-hard": ["easy", "medium", "hard"],
        "random": [],
        "hard-to-easy": ["hard", "medium", "easy"],
    }
    assert variants["random"].flags == variants["easy-to-hard"].flags == variants["hard-to-easy"].flags
    # the same prompts in each: the random run's episodes over the three bands equal the stages' in sum
    random = variants["random"].args()
    assert len(random.data.prompt_dataset.split(",")) == 3
    assert sum(s["episodes"] for s in variants["easy-to-hard"].meta["stages"]) == 3 * random.train.num_episodes


# ---- the dry run and preflight --------------------------------------------------------------------------------------


def test_a_dry_run_prints_every_stage_each_pointing_at_the_one_before(tmp_path, capsys):
    """Later stages load folders that do not exist yet: preflight accepts them as what the earlier stage will write
    (their shape is the model they are trained from) and says so."""
    assert cli.main(["train", str(CURRICULUM), "--dry-run", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert [line.split(":")[0] for line in lines[::2]] == [
        "# stage 1/3 (easy)",
        "# stage 2/3 (medium)",
        "# stage 3/3 (hard)",
    ]
    argvs = [job_command(line)[3:] for line in lines[1::2]]
    run = Path(lines[0].split(": ", 1)[1]).parent
    assert flag(argvs[1], "--actor.model_name_or_path") == str(run / "stage-1/final")
    assert flag(argvs[2], "--critic.model_name_or_path") == str(run / "stage-2/final_critic")
    assert not (run / "stage-1").exists() and not run.exists()  # a dry run makes nothing
    assert "FAIL" not in out.err
    assert f"  ok  model    {run / 'stage-1/final'}: 16 heads / 2 KV heads" in out.err
    assert "stage 3/3 (hard) starts from stage 2/3 (medium)'s final and final_critic, which it will write" in out.err


def test_preflight_checks_every_stage_and_stops_on_a_bad_one(tmp_path, capsys):
    """A stage whose own flags OpenRLHF would refuse fails the whole curriculum before anything is submitted."""
    bad = "recipe.stages=[{name: a}, {name: b, train: {batch_size: 48}}]"
    assert cli.main(["train", str(CURRICULUM), "--dry-run", "--runs-dir", str(tmp_path), "--set", bad]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "FAIL  batches" in out.err
    assert out.err.index("stage 2/2 (b)") < out.err.index("FAIL  batches")


def test_a_stage_folder_is_not_resumed_on_its_own(tmp_path, capsys):
    stage = tmp_path / "stage-2"
    stage.mkdir()
    plan = planned(load(CURRICULUM), tmp_path)
    runs.save(stage, plan[1].recipe, "ray job submit ...")
    assert cli.main(["train", "--resume", str(stage), "--dry-run"]) == 2
    assert f"resume the curriculum, python -m launch train --resume {tmp_path}" in capsys.readouterr().err


def test_the_probe_checks_that_every_node_sees_the_previous_stages_model(tmp_path):
    plan = planned(load(CURRICULUM), tmp_path)
    final = tmp_path / "stage-1" / "final"
    assert str(final / "config.json") not in probe.probe_arguments(plan[1].recipe)  # not written yet
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    argv = probe.probe_arguments(plan[1].recipe)
    assert argv[argv.index(str(final / "config.json")) - 1] == "--visible"
    node = {"node_id": "b", "name": "10.0.0.2", "ip": "10.0.0.2", "gpus": 8, "python": "python3", "imports": {}}
    node.update(visible={str(final / "config.json"): False}, writable=None, gpu_memory_gb=80)
    checks = probe.node_checks({"gpus": 8, "nodes": [node]})
    says = "cannot see " + str(final / "config.json") + ": put the runs folder (--runs-dir) on a filesystem every node"
    assert failed(checks) and any(says in c.message for c in checks if c.status == "FAIL")


# ---- on a real local Ray cluster ------------------------------------------------------------------------------------

STAND_IN_TRAINER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    # Stands in for `python -m openrlhf.cli.train_ppo_ray ARGS` on a CPU: leaves what OpenRLHF's trainer leaves.
    argv = sys.argv[3:]
    value = lambda name: argv[argv.index(name) + 1] if name in argv else None
    final, ckpt = Path(value("--ckpt.output_dir")), Path(value("--ckpt.path"))
    actor, critic = value("--actor.model_name_or_path"), value("--critic.model_name_or_path")
    ready = lambda model: (Path(model) / "config.json").is_file() if model and model.startswith("/") else None
    resumed = "--ckpt.load_enable" in argv
    seen = {"argv": argv, "time": time.time(), "cwd": os.getcwd(), "actor_ready": ready(actor),
            "critic_ready": ready(critic), "loaded_checkpoint": resumed and (ckpt / "_actor").is_dir()}
    with open(final.parent / "trainer.jsonl", "a") as f:
        f.write(json.dumps(seen) + "\\n")
    if seen["actor_ready"] is False:
        sys.exit(f"no model at {actor}")
    if os.environ.get("STAND_IN_FAIL") == final.parent.name and not resumed:
        (ckpt / "_actor").mkdir(parents=True)  # a checkpoint, then the job dies
        sys.exit("RuntimeError: CUDA error: out of memory (stand-in)")
    config = {"num_hidden_layers": 36, "hidden_size": 2048, "num_attention_heads": 16, "num_key_value_heads": 2,
              "intermediate_size": 11008, "max_position_embeddings": 32768, "tie_word_embeddings": True}
    for out in [final] + ([Path(f"{final}_critic")] if "--critic.save_value_network" in argv else []):
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config))  # Qwen2.5-3B's shape, as save_pretrained writes it
    print("stand-in trainer: done", flush=True)
    """
)


@pytest.fixture(scope="module")
def address():
    """A local Ray head for this module's jobs (starting one takes tens of seconds)."""
    pytest.importorskip("ray")
    head = cluster.LocalHead(gpus=0)
    try:
        yield head.start()
    finally:
        head.stop()


@pytest.fixture
def small_bands(tmp_path):
    data = tmp_path / "bands"
    sizes = ["--bands", "easy,medium,hard", "--train-size", "64", "--test-size", "24", "--workers", "1"]
    assert countdown.main(["--out", str(data), *sizes]) == 0
    return data


def stand_in_trainer(tmp_path) -> str:
    path = tmp_path / "bin" / "trainer"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\n{STAND_IN_TRAINER}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def trainer_calls(stage: Path) -> list[dict]:
    return [json.loads(line) for line in (stage / "trainer.jsonl").read_text().splitlines()]


@pytest.mark.ray
def test_stages_are_submitted_in_order_and_resume_continues_the_interrupted_one(
    tmp_path, small_bands, address, monkeypatch, capsys
):
    """Stage 2's job dies after writing a checkpoint: stage 3 is not submitted. --resume leaves stage 1 alone,
    submits stage 2 again with --ckpt.load_enable (it loads its checkpoint), then stage 3 from stage 2's outputs.
    The jobs run through Ray's job API on a real head; only the cluster's GPU count (the probe) is stood in for."""
    probed = []

    def cluster_probe(address_, recipe=None, python="python3"):
        probed.append(probe.probe_arguments(recipe))
        return {"gpus": 2, "gpu_memory_gb": 141.0, "nodes": None}

    monkeypatch.setattr(cluster, "cluster_probe", cluster_probe)
    files = {band: small_bands / f"train-{band}.parquet" for band in ("easy", "medium", "hard")}
    changes = [
        "recipe.dataset=null",
        f"data.prompt_dataset={','.join(map(str, files.values()))}",
        f"eval.dataset={small_bands / 'test.parquet'}",
        "recipe.stages=[" + ", ".join(f"{{name: {b}, dataset: {f}, episodes: 1}}" for b, f in files.items()) + "]",
        "recipe.env.STAND_IN_FAIL=stage-2",
    ]
    common = ["--address", address, "--python", stand_in_trainer(tmp_path)]
    sets = [word for change in changes for word in ("--set", change)]
    assert cli.main(["train", str(CURRICULUM), "--runs-dir", str(tmp_path / "runs"), *sets, *common]) == 1
    assert "stage 2/3 (medium) ended FAILED: no later stage was submitted" in capsys.readouterr().err
    (run,) = (tmp_path / "runs" / "countdown-qwen2.5-3b-ppo-curriculum").iterdir()
    first, second, third = (run / f"stage-{i}" for i in (1, 2, 3))
    assert not third.exists()
    assert [json.loads((s / "status.json").read_text())["status"] for s in (first, second)] == ["SUCCEEDED", "FAILED"]
    assert (yaml.safe_load((run / "recipe.yaml").read_text())["recipe"]["stages"][2]["name"]) == "hard"

    assert cli.main(["train", "--resume", str(run), "--dry-run", *common]) == 0  # what the resume will submit
    printed = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in printed[::2]] == ["# stage 2/3 (medium)", "# stage 3/3 (hard)"]
    assert job_command(printed[1])[-1] == "--ckpt.load_enable" and "--ckpt.load_enable" not in printed[3]

    assert cli.main(["train", "--resume", str(run), *common]) == 0
    calls = {s.name: trainer_calls(s) for s in (first, second, third)}
    assert [len(calls[s.name]) for s in (first, second, third)] == [1, 2, 1]  # stage 1 was not run again
    times = [calls["stage-1"][0], *calls["stage-2"], calls["stage-3"][0]]
    assert [c["time"] for c in times] == sorted(c["time"] for c in times)  # one after another
    assert all("working_dir" in c["cwd"] for c in times)  # in Ray's copy of the repository: real jobs
    for before, stage in ((first, second), (second, third)):
        call = calls[stage.name][-1]
        assert flag(call["argv"], "--actor.model_name_or_path") == str(before / "final")
        assert flag(call["argv"], "--critic.model_name_or_path") == str(before / "final_critic")
        assert call["actor_ready"] and call["critic_ready"]  # the previous stage's outputs were there at submission
    interrupted, continued = calls["stage-2"]
    assert continued["argv"] == [*interrupted["argv"], "--ckpt.load_enable"] and continued["loaded_checkpoint"]
    assert [len(json.loads((s / "job.json").read_text())["jobs"]) for s in (first, second, third)] == [1, 2, 1]
    assert {json.loads((s / "status.json").read_text())["status"] for s in (first, second, third)} == {"SUCCEEDED"}
    # before stages 2 and 3 the probe was asked whether every node sees the model the stage before wrote
    assert any(str(first / "final/config.json") in argv for argv in probed)
    assert any(str(second / "final/config.json") in argv for argv in probed)

    assert cli.main(["train", "--resume", str(run), *common]) == 0
    assert "has finished: nothing to resume" in capsys.readouterr().out
    assert [len(trainer_calls(s)) for s in (first, second, third)] == [1, 2, 1]
    assert shlex.split((run / "command.sh").read_text().splitlines()[1])[:3] == ["ray", "job", "submit"]
    assert os.environ.get("STAND_IN_FAIL") is None  # the variable went to the jobs only


def test_the_reward_services_journal_into_each_stages_folder(tmp_path, monkeypatch):
    """Reward services started for a curriculum are restarted for each stage with its environment, on the same
    ports: each stage's samples land in its own journal/ (real services, a stand-in for the job's submission)."""
    import urllib.request

    from launch import jobs, session
    from reward_funcs.journal import DIR_ENV

    plan = planned(load(CURRICULUM), tmp_path / "run")
    services = jobs.RewardServices({"instances": 1})
    seen = []

    def submit_run(recipe, folder, address, python, new_folder=True, watch=()):
        label = json.dumps({"task": "countdown", "target": 60, "numbers": [44, 19, 35]})
        query = "Assistant: </think>\n<answer>44 - 19 + 35</answer>"
        body = json.dumps({"query": [query], "prompts": [None], "labels": [label]}).encode()
        request = urllib.request.Request(services.urls[0], body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            seen.append((services.urls[0], json.loads(answer.read())["rewards"]))
        for name in ("final", "final_critic"):
            (folder / name).mkdir(parents=True, exist_ok=True)
            (folder / name / "config.json").write_text("{}")
        return "SUCCEEDED", None

    monkeypatch.setattr(session, "submit_run", submit_run)
    services.start()
    try:
        assert stages.run_stages(plan, tmp_path / "run", "http://x", "python3", False, services=services) == 0
    finally:
        services.stop()
    assert [rewards for _, rewards in seen] == [[1.0]] * 3 and len({url for url, _ in seen}) == 1
    for stage in plan:
        assert jobs.reward_env(stage.recipe)[DIR_ENV] == str(stage.folder / "journal")
        assert list((stage.folder / "journal").glob("*.rows")), stage.folder  # the stage's own samples
