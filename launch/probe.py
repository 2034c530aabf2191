"""A small Ray job that checks a cluster before training, submitted the way training is:

    python -m launch.probe --reward reward_funcs/openrlhf_reward.py --data /abs/data/countdown/test.parquet

Inside a Ray remote task, as OpenRLHF's vLLM engine actors do, it loads the reward file by the path the recipe
gives (relative to the job's working_dir) and scores the dataset's reference solutions; it prints one JSON line
with the cluster's GPUs and the scores. `probe_cluster` is the launcher's side: it submits this job and reads
that line.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import ray

from reward_funcs import cli

PROG = "python -m launch.probe"
PREFIX = "PROBE "


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


def gpu_memory() -> float | None:
    from launch.cluster import local_gpu_memory_gb

    return local_gpu_memory_gb()


def build_parser() -> cli.Parser:
    parser = cli.parser(PROG, __doc__)
    parser.add_argument("--reward", help="reward file, relative to the working_dir (omit to count GPUs only)")
    parser.add_argument("--data", help="dataset whose reference solutions to score")
    parser.add_argument("--input-key", default="prompt", help="the prompt column (default: prompt)")
    parser.add_argument("--label-key", default="label", help="the label column (default: label)")
    return parser


@cli.entry_point(PROG, build_parser)
def main(args) -> int:
    ray.init()
    result = {}
    if args.reward and args.data:
        result = ray.get(score_references.remote(args.reward, args.data, args.input_key, args.label_key))
    result["gpus"] = int(ray.cluster_resources().get("GPU", 0))
    if result["gpus"]:  # measured on a GPU node: the memory check uses it rather than what the recipe assumed
        task = ray.remote(num_gpus=1)(gpu_memory).remote()
        try:  # a busy cluster may hold every GPU: then the recipe's figure is used
            result["gpu_memory_gb"] = ray.get(task, timeout=60)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(task, force=True)
    print(PREFIX + json.dumps(result), flush=True)
    return 0


# ---- the launcher's side -----------------------------------------------------------------------------------------


def probe_arguments(recipe) -> list[str]:
    """What the probe scores for a resolved recipe: its reward file on its first test file, when both exist."""
    from data_tools.output import dataset_files

    if recipe is None:
        return []
    args = recipe.args()
    files = [u for u in args.reward.remote_url or [] if u.endswith(".py")]
    tests = dataset_files(args.eval.dataset, cli.REPO)
    if not files or not tests or not tests[0].is_file():
        return []
    label_key = args.data.label_key or "label"
    return ["--reward", files[0], "--data", str(tests[0]), "--input-key", args.data.input_key, "--label-key", label_key]


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


if __name__ == "__main__":
    raise SystemExit(main())
