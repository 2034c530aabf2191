"""The benchmarks still run and still check what they claim to check, at toy sizes (their timings are printed, never
asserted: speed is read off `make bench`)."""

import re
import subprocess
import sys

from testkit import REPO


def run_bench(*argv):
    done = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_reward_bench_times_both_scorers_and_guards_the_baseline():
    out = run_bench("bench.rewards", "--completions", "40", "--repeats", "1", "--guard-seconds", "2")
    assert re.search(r"ratio ours / eval baseline \(mean\): \d+\.\d\dx", out), out
    killed = [line.split("  ")[1] for line in out.splitlines() if "killed (hangs)" in line]
    assert killed == [
        "power bomb 44**35**19",
        "power bomb 9**9**9**9",
        "floor-division bomb",
        "power bomb in parentheses",
    ]
    assert re.search(r"worst case, ours: [\d,]+ us", out), out
    # The worst case per MB, for every task, at 1 MB and 16 MB, and the stress case beside it.
    for task in ("countdown", "multiply"):
        for size in (1, 16):
            assert re.search(rf"\n  {task}: unclosed answer, {size} MB line of '<b' .* \d+\.\d\d ms/MB ", out), out
    assert re.search(r"worst per MB, ours \(inputs of 1 MB and more\): \d+\.\d\d ms per MB \(", out), out
    assert re.search(r"tag lines in 16 MB: ours [\d,]+ us, \d+\.\d\d ms per MB", out), out


def test_service_bench_finds_no_errors_and_no_wrong_scores():
    out = run_bench("bench.reward_service", "--requests", "200", "--concurrency", "8", "--rounds", "1")
    assert out.count("rewards differing from file mode: 0;") == 2, out
    assert len(re.findall(r"errors 0\n", out)) == 4, out
    assert "0 5xx, 1000 4xx, 0 dropped connections, 0 wrong scores among the 9,000 good" in out, out
    assert len(re.findall(r"beside slow clients .* errors 0 of 200\n", out)) == 2, out  # good clients beside slow ones
    assert len(re.findall(r"ratio beside / alone: throughput \d+\.\d\dx, p99 \d+\.\d\dx", out)) == 2, out
    assert re.search(r"In process .*: [\d,]+ samples/s", out), out
