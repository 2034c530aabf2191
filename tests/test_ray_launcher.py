"""The launcher's own submit path on a real local Ray cluster (CPU only, free ports): a probe job that, in a
Ray remote task as OpenRLHF's vLLM actors do, loads the reward file by the recipe's path and scores the
dataset's reference solutions."""

import sys

import pytest
from testkit import REPO

from data_tools import countdown
from launch import cluster
from launch.probe import probe_cluster
from launch.recipe import apply_overrides, load

pytest.importorskip("ray")


@pytest.mark.ray
def test_probe_job_scores_reference_solutions_in_a_ray_task(tmp_path):
    data = tmp_path / "countdown"
    countdown.main(["--out", str(data), "--train-size", "50", "--test-size", "30"])
    recipe = apply_overrides(
        load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"), [f"eval.dataset={data / 'test.parquet'}"]
    )
    head = cluster.LocalHead(gpus=0)
    address = head.start()
    try:
        result = probe_cluster(address, recipe, python=sys.executable)
    finally:
        head.stop()
    assert result["gpus"] == 0
    assert result["scored"] == result["correct"] == 30
    assert result["cwd"] != str(REPO) and "working_dir" in result["cwd"]  # the job ran in Ray's copy of the repo
