"""The reward file in a real Ray worker: the repository shipped as the job's working_dir, as
`ray job submit --runtime-env-json '{"working_dir": "."}'` does, and OpenRLHF given the repo-relative path."""

import sys

import pytest
from testkit import REPO, countdown_label

from reference import tinyzero

ray = pytest.importorskip("ray")

EXCLUDES = [".venv", ".git", "data", "runs", ".hypothesis", ".pytest_cache", "__pycache__"]


@pytest.fixture(scope="module")
def local_ray():
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tests/ is not a package the worker imports
    ray.init(
        address="local",
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"working_dir": str(REPO), "excludes": EXCLUDES},
    )
    yield ray
    ray.shutdown()


def score_in_worker(prompt, label, completion):
    """Runs inside the Ray worker: what an OpenRLHF vLLM engine actor does with --reward.remote_url."""
    import asyncio
    import os
    import sys
    from types import SimpleNamespace

    sys.path.insert(0, "tests")  # the stand-ins for the GPU side travel with the working_dir
    from openrlhf.utils.agent import SingleTurnAgentExecutor
    from testkit import CharTokenizer, StandInEngine

    executor = SingleTurnAgentExecutor("reward_funcs/openrlhf_reward.py")
    params = SimpleNamespace(max_tokens=1024, logprobs=None)
    out = asyncio.run(executor.execute(prompt, label, params, 4096, CharTokenizer(), StandInEngine(completion)))
    return os.getcwd(), sys.modules["reward_funcs"].__file__, out["reward"].item(), out["extra_logs"]["format"].item()


@pytest.mark.ray
def test_repo_relative_reward_path_works_in_a_ray_worker(local_ray):
    prompt, label = tinyzero.countdown_prompt([44, 19, 35], 60), countdown_label([44, 19, 35], 60)
    remote = local_ray.remote(score_in_worker)
    results = local_ray.get(
        [
            remote.remote(prompt, label, c)
            for c in (
                " 44-19=25 </think>\n<answer>(44 - 19) + 35</answer><|endoftext|>",
                " </think>\n<answer>44 + 19 - 35</answer>",
                " no answer",
            )
        ],
        timeout=300,
    )
    assert [(r[2], r[3]) for r in results] == [(1.0, 1.0), (pytest.approx(0.1), 1.0), (0.0, 0.0)]
    cwd, package = results[0][0], results[0][1]
    assert cwd != str(REPO)  # the worker runs in Ray's unpacked copy of the repository...
    assert package.startswith(cwd)  # ... and the reward file found its package there
