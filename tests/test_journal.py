"""The rollout journal: written by the reward file inside OpenRLHF's own executor, by several processes at once,
killed mid-run, cut short; read back with each sample attributed to the step of OpenRLHF's TensorBoard logs."""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openrlhf.utils.logging_utils import TensorboardLogger
from testkit import CASES, REPO, REWARD_FILE, CharTokenizer, StandInEngine, countdown_label

from analysis.journal import load_run
from analysis.metrics import BEHAVIOURS, behaviours
from reference import tinyzero
from reward_funcs import journal, journal_fields, score_sample

LATE = " Let me try 44 + 19 = 63. Wait, that doesn't work. Let me check: 44 - 19 + 35 = 60, correct. "


def puzzle(i: int, **extra) -> tuple[str, str]:
    """A distinct Countdown prompt and its label; `extra` goes into the label (the tests' own bookkeeping)."""
    numbers = [1 + i % 97, 19 + i // 97, 35]
    return tinyzero.countdown_prompt(numbers, 60), countdown_label(numbers, 60, **extra)


def sample(i: int, completion: str = " </think>\n<answer>1 + 2</answer><|endoftext|>", **extra):
    prompt, label = puzzle(i, **extra)
    query = prompt + completion
    return query, prompt, label, score_sample(query, prompt, label)


def board(run):
    """TensorBoard as OpenRLHF writes it: its own TensorboardLogger, into the run's tensorboard/ folder."""
    logger = SimpleNamespace(tensorboard_dir=str(run / "tensorboard"), wandb=SimpleNamespace(run_name="ppo_run"))
    return TensorboardLogger(SimpleNamespace(logger=logger))


# ---- the writer and the reader -------------------------------------------------------------------------------------


def test_round_trip_keeps_every_field(tmp_path):
    run = tmp_path / "run"
    writer = journal.Journal(run / "journal")
    items = [
        sample(43, " 44 - 19 = 25 </think>\n<answer>(44 - 19) + 35</answer><|endoftext|>"),  # [44, 19, 35]
        sample(1, " </think>\n<answer>44 + 19</answer><|endoftext|>"),
        sample(2, LATE + "no answer, the length ran out"),
    ]
    for query, prompt, label, score in items:
        writer.record(query, prompt, label, score)
    writer.close()
    loaded = load_run(run)
    assert loaded.rows == 3 and len(loaded.samples) == 3
    by_response = {r["response"]: r for r in loaded.samples}
    for query, prompt, label, score in items:
        record = by_response[query[len(prompt) :]]
        assert (record["prompt"], record["label"], record["answer"]) == (prompt, label, score.answer)
        assert (record["reward"], record["correct"], record["reason"]) == (score.reward, score.correct, score.reason)
        assert record["split"] == "train" and record["task"] == "countdown" and record["pid"] == os.getpid()
        assert record["tokens"] is None
    truncated = by_response[items[2][0][len(items[2][1]) :]]
    assert truncated["truncated"] is True and truncated["chars"] == len(items[2][0]) - len(items[2][1])
    assert (
        set(truncated["behaviours"])
        == {k for k, v in behaviours(LATE).items() if v}
        >= {"backtracking", "verification"}
    )
    finished = by_response[items[0][0][len(items[0][1]) :]]
    assert finished["truncated"] is False and finished["chars"] == len(finished["response"]) - len("<|endoftext|>")
    (stats,) = loaded.stats
    scores = [score for *_, score in items]
    assert [score.reward for score in scores] == [1.0, 0.1, 0.0]
    assert (stats.n, stats.reward, stats.accuracy, stats.format_rate) == (3, pytest.approx(1.1 / 3), 1 / 3, 2 / 3)
    assert stats.truncated == pytest.approx(1 / 3) and stats.behaviours["verification"] == pytest.approx(1 / 3)
    assert any("no TensorBoard logs" in w for w in loaded.warnings)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "Let me ",
                "check",
                "verify",
                " again",
                "Wait",
                "wait",
                "that ",
                "doesn't",
                " work",
                "try ",
                "another",
                "Option ",
                "2",
                "one",
                " = ",
                "60",
                ", correct",
                "TOO ",
                "big",
                "what if",
                "ſ",
                "K",
                "İ",
                "\n",
                " ",
                "é",
            ]
        ),  # fmt: skip
        max_size=12,
    ).map("".join)
)
def test_behaviour_flags_are_exactly_analysis_metrics(text):
    """The prefilter only skips regexes that cannot match, ASCII or not, case or not."""
    mask = journal_fields.Behaviours(BEHAVIOURS).mask(text)
    assert {name for i, name in enumerate(BEHAVIOURS) if mask >> i & 1} == {k for k, v in behaviours(text).items() if v}


