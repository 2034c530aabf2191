"""The run report: the aha detector on series with and without an aha, the page's data from a journal, the CLI,
and the page itself opened in a real headless Chromium."""

import json
import math
import random
import re

import numpy as np
import pytest

from analysis import aha

# ---- the aha detector -------------------------------------------------------------------------------------------


def noisy(steps, mean, sd, seed):
    rng = random.Random(seed)
    return {s: mean(s) + rng.gauss(0, sd) for s in range(steps)}


def ramp(onset, start, slope, top=math.inf):
    """A level `start` until `onset`, then rising by `slope` a step up to `top`."""
    return lambda s: min(top, start + slope * max(0, s - onset))


def tinyzero_like(steps=600, onset=250, seed=0):
    """Length falls a little while the format is learned, then length and accuracy rise together from `onset`; the
    noise is that of a mean over 256 samples."""
    length = noisy(steps, lambda s: ramp(onset, 180, 0.8, 480)(s) - 30 * math.exp(-s / 40), 6, seed)
    accuracy = noisy(steps, ramp(onset, 0.08, 0.003, 0.75), 0.02, seed + 1)
    return length, accuracy


def test_aha_found_where_length_and_accuracy_start_rising_together():
    length, accuracy = tinyzero_like(onset=250)
    found = aha.detect(length, accuracy)
    assert found.found and found.window == 30
    assert 250 - found.window <= found.step <= 250 + found.window // 2
    assert found.stretch.length_t >= 2 and found.stretch.accuracy_t >= 2
    assert [w.start for w in found.windows] == [found.step, found.step + 30, found.step + 60]
    assert "over steps" in found.reason and "30 steps" in found.rule


@pytest.mark.parametrize("seed", range(5))
def test_aha_not_found_for_noise(seed):
    length = noisy(600, lambda s: 200, 6, seed)
    accuracy = noisy(600, lambda s: 0.05, 0.02, seed + 100)
    found = aha.detect(length, accuracy)
    assert not found.found and found.step is None
    assert found.stretch is not None and "closest" in found.reason  # the evidence that came nearest is kept


def test_aha_on_perfectly_flat_or_falling_lines_is_not_found_and_shows_a_stretch():
    """Exact lines (no noise) give t of -inf or nan; the closest stretch is still shown, never a crash."""
    steps = range(1, 601)
    found = aha.detect({s: 1000.0 - 2 * s for s in steps}, {s: 0.5 for s in steps})
    assert not found.found and found.stretch is not None and "closest" in found.reason


def test_aha_not_found_when_length_grows_and_accuracy_does_not():
    """The 0.5B model: responses get longer (repetition), accuracy stays where it was."""
    length = noisy(600, ramp(100, 150, 0.5), 6, 1)
    accuracy = noisy(600, lambda s: 0.04, 0.02, 2)
    assert not aha.detect(length, accuracy).found


def test_aha_not_found_when_accuracy_grows_and_length_falls():
    length = noisy(600, lambda s: 300 - 0.2 * s, 6, 3)
    accuracy = noisy(600, ramp(50, 0.05, 0.002, 0.6), 0.02, 4)
    assert not aha.detect(length, accuracy).found


def test_a_jump_that_holds_is_an_aha():
    length = noisy(600, lambda s: 200 if s < 300 else 320, 6, 5)
    accuracy = noisy(600, lambda s: 0.1 if s < 300 else 0.4, 0.02, 6)
    found = aha.detect(length, accuracy)
    assert found.found and 300 - found.window <= found.step <= 300


def test_a_blip_that_falls_back_is_not_an_aha():
    """Both climb for 20 steps and are back where they were 20 steps later: the gain is not kept."""
    blip = lambda base, top: lambda s: base + (top - base) * max(0, 1 - abs(s - 320) / 20)  # noqa: E731
    length = noisy(600, blip(200, 320), 6, 7)
    accuracy = noisy(600, blip(0.1, 0.4), 0.02, 8)
    assert not aha.detect(length, accuracy).found


def test_a_drift_too_small_is_not_an_aha():
    """Both rise steadily and significantly, but length by less than 10 % over a stretch."""
    length = {s: 400 + 0.05 * s for s in range(600)}
    accuracy = {s: 0.1 + 0.001 * s for s in range(600)}
    found = aha.detect(length, accuracy)
    assert not found.found and found.stretch.length_t == math.inf  # a perfect line: significant, yet too slow


