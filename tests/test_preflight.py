"""Preflight: a catalogue of misconfigurations, each caught with its own message, and the memory estimate."""

import json
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from testkit import REPO

from data_tools import countdown
from launch import data_checks, disk_checks, estimates, preflight
from launch.cluster import free_port
from launch.models import QWEN25, valid_tp_sizes
from launch.recipe import apply_overrides, load

BASE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "countdown"
    countdown.main(["--out", str(out), "--train-size", "300", "--test-size", "40", "--workers", "1"])
    return out


def checked(data, overrides, gpus=2):
    recipe = apply_overrides(
        load(BASE),
        [f"data.prompt_dataset={data / 'train.parquet'}", f"eval.dataset={data / 'test.parquet'}", *overrides],
    )
    return preflight.run(recipe, REPO, cluster_gpus=gpus)


def findings(checks):
    return [c for c in checks if c.status != "ok"]


def test_the_shipped_recipe_passes_on_a_matching_cluster(data):
    checks = checked(data, [])
    assert findings(checks) == [], [c.line() for c in checks]
    assert {c.name for c in checks} >= {"flags", "gpus", "model", "batches", "memory", "env", "data"}
    assert any("all 40 reference solutions score 1.0" in c.message for c in checks)


def bad_labels(tmp_path, data):
    rows = pq.read_table(data / "test.parquet").to_pylist()
    for row in rows:
        label = json.loads(row["label"])
        del label["target"]
        row["label"] = json.dumps(label)
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


CATALOGUE = {
    "tp 4 for qwen2.5-0.5b": (
        [
            "actor.model_name_or_path=Qwen/Qwen2.5-0.5B",
            "vllm.tensor_parallel_size=4",
            "vllm.num_engines=1",
            "train.colocate_all=false",
            "vllm.enable_sleep=false",
            "ds.enable_sleep=false",
        ],
        8,
        "FAIL",
        "vllm.tensor_parallel_size 4 does not divide",
    ),
    "empty tp": (["vllm.tensor_parallel_size=''"], 2, "FAIL", "vllm.tensor_parallel_size is empty"),
    "gpus per node left at 8": (
        [
            "actor.num_gpus_per_node=null",
            "critic.num_gpus_per_node=null",
            "ref.num_gpus_per_node=null",
            "vllm.num_engines=8",
        ],
        2,
        "FAIL",
        "left at OpenRLHF's default of 8, the cluster has 2",
    ),
    "group_norm with one sample": (
        ["algo.advantage.estimator=group_norm", "critic=null"],
        2,
        "FAIL",
        "group_norm requires n_samples_per_prompt > 1",
    ),
    "old flat flag": (["pretrain=Qwen/Qwen2.5-3B"], 2, "FAIL", "--pretrain: it is --actor.model_name_or_path"),
    "reserved env var": (["recipe.env.NCCL_DEBUG=INFO"], 2, "FAIL", "NCCL_DEBUG in recipe.env"),
    "missing dataset": (
        ["data.prompt_dataset=data/nowhere/train.parquet", "recipe.dataset=null"],
        2,
        "FAIL",
        "does not exist and no recipe.dataset makes it",
    ),
    "eval without remote reward": (
        ["reward.remote_url=null", "reward.model_name_or_path=OpenRLHF/some-rm"],
        2,
        "FAIL",
        "`--eval_dataset` requires",
    ),
    "no reward at all": (["reward.remote_url=null", "eval=null"], 2, "FAIL", "the critic needs reward.remote_url"),
    "batches do not divide": (["train.batch_size=48"], 2, "FAIL", "is not a multiple of train.batch_size 48"),
    "hybrid engine mismatch": (
        ["vllm.num_engines=1"],
        2,
        "FAIL",
        "hybrid engine (train.colocate_all) needs actor GPUs (2)",
    ),
    "instruct with base template": (
        ["actor.model_name_or_path=Qwen/Qwen2.5-3B-Instruct"],
        2,
        "warn",
        "instruct model but the prompts use the base template",
    ),
    "context beyond math-1.5b": (
        ["actor.model_name_or_path=Qwen/Qwen2.5-Math-1.5B", "data.max_len=8192"],
        2,
        "FAIL",
        "exceeds Qwen/Qwen2.5-Math-1.5B's context of 4096",
    ),
    "memory over the gpu": (["recipe.hardware.gpu_memory_gb=24"], 2, "FAIL", "fits with:"),
    "prompts over the budget": (["data.max_len=1100"], 2, "FAIL", "exceed the budget"),
    "more gpus than the cluster": ([], 1, "FAIL", "needs 2 GPUs, the cluster has 1"),
    "colocated ref on fewer gpus": (
        ["actor.num_gpus_per_node=4", "vllm.num_engines=4"],
        4,
        "FAIL",
        "colocated ref on 1 node(s) x 2 GPU(s), the actor on 1 x 4",
    ),
    "fewer prompts than a rollout batch": (["rollout.batch_size=512"], 2, "warn", "fewer than one rollout batch"),
    "a tab in a value": (['data.input_template="Q:\\t{}"'], 2, "FAIL", "holds a tab or NUL"),
}


