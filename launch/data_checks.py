"""Preflight's data and reward checks: every dataset file of a resolved recipe, one file at a time, and the HTTP
reward services it names.

  data     files exist, every label parses, prompts match data.apply_chat_template and fit the length budget,
           data.prompt_probs fits the training files,
           the test split's reference solutions score 1.0 through the reward file loaded as OpenRLHF loads it,
           the train split fills a rollout batch
  reward   an HTTP reward (when the recipe uses a URL) answers a probe correctly
"""

from __future__ import annotations

import json
from pathlib import Path

from data_tools.output import count_rows, dataset_files, read_rows
from data_tools.templates import render_prompt
from launch.check import Check, fail, failed, ok, warn
from launch.recipe_checks import dataset_specs
from reward_funcs import TASKS, LabelError, load_reward_file, parse_label
from reward_funcs.tokens import mask_token, token_into_url

LABEL_ROWS_CHECKED = 5_000  # of each split; all of the test split's reference solutions are scored
CHARS_PER_TOKEN = 3.0  # conservative for these prompts (Qwen2.5 reads about 3.5 to 4 characters a token)


def reference_completion(label: dict) -> str | None:
    """A response that answers `label` correctly, in TinyZero's format, or None when the label holds no answer."""
    answer = TASKS[label["task"]].reference_answer(label)
    return None if answer is None else f" ... </think>\n<answer>{answer}</answer><|endoftext|>"


def reference_query(prompt, label: str) -> tuple[str | None, str]:
    """(prompt + a correct response, or None; the prompt as the model sees it), for a dataset row."""
    text = render_prompt(prompt)
    completion = reference_completion(json.loads(label))
    return (None if completion is None else text + completion), text


# ---- one file ------------------------------------------------------------------------------------------------


def _rows_present(rows, args, name) -> list[Check]:
    return [] if rows else [fail("data", f"{name} has no rows: generate it again, or fix the path")]


def _prompt_column(rows, args, name) -> list[Check]:
    if args.data.input_key in rows[0]:
        return []
    return [
        fail(
            "data",
            f"{name} has no column {args.data.input_key!r} (data.input_key); it has "
            f"{', '.join(map(repr, rows[0]))}: set data.input_key to the prompt column",
        )
    ]


def _labels_parse(rows, args, name) -> list[Check]:
    bad = []
    for row in rows:
        try:
            label = parse_label(row.get(args.data.label_key, ""))
            TASKS[label["task"]].check_label(label)
        except LabelError as e:
            bad.append(str(e))
    return [fail("data", f"{name}: {len(bad)} of {len(rows)} labels cannot be scored, e.g. {bad[0]}")] if bad else []


def _template_matches(rows, args, name) -> list[Check]:
    chat = isinstance(rows[0][args.data.input_key], list)
    if chat and not args.data.apply_chat_template:
        return [
            fail(
                "data",
                f"{name} holds chat messages but data.apply_chat_template is off: OpenRLHF would pass the "
                "list itself as the prompt; set data.apply_chat_template true, or use --template base / "
                "qwen-instruct",
            )
        ]
    if not chat and args.data.apply_chat_template:
        return [
            warn(
                "data",
                f"{name} holds rendered prompts and data.apply_chat_template is on: each prompt is wrapped "
                "once more as a user message; make the data with --template chat, or turn it off",
            )
        ]
    return []


def _prompts_fit(rows, args, name) -> list[Check]:
    budget = args.data.max_len - (args.rollout.max_new_tokens or 0)
    longest = max(len(render_prompt(r[args.data.input_key])) for r in rows)
    if longest / CHARS_PER_TOKEN <= budget:
        return []
    return [
        fail(
            "data",
            f"{name}: prompts up to ~{longest / CHARS_PER_TOKEN:.0f} tokens exceed the "
            f"budget data.max_len - rollout.max_new_tokens = {budget}: raise data.max_len",
        )
    ]


def _references_score(rows, args, repo, name) -> list[Check]:
    files = [u for u in args.reward.remote_url or [] if u.endswith(".py")]
    if not files:
        return []
    reward = load_reward_file(repo / files[0])
    missed = scored = 0
    for row in rows:
        query, prompt = reference_query(row[args.data.input_key], row[args.data.label_key])
        if query is None:
            continue
        scored += 1
        missed += reward([query], [prompt], [row[args.data.label_key]])["rewards"][0].item() != 1.0
    if missed:
        return [
            fail(
                "data",
                f"{name}: {missed} of {scored} reference solutions do not score 1.0 through {files[0]}: "
                "the dataset and the reward disagree; regenerate the data",
            )
        ]
    return [ok("data", f"{name}: all {scored} reference solutions score 1.0 through {files[0]}")]


def _missing(recipe, repo: Path, path: Path, name: str) -> Check:
    planned = [spec["out"] for spec in dataset_specs(recipe.meta) if spec.get("out")]
    if any(path.is_relative_to(repo / out) for out in planned):
        return warn("data", f"{name} does not exist yet: `train` generates it from recipe.dataset")
    return fail(
        "data",
        f"{name} does not exist and no recipe.dataset makes it: generate it "
        "with python -m data_tools.countdown / multiply, or fix the path",
    )


