"""A small Ray job that checks a cluster before training, submitted the way training is:

    python -m launch.probe --visible /abs/data/countdown/train.parquet --writable /abs/runs/countdown-qwen2.5-3b-ppo
    python -m launch.probe --reward reward_funcs/openrlhf_reward.py --data /abs/data/countdown/test.parquet

On every alive node, in a Ray task pinned there (as OpenRLHF's actors are placed), it imports the GPU runtime
(torch, vllm, openrlhf, flash_attn) in that node's Ray interpreter, asks torch for CUDA and nvidia-smi for the
GPUs' memory, checks that each `--visible` file is there and that a probe file can be created and deleted in the
`--writable` folder. In one more task it loads the reward file by the path the recipe gives (relative to the
job's working_dir) and scores the dataset's reference solutions. It prints one JSON line with the cluster's GPUs,
the scores and each node's findings. `probe_cluster` is the launcher's side: it submits this job and reads that
line; `node_checks` turns the nodes' findings into preflight lines.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import ray

from launch.check import Check, fail, failed, ok
from reward_funcs import cli

PROG = "python -m launch.probe"
PREFIX = "PROBE "
RUNTIME = ("torch", "vllm", "openrlhf", "flash_attn")  # what OpenRLHF's actors import on a GPU node
IMPORT_TIMEOUT = 240  # seconds for importing RUNTIME on one node (vLLM alone takes tens of seconds)
NODE_TIMEOUT = 300  # seconds for every node to answer; longer than IMPORT_TIMEOUT
INSTALL = "python -m launch.runtime install, run there from the repository"

# Run in a fresh interpreter, so that an import that crashes (a flash_attn built against another torch can
# segfault) takes only that interpreter down; one line per module, flushed, so the modules before a crash count.
_IMPORTS = r"""
import importlib, importlib.metadata, json, sys
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
    except BaseException as e:
        print("IMPORT " + json.dumps({"module": name, "error": f"{type(e).__name__}: {e}"}), flush=True)
        continue
    version = getattr(module, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(name.replace("_", "-"))
        except Exception:
            pass
    found = {"module": name, "version": None if version is None else str(version)}
    if name == "torch":
        cuda = module.cuda.is_available()
        found.update(cuda=module.version.cuda, cuda_available=cuda, devices=module.cuda.device_count() if cuda else 0)
    print("IMPORT " + json.dumps(found), flush=True)
"""


# ---- inside the job ----------------------------------------------------------------------------------------------


@ray.remote(num_cpus=0)
def score_references(reward_path: str, data_path: str, input_key: str, label_key: str) -> dict:
    import os

    from data_tools.output import read_rows
    from launch.data_checks import reference_query
    from reward_funcs import load_reward_file

    reward = load_reward_file(reward_path)  # by its path, as OpenRLHF's SingleTurnAgentExecutor does
    rewards = []
    for row in read_rows(Path(data_path)):
        query, prompt = reference_query(row[input_key], row[label_key])
        if query is not None:
            rewards.append(float(reward([query], [prompt], [row[label_key]])["rewards"][0]))
    return {"cwd": os.getcwd(), "scored": len(rewards), "correct": sum(r == 1.0 for r in rewards)}


def runtime_imports(timeout: float = IMPORT_TIMEOUT) -> dict:
    """{module: {"version", "error"}} for RUNTIME in this interpreter (torch's with "cuda", "cuda_available" and
    "devices" too), each imported in a child interpreter."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    if env.get("CUDA_VISIBLE_DEVICES") == "":  # Ray hides the GPUs from a task that asks for none; torch must see them
        del env["CUDA_VISIBLE_DEVICES"]
    try:
        done = subprocess.run(
            [sys.executable, "-c", _IMPORTS, *RUNTIME], capture_output=True, text=True, timeout=timeout, env=env
        )
        out, ended = done.stdout, f"the interpreter exited with status {done.returncode}"
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
        ended = f"importing took over {timeout:g} s"
    found = {}
    for line in out.splitlines():
        if line.startswith("IMPORT "):
            entry = json.loads(line[len("IMPORT ") :])
            name = entry.pop("module")
            found[name] = {"version": None, "error": None, **entry}
    for name in RUNTIME:
        found.setdefault(name, {"version": None, "error": f"{ended} while importing it"})
    return found


def writable(folder: str) -> str | None:
    """None when a file can be created and deleted in `folder`, else why not."""
    import tempfile

    if not Path(folder).is_dir():
        return "no such folder there"
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"
    return None


@ray.remote(num_cpus=0)
def check_node(visible: list[str], folder: str | None) -> dict:
    """What this node's Ray workers see: the runtime, CUDA, the GPUs' memory, the files, the run folder."""
    import socket
    import sys

    from launch.cluster import local_gpu_memory_gb

    imports = runtime_imports()
    return {
        "worker_node_id": ray.get_runtime_context().get_node_id(),
        "hostname": socket.gethostname(),
        "python": sys.executable,
        "imports": imports,
        "gpu_memory_gb": local_gpu_memory_gb(),
        "visible": {path: Path(path).is_file() for path in visible},
        "writable": None if folder is None else {"path": folder, "error": writable(folder)},
    }


def probe_nodes(visible: list[str], folder: str | None, timeout: float = NODE_TIMEOUT) -> list[dict]:
    """`check_node` on every alive node, pinned there; one entry per node: its id, name, IP and Ray GPUs, then
    `check_node`'s answer, or "error" when it raised or did not answer within `timeout` seconds."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n["Alive"]]
    tasks = [
        check_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(
            visible, folder
        )
        for n in nodes
    ]
    ready, _ = ray.wait(tasks, num_returns=len(tasks), timeout=timeout) if tasks else ([], [])
    found = []
    for node, task in zip(nodes, tasks, strict=True):
        ip = node["NodeManagerAddress"]
        entry = {
            "node_id": node["NodeID"],
            "name": node.get("NodeName") or ip,
            "ip": ip,
            "gpus": int(node["Resources"].get("GPU", 0)),
        }
        if task in ready:
            try:
                entry.update(ray.get(task))
            except Exception as e:  # the task failed on that node: its worker or runtime env could not start
                entry["error"] = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        else:
            ray.cancel(task, force=True)
            entry["error"] = f"no answer within {timeout:g} s"
        found.append(entry)
    return found


def build_parser() -> cli.Parser:
    parser = cli.parser(PROG, __doc__)
    parser.add_argument("--reward", help="reward file, relative to the working_dir (omit to check the nodes only)")
    parser.add_argument("--data", help="dataset whose reference solutions to score")
    parser.add_argument("--input-key", default="prompt", help="the prompt column (default: prompt)")
    parser.add_argument("--label-key", default="label", help="the label column (default: label)")
    parser.add_argument(
        "--visible", action="append", default=[], metavar="FILE", help="a file every node must see (repeatable)"
    )
    parser.add_argument("--writable", metavar="DIR", help="a folder every node must see and be able to write to")
    parser.add_argument(
        "--timeout", type=float, default=NODE_TIMEOUT, help=f"seconds to wait for every node (default: {NODE_TIMEOUT})"
    )
    return parser


@cli.entry_point(PROG, build_parser)
def main(args) -> int:
    ray.init()
    scoring = None
    if args.reward and args.data:
        scoring = score_references.remote(args.reward, args.data, args.input_key, args.label_key)
    nodes = probe_nodes(args.visible, args.writable, args.timeout)
    result = ray.get(scoring) if scoring else {}
    result["gpus"] = int(ray.cluster_resources().get("GPU", 0))
    # Measured on the GPU nodes: the memory check uses it rather than what the recipe assumed.
    memory = [n["gpu_memory_gb"] for n in nodes if n["gpus"] and n.get("gpu_memory_gb")]
    if memory:
        result["gpu_memory_gb"] = min(memory)
    result["nodes"] = nodes
    print(PREFIX + json.dumps(result), flush=True)
    return 0


# ---- the launcher's side -----------------------------------------------------------------------------------------


def run_folder_to_check(ckpt_path: str | None) -> Path | None:
    """The run folder (ckpt.path's parent) or, before it exists, the nearest existing folder above it (runs/<recipe>,
    runs/, ...): what every node must see and write to. None for a relative ckpt.path (a path on each node)."""
    if not ckpt_path or not Path(ckpt_path).is_absolute():
        return None
    folder = Path(ckpt_path).parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def probe_arguments(recipe) -> list[str]:
    """What the probe checks for a resolved recipe: on every node, its data files (those that exist here: a missing
    one is data_checks' finding), the model folders of this machine it loads (a curriculum stage's, written by the
    stage before it) and its run folder; and its reward file on its first test file, when both exist."""
    from data_tools.output import dataset_files

    if recipe is None:
        return []
    args = recipe.args()
    argv = []
    files = dataset_files(args.data.prompt_dataset, cli.REPO) + dataset_files(args.eval.dataset, cli.REPO)
    models = [Path(m) / "config.json" for m in (args.actor.model_name_or_path, args.critic.model_name_or_path) if m]
    models = [m for m in models if m.is_absolute()]  # a model folder of this machine's: a curriculum's last stage
    for path in dict.fromkeys(files + models):
        if path.is_file():
            argv += ["--visible", str(path)]
    folder = run_folder_to_check(args.ckpt.path)
    if folder is not None:
        argv += ["--writable", str(folder)]
    rewards = [u for u in args.reward.remote_url or [] if u.endswith(".py")]
    tests = dataset_files(args.eval.dataset, cli.REPO)
    if rewards and tests and tests[0].is_file():
        label_key = args.data.label_key or "label"
        argv += ["--reward", rewards[0], "--data", str(tests[0]), "--input-key", args.data.input_key]
        argv += ["--label-key", label_key]
    return argv


class _Capture:
    def __init__(self):
        self.chunks: list[str] = []

    def write(self, text):
        self.chunks.append(text)

    def flush(self):
        pass


def probe_cluster(address: str, recipe, python: str = "python3") -> dict:
    """Run this module as a job on the cluster at `address`, through the launcher's own submit path."""
    from launch import jobs

    env = jobs.runtime_env(recipe)
    job = jobs.submit(address, shlex.join([python, "-m", "launch.probe", *probe_arguments(recipe)]), env)
    out = _Capture()
    status = jobs.follow(address, job, out)
    text = "".join(out.chunks)
    found = [line for line in text.splitlines() if line.startswith(PREFIX)]
    if status != "SUCCEEDED" or not found:
        raise cli.UsageError(f"the probe job {job} ended {status}: {text[-500:]}")
    return json.loads(found[-1][len(PREFIX) :])


# ---- the nodes' findings as preflight lines ----------------------------------------------------------------------


def node_label(node: dict) -> str:
    """A node as people know it: its IP (Ray's default node name), or its name and IP."""
    return node["ip"] if node["name"] == node["ip"] else f"{node['name']} ({node['ip']})"


def _runtime_findings(node: dict) -> list[tuple[str, str]]:
    """(status, finding) for the GPU runtime: FAIL on a node with GPUs, warn on one without."""
    gpus = node["gpus"] > 0
    status = "FAIL" if gpus else "warn"
    install = f"install the GPU runtime into {node['python']}, the interpreter Ray runs there ({INSTALL})"
    idle = "no GPU there, so it runs no vLLM engine or training actor"
    findings = []
    missing = {name: found["error"] for name, found in node["imports"].items() if found["error"]}
    if "No module named" in missing.get("flash_attn", ""):  # optional: without it the launcher trains with sdpa
        del missing["flash_attn"]  # (one that is there but crashes on import stays a finding)
        if gpus:
            findings.append(("warn", f"no flash_attn with {node['python']}: training there uses sdpa attention"))
    if missing:
        errors = "; ".join(error[:160] for error in missing.values())
        what = f"cannot import {', '.join(missing)} with {node['python']} ({errors})"
        findings.append((status, f"{what}: {install if gpus else idle}"))
    torch = node["imports"].get("torch", {})
    if not torch.get("error") and not torch.get("cuda_available"):
        if not torch.get("cuda"):
            what, fix = f"cannot use CUDA: torch {torch.get('version')} is a CPU build", install
        else:
            what = f"cannot use CUDA: torch {torch['version']} (CUDA {torch['cuda']}) finds no GPU"
            fix = "check the driver there with nvidia-smi"
        findings.append((status, f"{what}: {fix if gpus else idle}"))
    return findings


def _node_findings(node: dict) -> list[tuple[str, str]]:
    """(status, finding) for one node's answer; each finding reads after the node's name."""
    if node.get("error"):
        return [
            (
                "FAIL",
                f"did not answer the probe ({node['error']}): check that Ray can start workers there (its "
                "raylet.out log), or take it out of the cluster",
            )
        ]
    findings = _runtime_findings(node)
    for path, seen in node["visible"].items():
        if not seen and path.endswith("config.json"):  # the model an earlier stage of a curriculum wrote
            findings.append(
                (
                    "FAIL",
                    f"cannot see {path}: put the runs folder (--runs-dir) on a filesystem every node mounts at the "
                    "same path, then continue with --resume",
                )
            )
        elif not seen:
            findings.append(
                (
                    "FAIL",
                    f"cannot see {path}: put data/ on a filesystem every node mounts at the same path, or point "
                    "data.prompt_dataset / eval.dataset (--set) at files on one",
                )
            )
    folder = node.get("writable")
    if folder and folder["error"]:
        findings.append(
            (
                "FAIL",
                f"cannot write to {folder['path']} ({folder['error']}): put runs/ on a filesystem every node "
                "mounts at the same path and can write to, or pass --runs-dir pointing at one",
            )
        )
    return findings


def _listed(labels: list[str], most: int = 4) -> str:
    return ", ".join(labels[:most]) + (f" and {len(labels) - most} more" if len(labels) > most else "")


def _named(labels: list[str]) -> str:
    return f"node {labels[0]}" if len(labels) == 1 else f"nodes {_listed(labels)}"


def _summary(nodes: list[dict]) -> str:
    gpus = sum(n["gpus"] for n in nodes)
    memory = [n["gpu_memory_gb"] for n in nodes if n["gpus"] and n.get("gpu_memory_gb")]
    text = f"{len(nodes)} node{'s' if len(nodes) > 1 else ''} answered ({_listed([node_label(n) for n in nodes], 8)})"
    text += f": {gpus} GPUs" + (f", the smallest {min(memory):g} GB" if memory else "")
    if gpus:  # the runtime the GPU nodes run, one version per module when they agree
        versions = {
            name: sorted({n["imports"][name]["version"] or "?" for n in nodes if n["gpus"]}) for name in RUNTIME
        }
        text += ", " + ", ".join(f"{name} {'/'.join(v)}" for name, v in versions.items())
    files = {path for n in nodes for path in n["visible"]}
    folders = sorted({n["writable"]["path"] for n in nodes if n.get("writable")})
    held = ([f"sees the {len(files)} data file{'s' if len(files) > 1 else ''}"] if files else []) + (
        [f"can write to {', '.join(folders)}"] if folders else []
    )
    return text + (f"; every node {' and '.join(held)}" if held else "")


def node_checks(result: dict) -> list[Check]:
    """Preflight lines for the probe's per-node findings (`probe_cluster`'s result): a FAIL naming the nodes and the
    fix for each problem, the same problem on several nodes in one line; one ok line summing up the nodes when
    nothing fails. Nothing for a result without nodes (a probe that did not check them)."""
    nodes = result.get("nodes")
    if nodes is None:
        return []
    if not nodes:
        return [fail("nodes", "no alive Ray node answered the probe: check the cluster with `ray status`")]
    grouped: dict[tuple[str, str], list[str]] = {}
    for node in nodes:
        for status, finding in _node_findings(node):
            grouped.setdefault((status, finding), []).append(node_label(node))
    checks = [Check("nodes", status, f"{_named(labels)} {finding}") for (status, finding), labels in grouped.items()]
    checks.sort(key=lambda c: c.status != "FAIL")
    return checks if failed(checks) else [ok("nodes", _summary(nodes)), *checks]


if __name__ == "__main__":
    raise SystemExit(main())