@pytest.mark.parametrize("case", sorted(CATALOGUE))
def test_misconfiguration_is_caught_with_its_own_message(data, case):
    overrides, gpus, status, message = CATALOGUE[case]
    hits = [c for c in checked(data, overrides, gpus) if message in c.message]
    assert hits and hits[0].status == status, [c.line() for c in checked(data, overrides, gpus)]


def test_catalogue_messages_are_distinct():
    assert len({m for *_, m in CATALOGUE.values()}) == len(CATALOGUE) >= 12


def test_labels_without_the_tasks_fields(data, tmp_path):
    checks = checked(data, [f"eval.dataset={bad_labels(tmp_path, data)}"])
    assert any(
        c.status == "FAIL" and "labels cannot be scored" in c.message and "'target'" in c.message for c in checks
    )


def test_http_reward_that_does_not_answer(data):
    url = f"http://127.0.0.1:{free_port()}/get_reward"
    checks = checked(data, [f"reward.remote_url={url}"])
    assert any(c.status == "FAIL" and c.name == "reward" and "did not answer the probe" in c.message for c in checks)


def test_chat_prompts_need_the_chat_template_and_rendered_ones_do_not(tmp_path):
    chat = tmp_path / "chat"
    countdown.main(["--out", str(chat), "--template", "chat", "--train-size", "300", "--test-size", "20"])
    off = checked(chat, [])
    assert [c.status for c in off if "holds chat messages but data.apply_chat_template is off" in c.message] == [
        "FAIL",
        "FAIL",
    ]
    on = checked(chat, ["data.apply_chat_template=true"])
    assert not [c for c in on if c.name == "data" and c.status != "ok"], [c.line() for c in on]


def test_rendered_prompts_with_the_chat_template_on_warn(data):
    checks = checked(data, ["data.apply_chat_template=true"])
    assert any(c.status == "warn" and "wrapped once more as a user message" in c.message for c in checks)


def test_disk_estimate_counts_every_hf_copy_and_the_rotated_deepspeed_checkpoints(data, monkeypatch):
    # OpenRLHF walks 300 prompts in rollout batches of 256, the last partial: 2 steps an episode, 2,000 steps in
    # 1,000 episodes. Saved every 100 steps: 20 HF copies of 2 x 3.09 GB, never deleted; DeepSpeed checkpoints of
    # 14 x 3.09 GB for the actor and as much for the critic, 3 kept (ckpt.max_num) plus the best one; the final model.
    total = 20 * 6.18 + 4 * 86.52 + 6.18
    monkeypatch.setattr(disk_checks.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1e12, 0, 100e9))
    disk = [c for c in checked(data, ["train.num_episodes=1000"]) if c.name == "disk"]
    assert len(disk) == 1 and disk[0].status == "warn", disk
    assert f"about {total:,.0f} GB over 2,000 steps: 20 Hugging Face copies" in disk[0].message
    assert "at most 20)" in disk[0].message  # the best-model copies, one per improving eval
    # at 100 GB free: step 100 holds one copy and one DeepSpeed checkpoint (92.7 GB), step 200 two of each
    assert "the disk fills near step 200" in disk[0].message
    never = [c for c in checked(data, ["train.num_episodes=1000", "ckpt.save_steps=-1"]) if c.name == "disk"]
    assert never[0].status == "ok" and "none saved, the final model" in never[0].message
    monkeypatch.setattr(disk_checks.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1e13, 0, 5e12))
    assert [c.status for c in checked(data, ["train.num_episodes=1000"]) if c.name == "disk"] == ["ok"]


def test_steps_count_the_partial_last_batch_and_every_train_file(data):
    args = load(BASE).args()
    assert estimates.training_steps(args, 1000) == 15 * 4  # 1,000 prompts in batches of 256: 4 steps an episode
    assert estimates.training_steps(args, 256) == 15
    two = f"data.prompt_dataset={data / 'train.parquet'},{data / 'train.parquet'}"
    assert not [c for c in checked(data, [two]) if "fewer than one rollout batch" in c.message]  # 600 prompts
    assert [c for c in checked(data, ["data.max_samples=100"]) if "100 training prompts" in c.message]


