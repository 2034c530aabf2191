"""data_tools.countdown --source: every imported row is checked (integers the solver handles exactly, a reference
solution the reward scores 1.0), and any malformed file or unreachable hub is one line, never a traceback."""

import json
import os
import socket
import subprocess
import sys
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from testkit import REPO

from data_tools import countdown, countdown_source, solver

PREFIX = "python -m data_tools.countdown: error: "
GOOD = {"target": 60, "nums": [44, 19, 35]}


def run(tmp_path, source, *args):
    out = tmp_path / "out"
    status = countdown.main(
        ["--out", str(out), "--source", str(source), "--train-size", "1", "--test-size", "1", "--workers", "1", *args]
    )
    return status, out


def parquet(columns, schema=None):
    return lambda path: pq.write_table(pa.table(columns, schema=schema), path)


def jsonl(*lines):
    return lambda path: path.write_text("".join(line + "\n" for line in lines))


def raw(data: bytes):
    return lambda path: path.write_bytes(data)


def folder(path):
    path.mkdir()


def truncated(path):
    parquet({"target": [60], "nums": [[44, 19, 35]]})(path)
    path.write_bytes(path.read_bytes()[:40])


def good_then(record):
    """A good row, then `record`: the message must name the second one."""
    return jsonl(json.dumps(GOOD), json.dumps(record) if not isinstance(record, str) else record)


