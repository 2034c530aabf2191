import os
import tempfile

# The tests must mean the same on any machine, so what a developer's or a CI runner's environment could change
# is fixed here, before any test module imports `datasets`, `matplotlib` or `ray`:
# - no cluster, W&B key, GPU list or sample printing inherited from the shell (the launcher and reward read them);
# - OpenRLHF's loader goes through `datasets`, which caches what it reads: a fresh cache, never the hub;
# - loopback traffic never goes through a proxy; matplotlib's cache is writable; Ray's socket paths stay short.
for name in (
    "RAY_ADDRESS",
    "WANDB_API_KEY",
    "CUDA_VISIBLE_DEVICES",
    "REWARD_SAMPLE_EVERY",
    "HF_HUB_CACHE",
    "REWARD_TOKEN",
    "REWARD_TASK_LOGS",
    "REWARD_JOURNAL_DIR",
    "REWARD_JOURNAL_SAMPLE",
    "REWARD_JOURNAL_EVAL",
    "REWARD_JOURNAL_LABEL_KEY",
):
    os.environ.pop(name, None)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="tests-hf-home-")
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="tests-mpl-")
os.environ.setdefault("RAY_TMPDIR", "/tmp")

import pytest  # noqa: E402  (after the environment is fixed)
from testkit import CharTokenizer, StandInEngine  # noqa: E402


@pytest.fixture
def char_tokenizer():
    return CharTokenizer()


@pytest.fixture
def stand_in_engine():
    return StandInEngine
