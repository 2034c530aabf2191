import pytest
from testkit import CharTokenizer, StandInEngine


@pytest.fixture
def char_tokenizer():
    return CharTokenizer()


@pytest.fixture
def stand_in_engine():
    return StandInEngine