MALFORMED = {
    "empty parquet": ("x.parquet", raw(b""), "cannot be read as parquet"),
    "empty jsonl": ("x.jsonl", raw(b""), "holds no rows"),
    "not parquet": ("x.parquet", raw(b"target,nums\n60,44 19 35\n"), "cannot be read as parquet"),
    "truncated parquet": ("x.parquet", truncated, "cannot be read as parquet"),
    "not json": ("x.jsonl", jsonl("hello"), "line 1 is not JSON"),
    "a bad line": ("x.jsonl", good_then("{oops"), "line 2 is not JSON"),
    "a json array": ("x.json", jsonl(json.dumps([GOOD, GOOD])), "line 1 is not a JSON object"),
    "deeply nested": ("x.jsonl", good_then('{"target": 1, "nums": ' + "[" * 100_000 + "]" * 100_000 + "}"), "line 2"),
    "not utf-8": ("x.jsonl", raw(b"\xff\xfe\x00{\x00"), "not UTF-8"),
    "a folder": ("x.parquet", folder, "is a folder"),
    "target as text": ("x.parquet", parquet({"target": ["60"], "nums": [[44, 19, 35]]}), "row 1 has nums"),
    "nums as text": ("x.parquet", parquet({"target": [60], "nums": ["44,19,35"]}), "row 1 has nums"),
    "null target": ("x.parquet", parquet({"target": [60, None], "nums": [[44, 19, 35]] * 2}), "row 2 has nums"),
    "null nums": ("x.parquet", parquet({"target": [60, 60], "nums": [[44, 19, 35], None]}), "row 2 has nums"),
    "null inside nums": ("x.parquet", parquet({"target": [60], "nums": [[44, None, 35]]}), "row 1 has nums"),
    "nested lists": ("x.parquet", parquet({"target": [60], "nums": [[[44, 19], [35]]]}), "row 1 has nums"),
    "floats": ("x.parquet", parquet({"target": [60.0], "nums": [[44.0, 19.0, 35.0]]}), "row 1 has nums"),
    "decimals": (
        "x.parquet",
        parquet({"target": pa.array([60], pa.decimal128(38, 0)), "nums": [[44, 19, 35]]}),
        "row 1 has nums",
    ),
    "strings for numbers": ("x.jsonl", good_then({"target": 60, "nums": ["44", "19", "35"]}), "line 2 has nums"),
    "booleans": ("x.jsonl", good_then({"target": True, "nums": [True, False]}), "line 2 has nums"),
    "nums a number": ("x.jsonl", good_then({"target": 60, "nums": 44}), "line 2 has nums"),
    "nums an object": ("x.jsonl", good_then({"target": 60, "nums": {"a": 44}}), "line 2 has nums"),
    "a line without target": ("x.jsonl", good_then({"nums": [1, 2]}), "line 2 has keys ['nums']"),
    "no numbers": ("x.jsonl", good_then({"target": 60, "nums": []}), "line 2 has 0 numbers"),
    "seven numbers": ("x.jsonl", good_then({"target": 60, "nums": [1] * 7}), "line 2 has 7 numbers"),
    "negative numbers": ("x.jsonl", good_then({"target": 60, "nums": [-4, 64]}), "line 2 has a negative number -4"),
    "huge numbers": ("x.jsonl", good_then({"target": 60, "nums": [10**30, 2]}), "line 2 has nums"),
    "huge target": ("x.jsonl", good_then({"target": 10**30, "nums": [1, 2]}), "too large for the solver"),
    "beyond int64 (uint64)": (
        "x.parquet",
        parquet({"target": pa.array([60], pa.uint64()), "nums": pa.array([[2**63 + 5, 2]], pa.list_(pa.uint64()))}),
        "row 1 has nums",
    ),
    "overflowing int64 search": (
        "x.parquet",
        parquet({"target": [60, 7], "nums": [[44, 19, 35], [2**40, 2**40, 3]]}),
        "row 2 has nums [1099511627776, 1099511627776, 3], target 7: too large",
    ),
    "missing columns": ("x.parquet", parquet({"target": [1], "numbers_list": [[1]]}), "needs 'target' and 'nums'"),
    "another suffix": ("x.csv", raw(b"target,nums\n"), "expected a .parquet or .jsonl file"),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_source_is_one_line_naming_what_is_wrong(tmp_path, capsys, kind):
    name, write, message = MALFORMED[kind]
    source = tmp_path / name
    write(source)
    status, out = run(tmp_path, source)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith(PREFIX) and message in err, err
    assert not out.exists()


def denied(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize(
    "name, write", [("x.parquet", parquet({"target": [60], "nums": [[44, 19, 35]]})), ("x.jsonl", good_then(GOOD))]
)
def test_an_unreadable_source_is_one_line(tmp_path, capsys, monkeypatch, name, write):
    source = tmp_path / name
    write(source)
    if os.geteuid() == 0:  # root reads any file: make the reading itself fail
        monkeypatch.setattr(pq, "read_table", denied)
        monkeypatch.setattr(countdown_source, "open", denied, raising=False)
    else:
        source.chmod(0)
    assert run(tmp_path, source)[0] == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be read" in err and "Permission denied" in err, err


def test_rows_of_any_layout_beside_nums_are_read(tmp_path):
    source = tmp_path / "x.jsonl"
    jsonl(json.dumps({**GOOD, "note": "extra keys are fine"}), "", json.dumps({"target": 14, "numbers": [2, 7]}))(
        source
    )
    status, out = run(tmp_path, source)
    assert status == 0
    rows = pq.read_table(out / "train.parquet").to_pylist() + pq.read_table(out / "test.parquet").to_pylist()
    assert [(r["numbers"], r["target"]) for r in rows] == [([44, 19, 35], 60), ([2, 7], 14)]


def test_every_imported_reference_solution_is_checked_by_the_reward(tmp_path, monkeypatch):
    source = tmp_path / "x.jsonl"
    jsonl(json.dumps(GOOD), json.dumps({"target": 17, "nums": [3, 4, 5]}))(source)
    # A solver bug that writes the sum of the numbers whatever the combination: 44 + 19 + 35 is not 60.
    monkeypatch.setattr(solver, "expression", lambda numbers, index, rational=False: " + ".join(map(str, numbers)))
    with pytest.raises(AssertionError, match=r"row 1: reference solution '44 \+ 19 \+ 35'.*scores 0.1"):
        run(tmp_path, source)
    assert not (tmp_path / "out").exists()


def test_offline_hub_source_is_one_line(tmp_path, capsys):
    # conftest sets HF_DATASETS_OFFLINE=1 and HF_HUB_OFFLINE=1, and an empty cache.
    status, out = run(tmp_path, "hf:Jiayi-Pan/Countdown-Tasks-3to4")
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith(PREFIX), err
    assert "hf:Jiayi-Pan/Countdown-Tasks-3to4: cannot load it" in err and "HF_HUB_OFFLINE" in err
    assert not out.exists()


def test_an_unreachable_hub_is_asked_once_not_retried_for_half_a_minute(tmp_path):
    """Online mode and a hub that hangs up: the hub's client would retry five times with back-off (24 s here);
    one quick question decides."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []

    def hang_up():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(1)
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if k not in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{server.getsockname()[1]}"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "data_tools.countdown", "--out", str(tmp_path / "out")]
            + ["--source", "hf:Jiayi-Pan/Countdown-Tasks-3to4", "--train-size", "1", "--test-size", "1"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.close()
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "the hub did not answer" in result.stderr
    assert len(accepted) <= 2  # one question (its HTTP client may retry a dropped connection once), not six
    assert not (tmp_path / "out").exists()


def test_an_empty_hub_name_is_refused(tmp_path, capsys):
    assert run(tmp_path, "hf:")[0] == 2
    assert "needs a dataset name" in capsys.readouterr().err
