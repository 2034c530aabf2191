"""The probe's pure parts: the command line it gets from a recipe, the node findings as preflight lines, and the
per-node helpers that need no Ray (the two-node cluster is tests/test_ray_probe_nodes.py)."""

import pytest
from testkit import REPO

from launch import probe
from launch.check import failed
from launch.recipe import apply_overrides, load

RECIPE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"
GPU_RUNTIME = {
    "torch": {"version": "2.9.0+cu128", "error": None, "cuda": "12.8", "cuda_available": True, "devices": 8},
    "vllm": {"version": "0.29.0", "error": None},
    "openrlhf": {"version": "0.11.2", "error": None},
    "flash_attn": {"version": "2.8.3", "error": None},
}
CPU_RUNTIME = {
    "torch": {"version": "2.13.0+cpu", "error": None, "cuda": None, "cuda_available": False, "devices": 0},
    "vllm": {"version": None, "error": "ModuleNotFoundError: No module named 'vllm'"},
    "openrlhf": {"version": "0.11.2", "error": None},
    "flash_attn": {"version": None, "error": "ModuleNotFoundError: No module named 'flash_attn'"},
}


def node(ip, gpus=8, imports=GPU_RUNTIME, visible=None, writable=None, name=None, **extra):
    return {
        "node_id": ip,
        "name": name or ip,
        "ip": ip,
        "gpus": gpus,
        "python": "/opt/venv/bin/python",
        "imports": imports,
        "gpu_memory_gb": 85.1 if gpus else None,
        "visible": visible or {},
        "writable": writable,
        **extra,
    }


def statuses(checks):
    return [(c.status, c.message) for c in checks]


# ---- node_checks -------------------------------------------------------------------------------------------------


def test_a_node_that_cannot_see_a_data_file_is_a_fail_naming_it():
    data = {"/shared/data/train.parquet": True}
    checks = probe.node_checks(
        {"nodes": [node("10.0.0.1", visible=data), node("10.0.0.2", visible={"/shared/data/train.parquet": False})]}
    )
    assert statuses(checks) == [
        (
            "FAIL",
            "node 10.0.0.2 cannot see /shared/data/train.parquet: put data/ on a filesystem every node mounts at the "
            "same path, or point data.prompt_dataset / eval.dataset (--set) at files on one",
        )
    ]


def test_a_node_that_cannot_write_the_run_folder_is_a_fail_with_the_reason():
    folder = {"path": "/shared/runs/x", "error": "PermissionError: Permission denied"}
    [check] = probe.node_checks({"nodes": [node("10.0.0.1", writable=folder)]})
    assert check.status == "FAIL"
    assert check.message.startswith("node 10.0.0.1 cannot write to /shared/runs/x (PermissionError: Permission denied)")
    assert "--runs-dir" in check.message


def test_a_named_node_is_shown_with_its_ip():
    [check] = probe.node_checks({"nodes": [node("10.0.0.3", name="gpu-3", visible={"/d": False})]})
    assert check.message.startswith("node gpu-3 (10.0.0.3) cannot see /d")


def test_the_same_problem_on_several_nodes_is_one_line():
    missing = {"/d/train.parquet": False}
    checks = probe.node_checks({"nodes": [node(f"10.0.0.{i}", visible=missing) for i in range(1, 7)]})
    assert [c.message.split(" cannot")[0] for c in checks] == [
        "nodes 10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4 and 2 more"
    ]


def test_a_gpu_node_without_the_runtime_fails_with_the_install_fix():
    checks = probe.node_checks({"nodes": [node("10.0.0.1"), node("10.0.0.2", imports=CPU_RUNTIME)]})
    assert sorted(c.status for c in checks) == ["FAIL", "FAIL", "warn"]
    imports, cuda = (c.message for c in checks if c.status == "FAIL")
    assert imports.startswith("node 10.0.0.2 cannot import vllm with /opt/venv/bin/python (")
    assert "install the GPU runtime into /opt/venv/bin/python" in imports
    assert "python -m launch.runtime install" in imports
    assert cuda.startswith("node 10.0.0.2 cannot use CUDA: torch 2.13.0+cpu is a CPU build")
    # flash-attn is optional: without it the launcher trains with sdpa
    assert [c.message for c in checks if c.status == "warn"] == [
        "node 10.0.0.2 no flash_attn with /opt/venv/bin/python: training there uses sdpa attention"
    ]


def test_a_cuda_torch_that_finds_no_gpu_fails_on_a_gpu_node():
    blind = {**GPU_RUNTIME, "torch": {**GPU_RUNTIME["torch"], "cuda_available": False, "devices": 0}}
    [check] = probe.node_checks({"nodes": [node("10.0.0.1", imports=blind)]})
    assert check.status == "FAIL"
    assert "torch 2.9.0+cu128 (CUDA 12.8) finds no GPU" in check.message


def test_a_node_without_gpus_only_warns_about_the_runtime():
    checks = probe.node_checks({"nodes": [node("10.0.0.1"), node("10.0.0.9", gpus=0, imports=CPU_RUNTIME)]})
    assert not failed(checks)
    assert [c.status for c in checks] == ["ok", "warn", "warn"]
    assert all(c.message.startswith("node 10.0.0.9 cannot") for c in checks[1:])