def test_the_prefilter_skips_most_regexes_on_plain_text():
    assert all(journal_fields.needles(pattern) is not None for pattern in BEHAVIOURS.values())
    plain = "44 + 19 = 63. 63 - 35 = 28. " * 40
    assert not any(journal_fields.present(journal_fields.needles(p), plain.lower()) for p in BEHAVIOURS.values())


def test_text_sampling_keeps_whole_prompts_and_every_row(tmp_path):
    run = tmp_path / "run"
    writer = journal.Journal.from_env({"REWARD_JOURNAL_DIR": str(run / "journal"), "REWARD_JOURNAL_SAMPLE": "0.25"})
    items = [sample(i) for i in range(100) for _ in range(4)]  # 100 prompts, 4 samples each
    writer.record_batch(*zip(*items, strict=True))
    writer.close()
    loaded = load_run(run, samples_per_step=1000)
    assert loaded.rows == 400 and loaded.stats[0].n == 400
    kept = {r["prompt"] for r in loaded.samples}
    expected = {prompt for _, prompt, _, _ in items if journal_fields.prompt_key(prompt) < 2**62}
    assert kept == expected and 0 < len(kept) < 100
    assert len(loaded.samples) == 4 * len(kept)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"REWARD_JOURNAL_SAMPLE": "2"}, "REWARD_JOURNAL_SAMPLE must be between 0 and 1"),
        ({"REWARD_JOURNAL_SAMPLE": "half"}, "REWARD_JOURNAL_SAMPLE='half' is not a number"),
    ],
)
def test_bad_settings_are_one_line_with_the_fix(tmp_path, env, message):
    with pytest.raises(journal.JournalError, match=re.escape(message)):
        journal.Journal.from_env({"REWARD_JOURNAL_DIR": str(tmp_path), **env})
    assert journal.Journal.from_env({"REWARD_JOURNAL_DIR": " "}) is None and journal.Journal.from_env({}) is None


def test_eval_samples_are_told_apart_by_their_label(tmp_path):
    prompts = [puzzle(i) for i in range(50, 54)]
    test = tmp_path / "test.parquet"
    pq.write_table(pa.table({"prompt": [p for p, _ in prompts], "answer_key": [lab for _, lab in prompts]}), test)
    env = {"REWARD_JOURNAL_DIR": str(tmp_path / "run" / "journal"), "REWARD_JOURNAL_EVAL": str(test)}
    writer = journal.Journal.from_env({**env, "REWARD_JOURNAL_LABEL_KEY": "answer_key"})
    for i in (0, 1, 50, 51, 52, 53):
        writer.record(*sample(i))
    writer.close()
    loaded = load_run(tmp_path / "run")
    assert {(s.split, s.n) for s in loaded.stats} == {("train", 2), ("eval", 4)}
    assert {r["prompt"] for r in loaded.samples if r["split"] == "eval"} == {p for p, _ in prompts}
    assert sorted(loaded.held_out) == sorted(f"{journal_fields.prompt_key(p):016x}" for p, _ in prompts)


# ---- attribution -----------------------------------------------------------------------------------------------