def test_aha_too_few_steps():
    found = aha.detect({s: s for s in range(40)}, {s: s / 40 for s in range(40)})
    assert not found.found and found.reason.startswith("too few steps: 40 steps")


def test_aha_uses_only_the_steps_both_series_have():
    length, accuracy = tinyzero_like(onset=250)
    gappy = {s: v for s, v in accuracy.items() if s % 2 == 0}  # accuracy logged every other step
    found = aha.detect(length, gappy)
    assert found.found and found.windows[0].points == 15


def test_fit_matches_numpy():
    rng = np.random.default_rng(0)
    x = np.arange(100, 160)
    y = 3 + 0.7 * x + rng.normal(0, 5, x.size)
    steps = x.tolist()
    series = aha.Series(dict(zip(steps, y.tolist(), strict=True)), dict(zip(steps, (y / 100).tolist(), strict=True)))
    fit = series.fit(100, 60)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    se = math.sqrt(residual @ residual / (x.size - 2) / ((x - x.mean()) @ (x - x.mean())))
    assert fit.points == 60 and fit.length_slope == pytest.approx(slope)
    assert fit.length_t == pytest.approx(slope / se) and fit.accuracy_t == pytest.approx(slope / se)
    assert fit.length_mean == pytest.approx(y.mean())


# ---- the page's data from a journal's statistics ---------------------------------------------------------------------


def stats(step, split="train", task="countdown", n=10, **figures):
    from analysis.journal import StepStats

    values = dict(reward=0.1, accuracy=0.0, format_rate=1.0, chars=100.0, tokens=25.0, truncated=0.0)
    values |= figures
    behaviours = values.pop("behaviours", {"verification": 0.0, "backtracking": 0.0, "enumeration": 0.0})
    return StepStats(step=step, split=split, task=task, n=n, behaviours=behaviours, **values)


def test_series_weigh_each_task_by_its_samples():
    from analysis import run_page

    mixed = [
        stats(1, task="countdown", n=30, accuracy=0.2, tokens=100.0, behaviours={"verification": 0.5}),
        stats(1, task="multiply", n=10, accuracy=0.6, tokens=20.0, behaviours={"verification": 0.1}),
        stats(2, accuracy=0.5),
        stats(2, split="eval", accuracy=0.25, n=4),
    ]
    series, unit = run_page.journal_series(mixed, ["verification"])
    assert unit == "tokens" and series["accuracy"] == [(1, pytest.approx(0.3)), (2, 0.5)]
    assert series["length"] == [(1, pytest.approx(80.0)), (2, 25.0)]
    assert series["verification"] == [(1, pytest.approx(0.4)), (2, 0.0)]
    assert series["eval_accuracy"] == [(2, 0.25)]


def test_length_is_in_characters_when_any_step_has_no_token_count():
    from analysis import run_page

    series, unit = run_page.journal_series([stats(1, tokens=None, chars=400.0), stats(2, chars=300.0)], [])
    assert unit == "characters" and series["length"] == [(1, 400.0), (2, 300.0)]
    assert "truncated" in series and "kl" not in series


def test_a_long_series_is_drawn_as_buckets_that_keep_its_range():
    from analysis import run_page

    rng = random.Random(0)
    points = [(s, rng.random()) for s in range(1, 19_201)]
    drawn = run_page.curve(points, 0.9)
    assert drawn["dense"] and len(drawn["steps"]) <= run_page.MAX_POINTS and drawn["steps"][-1] == 19_200
    first = [v for _, v in points[: drawn["steps"][0]]]
    assert drawn["lo"][0] == pytest.approx(min(first), rel=1e-4) and drawn["hi"][0] == pytest.approx(max(first), 1e-4)
    assert drawn["values"][0] == pytest.approx(sum(first) / len(first), rel=1e-4)
    assert all(lo <= v <= hi for lo, v, hi in zip(drawn["lo"], drawn["values"], drawn["hi"], strict=True))
    sparse = run_page.curve([(100, 0.1), (200, 0.3)], 0.9)
    assert sparse == {"steps": [100, 200], "values": [0.1, 0.3], "dense": False}