def check_file(recipe, args, repo: Path, split: str, path: Path) -> tuple[list[Check], int]:
    """The findings for one dataset file, and the prompts it holds (0 when it cannot be used)."""
    name = str(path.relative_to(repo)) if path.is_relative_to(repo) else str(path)
    if not path.is_file():
        return [_missing(recipe, repo, path, name)], 0
    rows = read_rows(path, None if split == "test" else LABEL_ROWS_CHECKED)
    checks = []
    for finder in (_rows_present, _prompt_column, _labels_parse, _template_matches, _prompts_fit):
        checks += finder(rows, args, name)
        if failed(checks):
            return checks, 0
    if split == "test":
        checks += _references_score(rows, args, repo, name)
    budget = args.data.max_len - (args.rollout.max_new_tokens or 0)
    checks.append(ok("data", f"{name}: {len(rows):,} rows checked, labels parse, prompts fit {budget} tokens"))
    return checks, count_rows(path) if len(rows) == LABEL_ROWS_CHECKED else len(rows)


# ---- all files -----------------------------------------------------------------------------------------------


def check_data(recipe, args, repo: Path) -> list[Check]:
    if not args.data.label_key:
        return [fail("data", "data.label_key is not set: OpenRLHF would send empty labels; set it to label")]
    checks = check_blend(args, repo)
    if failed(checks):
        return checks
    train_rows = 0
    for split, spec in (("train", args.data.prompt_dataset), ("test", args.eval.dataset)):
        for path in dataset_files(spec, repo):
            found, rows = check_file(recipe, args, repo, split, path)
            checks += found
            train_rows += rows if split == "train" else 0
    prompts = min(train_rows, args.data.max_samples)
    if 0 < prompts < args.rollout.batch_size:
        checks.append(
            warn(
                "data",
                f"{prompts} training prompts, fewer than one rollout batch ({args.rollout.batch_size}): every step "
                "gets only those; lower rollout.batch_size or make more data",
            )
        )
    return checks or [warn("data", "no dataset in the recipe")]


def check_blend(args, repo: Path) -> list[Check]:
    """data.prompt_probs: one probability per training file, each above 0, summing to 1, as OpenRLHF's
    blending_datasets (an assertion) and datasets' interleave_datasets (numpy's choice) need; without them the
    files are concatenated. With them OpenRLHF draws rows file by file at these odds until every file has been
    used up once (files used up early start again: they are oversampled), and keeps the first data.max_samples."""
    if not args.data.prompt_probs:
        return []
    files = dataset_files(args.data.prompt_dataset, repo)
    try:
        probs = [float(p) for p in args.data.prompt_probs.split(",")]
    except ValueError:
        return [fail("data", f"data.prompt_probs {args.data.prompt_probs!r}: write numbers separated by commas")]
    if len(probs) != len(files):
        return [
            fail(
                "data",
                f"data.prompt_probs gives {len(probs)} probabilities for {len(files)} training file(s): give one per "
                "file of data.prompt_dataset, in the same order",
            )
        ]
    if min(probs) <= 0 or abs(sum(probs) - 1) > 1e-6:
        return [fail("data", f"data.prompt_probs {args.data.prompt_probs}: each above 0, summing to 1")]
    mix = ", ".join(f"{p:g} {path.parent.name}/{path.name}" for p, path in zip(probs, files, strict=True))
    return [ok("data", f"training prompts blended by OpenRLHF: {mix}, the first {args.data.max_samples:,} kept")]


def check_http_reward(args, repo: Path, token: str | None = None) -> list[Check]:
    urls = [u for u in (args.reward.remote_url or []) if u.startswith("http")]
    if not urls:
        return []
    import urllib.request

    key = args.data.label_key or "label"
    tests = dataset_files(args.eval.dataset, repo)
    rows = read_rows(tests[0], 200) if tests else []
    queries = [(reference_query(r[args.data.input_key], r[key]), r[key]) for r in rows]
    queries = [(query, prompt, label) for (query, prompt), label in queries if query is not None]
    if not queries:
        return [warn("reward", "no test row with a reference solution to probe the HTTP reward with")]
    query, prompt, label = queries[0]
    body = json.dumps({"query": [query], "prompts": [prompt], "labels": [label]}).encode()
    checks = []
    for url in map(mask_token, urls):
        try:
            request = urllib.request.Request(token_into_url(url, token), body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                rewards = json.loads(response.read())["rewards"]
        except Exception as e:  # any failure is the same finding: the service cannot be used
            checks.append(
                fail("reward", f"{url} did not answer the probe ({e}): start it with python -m reward_funcs.server")
            )
            continue
        checks.append(
            ok("reward", f"{url} answers")
            if rewards == [1.0]
            else fail("reward", f"{url} scored a reference solution {rewards}, expected [1.0]")
        )
    return checks