def test_samples_get_the_step_of_openrlhfs_tensorboard_logs(tmp_path):
    """The sync loop of PPOTrainer.fit, step by step: generate and score, log train/*, evaluate every 2 steps and
    log eval/*; then a step whose samples were scored but never logged (the run stopped)."""
    run = tmp_path / "run"
    eval_prompt, eval_label = puzzle(900)
    writer, logs = journal.Journal(run / "journal", eval_set=frozenset([eval_label])), board(run)
    for step in range(1, 6):
        for i in range(3 + step):
            writer.record(*sample(10 * step + i, step=step))
        if step == 5:
            break
        logs.log_train(step, {"reward": 0.5, "rollout/num_samples": 3.0 + step, "generated_samples": ["text", 0.5]})
        if step % 2 == 0:
            query = eval_prompt + " </think>\n<answer>1</answer><|endoftext|>"
            writer.record(query, eval_prompt, eval_label, score_sample(query, eval_prompt, eval_label))
            logs.log_eval(step, {"eval_countdown_pass1": 0.1})
    logs.close()
    writer.close()
    loaded = load_run(run, samples_per_step=100)
    train = [r for r in loaded.samples if r["split"] == "train"]
    assert len(train) == 4 + 5 + 6 + 7 + 8
    assert all(r["step"] == json.loads(r["label"])["step"] for r in train)
    assert [(s.step, s.n) for s in loaded.stats if s.split == "train"] == [(1, 4), (2, 5), (3, 6), (4, 7), (5, 8)]
    assert [(s.step, s.n) for s in loaded.stats if s.split == "eval"] == [(2, 1), (4, 1)]
    assert [r["step"] for r in loaded.held_out[f"{journal_fields.prompt_key(eval_prompt):016x}"]] == [2, 4]
    assert loaded.warnings == ["8 training samples come after the last step logged: counted as step 5"]
    assert "TensorBoard" in loaded.attribution


def test_a_step_count_that_disagrees_with_openrlhfs_is_a_warning(tmp_path):
    run = tmp_path / "run"
    writer, logs = journal.Journal(run / "journal"), board(run)
    for step in (1, 2):
        for i in range(4):
            writer.record(*sample(i))
        logs.log_train(step, {"rollout/num_samples": 4.0 if step == 1 else 6.0})
    logs.close()
    writer.close()
    (warning,) = load_run(run).warnings
    assert "1 of 2 steps hold a different number of training samples" in warning and "step 2: 4 in the journal, 6" in (
        warning
    )


def test_asynchronous_training_counts_rollouts_a_queue_later(tmp_path):
    run = tmp_path / "run"
    (run / "recipe.yaml").parent.mkdir(parents=True)
    (run / "recipe.yaml").write_text("train: {async_enable: true, async_queue_size: 2}\n")
    writer, logs = journal.Journal(run / "journal"), board(run)
    writer.record(*sample(0))
    logs.log_train(1, {"reward": 0.0})
    logs.close()
    writer.close()
    loaded = load_run(run)
    assert [s.step for s in loaded.stats] == [3] and "shifted by 2" in loaded.attribution


# ---- processes, crashes, damage ------------------------------------------------------------------------------------

WRITER = """
    import os, sys, time
    sys.path.insert(0, ".")
    from reward_funcs import journal, score_sample
    from reference import tinyzero
    writer = journal.Journal(sys.argv[1], interval=float(sys.argv[2]))
    prompt = tinyzero.countdown_prompt([44, 19, 35], 60)
    label = '{"task": "countdown", "target": 60, "numbers": [44, 19, 35], "pid": %d}' % os.getpid()
    query = prompt + " </think>\\n<answer>(44 - 19) + 35</answer><|endoftext|>"
    score = score_sample(query, prompt, label)
    for n in range(1, int(sys.argv[3]) + 1):
        writer.record(query, prompt, label, score)
        if n == 1:
            print("started", flush=True)
        if sys.argv[4] == "flush" and n % 20 == 0:
            writer.flush()
            print(n, flush=True)
        time.sleep(float(sys.argv[5]))
    print("done", flush=True)
    time.sleep(float(sys.argv[6]))
"""


def writer_process(folder, interval, samples, flush="", pause=0.0, linger=0.0) -> subprocess.Popen:
    argv = [str(folder), str(interval), str(samples), flush or "-", str(pause), str(linger)]
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), *argv], cwd=REPO, stdout=subprocess.PIPE, text=True
    )


