"""A small Ray job that checks a cluster before training, submitted the way training is:

    python -m launch.probe --reward reward_funcs/openrlhf_reward.py --data /abs/data/countdown/test.parquet

Inside a Ray remote task, as OpenRLHF's vLLM engine actors do, it loads the reward file by the path the recipe
gives (relative to the job's working_dir) and scores the dataset's reference solutions; it prints one JSON line
with the cluster's GPUs and the scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ray

PREFIX = "PROBE "


@ray.remote(num_cpus=0)
def score_references(reward_path: str, data_path: str, input_key: str, label_key: str) -> dict:
    import importlib.util
    import os

    from data_tools.output import read_rows
    from launch.preflight import _prompt_text, reference_completion

    spec = importlib.util.spec_from_file_location("reward_func", reward_path)  # SingleTurnAgentExecutor's way
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rewards = []
    for row in read_rows(Path(data_path)):
        completion = reference_completion(json.loads(row[label_key]))
        prompt = _prompt_text(row[input_key])
        out = module.reward_func([prompt + completion], [prompt], [row[label_key]])
        rewards.append(float(out["rewards"][0]))
    return {"cwd": os.getcwd(), "scored": len(rewards), "correct": sum(r == 1.0 for r in rewards)}


def gpu_memory() -> float | None:
    from launch.preflight import local_gpu_memory_gb

    return local_gpu_memory_gb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reward", help="reward file, relative to the working_dir (omit to count GPUs only)")
    parser.add_argument("--data", help="dataset whose reference solutions to score")
    parser.add_argument("--input-key", default="prompt")
    parser.add_argument("--label-key", default="label")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
