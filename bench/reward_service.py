"""Reward service throughput under OpenRLHF's request pattern, against the HTTP ceiling and in-process scoring.

    .venv/bin/python -m bench.reward_service [--requests 20000] [--concurrency 64] [--workers 1] [--rounds 3]
        [--slow-clients 1200]

A client process sends what OpenRLHF's engines send: one POST per sample, each through a fresh aiohttp
session, 64 at a time, realistic Countdown completions of about 1,000 tokens. Measured in one run: our service;
the same stack and settings with a handler that parses the body and returns a constant (the ceiling of the HTTP
stack here); scoring the same samples in-process through the reward file (file mode). A second phase sends
10,000 requests, one in ten malformed, and counts 5xx answers, dropped connections and wrong scores. A third
runs the same load beside 1,200 slow or idle clients (five in six idle, the others dribbling their headers a
byte every half second or stopping half-way through a 1 MB body; each reconnects half a second after the service
closes it) against a service limited to 1,024 open files (`ulimit -n 1024`), interleaved with rounds of the load
alone on the same service, and reports the good clients' throughput and p99 against the load alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
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


def start(command: list[str], port: int, open_files: int | None = None) -> subprocess.Popen:
    """The server, once it answers HTTP (any status: the constant handler has no /health); `open_files` caps its
    open-file limit, as `ulimit -n` would."""
    import resource
    import urllib.error
    import urllib.request

    limit = open_files and min(open_files, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    process = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))) if limit else None,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
            return process
        except urllib.error.HTTPError:  # an answer all the same
            return process
        except OSError:
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


SLOW_HEAD = b"POST /get_reward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
HALF_BODY = SLOW_HEAD + b"Content-Length: %d\r\n\r\n%s" % (1 << 20, b"x" * (1 << 19))


def slow_clients(port: int, kinds: dict[str, int], stop: multiprocessing.Event, result: multiprocessing.Queue) -> None:
    """Runs in its own process until `stop`: connections that stay idle, dribble their headers a byte every half
    second, or stop half-way through a 1 MB body; each reconnects half a second after the service closes it.
    Puts how their connections ended."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16384)), hard))
    ended: dict[str, int] = {}

    async def dribble(writer: asyncio.StreamWriter) -> None:
        for i in range(len(SLOW_HEAD)):
            writer.write(SLOW_HEAD[i : i + 1])
            await asyncio.sleep(0.5)

    async def one(kind: str) -> None:
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                ended["refused"] = ended.get("refused", 0) + 1
                await asyncio.sleep(0.5)
                continue
            dribbling = None
            try:
                if kind == "half body":
                    writer.write(HALF_BODY)
                elif kind == "dribbled headers":
                    dribbling = asyncio.ensure_future(dribble(writer))
                answer = await reader.read(64)
                how = answer[9:12].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"
            except OSError:
                how = "reset"
            finally:
                if dribbling:
                    dribbling.cancel()
                writer.close()
            ended[how] = ended.get(how, 0) + 1
            await asyncio.sleep(0.5)

    async def run():
        tasks = [asyncio.ensure_future(one(kind)) for kind, n in kinds.items() for _ in range(n)]
        await asyncio.get_running_loop().run_in_executor(None, stop.wait, 3600)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(run())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.put((ended, usage.ru_utime + usage.ru_stime))


def drive_beside_slow_clients(url: str, bodies: list[bytes], concurrency: int, keep_alive: bool, kinds: dict):
    """The load of `drive`, with the slow clients connected (and reconnecting) from 2 s before it to its end; returns
    its outcome, how the slow connections ended, and the CPU seconds their process took (from the same cores)."""
    context = multiprocessing.get_context("spawn")
    stop, ended = context.Event(), context.Queue()
    port = int(url.split(":")[2].split("/")[0])
    slow = context.Process(target=slow_clients, args=(port, kinds, stop, ended))
    slow.start()
    try:
        time.sleep(2)  # all connected, and a few already closed and back
        outcome = drive(url, bodies, concurrency, keep_alive)
    finally:
        stop.set()
    how, cpu = ended.get(timeout=120)
    slow.join()
    return outcome, how, cpu