def test_processes_write_at_once_each_to_its_own_files(tmp_path):
    processes = [writer_process(tmp_path / "run" / "journal", 0.05, 300, pause=0.001) for _ in range(3)]
    for p in processes:
        assert p.wait(timeout=120) == 0
    loaded = load_run(tmp_path / "run", samples_per_step=1000)
    assert loaded.rows == 900 and len(loaded.warnings) == 1 and "no TensorBoard logs" in loaded.warnings[0]
    assert len(list((tmp_path / "run" / "journal").glob("*.rows"))) == 3
    by_pid = {}
    for record in loaded.samples:
        by_pid.setdefault(record["pid"], []).append(json.loads(record["label"])["pid"])
    assert sorted(by_pid) == sorted(p.pid for p in processes)
    assert all(set(labels) == {pid} for pid, labels in by_pid.items())  # each process's rows, its own texts


def test_a_killed_process_leaves_its_journal_readable_up_to_its_last_flush(tmp_path):
    folder = tmp_path / "run" / "journal"
    process = writer_process(folder, 3600, 10_000, flush="flush", pause=0.0005)
    seen = 0
    for line in process.stdout:
        seen = int(line) if line.strip().isdigit() else seen
        if seen >= 200:
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    loaded = load_run(tmp_path / "run")
    assert loaded.rows >= seen and loaded.rows % 20 == 0  # whole flushes only; records after the last are lost
    assert not [w for w in loaded.warnings if "cut short" in w or "damaged" in w]
    # killed at any moment while its background thread flushes every 20 ms
    process = writer_process(tmp_path / "run2" / "journal", 0.02, 100_000, pause=0.0002)
    assert process.stdout.readline() == "started\n"
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert load_run(tmp_path / "run2").rows > 0


def test_a_torn_tail_is_skipped_with_a_warning(tmp_path):
    run = tmp_path / "run"
    writer = journal.Journal(run / "journal")
    for flush in range(3):
        for i in range(5):
            writer.record(*sample(10 * flush + i))
        writer.flush()
    writer.close()
    (rows,) = (run / "journal").glob("*.rows")
    texts = rows.with_suffix(".texts")
    intact = texts.read_bytes()
    texts.write_bytes(intact[:-7])  # the last flush's texts cut short: its rows stay, their texts are gone
    loaded = load_run(run, samples_per_step=100)
    assert loaded.rows == 15 and len(loaded.samples) == 10
    assert any("5 texts the rows promise could not be read" in w for w in loaded.warnings)
    rows.write_bytes(rows.read_bytes()[:-7])  # the last flush's rows cut short
    loaded = load_run(run, samples_per_step=100)
    assert loaded.rows == 10 and len(loaded.samples) == 10
    assert any(re.search(r"\.rows: cut short at byte [\d,]+ of [\d,]+; read up to there", w) for w in loaded.warnings)
    with open(rows, "ab") as f:
        f.write(b"\x00" * 100)  # what a machine that lost power can leave
    assert load_run(run).rows == 10


def test_a_forked_child_writes_its_own_files(tmp_path):
    import multiprocessing

    writer = journal.Journal(tmp_path / "run" / "journal")
    writer.record(*sample(0))

    def in_child():
        writer.record(*sample(1))
        writer.close()

    child_process = multiprocessing.get_context("fork").Process(target=in_child)
    child_process.start()
    child_process.join()
    writer.close()
    loaded = load_run(tmp_path / "run")
    assert child_process.exitcode == 0 and loaded.rows == 2
    assert {r["pid"] for r in loaded.samples} == {os.getpid(), child_process.pid}


# ---- end to end ------------------------------------------------------------------------------------------------