def test_samples_beyond_the_budget_are_embedded_for_every_kth_step():
    from analysis import run_page

    samples = [{"step": s, "split": "train", "prompt": "p" * 90, "response": "r" * 10} for s in range(100)]
    embedded = run_page.embed_samples(samples, [stats(s, n=256, accuracy=0.5) for s in range(100)], "tokens", 2_500)
    train = embedded["train"]
    assert train["steps"] == list(range(0, 100, 4)) and len(train["by_step"]) == 25
    assert train["stats"][0] == {"n": 256, "accuracy": 0.5, "reward": 0.1, "length": 25.0}  # from every sample
    assert "25 of the 100 steps" in train["note"] and embedded["eval"]["steps"] == []


def test_the_data_cannot_close_its_script_element():
    from analysis import run_report

    data = {"title": "t</title><script>", "runs": [], "evil": "</script><script>alert(1)</script><!--"}
    page = run_report.render(data)
    assert page.count("</script>") == 2 and "<!--" not in page  # the data's element and the script's
    assert page_data(page) == data and "<title>t&lt;/title>&lt;script></title>" in page


# ---- runs as the tests make them: the real reward file through OpenRLHF's executor, TensorBoard as OpenRLHF logs


def response(rng, searching: bool, right: bool) -> str:
    """A response as TinyZero's model writes one before its aha (a guess) and after (a search, checked)."""
    thought = "44 + 19 = 63."
    if searching:
        thought = (
            "Let me try 44 + 19 = 63, too big. Wait, that doesn't work. Another combination: 44 - 19 = 25. "
            "Let me check: 25 + 35 = 60, correct."
        )
    if rng.random() < 0.1:
        return f" <think>{thought}</think> I cannot find it<|endoftext|>"
    answer = "(44 - 19) + 35" if right else "44 + 19 - 35"
    return f" <think>{thought}</think>\n<answer>{answer}</answer><|endoftext|>"


