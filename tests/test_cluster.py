"""launch.cluster: this machine's GPUs and their memory, and the ports a local head and reward services take."""

import os
import random
import socket
from pathlib import Path

from launch import cluster
from launch.cluster import free_port


def test_gpu_memory_is_read_from_nvidia_smi(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"  # GPU 0 has 80 GB (81,559 MiB), GPU 1 is a 40 GiB card
    smi.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        "  *--id=0*) echo 81559;;\n"
        "  *--id=1*) echo 40960;;\n"
        '  *memory.total*) printf "81559\\n40960\\n";;\n'
        "esac\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cluster.local_gpu_memory_gb() == 42.9  # the smallest, in GB of 10^9 bytes as the estimate counts
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert cluster.local_gpu_memory_gb() == 85.5  # only the GPUs the job may use
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert cluster.local_gpu_memory_gb() is None


def test_cuda_visible_devices_limits_the_local_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert cluster.local_gpus() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert cluster.local_gpus() == 0


def test_port_choice_does_not_follow_the_global_random_seed(monkeypatch):
    """Two processes that seed `random` alike (tests do) must not try the same ports in the same order."""
    state = cluster._random.getstate()
    picks = []
    for seed in (0, 1):
        monkeypatch.setattr(cluster, "_handed_out", set())
        cluster._random.setstate(state)
        random.seed(seed)
        picks.append([free_port() for _ in range(5)])
    assert picks[0] == picks[1]  # the private generator alone decides


def test_ports_are_distinct_free_and_outside_the_ephemeral_range():
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    if low - 1024 >= 1000:  # room below the ephemeral range: the kernel never gives these to outgoing connections
        assert all(p < low for p in ports) and cluster.port_range()[1] == low
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))
