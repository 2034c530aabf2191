"""Regressions found in review: each test fails on the code before its fix."""

import time

import pytest
from testkit import REPO

from reward_funcs import LabelError, multiply

BASE = REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from data_tools import countdown

    out = tmp_path_factory.mktemp("data") / "countdown"
    countdown.main(["--out", str(out), "--train-size", "20", "--test-size", "5"])
    return out


def test_absurd_multiplication_labels_are_refused_quickly():
    for numbers in ([10**18] * 300, [2**63 - 1] * 200_000, [2**2000, 3]):
        start = time.perf_counter()
        with pytest.raises(LabelError):
            multiply.check_label({"task": "multiply", "numbers": numbers, "product": 1})
        assert time.perf_counter() - start < 0.5


def test_evaluate_refuses_an_existing_out_before_loading_anything(tmp_path, monkeypatch):
    from analysis import evaluate

    (tmp_path / "eval").mkdir()
    monkeypatch.setattr(evaluate, "make_backend", lambda *a: pytest.fail("a model was loaded"))
    assert evaluate.main(["--model", "x", "--data", "y.parquet", "--out", str(tmp_path / "eval")]) == 2