def test_empty_files_and_a_missing_prompt_column_are_named(data, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert any(c.status == "FAIL" and "has no rows" in c.message for c in checked(data, [f"eval.dataset={empty}"]))
    wrong_key = [c for c in checked(data, ["data.input_key=question"]) if "has no column 'question'" in c.message]
    assert wrong_key and wrong_key[0].status == "FAIL" and "'prompt'" in wrong_key[0].message


def test_a_critic_smaller_than_the_actor_may_share_its_gpus(data):
    assert not [c for c in checked(data, ["critic.num_gpus_per_node=1"]) if "colocated critic" in c.message]
    bigger = ["critic.num_gpus_per_node=4"]
    assert [c.status for c in checked(data, bigger, 4) if "colocated critic on 4 GPUs" in c.message] == ["FAIL"]


def test_measured_gpu_memory_replaces_what_the_recipe_assumed(data):
    recipe = apply_overrides(
        load(BASE), [f"data.prompt_dataset={data / 'train.parquet'}", f"eval.dataset={data / 'test.parquet'}"]
    )
    memory = [c for c in preflight.run(recipe, REPO, 2, gpu_memory_gb=79.6, data=False) if c.name == "memory"]
    assert memory[0].status == "FAIL" and "of 80 GB per GPU" in memory[0].message
    assert "the cluster's GPUs have 79.6 GB, the recipe was sized for 141 GB" in memory[0].message


def test_no_reference_model_no_reference_gpus():
    recipe = apply_overrides(load(BASE), ["algo.kl.init_coef=0", "ref=null"])
    checks = preflight.check_gpus(recipe, recipe.args(), 2)
    assert [c.status for c in checks] == ["ok"], [c.line() for c in checks]


def test_unset_label_key_is_a_failure_not_a_crash(data):
    recipe = apply_overrides(
        load(BASE),
        [
            "data.label_key=null",
            f"data.prompt_dataset={data / 'train.parquet'}",
            f"eval.dataset={data / 'test.parquet'}",
        ],
    )
    checks = preflight.run(recipe, REPO, 2)
    assert any(c.status == "FAIL" and "data.label_key is not set" in c.message for c in checks)


def test_http_probe_skips_rows_without_a_reference(data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(data / "test.parquet").to_pylist()
    label = json.loads(rows[0]["label"])
    label["solution"] = None
    rows[0]["label"] = json.dumps(label)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    recipe = apply_overrides(
        load(BASE), ["reward.remote_url=http://127.0.0.1:9/get_reward", f"eval.dataset={tmp_path / 'test.parquet'}"]
    )
    checks = data_checks.check_http_reward(recipe.args(), REPO)
    assert [c.status for c in checks] == ["FAIL"] and "did not answer" in checks[0].message


@pytest.mark.parametrize("tp, gpus", [(3, 2), (2, 2), (4, 2), (1, 4)])
def test_hybrid_engine_advice_satisfies_the_equation(tp, gpus):
    """Every (num_engines, tensor_parallel_size) the message suggests fills exactly the actor's GPUs with a
    tensor-parallel size the model allows."""
    overrides = [f"vllm.tensor_parallel_size={tp}", "vllm.num_engines=2"]
    overrides += [f"{role}.num_gpus_per_node={gpus}" for role in ("actor", "critic", "ref")]
    recipe = apply_overrides(load(BASE), overrides)
    args = recipe.args()
    found = [c.message for c in preflight.check_gpus(recipe, args, 8) if "hybrid engine" in c.message]
    if 2 * tp == gpus:
        assert found == []
        return
    pairs = [
        (int(e), int(t))
        for e, t in re.findall(r"vllm.num_engines (\d+) with vllm.tensor_parallel_size (\d+)", found[0])
    ]
    assert pairs and all(e * t == gpus and t in valid_tp_sizes(QWEN25["Qwen2.5-3B"]) for e, t in pairs), found[0]
    if gpus % tp == 0:  # the recipe's own TP comes first when it can work
        assert pairs[0] == (gpus // tp, tp)


def test_the_journal_estimate_sits_beside_the_disk_one_and_names_the_share_that_fits(data, monkeypatch):
    # 2,000 steps of 256 samples (300 prompts, 1,000 episodes), 20 evaluations of 40 prompts, and no checkpoint but
    # the final model (6.18 GB): the journal's 0.9 GB is 15% of it; the texts of 5% of the prompts bring it under 1%.
    monkeypatch.delenv("REWARD_JOURNAL_SAMPLE", raising=False)
    overrides = ["train.num_episodes=1000", "ckpt.save_steps=-1"]
    names = [c.name for c in checked(data, overrides)]
    assert names[names.index("disk") + 1] == "journal"
    (journal,) = [c for c in checked(data, overrides) if c.name == "journal"]
    assert journal.status == "warn" and "512,800 samples, the texts of 100% of the prompts" in journal.message
    assert "14.57% of the checkpoints' 6 GB: export REWARD_JOURNAL_SAMPLE=0.05" in journal.message
    monkeypatch.setenv("REWARD_JOURNAL_SAMPLE", "0.05")
    (journal,) = [c for c in checked(data, overrides) if c.name == "journal"]
    assert journal.status == "ok" and "the texts of 5% of the prompts" in journal.message
    monkeypatch.setenv("REWARD_JOURNAL_SAMPLE", "most")
    (journal,) = [c for c in checked(data, overrides) if c.name == "journal"]
    assert journal.status == "FAIL" and "REWARD_JOURNAL_SAMPLE='most': give the share" in journal.message
    (journal,) = [c for c in checked(data, [*overrides, "recipe.env.REWARD_JOURNAL_DIR=''"]) if c.name == "journal"]
    assert journal.status == "ok" and journal.message.startswith("off")
    monkeypatch.delenv("REWARD_JOURNAL_SAMPLE")
    (journal,) = [c for c in checked(data, []) if c.name == "journal"]
    assert journal.status == "ok"  # the shipped recipe on 300 prompts: 30 steps, 13 MB against the final model