def rate(n: int, outcome) -> float:
    return n / outcome[0]


def p99(outcome) -> float:
    latencies = sorted(outcome[1])
    return latencies[int(len(latencies) * 0.99)]


def answered_rate(outcome) -> float:
    return sum(s == 200 for s in outcome[2]) / outcome[0]


def median_round(outcomes: list, speed):
    return sorted(outcomes, key=speed)[len(outcomes) // 2]


def report(name: str, n: int, outcomes: list, answered: bool = False) -> float:
    """The round with the median throughput; errors summed over all rounds. `answered`: throughput counts the
    requests answered 200 only, and errors are out of how many requests."""
    speed = answered_rate if answered else (lambda o: rate(n, o))
    outcome = median_round(outcomes, speed)
    lat = sorted(outcome[1])
    errors = sum(o[4] + sum(s != 200 for s in o[2]) for o in outcomes)
    print(
        f"  {name:{40 if answered else 34}s} {speed(outcome):8,.0f} samples/s   p50 {lat[len(lat) // 2] * 1e3:6.1f} ms"
        f"   p99 {p99(outcome) * 1e3:6.1f} ms   errors {errors}" + (f" of {n * len(outcomes):,}" if answered else "")
    )
    return speed(outcome)


def closed_by_service(url: str) -> str:
    """The service's own count of the connections it closed, by reason, from /metrics."""
    import urllib.request

    with urllib.request.urlopen(url.replace("/get_reward", "/metrics"), timeout=30) as r:
        lines = [line for line in r.read().decode().splitlines() if line.startswith("reward_connections_closed")]
    found = {line.split('"')[1]: int(float(line.split()[-1])) for line in lines}
    return ", ".join(f"{reason} {n:,}" for reason, n in sorted(found.items())) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server, interleaved")
    parser.add_argument("--slow-clients", type=int, default=1200, help="slow or idle clients beside the load")
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

    slow = args.slow_clients
    kinds = {"idle": slow - 2 * (slow // 12), "dribbled headers": slow // 12, "half body": slow // 12}
    print(
        f"Beside {slow:,} slow or idle clients ({kinds['idle']:,} idle, {kinds['dribbled headers']:,} dribbling their "
        f"headers, {kinds['half body']:,} stopping half-way through a body), the service limited to 1,024 open files "
        f"({args.rounds} rounds, each with the load alone first; the median round shown):"
    )
    for keep_alive, pattern in ((False, "OpenRLHF's pattern"), (True, "kept-alive sessions")):
        port = free_port()
        command = [sys.executable, "-m", "reward_funcs.server", "--port", str(port), "--workers", str(args.workers)]
        service = start(command, port, open_files=1024)
        url = f"http://127.0.0.1:{port}/get_reward"
        try:
            alone, beside, ended, cpu = [], [], {}, 0.0
            for _ in range(args.rounds):
                alone.append(drive(url, bodies, args.concurrency, keep_alive))
                outcome, how, seconds = drive_beside_slow_clients(url, bodies, args.concurrency, keep_alive, kinds)
                beside.append(outcome)
                ended = {k: ended.get(k, 0) + how.get(k, 0) for k in {*ended, *how}}
                cpu += seconds
            throughput = report(f"{pattern}: load alone", args.requests, alone, answered=True)
            throughput_beside = report(f"{pattern}: beside slow clients", args.requests, beside, answered=True)
            p99_ratio = p99(median_round(beside, answered_rate)) / p99(median_round(alone, answered_rate))
            print(
                f"  ratio beside / alone: throughput {throughput_beside / throughput:.2f}x, p99 {p99_ratio:.2f}x;  "
                "slow connections ended: "
                + ", ".join(f"{how} {n:,}" for how, n in sorted(ended.items()))
                + f";  closed by the service: {closed_by_service(url)};  the slow clients' own CPU: "
                f"{cpu / sum(o[0] + 2 for o in beside):.0%} of a core"
            )
        finally:
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
