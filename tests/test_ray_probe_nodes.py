"""The probe's node checks on a real two-node Ray cluster on this machine (CPU only).

Two nodes on one machine share one filesystem, so the test makes a path mean a different folder on each node,
the way a folder that is not on a shared filesystem does on a real cluster: the paths it probes start with
`/proc/self/cwd/`, which the kernel resolves in the process that opens them to that process's own working folder.
A Ray worker inherits its working folder from the raylet that starts it, and `Cluster.add_node` starts each
raylet from the test process's working folder at that moment: node-a's raylet starts in a folder holding
`data/train.parquet` and a `runs/` folder, node-b's in one holding neither (a file named `runs` instead of the
folder). So the checks really run in each node's own worker process: node-b's worker looks for
`/proc/self/cwd/data/train.parquet` in node-b's folder and does not find it, as a node without the shared mount
would not, while node-a's finds it.
"""

import os
import sys

import pytest
from testkit import REPO

from launch import probe

ray = pytest.importorskip("ray")

pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc/self/cwd"),
]

DATA = "/proc/self/cwd/data/train.parquet"
RUNS = "/proc/self/cwd/runs"


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Every node's answer to `probe.probe_nodes` on a cluster of node-a (the head) and node-b."""
    from ray.cluster_utils import Cluster

    root = tmp_path_factory.mktemp("nodes")
    (root / "node-a" / "data").mkdir(parents=True)
    (root / "node-a" / "data" / "train.parquet").write_bytes(b"PAR1")
    (root / "node-a" / "runs").mkdir()
    (root / "node-b").mkdir()
    (root / "node-b" / "runs").write_text("a file where node-a has a folder\n")
    cluster = Cluster()
    here = os.getcwd()
    try:
        for name in ("node-a", "node-b"):
            os.chdir(root / name)  # the raylet, and so every worker it starts, works in this folder
            cluster.add_node(num_cpus=1, node_name=name, include_dashboard=False)
        os.chdir(here)
        ray.init(address=cluster.address, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
        yield probe.probe_nodes([DATA], RUNS, timeout=240)
    finally:
        os.chdir(here)
        ray.shutdown()
        cluster.shutdown()


def by_name(nodes):
    return {n["name"]: n for n in nodes}


def test_every_node_answers_from_a_worker_of_its_own(nodes):
    assert sorted(by_name(nodes)) == ["node-a", "node-b"]
    for node in nodes:
        assert "error" not in node, node
        assert node["worker_node_id"] == node["node_id"]  # pinned: the task ran on the node it reports for


def test_each_node_sees_its_own_filesystem(nodes):
    found = by_name(nodes)
    assert found["node-a"]["visible"] == {DATA: True}
    assert found["node-b"]["visible"] == {DATA: False}
    assert found["node-a"]["writable"] == {"path": RUNS, "error": None}  # a probe file created and deleted
    assert found["node-b"]["writable"]["error"]


def test_a_node_missing_the_data_is_a_fail_naming_it(nodes):
    fails = [c for c in probe.node_checks({"nodes": nodes}) if c.status == "FAIL" and "cannot see" in c.message]
    assert len(fails) == 1
    assert fails[0].message.startswith(f"node node-b ({nodes[0]['ip']}) cannot see {DATA}: put data/ on a filesystem")


def test_a_node_that_cannot_write_the_runs_folder_is_a_fail_naming_it(nodes):
    fails = [c for c in probe.node_checks({"nodes": nodes}) if c.status == "FAIL" and "cannot write" in c.message]
    assert len(fails) == 1
    assert fails[0].message.startswith(f"node node-b ({nodes[0]['ip']}) cannot write to {RUNS}")


def test_the_node_that_sees_everything_has_no_fail(nodes):
    checks = probe.node_checks({"nodes": nodes})
    assert [c for c in checks if c.status == "FAIL" and "node-a" in c.message] == []
    assert len([c for c in checks if c.status == "FAIL"]) == 2  # node-b's two


def test_a_cpu_node_reports_the_missing_gpu_runtime_without_failing(nodes):
    """On this machine (no GPU, CPU torch, no vLLM or flash_attn) each node reports what it imports."""
    node = by_name(nodes)["node-a"]
    assert node["gpus"] == 0
    assert node["imports"]["torch"]["error"] is None and node["imports"]["torch"]["version"]
    assert node["imports"]["openrlhf"]["version"] == "0.11.2"
    assert "vllm" in node["imports"]["vllm"]["error"]
    runtime = [c for c in probe.node_checks({"nodes": nodes}) if "cannot import" in c.message or "CUDA" in c.message]
    assert runtime and {c.status for c in runtime} == {"warn"}
