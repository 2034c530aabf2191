"""Reward service throughput under OpenRLHF's request pattern, against the HTTP ceiling and in-process scoring.

    .venv/bin/python -m bench.reward_service [--requests 20000] [--concurrency 64] [--workers 1] [--rounds 3]

A client process sends what OpenRLHF's engines send: one POST per sample, each through a fresh aiohttp
session, 64 at a time, realistic Countdown completions of about 1,000 tokens. Measured in one run: our service;
the same stack and settings with a handler that parses the body and returns a constant (the ceiling of the HTTP
stack here); scoring the same samples in-process through the reward file (file mode). A second phase sends
10,000 requests, one in ten malformed, and counts 5xx answers, dropped connections and wrong scores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MALFORMED = [
    b"{not json",
    b'{"query": ["x"], "prompts": ["x"]}',
    b'{"query": ["x", "y"], "prompts": ["x"], "labels": ["{}"]}',
    b'{"query": ["x"], "prompts": ["x"], "labels": ["{\\"task\\": \\"sudoku\\"}"]}',
    b'{"query": [1], "prompts": ["x"], "labels": [{"task": "countdown"}]}',
]


from launch.cluster import free_port  # noqa: E402


def start(command: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command} did not start: {process.stderr.read().decode()[-500:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=60)


def client(url: str, bodies: list[bytes], concurrency: int, keep_alive: bool, result: multiprocessing.Queue) -> None:
    """Runs in its own process: OpenRLHF's pattern (a fresh session per POST), or one kept-alive session per
    concurrent client."""
    import aiohttp

    async def run():
        latencies, statuses, answers, errors = [], [], [None] * len(bodies), 0
        queue = iter(range(len(bodies)))
        timeout = aiohttp.ClientTimeout(total=180)

        async def post(session, i):
            async with session.post(url, data=bodies[i], headers={"Content-Type": "application/json"}) as r:
                payload = await r.read()
                statuses.append(r.status)
                if r.status == 200:
                    answers[i] = json.loads(payload)["rewards"]

        async def worker():
            nonlocal errors
            kept = aiohttp.ClientSession(timeout=timeout) if keep_alive else None
            for i in queue:
                t = time.perf_counter()
                try:
                    if kept:
                        await post(kept, i)
                    else:
                        async with aiohttp.ClientSession(timeout=timeout) as session:
                            await post(session, i)
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - t)
            if kept:
                await kept.close()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, latencies, statuses, answers, errors

    result.put(asyncio.run(run()))


def drive(url: str, bodies: list[bytes], concurrency: int, keep_alive: bool = False):
    queue = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(
        target=client, args=(url, bodies, concurrency, keep_alive, queue)
    )
    process.start()
    outcome = queue.get()
    process.join()
    return outcome


def rate(n: int, outcome) -> float:
    return n / outcome[0]


def report(name: str, n: int, outcomes: list) -> float:
    """The round with the median throughput; errors summed over all rounds."""
    outcome = sorted(outcomes, key=lambda o: rate(n, o))[len(outcomes) // 2]
    lat = sorted(outcome[1])
    errors = sum(o[4] + sum(s != 200 for s in o[2]) for o in outcomes)
    print(
        f"  {name:34s} {rate(n, outcome):8,.0f} samples/s   p50 {lat[len(lat) // 2] * 1e3:6.1f} ms   "
        f"p99 {lat[int(len(lat) * 0.99)] * 1e3:6.1f} ms   errors {errors}"
    )
    return rate(n, outcome)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server, interleaved")
    args = parser.parse_args()

    from bench.rewards import realistic_corpus
    from reward_funcs import score_sample

    corpus = realistic_corpus(2_000, seed=1, tokens=(900, 1100))
    samples = [corpus[i % len(corpus)] for i in range(args.requests)]
    bodies = [
        json.dumps({"query": [q], "prompts": [p], "labels": [json.dumps(label)]}).encode() for q, p, label in samples
    ]
    expected = [score_sample(q, p, label).reward for q, p, label in samples]
    size = statistics.mean(len(b) for b in bodies)
    print(
        f"{args.requests:,} requests of one sample ({size / 1e3:.1f} kB each, completions of ~1,000 tokens), "
        f"{args.concurrency} concurrent clients; {args.workers} server worker(s)"
    )

    uvicorn = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--workers",
        str(args.workers),
    ]
    for keep_alive, pattern in (
        (False, "OpenRLHF's pattern, a fresh session per POST"),
        (True, "kept-alive sessions, one per client"),
    ):
        print(f"{pattern} ({args.rounds} rounds, each server in turn; the median round shown):")
        constant_port, our_port = free_port(), free_port()
        constant = start([*uvicorn, "--port", str(constant_port), "bench.constant_service:create"], constant_port)
        try:
            service = start(
                [sys.executable, "-m", "reward_funcs.server", "--port", str(our_port), "--workers", str(args.workers)],
                our_port,
            )
        except RuntimeError:
            stop(constant)
            raise
        constant_url, our_url = (f"http://127.0.0.1:{port}/get_reward" for port in (constant_port, our_port))
        try:
            ceiling_runs, our_runs = [], []
            for _ in range(args.rounds):  # interleaved, so drift in the machine's speed hits both alike
                ceiling_runs.append(drive(constant_url, bodies, args.concurrency, keep_alive))
                our_runs.append(drive(our_url, bodies, args.concurrency, keep_alive))
            ceiling = report("constant handler (HTTP ceiling)", args.requests, ceiling_runs)
            ours = report("reward service", args.requests, our_runs)
            wrong = sum(a != [e] for run in our_runs for a, e in zip(run[3], expected, strict=True) if a is not None)
            ratios = " ".join(f"{rate(1, o) / rate(1, c):.2f}x" for o, c in zip(our_runs, ceiling_runs, strict=True))
            print(
                f"  rewards differing from file mode: {wrong};  ratio service / ceiling: {ours / ceiling:.2f}x "
                f"(round by round: {ratios})"
            )
            if not keep_alive:
                continue
            mixed = [
                MALFORMED[i // 10 % len(MALFORMED)] if i % 10 == 9 else bodies[i % len(bodies)] for i in range(10_000)
            ]
            seconds, latencies, statuses, answers, errors = drive(our_url, mixed, args.concurrency, keep_alive)
            good = [i for i in range(len(mixed)) if i % 10 != 9]
            print(
                f"  malformed phase: 10,000 requests, 1,000 malformed: {sum(s >= 500 for s in statuses)} 5xx, "
                f"{sum(400 <= s < 500 for s in statuses)} 4xx, {errors} dropped connections, "
                f"{sum(answers[i] != [expected[i % len(expected)]] for i in good)} wrong scores among the 9,000 good"
            )
        finally:
            stop(constant)
            stop(service)

    from reward_funcs.openrlhf_reward import reward_func

    start_time = time.perf_counter()
    for q, p, label in samples:
        reward_func([q], [p], [json.dumps(label)])
    in_process = args.requests / (time.perf_counter() - start_time)
    print(f"In process (file mode, the reward file called directly): {in_process:,.0f} samples/s")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(REPO))
    main()
