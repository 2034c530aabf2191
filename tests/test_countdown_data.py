"""data_tools.countdown: generated and imported datasets, their splits, files, manifest, and refusals."""

import collections
import json
import re
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from testkit import REPO

from data_tools import countdown, countdown_bands, solver
from data_tools.output import sha256
from reward_funcs import score_sample


def make(tmp_path, *args, name="out", status=0):
    """In process, with one worker unless asked: pytest's process has threads, a poor parent for a fork."""
    out = tmp_path / name
    assert countdown.main(["--out", str(out), *args, *([] if "--workers" in args else ["--workers", "1"])]) == status
    return out


def read(out, split, fmt="parquet"):
    if fmt == "parquet":
        return pq.read_table(out / f"{split}.parquet").to_pylist()
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


def key(row):
    return tuple(sorted(row["numbers"])), row["target"]


SMALL = ["--train-size", "3000", "--test-size", "300"]


@pytest.fixture(scope="module")
def default_set(tmp_path_factory):
    return make(tmp_path_factory.mktemp("cd"), "--train-size", "6000", "--test-size", "500")


def test_byte_identical_whatever_the_workers(tmp_path):
    one = make(tmp_path, *SMALL, "--workers", "1", name="one")
    two = tmp_path / "two"  # two processes forked from a fresh interpreter, as a user runs it
    subprocess.run(
        [sys.executable, "-m", "data_tools.countdown", "--out", str(two), *SMALL, "--workers", "2"],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    for name in ("train.parquet", "test.parquet", "manifest.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_another_seed_gives_other_puzzles(tmp_path):
    a, b = make(tmp_path, *SMALL, name="a"), make(tmp_path, *SMALL, "--seed", "1", name="b")
    assert {key(r) for r in read(a, "train")} != {key(r) for r in read(b, "train")}


def test_splits_are_disjoint_and_without_duplicates(default_set):
    train, test = read(default_set, "train"), read(default_set, "test")
    assert (len(train), len(test)) == (6000, 500)
    train_keys, test_keys = [key(r) for r in train], [key(r) for r in test]
    assert len(set(train_keys)) == len(train_keys) and len(set(test_keys)) == len(test_keys)
    assert not set(train_keys) & set(test_keys)


def test_every_reference_solution_scores_one_through_the_reward(default_set):
    for row in read(default_set, "train") + read(default_set, "test"):
        query = row["prompt"] + f" ... </think>\n<answer> {row['solution']} </answer><|endoftext|>"
        assert score_sample(query, row["prompt"], row["label"]).reward == 1.0, row


def test_default_distribution_follows_stream_of_search(default_set):
    rows = read(default_set, "train")
    sizes = collections.Counter(len(r["numbers"]) for r in rows)
    assert set(sizes) == {3, 4} and abs(sizes[3] / len(rows) - 0.5) < 0.03  # 3 or 4 numbers, equally likely
    assert all(1 <= n <= 99 for r in rows for n in r["numbers"])
    targets = collections.Counter(r["target"] for r in rows)
    assert min(targets) == 10 and max(targets) == 99  # targets 10..99, every one present
    assert max(targets.values()) / min(targets.values()) < 2.5  # roughly uniform
    assert all(r["solutions"] >= 1 for r in rows)
    label = json.loads(rows[0]["label"])
    assert label == {
        "task": "countdown",
        "target": rows[0]["target"],
        "numbers": rows[0]["numbers"],
        "solution": rows[0]["solution"],
    }
    assert {r["datasource"] for r in rows} == {"countdown"}


def test_knobs_hold(tmp_path):
    out = make(
        tmp_path,
        "--train-size",
        "400",
        "--test-size",
        "50",
        "--counts",
        "5,6",
        "--number-range",
        "2:20",
        "--target-range",
        "100:200",
    )
    rows = read(out, "train") + read(out, "test")
    assert {len(r["numbers"]) for r in rows} == {5, 6}
    assert all(2 <= n <= 20 for r in rows for n in r["numbers"]) and all(100 <= r["target"] <= 200 for r in rows)
    for r in rows:
        assert score_sample("Assistant: <answer>" + r["solution"] + "</answer>", None, r["label"]).reward == 1.0


def test_difficulty_band_keeps_only_hard_puzzles(tmp_path):
    out = make(tmp_path, "--train-size", "500", "--test-size", "50", "--counts", "4", "--max-solutions", "2")
    assert {r["solutions"] for r in read(out, "train") + read(out, "test")} <= {1, 2}


def test_rational_mode_solutions_score(tmp_path):
    out = make(tmp_path, "--train-size", "300", "--test-size", "30", "--rational", "--target-range=-20:20")
    rows = read(out, "train")
    assert min(r["target"] for r in rows) < 0
    for r in rows:
        assert score_sample("Assistant: <answer>" + r["solution"] + "</answer>", None, r["label"]).reward == 1.0


@pytest.mark.parametrize("template", ["base", "qwen-instruct", "chat"])
def test_jsonl_and_templates(tmp_path, template):
    out = make(tmp_path, "--train-size", "50", "--test-size", "5", "--format", "jsonl", "--template", template)
    rows = read(out, "train", "jsonl")
    assert len(rows) == 50
    assert isinstance(rows[0]["prompt"], list if template == "chat" else str)


def test_manifest_describes_the_files(default_set):
    manifest = json.loads((default_set / "manifest.json").read_text())
    assert manifest["tool"] == "data_tools.countdown" and manifest["seed"] == 0
    assert manifest["arguments"]["train_size"] == 6000 and "workers" not in manifest["arguments"]
    for name, info in manifest["files"].items():
        assert sha256(default_set / name) == info["sha256"]
        assert pq.read_metadata(default_set / name).num_rows == info["rows"]


def test_existing_out_needs_force(tmp_path, capsys):
    out = make(tmp_path, "--train-size", "20", "--test-size", "5")
    before = (out / "train.parquet").read_bytes()
    capsys.readouterr()
    make(tmp_path, "--train-size", "20", "--test-size", "5", "--seed", "3", status=2)
    assert re.search("--force", capsys.readouterr().err)
    assert (out / "train.parquet").read_bytes() == before
    make(tmp_path, "--train-size", "20", "--test-size", "5", "--seed", "3", "--force")
    assert (out / "train.parquet").read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folders left behind


@pytest.mark.parametrize(
    "args, message",
    [
        (["--number-range", "9:1"], "--number-range 9:1 is empty"),
        (["--target-range", "ten"], "--target-range must look like LO:HI"),
        (["--counts", "3,9"], "each count must be 2 to 6"),
        (["--counts", "2", "--number-range", "1:3", "--target-range", "1:5"], "at most 30 distinct puzzles"),
        (["--target-range=-5:5"], "need --rational"),
        (["--min-solutions", "5", "--max-solutions", "2"], "1 <= --min-solutions <= --max-solutions"),
        (["--train-size", "0"], "at least 1"),
        (["--source", "x.parquet", "--counts", "3"], "--counts only apply to generation"),
        (["--split", "tinyzero"], "--split applies to --source"),
        (["--source", "missing.parquet"], "no such file"),
        (["--numbers", "3"], "unrecognized arguments"),
        (["--seed", "-1"], "--seed must be 0 or more"),
        (
            ["--rational", "--number-range=-5:5", "--target-range=-5:5", "--train-size", "9"],
            "numbers must be 0 or more",
        ),
        (["--skip-existing", "--force"], "pass one of them"),
    ],
)
def test_bad_arguments_fail_in_one_line_before_any_work(tmp_path, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "data_tools.countdown", "--out", str(tmp_path / "o"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()


# ---- difficulty bands (a curriculum's data) ------------------------------------------------------------------

BANDS = ["--bands", "easy,medium,hard", "--test-size", "100"]


@pytest.fixture(scope="module")
def banded(tmp_path_factory):
    root = tmp_path_factory.mktemp("bands")
    return make(root, *BANDS, "--train-size", "120", name="big"), make(root, *BANDS, "--train-size", "60", name="small")


def test_bands_are_disjoint_rated_as_named_and_share_one_test_set(banded):
    big, _ = banded
    files = {band: read(big, f"train-{band}") for band in ("easy", "medium", "hard")}
    test = read(big, "test")
    assert {band: len(rows) for band, rows in files.items()} == {"easy": 120, "medium": 120, "hard": 120}
    assert len(test) == 100
    limits = {"easy": (9, None), "medium": (3, 8), "hard": (1, 2)}
    keys = [key(row) for rows in [*files.values(), test] for row in rows]
    assert len(keys) == len(set(keys))  # no puzzle in two files, nor twice in one
    for band, rows in files.items():
        low, high = limits[band]
        assert all(low <= row["solutions"] and (high is None or row["solutions"] <= high) for row in rows), band
    assert len({countdown_bands.band_of(row["solutions"]) for row in test}) == 3  # the whole distribution
    for rows in [*files.values(), test]:
        for row in rows:  # and each one solvable: its reference solution scores through the reward
            query = row["prompt"] + f" ... </think>\n<answer> {row['solution']} </answer><|endoftext|>"
            assert score_sample(query, row["prompt"], row["label"]).reward == 1.0, row


def test_each_bands_size_and_share_are_reported(banded):
    big, _ = banded
    bands = json.loads((big / "manifest.json").read_text())["bands"]
    assert {name: b["train_rows"] for name, b in bands.items()} == {"easy": 120, "medium": 120, "hard": 120}
    assert bands["easy"]["solutions"] == "9+ solutions" and bands["hard"]["solutions"] == "1-2 solutions"
    assert 0.99 < sum(b["share"] for b in bands.values()) <= 1.0
    assert bands["medium"]["share"] > bands["easy"]["share"]  # medium puzzles are the common ones


def test_the_test_set_does_not_depend_on_the_band_sizes(banded):
    """The test set is the stream's first puzzles and each band takes the next of its own: a smaller draw is a
    prefix of a larger one, so runs on bands of different sizes are evaluated on the same puzzles."""
    big, small = banded
    assert (big / "test.parquet").read_bytes() == (small / "test.parquet").read_bytes()
    for band in ("easy", "medium", "hard"):
        assert read(small, f"train-{band}") == read(big, f"train-{band}")[:60]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bands", "easy,tiny"], "each band must be one of easy, medium, hard"),
        (["--bands", "easy,easy"], "names a band twice"),
        (["--bands", "easy", "--min-solutions", "3"], "--bands makes its own difficulty bands"),
        (["--bands", "easy", "--source", "x.parquet"], "--bands only apply to generation"),
        (["--bands", "easy", "--counts", "3,6"], "a difficulty band needs at most 5 numbers"),
        (["--bands", "easy,hard", "--counts", "2", "--train-size", "10"], "the easy band(s) hold only 0 of"),
    ],
)
def test_bands_that_cannot_be_made_fail_in_one_line(tmp_path, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "data_tools.countdown", "--out", str(tmp_path / "o"), *args, "--workers", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1], result.stderr
    assert not (tmp_path / "o").exists()


# ---- import -------------------------------------------------------------------------------------------------


def hf_layout(path, rows):
    """A small parquet in the layout of Jiayi-Pan/Countdown-Tasks-3to4: target, nums."""
    table = pa.table({"target": [t for _, t in rows], "nums": [list(n) for n, _ in rows]})
    pq.write_table(table, path)
    return path


ROWS = [
    ((44, 19, 35), 60),
    ((3, 4, 5), 17),
    ((19, 44, 35), 60),
    ((1, 1, 1), 60),
    ((5, 4, 3), 17),
    ((2, 7), 14),
    ((8, 8, 2), 32),
    ((35, 44, 19), 60),
]


def test_import_converts_to_the_same_schema(tmp_path):
    source = hf_layout(tmp_path / "hf.parquet", ROWS)
    out = make(tmp_path, "--source", str(source), "--split", "tinyzero", "--train-size", "5", "--test-size", "3")
    generated = make(tmp_path, "--train-size", "5", "--test-size", "3", name="generated")
    assert pq.read_schema(out / "train.parquet") == pq.read_schema(generated / "train.parquet")
    train = read(out, "train")
    assert [(tuple(r["numbers"]), r["target"]) for r in train] == ROWS[:5]  # TinyZero's slicing: first rows...
    assert [(tuple(r["numbers"]), r["target"]) for r in read(out, "test")] == ROWS[5:8]  # ...then the next ones
    unsolvable = [r for r in train if r["solution"] is None]
    assert [(r["numbers"], r["target"]) for r in unsolvable] == [([1, 1, 1], 60)]


def test_import_reports_tinyzero_split_overlap(tmp_path):
    source = hf_layout(tmp_path / "hf.parquet", ROWS)
    out = make(tmp_path, "--source", str(source), "--split", "tinyzero", "--train-size", "5", "--test-size", "3")
    manifest = json.loads((out / "manifest.json").read_text())
    # test rows: (2,7)->14 new, (8,8,2)->32 new, (35,44,19)->60 = (44,19,35)->60 in train: one overlap
    assert manifest["tinyzero_rule_test_puzzles_also_in_train"] == 1
    assert manifest["unsolvable_rows"] == 1 and manifest["source_rows"] == 8


def test_import_dedup_split_is_disjoint(tmp_path):
    source = hf_layout(tmp_path / "hf.parquet", ROWS)
    out = make(tmp_path, "--source", str(source), "--train-size", "3", "--test-size", "2")
    train, test = read(out, "train"), read(out, "test")
    assert [key(r) for r in train] == [((19, 35, 44), 60), ((3, 4, 5), 17), ((1, 1, 1), 60)]
    assert [key(r) for r in test] == [((2, 7), 14), ((2, 8, 8), 32)]


def test_import_needs_the_columns(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"target": [1], "numbers_list": [[1]]}), bad)
    make(tmp_path, "--source", str(bad), "--train-size", "1", "--test-size", "1", status=2)
    assert re.search("needs 'target' and 'nums'", capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_import_from_jsonl(tmp_path):
    source = tmp_path / "hf.jsonl"
    source.write_text("".join(json.dumps({"target": t, "nums": list(n)}) + "\n" for n, t in ROWS))
    out = make(tmp_path, "--source", str(source), "--train-size", "3", "--test-size", "2")
    assert len(read(out, "train")) == 3


# ---- a search that cannot succeed ------------------------------------------------------------------------------

# Six numbers of 1..9 make at most 9^6 = 531,441: no draw reaches 600,000, and each try is a depth-first search.
UNREACHABLE = ["--counts", "6", "--number-range", "1:9", "--target-range", "600000:600000"]


def test_an_unreachable_target_gives_up_within_the_search_budget(tmp_path):
    """The budget (SEARCH_BUDGET, 45 s) set to 1 s: the run must end in one line soon after, not after the
    hours that 10,000 rounds of depth-first searches take. The timeout only guards against a hang."""
    script = (
        "import sys; from data_tools import countdown; countdown.SEARCH_BUDGET = 1.0; "
        "raise SystemExit(countdown.main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "--out", str(tmp_path / "o"), *UNREACHABLE, "--train-size", "1"]
        + ["--test-size", "1", "--workers", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    line = result.stderr.splitlines()[-1]  # after tqdm's progress bar
    assert line.startswith("python -m data_tools.countdown: error: no 6 numbers in 1:9 reached target(s) [600000]")
    assert "in 1 s of search" in line and "--target-range" in line
    assert not (tmp_path / "o").exists()


def test_a_single_depth_first_search_stops_at_the_deadline():
    # 6 numbers, rational arithmetic, an unreachable target: seconds of search without a deadline.
    with pytest.raises(TimeoutError):
        solver.first_solution([3, 7, 9, 25, 50, 75], 1_000_007, rational=True, deadline=time.monotonic() + 0.2)
