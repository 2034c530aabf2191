"""The launcher's own submit path on a real local Ray cluster (CPU only, free ports): a probe job that, in a
Ray remote task as OpenRLHF's vLLM actors do, loads the reward file by the recipe's path and scores the
dataset's reference solutions."""

import sys

import pytest
from testkit import REPO

from data_tools import countdown
from launch import cluster
from launch.check import failed
from launch.probe import node_checks, probe_cluster
from launch.recipe import apply_overrides, load

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def address():
    """A local Ray head for this module's jobs (starting one takes tens of seconds)."""
    head = cluster.LocalHead(gpus=0)
    try:
        yield head.start()
    finally:
        head.stop()


@pytest.mark.ray
def test_probe_job_scores_reference_solutions_in_a_ray_task(tmp_path, address):
    data = tmp_path / "countdown"
    countdown.main(["--out", str(data), "--train-size", "50", "--test-size", "30"])
    recipe = apply_overrides(
        load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"), [f"eval.dataset={data / 'test.parquet'}"]
    )
    result = probe_cluster(address, recipe, python=sys.executable)
    assert result["gpus"] == 0
    assert result["scored"] == result["correct"] == 30
    assert result["cwd"] != str(REPO) and "working_dir" in result["cwd"]  # the job ran in Ray's copy of the repo


@pytest.mark.ray
def test_probe_job_checks_every_node_for_the_recipes_paths(tmp_path, address):
    """The probe job gets the recipe's data files and run folder on its command line and checks them in a task
    on each node; the result keeps the keys the GPU and memory checks read."""
    data = tmp_path / "countdown"
    countdown.main(["--out", str(data), "--train-size", "50", "--test-size", "30"])
    (tmp_path / "runs").mkdir()
    run = tmp_path / "runs" / "qwen2.5-3b-ppo" / "20260101-120000"  # not made yet: its nearest folder is checked
    recipe = apply_overrides(
        load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"),
        [
            f"data.prompt_dataset={data / 'train.parquet'}",
            f"eval.dataset={data / 'test.parquet'}",
            f"ckpt.path={run / 'ckpt'}",
        ],
    )
    result = probe_cluster(address, recipe, python=sys.executable)
    assert result["gpus"] == 0 and result["scored"] == 30
    [node] = result["nodes"]
    assert node["visible"] == {str(data / "train.parquet"): True, str(data / "test.parquet"): True}
    assert node["writable"] == {"path": str(tmp_path / "runs"), "error": None}
    checks = node_checks(result)
    assert checks[0].status == "ok" and not failed(checks)
    assert list((tmp_path / "runs").iterdir()) == []  # the probe file was deleted
