"""Facts about where a run will go: this machine's GPUs and their memory, free ports, a Ray head started here,
and (through the probe job) a remote cluster's GPUs.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from reward_funcs.cli import UsageError

# ---- this machine ----------------------------------------------------------------------------------------------


def local_gpus() -> int:
    """GPUs on this machine that this process may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi
    lists (0 without a driver)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.splitlines())


def local_gpu_memory_gb() -> float | None:
    """The smallest visible GPU's memory on this machine in GB (10^9 bytes), None without a driver."""
    if not shutil.which("nvidia-smi"):
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
            + ([f"--id={visible}"] if visible else []),
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout
        sizes = [float(line) for line in out.split() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return round(min(sizes) * 2**20 / 1e9, 1) if sizes else None  # MiB -> GB of 10^9 bytes, as the estimate counts


def _unreachable(address: str, e: Exception) -> UsageError:
    return UsageError(
        f"the Ray cluster at {address} did not answer ({type(e).__name__}: {e}): check RAY_ADDRESS "
        "or --address (the dashboard's http://HOST:8265)"
    )


def reachable(address: str) -> None:
    """A UsageError unless a Ray dashboard answers at `address` (seconds, before any slower work)."""
    from ray.job_submission import JobSubmissionClient

    try:
        JobSubmissionClient(address)
    except Exception as e:  # connection refused, not a Ray dashboard, ...
        raise _unreachable(address, e) from None


def cluster_probe(address: str, recipe=None, python: str = "python3") -> dict:
    """The probe job's result for the Ray cluster at `address` (`probe.probe_cluster`): its GPUs, the smallest
    GPU's memory, and each node's findings for a resolved `recipe` (`probe.node_checks` reads them)."""
    from launch.probe import probe_cluster

    try:
        return probe_cluster(address, recipe, python)
    except UsageError:
        raise
    except Exception as e:  # the job SDK's errors: connection refused, not a Ray dashboard, ...
        raise _unreachable(address, e) from None


def cluster_gpus(address: str | None, python: str = "python3", recipe=None) -> tuple[int, float | None]:
    """(GPUs, the smallest GPU's memory in GB or None) of this machine, or of the Ray cluster at `address`."""
    if address is None:
        gpus = local_gpus()
        return gpus, local_gpu_memory_gb() if gpus else None
    found = cluster_probe(address, recipe, python)
    return found["gpus"], found.get("gpu_memory_gb")


# ---- ports and a local head ------------------------------------------------------------------------------------


def port_range() -> tuple[int, int]:
    """Ports below the kernel's ephemeral range (32768 and up by default), which it never hands to outgoing
    connections: a port found free there stays free until its server binds it, even while Ray opens dozens."""
    try:
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(1024, low - 12000), low


_handed_out: set[int] = set()
_random = random.Random()  # our own: a test that seeds `random` must not make two processes pick alike


def free_port() -> int:
    """A loopback port that nobody listens on, never the same one twice in this process."""
    low, high = port_range()
    for _ in range(1000 if high - low >= 1000 else 0):
        port = _random.randrange(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    while True:  # no room below the ephemeral range on this machine: let the kernel choose
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class LocalHead:
    """A Ray head on this machine with its GPUs, owned by us: `ray start --head --block` in a session of its own,
    so that `stop()` ends exactly this cluster (not every Ray process on the machine, as `ray stop` would)."""

    def __init__(self, gpus: int, ray_bin: str | None = None):
        self.gpus = gpus
        self.ray = ray_bin or str(Path(sys.executable).with_name("ray"))
        self.port, self.dashboard, self.client_port, self.agent_port = (free_port() for _ in range(4))
        self.address = f"http://127.0.0.1:{self.dashboard}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> str:
        command = [
            self.ray,
            "start",
            "--head",
            "--block",
            f"--port={self.port}",
            f"--dashboard-port={self.dashboard}",
            "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={self.client_port}",  # not Ray's fixed defaults, which another Ray may hold
            f"--dashboard-agent-listen-port={self.agent_port}",
            f"--num-gpus={self.gpus}",
            "--include-dashboard=true",
            "--disable-usage-stats",
        ]
        self.process = subprocess.Popen(
            command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        from ray.job_submission import JobSubmissionClient

        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode().strip().splitlines()
                raise RuntimeError(f"ray start exited with status {self.process.returncode}: {error[-1:]}")
            try:
                JobSubmissionClient(self.address).list_jobs()
                return self.address
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the Ray dashboard at {self.address} did not come up") from None
                time.sleep(1)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