def test_the_reward_file_in_openrlhfs_executor_journals_a_run(tmp_path, monkeypatch):
    """The real reward file loaded and called by OpenRLHF's SingleTurnAgentExecutor, many samples at once as its
    engine does, under the environment the launcher gives the job; TensorBoard by OpenRLHF's logger."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    run = tmp_path / "run"
    eval_prompt, eval_label = puzzle(7)
    pq.write_table(pa.table({"prompt": [eval_prompt], "label": [eval_label]}), tmp_path / "test.parquet")
    monkeypatch.setenv("REWARD_JOURNAL_DIR", str(run / "journal"))
    monkeypatch.setenv("REWARD_JOURNAL_EVAL", str(tmp_path / "test.parquet"))
    executor, logs = SingleTurnAgentExecutor(str(REWARD_FILE)), board(run)

    async def generate(items):
        return await asyncio.gather(
            *(
                executor.execute(
                    p, lab, SimpleNamespace(max_tokens=m, logprobs=None), 4096, CharTokenizer(), StandInEngine(c)
                )  # fmt: skip
                for p, lab, c, m in items
            )
        )

    cases = [CASES[name][:4] for name in sorted(CASES)]
    for step in (1, 2):
        outputs = asyncio.run(generate(cases * 4))
        logs.log_train(step, {"reward": sum(o["reward"].item() for o in outputs) / len(outputs)})
    asyncio.run(generate([(eval_prompt, eval_label, " <answer>60</answer><|endoftext|>", 1024)]))
    logs.log_eval(2, {"eval_countdown_pass1": 0.1})
    logs.close()
    executor.reward_func.__globals__["JOURNAL"].close()  # what the process's exit does

    loaded = load_run(run, samples_per_step=100)
    assert loaded.warnings == []
    for step in (1, 2):
        stats = {s.task: s for s in loaded.stats if s.step == step and s.split == "train"}
        for task in ("countdown", "multiply"):
            mine = [c for name, c in CASES.items() if name.startswith(task)]
            assert stats[task].n == 4 * len(mine)
            assert stats[task].reward == pytest.approx(sum(c[4] for c in mine) / len(mine))
            assert stats[task].accuracy == pytest.approx(sum(c[5] for c in mine) / len(mine))
            assert stats[task].format_rate == pytest.approx(sum(c[6] for c in mine) / len(mine))
            assert stats[task].truncated == pytest.approx(1 / len(mine))  # the stand-in engine cut one at max_tokens
    (evaluated,) = [s for s in loaded.stats if s.split == "eval"]
    assert (evaluated.step, evaluated.n, evaluated.reward) == (2, 1, pytest.approx(0.1))
    cut = [r for r in loaded.samples if r["truncated"]]
    assert cut and all(r["response"] in {c[2][: c[3]] for c in cases} for r in cut)


@pytest.mark.ray
def test_the_launchers_environment_reaches_the_reward_in_a_ray_worker(tmp_path):
    """The job's runtime env (launch.jobs.runtime_env of a resolved recipe) in a real Ray worker: the reward file
    loaded there journals into the run folder."""
    ray = pytest.importorskip("ray")
    from launch import jobs, runs
    from launch.recipe import load

    resolved = runs.resolve(load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"), tmp_path / "run")
    env = jobs.runtime_env(resolved)

    def score_in_worker(prompt, label, completion):
        import os
        import sys

        sys.path.insert(0, "tests")
        from openrlhf.utils.agent import SingleTurnAgentExecutor
        from testkit import CharTokenizer, StandInEngine, run_executor

        executor = SingleTurnAgentExecutor("reward_funcs/openrlhf_reward.py")
        out = run_executor(executor, prompt, label, StandInEngine(completion), CharTokenizer(), 1024)
        executor.reward_func.__globals__["JOURNAL"].flush()
        return os.getpid(), out["reward"].item()

    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, runtime_env=env)
    try:
        prompt, label, completion, *_ = CASES["countdown-correct"]
        pid, reward = ray.get(ray.remote(score_in_worker).remote(prompt, label, completion))
    finally:
        ray.shutdown()
    loaded = load_run(tmp_path / "run")
    assert reward == 1.0 and [(r["pid"], r["reward"], r["response"]) for r in loaded.samples] == [
        (pid, 1.0, completion)
    ]


# ---- the bench and its synthetic run ---------------------------------------------------------------------------


def test_a_synthetic_run_shows_its_aha_and_reads_back_whole(tmp_path):
    from bench.journal import EVAL_PUZZLES, write_synthetic_run

    loaded = load_run(write_synthetic_run(tmp_path / "run", steps=200, per_step=16, eval_every=50))
    assert loaded.warnings == [] and loaded.rows == 200 * 16 + 4 * EVAL_PUZZLES
    train = [s for s in loaded.stats if s.split == "train"]
    assert [s.step for s in train] == list(range(1, 201)) and {s.n for s in train} == {16}
    early, late = train[:40], train[-40:]

    def mean(stats, get):
        return sum(map(get, stats)) / len(stats)

    assert mean(late, lambda s: s.chars) > 3 * mean(early, lambda s: s.chars)
    assert mean(late, lambda s: s.accuracy) > mean(early, lambda s: s.accuracy) + 0.3
    for name in BEHAVIOURS:
        assert (
            mean(late, lambda s, name=name: s.behaviours[name])
            > mean(early, lambda s, name=name: s.behaviours[name]) + 0.5
        )
    assert [s.step for s in loaded.stats if s.split == "eval"] == [50, 100, 150, 200]
    assert len(loaded.held_out) == 32 and {tuple(r["step"] for r in v) for v in loaded.held_out.values()} == {
        (50, 100, 150, 200)
    }


def test_the_bench_prints_its_figures_at_a_toy_size():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.journal",
            "--completions",
            "40",
            "--rounds",
            "1",
            "--steps",
            "100",
            "--per-step",
            "8",
        ],  # fmt: skip
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert re.search(r"ratio on / off: \d+\.\d{3}x \(budget 1\.05x; mean of the calls under the 99th", out), out
    assert re.search(r"\d+\.\d{3}x \(median\), \d+\.\d{3}x \(mean of every call", out), out
    assert re.search(r"on disk: \d+\.\d bytes per sample of rows \+ \d+ of texts", out), out
    assert re.search(r"TinyZero's full run: 5,111,808 samples, journal \d+\.\d\d GB .* \d+\.\d\d% \(budget 1%\)", out)
    assert re.search(r"load_run: \d+\.\d s for 1,056 samples \(.*, 0 warnings\)", out), out


def test_an_eval_file_that_cannot_be_read_never_stops_the_run(tmp_path, caplog):
    """A missing eval file, or one without the label column, is a warning: its samples count as training ones."""
    test = tmp_path / "test.parquet"
    pq.write_table(pa.table({"prompt": ["p"], "answer_key": ["{}"]}), test)
    for files in (str(test), "/nonexistent/test.parquet"):
        with caplog.at_level("WARNING", logger="reward_funcs"):
            assert journal_fields.eval_labels([files]) == frozenset()
        assert f"cannot read the labels of the eval file {files}" in caplog.text
    writer = journal.Journal.from_env({"REWARD_JOURNAL_DIR": str(tmp_path / "j"), "REWARD_JOURNAL_EVAL": str(test)})
    assert writer is not None
    writer.close()


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_eval_labels_come_from_every_format_openrlhf_loads(tmp_path, suffix):
    labels = [puzzle(i)[1] for i in range(3)]
    path = tmp_path / f"test{suffix}"
    if suffix == ".csv":
        pa.csv.write_csv(pa.table({"prompt": ["a", "b", "c"], "label": labels}), path)
    else:  # one record per line, as data_tools writes .jsonl and OpenRLHF's loader reads .json too
        path.write_text("".join(json.dumps({"prompt": "x", "label": label}) + "\n" for label in labels))
    assert journal_fields.eval_labels([str(path)]) == frozenset(journal_fields.label_text(label) for label in labels)


@pytest.mark.parametrize(
    "flags, said",
    [
        ({"rollout": {"batch_size": 4, "vllm_generate_batch_size": 16}}, "scores samples ahead"),
        ({"logger": {"logging_steps": 5}}, "logger.logging_steps > 1"),
    ],
)
def test_settings_that_blur_the_step_are_said(tmp_path, flags, said):
    """OpenRLHF settings under which the time a sample was scored is not the step it trained at: a warning."""
    import yaml

    from bench.journal import write_synthetic_run

    run = write_synthetic_run(tmp_path / "run", steps=10, per_step=4, eval_every=5)
    assert not any(said in w for w in load_run(run).warnings)
    (run / "recipe.yaml").write_text(yaml.safe_dump(flags))
    assert any(said in w for w in load_run(run).warnings)