def make_run(folder, monkeypatch, *, steps, onset, per_step=16, eval_every=30, seed=0):
    """A run folder as a training run leaves it: `journal/` written by the real reward file, loaded and called by
    OpenRLHF's SingleTurnAgentExecutor (one engine's samples, the reward file's own journal from the environment
    the launcher sets), and `tensorboard/` with OpenRLHF's tags logged after each step's samples. From `onset`
    (None: never) responses search and check, and are right more often; one held-out prompt set every
    `eval_every` steps."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor
    from testkit import CD_LABEL, CD_PROMPT, REWARD_FILE, CharTokenizer, StandInEngine, countdown_label, run_executor
    from torch.utils.tensorboard import SummaryWriter

    from reference import tinyzero

    rng = random.Random(seed)
    held_out = [(tinyzero.countdown_prompt([44, 19, 35], t), countdown_label([44, 19, 35], t)) for t in (50, 98, 28)]
    eval_file = folder / "test.jsonl"
    folder.mkdir(parents=True)
    eval_file.write_text("".join(json.dumps({"prompt": p, "label": lab}) + "\n" for p, lab in held_out))
    monkeypatch.setenv("REWARD_JOURNAL_DIR", str(folder / "journal"))
    monkeypatch.setenv("REWARD_JOURNAL_EVAL", str(eval_file))
    executor = SingleTurnAgentExecutor(str(REWARD_FILE))
    board = SummaryWriter(log_dir=str(folder / "tensorboard" / "run"))
    tokenizer = CharTokenizer()

    def generate(prompt, label, progress):
        searching = progress > 0 and rng.random() < min(0.9, 0.1 + 3 * progress)
        text = response(rng, searching, rng.random() < min(0.9, 0.1 + 3 * progress))
        max_tokens = len(text) - 5 if rng.random() < 0.05 else 1024  # a few cut at the token limit
        return run_executor(executor, prompt, label, StandInEngine(text), tokenizer, max_tokens)

    for step in range(1, steps + 1):
        progress = 0 if onset is None else max(0, step - onset) / steps
        rewards = [float(generate(CD_PROMPT, CD_LABEL, progress)["reward"]) for _ in range(per_step)]
        logs = {"reward": float(np.mean(rewards)), "rollout/num_samples": float(per_step), "kl": 0.001 * step}
        for key, value in logs.items():
            board.add_scalar(f"train/{key}", value, step)
        board.flush()
        if step % eval_every == 0:
            scores = [float(generate(p, lab, progress)["reward"]) for p, lab in held_out]
            board.add_scalar("eval/eval_countdown_pass1", float(np.mean(scores)), step)
            board.flush()
    board.close()
    executor.reward_func.__globals__["JOURNAL"].close()
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of 100 steps: a 3B-like one whose responses start searching at step 30, a 0.5B-like one whose never
    do."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as monkeypatch:
        grows = make_run(root / "countdown-3b" / "20260101-000000", monkeypatch, steps=100, onset=30)
        flat = make_run(root / "countdown-0.5b" / "20260101-000000", monkeypatch, steps=100, onset=None, seed=1)
    return grows, flat


def page_data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    return json.loads(found.group(1))


def test_report_of_two_runs_from_their_journals(runs, tmp_path, capsys):
    from analysis import run_report

    out = tmp_path / "report.html"
    assert run_report.main([str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out} (") and "countdown-3b (20260101-000000): aha at step" in said
    assert "countdown-0.5b (20260101-000000): no aha found" in said
    data = page_data(out.read_text())
    grows, flat = data["runs"]
    assert grows["journal"] and grows["length_unit"] == "characters"
    assert 30 - grows["aha"]["window"] <= grows["aha"]["step"] <= 30 and not flat["aha"]["found"]  # onset: 30
    assert {"reward", "accuracy", "format", "length", "truncated", "verification", "kl", "eval_reward"} <= set(
        grows["series"]
    )
    assert len(grows["series"]["accuracy"]["steps"]) == 100 and grows["series"]["eval_reward"]["steps"] == [30, 60, 90]
    assert grows["samples"]["train"]["steps"][:2] == [1, 2] and len(grows["held_out"]) == 3
    assert [r["step"] for r in grows["held_out"][0]["records"]] == [30, 60, 90]


# ---- the page in a real browser -------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"  # Debian's: apt-get install chromium


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    from analysis import run_report

    out = tmp_path_factory.mktemp("report") / "report.html"
    assert run_report.main([str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    return out, page_data(out.read_text())


@pytest.fixture(scope="module")
def browser():
    import os

    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium to open the report in a browser")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: make test installs it")
    with sync_api.sync_playwright() as p:
        args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
        args += ["--disable-component-update", "--disable-sync"]
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=args)  # a fresh profile every launch
        yield chromium
        chromium.close()


@pytest.fixture
def page(report, browser):  # the runs are made before the browser runs its own event loop
    """The report opened, with every console error and uncaught exception collected in `page.errors`."""
    view = browser.new_page(viewport={"width": 1280, "height": 900})
    view.errors = []
    view.on("console", lambda m: view.errors.append(m.text) if m.type == "error" else None)
    view.on("pageerror", lambda e: view.errors.append(str(e)))
    view.on("request", lambda r: view.errors.append(f"network: {r.url}") if not r.url.startswith("file:") else None)
    view.goto(report[0].as_uri())
    view.wait_for_selector("body[data-ready=true]", timeout=15_000)
    yield view
    view.close()


def shown(page, what="#samples .sample"):
    return page.eval_on_selector_all(what, "cards => cards.map(c => [c.dataset.step, c.dataset.outcome])")


def embedded(data, run, step):
    return data["runs"][run]["samples"]["train"]["by_step"][str(step)]


def outcome(sample):
    return "correct" if sample["correct"] else "none" if sample["answer"] is None else "wrong"


def test_page_draws_every_curve_of_both_runs_and_the_aha(page, report):
    _, data = report
    for quantity in ("reward", "accuracy", "length", "verification", "kl"):
        runs = page.eval_on_selector_all(
            f'.chart[data-quantity="{quantity}"] path.series', "p => p.map(x => x.dataset.run)"
        )
        assert sorted(runs) == ["0", "1"], quantity
    points = page.locator('.chart[data-quantity="eval_reward"] circle.point')
    assert points.count() == 6  # three evaluations of each run, drawn as points
    assert page.locator('.chart[data-quantity="accuracy"] line.aha[data-run="0"]').count() == 1
    assert page.locator("line.aha[data-run='1']").count() == 0
    verdicts = page.locator(".aha-run .verdict").all_inner_texts()
    assert verdicts == [f"aha at step {data['runs'][0]['aha']['step']}", "not found"]
    assert page.locator(".aha-run.found table.evidence tr").count() == 5  # a header, 3 windows, the stretch
    assert page.errors == []


def test_step_slider_and_filters_change_the_samples_shown(page, report):
    _, data = report
    assert {step for step, _ in shown(page)} == {"1"}
    steps = data["runs"][0]["samples"]["train"]["steps"]
    right = [sum(outcome(x) == "correct" for x in embedded(data, 0, s)) for s in steps]
    mixed = next(i for i, s in enumerate(steps) if s >= 40 and 0 < right[i] < len(embedded(data, 0, s)))
    step = steps[mixed]
    page.eval_on_selector("#step-slider", f"s => {{ s.value = {mixed}; s.dispatchEvent(new Event('input')); }}")
    assert {s for s, _ in shown(page)} == {str(step)} and len(shown(page)) == len(embedded(data, 0, step))
    assert page.inner_text("#step-label").startswith(f"step {step} ")
    page.select_option("#outcome", "correct")
    correct = [x for x in embedded(data, 0, step) if outcome(x) == "correct"]
    assert shown(page) == [[str(step), "correct"]] * len(correct)
    page.select_option("#outcome", "all")
    page.check('input[data-behaviour="verification"]')
    verifying = [x for x in embedded(data, 0, step) if "verification" in x["behaviours"]]
    assert len(shown(page)) == len(verifying)
    assert page.locator("#samples mark.verification").count() >= len(verifying) > 0  # the phrases highlighted
    page.click("#next")
    assert page.inner_text("#step-label").startswith(f"step {steps[mixed + 1]} ")
    assert page.errors == []


def test_search_finds_every_embedded_sample_that_holds_the_text(page, report):
    _, data = report
    every = [x for step in data["runs"][0]["samples"]["train"]["steps"] for x in embedded(data, 0, step)]
    expected = sum("cannot find" in x["response"] for x in every)
    page.fill("#search", "Cannot FIND")
    page.wait_for_function(f"document.querySelectorAll('#samples .sample').length === {min(expected, 100)}")
    assert f'search "cannot find": {expected} matching samples over all 100 embedded steps' in page.inner_text(
        "#step-summary"
    )
    assert page.locator("#samples mark.search").count() == min(expected, 100)
    page.select_option("#outcome", "wrong")  # filters and search together: no answer is never a wrong answer
    page.wait_for_function("document.querySelectorAll('#samples .sample').length === 0")
    assert page.errors == []


def test_held_out_prompt_followed_across_every_evaluation(page, report):
    _, data = report
    followed = data["runs"][0]["held_out"]
    options = page.eval_on_selector_all("#held-out-prompt option", "o => o.map(x => x.textContent)")
    assert options == [p["title"] for p in followed] and options[0].startswith("countdown: 44, 19, 35 -> ")
    rows = page.eval_on_selector_all("#held-out tr.evaluation", "r => r.map(x => x.dataset.step)")
    assert rows == ["30", "60", "90"]
    page.select_option("#run", "1")
    assert page.locator("#held-out tr.evaluation").count() == 3
    assert page.errors == []


def test_a_click_on_a_curve_opens_that_steps_samples(page, report):
    chart = page.locator('.chart[data-quantity="accuracy"] svg')
    box = chart.bounding_box()
    left, right = 56 / 480 * box["width"], (480 - 20) / 480 * box["width"]
    chart.click(position={"x": left + (right - left) * 0.5, "y": box["height"] / 2})  # the middle: step ~50
    step = int(re.match(r"step (\d+) ", page.inner_text("#step-label")).group(1))
    assert 45 <= step <= 55 and {s for s, _ in shown(page)} == {str(step)}
    assert page.errors == []


# ---- the command line ------------------------------------------------------------------------------------------------


def tensorboard_only_run(folder, steps=80):
    """A run folder with OpenRLHF's TensorBoard logs and no journal (a run the launcher did not start)."""
    from torch.utils.tensorboard import SummaryWriter

    board = SummaryWriter(log_dir=str(folder / "tensorboard" / "run"))
    for step in range(1, steps + 1):
        for tag, value in (("reward", 0.1 + step / 200), ("accuracy", step / 200), ("response_length", 100 + step)):
            board.add_scalar(f"train/{tag}", value, step)
    board.close()
    return folder


