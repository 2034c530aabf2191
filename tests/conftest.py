import os
import tempfile

# OpenRLHF's loader goes through `datasets`, which caches what it reads: keep that out of the home folder, and
# make sure nothing reaches for the hub. Set before any test module imports `datasets`.
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="tests-hf-home-"))
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from testkit import CharTokenizer, StandInEngine


@pytest.fixture
def char_tokenizer():
    return CharTokenizer()


@pytest.fixture
def stand_in_engine():
    return StandInEngine