def test_a_crashed_import_is_reported_as_such():
    crashed = {**GPU_RUNTIME, "flash_attn": {"version": None, "error": "the interpreter exited with status -11"}}
    [check] = probe.node_checks({"nodes": [node("10.0.0.1", imports=crashed)]})
    assert check.status == "FAIL" and "cannot import flash_attn" in check.message and "status -11" in check.message


def test_a_node_that_did_not_answer_fails():
    quiet = {"node_id": "n", "name": "10.0.0.4", "ip": "10.0.0.4", "gpus": 8, "error": "no answer within 300 s"}
    [check] = probe.node_checks({"nodes": [node("10.0.0.1"), quiet]})
    assert check.status == "FAIL"
    assert check.message.startswith("node 10.0.0.4 did not answer the probe (no answer within 300 s)")


def test_healthy_nodes_are_one_ok_line():
    data = {"/d/train.parquet": True, "/d/test.parquet": True}
    folder = {"path": "/shared/runs", "error": None}
    checks = probe.node_checks({"nodes": [node(ip, visible=data, writable=folder) for ip in ("10.0.0.1", "10.0.0.2")]})
    assert statuses(checks) == [
        (
            "ok",
            "2 nodes answered (10.0.0.1, 10.0.0.2): 16 GPUs, the smallest 85.1 GB, torch 2.9.0+cu128, vllm 0.29.0, "
            "openrlhf 0.11.2, flash_attn 2.8.3; every node sees the 2 data files and can write to /shared/runs",
        )
    ]


def test_a_result_without_nodes_gives_no_line():
    assert probe.node_checks({"gpus": 2}) == []


# ---- probe_arguments ---------------------------------------------------------------------------------------------


def test_probe_arguments_name_the_data_files_here_and_the_nearest_existing_run_folder(tmp_path):
    (tmp_path / "train.parquet").write_bytes(b"PAR1")
    (tmp_path / "runs").mkdir()
    run = tmp_path / "runs" / "qwen2.5-3b-ppo" / "20260101-120000"  # neither folder exists yet
    recipe = apply_overrides(
        load(RECIPE),
        [
            f"data.prompt_dataset={tmp_path / 'train.parquet'}",
            f"eval.dataset={tmp_path / 'test.parquet'}",  # not made yet: data_checks' finding, not the nodes'
            f"ckpt.path={run / 'ckpt'}",
        ],
    )
    assert probe.probe_arguments(recipe) == [
        "--visible",
        str(tmp_path / "train.parquet"),
        "--writable",
        str(tmp_path / "runs"),
    ]


def test_probe_arguments_score_the_first_test_file_when_it_exists(tmp_path):
    (tmp_path / "test.parquet").write_bytes(b"PAR1")
    recipe = apply_overrides(load(RECIPE), [f"eval.dataset={tmp_path / 'test.parquet'}", "ckpt.path=./ckpt"])
    argv = probe.probe_arguments(recipe)
    assert "--writable" not in argv  # a relative ckpt.path is a path on each node: nothing to compare
    assert argv[argv.index("--reward") :] == [
        "--reward",
        "reward_funcs/openrlhf_reward.py",
        "--data",
        str(tmp_path / "test.parquet"),
        "--input-key",
        "prompt",
        "--label-key",
        "label",
    ]


def test_an_existing_run_folder_is_checked_itself(tmp_path):
    assert probe.run_folder_to_check(str(tmp_path / "ckpt")) == tmp_path


# ---- on the node, without Ray ------------------------------------------------------------------------------------


def test_writable_creates_and_deletes_a_probe_file(tmp_path):
    assert probe.writable(str(tmp_path)) is None
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    assert probe.writable(str(tmp_path / "file")) == "no such folder there"


def test_an_import_that_kills_the_interpreter_is_reported_and_the_others_still_count(tmp_path, monkeypatch):
    (tmp_path / "crashing.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setattr(probe, "RUNTIME", ("json", "no_such_module_here", "crashing", "email"))
    found = probe.runtime_imports(timeout=60)
    assert found["json"]["error"] is None
    assert found["no_such_module_here"]["error"].startswith("ModuleNotFoundError")
    assert found["crashing"]["error"] == "the interpreter exited with status 3 while importing it"
    assert found["email"]["error"] == "the interpreter exited with status 3 while importing it"


def test_runtime_imports_report_this_environment():
    import torch

    found = probe.runtime_imports(timeout=120)
    assert found["torch"]["version"] == torch.__version__
    assert (
        found["torch"]["cuda"] == torch.version.cuda and found["torch"]["cuda_available"] == torch.cuda.is_available()
    )
    assert found["openrlhf"]["version"] == "0.11.2"


@pytest.mark.parametrize("ckpt", [None, "ckpt/relative"])
def test_no_run_folder_for_a_relative_ckpt_path(ckpt):
    assert probe.run_folder_to_check(ckpt) is None
