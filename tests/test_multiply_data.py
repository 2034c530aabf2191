"""data_tools.multiply: TinyZero's arth.py draws, deduplicated, with disjoint splits for every setting."""

import json
import random
import re

import pyarrow.parquet as pq
import pytest

from data_tools import multiply


def arth_py_draws(n, digit, seed=1):
    """TinyZero's examples/data_preprocess/arth.py gen_dataset, its calls to `random` written out."""
    random.seed(seed)
    out = []
    for _ in range(n):
        nums = []
        for _ in range(2):
            r = random.randint(1, 3)
            max_num = 10 ** (digit - 1) if r == 1 else 10**digit
            nums.append(random.randint(0, max_num - 1))
        random.choice(["*"])
        out.append(tuple(nums))
    return out


def test_draws_are_arth_pys():
    assert multiply.draw_pairs(3, 5000, 1) == arth_py_draws(5000, 3)
    assert multiply.draw_pairs(2, 500, 7) == arth_py_draws(500, 2, seed=7)


def test_operand_sizes_follow_arth_py():
    pairs = multiply.draw_pairs(3, 30000, 1)
    operands = [x for pair in pairs for x in pair]
    assert max(operands) <= 999 and min(operands) >= 0
    small = sum(x < 100 for x in operands) / len(operands)
    assert abs(small - (1 / 3 + 2 / 3 * 0.1)) < 0.01  # 1/3 drawn from 0..99, and 10% of the rest land there


def test_tinyzero_defaults(tmp_path):
    out = tmp_path / "m"
    assert multiply.main(["--out", str(out)]) == 0
    train, test = (pq.read_table(out / f"{s}.parquet").to_pylist() for s in ("train", "test"))
    assert (len(train), len(test)) == (32768, 4096)
    distinct = list(dict.fromkeys(arth_py_draws(100000, 3)))
    assert [(r["num1"], r["num2"]) for r in train] == distinct[:32768]
    assert [(r["num1"], r["num2"]) for r in test] == distinct[-4096:]
    assert json.loads(train[0]["label"]) == {
        "task": "multiply",
        "numbers": [train[0]["num1"], train[0]["num2"]],
        "product": train[0]["num1"] * train[0]["num2"],
    }
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["distinct_pairs"] == len(distinct)


@pytest.mark.parametrize(
    "digits, draws, train, test", [(1, 200, 40, 20), (2, 3000, 1500, 500), (3, 20000, 100, 100), (1, 5000, 60, 40)]
)
def test_splits_never_share_a_pair(tmp_path, digits, draws, train, test):
    out = tmp_path / "m"
    status = multiply.main(
        [
            "--out",
            str(out),
            "--digits",
            str(digits),
            "--draws",
            str(draws),
            "--train-size",
            str(train),
            "--test-size",
            str(test),
            "--format",
            "jsonl",
        ]
    )
    assert status == 0
    rows = {s: [json.loads(x) for x in (out / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "test")}
    pairs = {s: [(r["num1"], r["num2"]) for r in rows[s]] for s in rows}
    assert len(set(pairs["train"])) == train and len(set(pairs["test"])) == test
    assert not set(pairs["train"]) & set(pairs["test"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--digits", "1", "--train-size", "90", "--test-size", "20"], "at most 100 distinct pairs"),
        (["--draws", "50", "--train-size", "40", "--test-size", "20"], "at most 50 distinct pairs"),
        (["--digits", "1", "--draws", "100", "--train-size", "60", "--test-size", "30"], "raise --draws"),
        (["--digits", "0"], "--digits must be 1 to 9"),
        (["--seed", "-1"], "--seed must be 0 or more"),  # random.seed(-1) would silently be random.seed(1)
    ],
)
def test_impossible_settings_are_refused(tmp_path, capsys, args, message):
    assert multiply.main(["--out", str(tmp_path / "m"), *args]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "m").exists()
