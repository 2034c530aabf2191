"""Reward scoring speed: our scorer against TinyZero's eval-based rules, on the same completions, in one run.

    .venv/bin/python -m bench.rewards [--completions 3000] [--repeats 5] [--guard-seconds 3]

Realistic corpus: Countdown completions as a model writes them (correct, wrong, unformatted; chains of thought
of 300 to 1,000 tokens), scored from the full query (TinyZero prompt + response), as during training.
Adversarial corpus: power and floor-division bombs, 1 MB strings, 10^5 nested parentheses, Unicode digits,
thousands of answer tags, and for every task an unclosed answer over a 1 MB and a 16 MB line of "<b" (the input
that once cost 32 ms per MB), each reported per MB of UTF-8 as well. The baseline runs each adversarial input
in a child process with a time and memory limit, because its eval hangs on some of them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import resource
import statistics
import time
from fractions import Fraction

from reference import tinyzero
from reward_funcs import score_sample

CHARS_PER_TOKEN = 4  # about what Qwen2.5's tokenizer gives on this kind of text
REMARKS = ["Not quite.", "Too big.", "Too small.", "Let me try another way.", "Hmm, close.", "That does not work."]


def random_expression(rng: random.Random, numbers: list[int]) -> tuple[str, Fraction]:
    nodes = [(str(n), Fraction(n)) for n in rng.sample(numbers, len(numbers))]
    while len(nodes) > 1:
        i = rng.randrange(len(nodes) - 1)
        (a, av), (b, bv) = nodes[i], nodes[i + 1]
        op = rng.choice("+-*/" if bv else "+-*")
        value = {"+": av + bv, "-": av - bv, "*": av * bv, "/": av / bv if bv else None}[op]
        nodes[i : i + 2] = [(f"({a} {op} {b})", value)]
    return nodes[0][0][1:-1], nodes[0][1]


def puzzle(rng: random.Random) -> tuple[list[int], int, str]:
    while True:
        numbers = [rng.randint(1, 99) for _ in range(rng.choice([3, 4]))]
        text, value = random_expression(rng, numbers)
        if value.denominator == 1 and 1 <= value < 1000:
            return numbers, int(value), text


def chain_of_thought(rng: random.Random, numbers: list[int], tokens: int) -> str:
    steps = []
    while sum(len(s) for s in steps) < tokens * CHARS_PER_TOKEN:
        a, b = rng.sample(numbers, 2)
        op = rng.choice("+-*")
        value = a + b if op == "+" else a - b if op == "-" else a * b
        steps.append(f"{a} {op} {b} = {value}. {rng.choice(REMARKS)} ")
    return "".join(steps)


def realistic_corpus(n: int, seed: int = 0, tokens: tuple[int, int] = (300, 1000)) -> list[tuple[str, str, dict]]:
    """(query, prompt, label) triples; chains of thought of `tokens` tokens."""
    rng = random.Random(seed)
    corpus = []
    for _ in range(n):
        numbers, target, solution = puzzle(rng)
        prompt = tinyzero.countdown_prompt(numbers, target)
        thought = chain_of_thought(rng, numbers, rng.randint(*tokens))
        kind = rng.random()
        if kind < 0.4:
            ending = f"</think>\n<answer> {solution} </answer><|endoftext|>"
        elif kind < 0.8:
            ending = f"</think>\n<answer> {random_expression(rng, numbers)[0]} + 1 </answer><|endoftext|>"
        else:
            ending = "so the answer must be close to that.<|endoftext|>"
        corpus.append(
            (prompt + " " + thought + ending, prompt, {"task": "countdown", "target": target, "numbers": numbers})
        )
    return corpus


def adversarial_corpus() -> dict[str, tuple[str, str, dict]]:
    def countdown(answer_line: str, numbers: list[int], target: int = 60):
        prompt = tinyzero.countdown_prompt(numbers, target)
        return (
            prompt + " hmm </think>\n" + answer_line,
            prompt,
            {"task": "countdown", "target": target, "numbers": numbers},
        )

    def multiply(response: str):
        prompt = "User: Give me the answer of the following equation: 12 * 34.\nAssistant: <think>"
        return prompt + response, prompt, {"task": "multiply", "numbers": [12, 34], "product": 408}

    def long_line(megabytes: int) -> str:  # an <answer> left open over a line of "<b", closed on the next line
        return "<answer>" + "<b" * (megabytes << 19) + "\n</answer>"

    mb = 1_000_000
    return {
        "power bomb 44**35**19": countdown("<answer>44**35**19</answer>", [44, 35, 19]),
        "power bomb 9**9**9**9": countdown("<answer>9**9**9**9</answer>", [9, 9, 9, 9]),
        "floor-division bomb": countdown("<answer>(99**99**99)//(99**99)</answer>", [99, 99, 99, 99, 99]),
        "power bomb in parentheses": countdown("<answer>((44)**((35)**(19)))</answer>", [44, 35, 19]),
        "1 MB answer of '1+'": countdown("<answer>" + "1+" * (mb // 2) + "1</answer>", [1, 1, 1]),
        "1 MB answer of spaces": countdown("<answer>44 -" + " " * mb + "19 + 35</answer>", [44, 19, 35]),
        "1 MB of one letter": countdown("a" * mb, [44, 19, 35]),
        "1 MB last line of 'x<'": countdown("x<" * (mb // 2), [44, 19, 35]),
        "1 MB of newlines": countdown("\n" * mb, [44, 19, 35]),
        "10^5 nested parentheses": countdown(
            "<answer>" + "(" * 10**5 + "44 - 19 + 35" + ")" * 10**5 + "</answer>", [44, 19, 35]
        ),
        "10^5 unary minus": countdown("<answer>" + "-" * 10**5 + "44 - 19 + 35</answer>", [44, 19, 35]),
        "Unicode digits": countdown("<answer>٤٤ - ١٩ + ٣٥</answer>", [44, 19, 35]),
        "Unicode digits, 1 MB": countdown("<answer>" + "٤" * mb + "</answer>", [44, 19, 35]),
        "5,000 answer tags on the last line": countdown("<answer>44 - 19 + 35</answer> " * 5000, [44, 19, 35]),
        "5,000 unclosed answer tags": countdown("<answer>" * 5000 + "44 - 19 + 35</answer>", [44, 19, 35]),
        "1 MB of answer tags": countdown("<answer>" * (mb // 8) + "</answer>", [44, 19, 35]),
        "multiply: 5,000 answer lines": multiply("<answer>\n</answer>\n" * 2500 + "<answer>408</answer>"),
        "multiply: 1 MB digit answer": multiply("<answer>" + "4" * mb + "</answer>"),
        "multiply: 1 MB of tags, one per line": multiply("<answer>\n" * (mb // 9)),
        **{
            f"{task}: unclosed answer, {size} MB line of '<b'": make(long_line(size))
            for task, make in (("countdown", lambda r: countdown(r, [44, 19, 35])), ("multiply", multiply))
            for size in (1, 16)
        },
    }


# The heaviest input anyone can write is bounded by the rollout length; this one is far beyond it and is
# reported apart from the adversarial worst case.
STRESS = {
    f"multiply: {lines:,} tag lines in {size} MB": lambda lines=lines: (
        "Assistant: " + "<answer>\n</answer>\n" * (lines // 2),
        "Assistant: ",
        {"task": "multiply", "numbers": [12, 34], "product": 408},
    )
    for lines, size in ((110_000, 1), (1_760_000, 16))
}


def baseline(query: str, label: dict) -> float:
    if label["task"] == "countdown":
        return tinyzero.countdown(query, label["target"], label["numbers"])
    return tinyzero.multiply(query, label["product"])


def megabytes(item) -> float:
    return len(item[0].encode("utf-8", "surrogatepass")) / 1e6


def time_ours(item, repeats: int) -> tuple[float, float]:
    """(first call, median of the next `repeats`). The first call on a multi-megabyte input also pays the
    page faults of fresh buffers, until the allocator keeps such sizes around; both are reported."""
    query, prompt, label = item
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        score_sample(query, prompt, label)
        times.append(time.perf_counter() - t)
    return times[0], statistics.median(times[1:])


def _baseline_child(item, conn):
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a bomb must not take the machine down
    t = time.perf_counter()
    try:
        baseline(item[0], item[2])
        conn.send(("ok", time.perf_counter() - t))
    except BaseException as e:  # MemoryError, RecursionError: the trainer would have died
        conn.send((type(e).__name__, time.perf_counter() - t))


def time_baseline_guarded(item, guard_seconds: float) -> str:
    parent, child = multiprocessing.Pipe(duplex=False)
    process = multiprocessing.get_context("fork").Process(target=_baseline_child, args=(item, child))
    process.start()
    if parent.poll(guard_seconds):
        outcome, seconds = parent.recv()
        process.join()
        return f"{seconds * 1e6:12,.0f} us" + ("" if outcome == "ok" else f" ({outcome})")
    process.kill()
    process.join()
    return f"  > {guard_seconds:g} s: killed (hangs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--completions", type=int, default=3000, help="size of the realistic corpus")
    parser.add_argument("--repeats", type=int, default=5, help="timings per adversarial input (median kept)")
    parser.add_argument("--guard-seconds", type=float, default=3.0, help="time limit for the baseline's eval")
    args = parser.parse_args()

    corpus = realistic_corpus(args.completions)
    mean_tokens = statistics.mean(len(q) - len(p) for q, p, _ in corpus) / CHARS_PER_TOKEN
    for query, prompt, label in corpus:  # same verdicts, or the timing means nothing
        assert score_sample(query, prompt, label).reward == baseline(query, label), query[-200:]
    # Interleaved, completion by completion and in alternating order, so that a machine shared with other work
    # slows both alike (timed one corpus after the other, the ratio swung from 0.65x to 1.07x between runs).
    scorers = {
        "ours": lambda q, p, lab: score_sample(q, p, lab),
        "eval baseline": lambda q, p, lab: baseline(q, lab),
    }
    timings = {name: [] for name in scorers}
    for index, (query, prompt, label) in enumerate(corpus):
        for name in list(scorers)[:: 1 if index % 2 else -1]:
            t = time.perf_counter()
            scorers[name](query, prompt, label)
            timings[name].append(time.perf_counter() - t)
    print(
        f"Realistic Countdown corpus: {len(corpus)} completions, mean {mean_tokens:.0f} tokens, "
        f"{sum(score_sample(*c).correct for c in corpus)} correct"
    )
    for name, per in timings.items():
        print(
            f"  {name:14s} mean {statistics.mean(per) * 1e6:7.1f} us   median {statistics.median(per) * 1e6:7.1f} us"
            f"   worst {max(per) * 1e6:7.1f} us per completion"
        )
    ratio = statistics.mean(timings["ours"]) / statistics.mean(timings["eval baseline"])
    print(f"  ratio ours / eval baseline (mean): {ratio:.2f}x")

    print(
        f"\nAdversarial corpus (ours: first call, then median of {args.repeats}; baseline: one run in a child "
        f"process, guarded at {args.guard_seconds:g} s and 2 GB)"
    )
    print(f"  {'input':48s} {'ours, first':>12s} {'ours':>12s} {'ours per MB':>12s}   {'eval baseline':>24s}")
    corpus = adversarial_corpus()
    ours = {name: time_ours(item, args.repeats) for name, item in corpus.items()}  # before any fork
    # per MB of UTF-8, for the inputs of 1 MB and more (on a small one it is the cost of a call)
    per_mb = {name: warm / megabytes(corpus[name]) for name, (_, warm) in ours.items() if megabytes(corpus[name]) >= 1}
    for name, item in corpus.items():
        first, warm = ours[name]
        print(
            f"  {name:48s} {first * 1e6:9,.0f} us {warm * 1e6:9,.0f} us "
            + (f"{per_mb[name] * 1e3:6.2f} ms/MB   " if name in per_mb else " " * 15)
            + f"{time_baseline_guarded(item, args.guard_seconds):>24s}"
        )
    worst, worst_first = max(w for _, w in ours.values()), max(f for f, _ in ours.values())
    print(f"  worst case, ours: {worst * 1e6:,.0f} us ({worst_first * 1e6:,.0f} us on a first call)")
    name = max(per_mb, key=per_mb.get)
    print(f"  worst per MB, ours (inputs of 1 MB and more): {per_mb[name] * 1e3:.2f} ms per MB ({name})")
    print("\nStress, beyond any rollout: an <answer> left open on every other line, so every tag is looked at")
    for name, make in STRESS.items():
        item = make()
        first, warm = time_ours(item, args.repeats)
        print(
            f"  {name}: ours {warm * 1e6:,.0f} us, {warm / megabytes(item) * 1e3:.2f} ms per MB "
            f"({first * 1e6:,.0f} us first call)"
        )


if __name__ == "__main__":
    main()