def test_a_run_without_journal_gets_its_curves_from_tensorboard(tmp_path, capsys):
    from analysis import run_report

    run = tensorboard_only_run(tmp_path / "countdown-3b" / "20260101-000000")
    assert run_report.main([str(run)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {run / 'report.html'} (")  # the default --out
    data = page_data((run / "report.html").read_text())
    (only,) = data["runs"]
    assert not only["journal"] and only["samples"] is None and only["held_out"] == []
    assert any(note.startswith("no journal: the curves come from TensorBoard alone") for note in only["notes"])
    assert set(only["series"]) == {"reward", "accuracy", "length"} and only["aha"]["found"]


def test_the_report_is_never_overwritten_without_force(tmp_path, capsys):
    from analysis import run_report

    run = tensorboard_only_run(tmp_path / "run")
    (run / "report.html").write_text("kept")
    assert run_report.main([str(run)]) == 2
    assert "report.html already exists: pass --force to replace it" in capsys.readouterr().err
    assert (run / "report.html").read_text() == "kept"
    assert run_report.main([str(run), "--force"]) == 0 and "Run report" in (run / "report.html").read_text()
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []  # no temporary file left


@pytest.mark.parametrize(
    "argv, says",
    [
        (["{missing}"], "error: no such run folder: {missing}"),
        (["{empty}"], "holds neither a journal nor TensorBoard scalars: pass a run folder"),
        (["{empty}", "--smooth", "1"], "error: --smooth must be in [0, 1); got 1.0"),
        (["{empty}", "--sample-steps", "-1"], "error: --sample-steps must be 0 or more; got -1"),
        (["{empty}", "--out", "{empty}", "--force"], "exists and is not a file"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, says):
    from analysis import run_report

    paths = {"missing": tmp_path / "nope", "empty": tmp_path / "empty"}
    (tmp_path / "empty").mkdir()
    assert run_report.main([a.format(**paths) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m analysis.run_report: error: ")
    assert says.format(**paths) in err
    assert not (tmp_path / "empty" / "report.html").exists()


def test_bench_times_the_report_of_a_synthetic_run_and_its_baseline():
    import subprocess
    import sys

    from testkit import REPO

    argv = [sys.executable, "-m", "bench.run_report", "--steps", "300", "--per-step", "8"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"baseline: +30 steps, +240 samples \| .* report +\d+\.\d\d s, +\d+\.\d MB", done.stdout)
    assert re.search(
        r"full: +300 steps, +2,400 samples \| .* journal read +\d+\.\d\d s .* aha at step \d+", done.stdout
    )
    assert re.search(r"ratio: full / baseline = \d+\.\dx to read the journal, \d+\.\dx for the report", done.stdout)


def test_a_curriculums_stages_are_one_journal(tmp_path):
    """A curriculum keeps a journal per stage: the report joins them, each stage's steps after the previous
    stage's last, as analysis.curves joins their TensorBoard series."""
    from analysis import run_report
    from bench.journal import write_synthetic_run

    for index in (1, 2):  # the same held-out prompts in both, as a curriculum's shared test set
        write_synthetic_run(tmp_path / "run" / f"stage-{index}", steps=40, per_step=4, seed=0, eval_every=20)
    alone = run_report.load_journal(tmp_path / "run" / "stage-1", 8, 100, 32)
    joined = run_report.load_journal(tmp_path / "run", 8, 100, 32)
    first = {s.step for s in alone.stats if s.split == "train"}
    steps = sorted({s.step for s in joined.stats if s.split == "train"})
    assert steps[: len(first)] == sorted(first) and max(first) < steps[len(first)] <= max(first) + 1
    assert len(steps) == 2 * len(first) and joined.rows == 2 * alone.rows
    assert {r["step"] for r in joined.samples} > {r["step"] for r in alone.samples}
    assert len(joined.held_out) == len(alone.held_out)  # each prompt followed through both stages' evaluations
    assert all(len({r["step"] for r in records}) == 4 for records in joined.held_out.values())  # 2 evals a stage
