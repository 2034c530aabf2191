"""How long the run report takes on a whole run: TinyZero's 19,200 steps of 256 samples, against a tenth of it.

    python -m bench.run_report                                   # full size, and the baseline at 1/10 of the steps
    python -m bench.run_report --steps 1920 --per-step 64        # a quick look
    python -m bench.run_report --browser                         # also the page's own times, in headless Chromium
    python -m bench.run_report --screenshot docs/run-report.png  # and the README's picture of the page

Writes a synthetic run folder of each size (bench.journal: a journal of every scored sample and OpenRLHF's
TensorBoard files), then times, in this process, reading the journal (analysis.journal.load_run), building the
page's data (analysis.run_report.build: curves, aha, the bounded samples) and rendering and writing the HTML; prints
each figure, the HTML's size, and the ratio of the full run's times to the baseline's. The report must take under
a minute on 2 cores and stay under ~20 MB whatever the run's length. --browser opens the full-size page in
headless Chromium (/usr/bin/chromium, through playwright) and prints how long it takes to be ready, to show another
step and to search every embedded sample; --screenshot also saves a PNG of it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from analysis import journal, run_report
from bench.journal import write_synthetic_run

CHROMIUM = Path("/usr/bin/chromium")


def timed(what, *args, **kwargs):
    start = time.perf_counter()
    result = what(*args, **kwargs)
    return result, time.perf_counter() - start


def measure(root: Path, steps: int, per_step: int) -> dict:
    """Write a synthetic run of `steps` x `per_step` samples under `root`, then time each stage of its report."""
    run = root / f"synthetic-{steps}" / "20260101-000000"
    _, written = timed(write_synthetic_run, run, steps=steps, per_step=per_step, seed=0)
    _, load = timed(journal.load_run, run)
    data, build = timed(run_report.build, [run])
    text, render = timed(run_report.render, data)
    out = run / "report.html"
    _, write = timed(run_report.write, out, text)
    return {
        "run": run,
        "out": out,
        "steps": steps,
        "samples": steps * per_step,
        "write_run": written,
        "load": load,
        "build": build,
        "render": render + write,
        "total": build + render + write,
        "mb": out.stat().st_size / 1e6,
        "aha": data["runs"][0]["aha"],
        "data": data,
    }


def show(label: str, m: dict) -> None:
    aha = f"aha at step {m['aha']['step']}" if m["aha"]["found"] else "no aha found"
    print(
        f"{label:>9}: {m['steps']:>6,} steps, {m['samples']:>10,} samples | synthetic run written in "
        f"{m['write_run']:6.1f} s | journal read {m['load']:6.2f} s | report built {m['build']:6.2f} s (journal read "
        f"included), rendered and written {m['render']:5.2f} s | report {m['total']:6.2f} s, {m['mb']:5.1f} MB | {aha}"
    )


def open_page(browser, page: Path, height: int):
    view = browser.new_page(viewport={"width": 1400, "height": height}, device_scale_factor=1)
    start = time.perf_counter()
    view.goto(page.as_uri())
    view.wait_for_selector("body[data-ready=true]", timeout=120_000)
    return view, time.perf_counter() - start


def in_browser(page: Path, data: dict, png: Path | None) -> None:
    """Open the page in headless Chromium; print how long it takes to be ready, to show another step and to search
    every embedded sample; with `png`, save the top of the page (the aha, the curves, and the sample browser at the
    first step after the aha where most samples shown are correct) as a PNG."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        view, ready = open_page(browser, page, 2000)
        samples = data["runs"][0]["samples"]["train"]
        shown = after_aha(samples, data["runs"][0]["aha"])
        step = timed_js(
            view,
            f"() => {{ const s = document.getElementById('step-slider'); s.value = {shown}; "
            "s.dispatchEvent(new Event('input')); }",
        )
        search = timed_js(view, "() => { state.query = 'let me check'; drawSamples(); state.query = ''; }")
        print(
            f"     page: ready in {ready:.2f} s (parse and draw), another step shown in {step * 1e3:.0f} ms, a search "
            f"over all {sum(map(len, samples['by_step'].values())):,} embedded samples in {search * 1e3:.0f} ms"
        )
        if png:  # the correct answers of that step, phrases and answers highlighted
            png.parent.mkdir(parents=True, exist_ok=True)
            view.select_option("#outcome", "correct")
            view.screenshot(path=str(png), full_page=False)
        browser.close()


def after_aha(samples: dict, aha: dict) -> int:
    """The slider's index of the first embedded step after the aha where most samples shown are correct and search
    (show a behaviour), or the last one."""
    start = aha["step"] if aha["found"] else 0
    for index, step in enumerate(samples["steps"]):
        shown = samples["by_step"][str(step)]
        correct = sum(s["correct"] for s in shown) * 2 > len(shown)
        if step >= start and correct and sum(bool(s["behaviours"]) for s in shown) * 2 > len(shown):
            return index
    return len(samples["steps"]) - 1


def timed_js(view, script: str) -> float:
    start = time.perf_counter()
    view.evaluate(script)
    view.evaluate("() => new Promise(requestAnimationFrame)")  # until the next frame is drawn
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=19_200, help="steps of the full-size run (default: TinyZero's)")
    parser.add_argument("--per-step", type=int, default=256, help="samples per step (default: 256)")
    parser.add_argument("--browser", action="store_true", help="also time the page in headless Chromium")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the full-size run's page here (and --browser)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-run-report-"))
    try:
        baseline = measure(root, max(1, args.steps // 10), args.per_step)
        show("baseline", baseline)
        full = measure(root, args.steps, args.per_step)
        show("full", full)
        print(
            f"    ratio: full / baseline = {full['load'] / baseline['load']:.1f}x to read the journal, "
            f"{full['total'] / baseline['total']:.1f}x for the report, "
            f"for {args.steps / baseline['steps']:.0f}x the steps"
        )
        if args.browser or args.screenshot:
            in_browser(full["out"], full["data"], args.screenshot)
        if args.screenshot:
            print(f"    screenshot: {args.screenshot}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
