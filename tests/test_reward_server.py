"""The reward service over real HTTP on loopback: OpenRLHF's own client against it, every kind of bad input,
metrics, and a clean stop on SIGTERM."""

import http.client
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import torch
from openrlhf.utils.agent import SingleTurnAgentExecutor
from testkit import CASES, REPO, REWARD_FILE, countdown_label, run_executor

from launch.cluster import free_port


def start_server(*args):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "reward_funcs.server", "--port", str(port), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as r:
                assert json.loads(r.read()) == {"status": "ok"}
                return process, url
        except OSError:  # refused, reset, or timed out while it starts
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(process.communicate()[1])


@pytest.fixture(scope="module")
def server():
    process, url = start_server("--max-body-mb", "1")
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def post(url, body, path="/get_reward", content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def connect(url) -> http.client.HTTPConnection:
    """A raw connection to the service, for requests urllib cannot make (chunked, half sent, oversized)."""
    host, port = url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=30)


GOOD = {
    "query": ["Assistant: </think>\n<answer>44 - 19 + 35</answer>"],
    "prompts": [None],
    "labels": [countdown_label([44, 19, 35], 60)],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_openrlhfs_client_gets_what_the_file_gives(server, case, char_tokenizer, stand_in_engine):
    prompt, label, completion, max_tokens, *_ = CASES[case]
    over_http = run_executor(
        SingleTurnAgentExecutor(server + "/get_reward"),
        prompt,
        label,
        stand_in_engine(completion),
        char_tokenizer,
        max_tokens,
    )
    from_file = run_executor(
        SingleTurnAgentExecutor(str(REWARD_FILE)),
        prompt,
        label,
        stand_in_engine(completion),
        char_tokenizer,
        max_tokens,
    )
    assert torch.tensor(over_http["reward"]).flatten().tolist() == from_file["reward"].tolist()
    assert torch.tensor(over_http["scores"]).flatten().tolist() == from_file["scores"].tolist()
    for key in ("accuracy", "format"):
        assert over_http["extra_logs"][key] == from_file["extra_logs"][key].tolist()


def test_bare_url_and_batches(server):
    status, answer = post(server, {key: value * 3 for key, value in GOOD.items()}, path="/")
    assert status == 200 and answer["rewards"] == [1.0, 1.0, 1.0] and answer["extra_logs"]["format"] == [1.0] * 3


def test_several_urls_round_robin(server, char_tokenizer, stand_in_engine):
    other, other_url = start_server()
    try:
        executor = SingleTurnAgentExecutor([server + "/get_reward", other_url + "/get_reward"])
        prompt, label, completion, max_tokens, reward, *_ = CASES["countdown-correct"]
        for _ in range(4):
            out = run_executor(executor, prompt, label, stand_in_engine(completion), char_tokenizer, max_tokens)
            assert out["reward"] == [reward]
        with urllib.request.urlopen(other_url + "/metrics", timeout=30) as r:
            assert 'reward_requests_total{status="200"} 2.0' in r.read().decode()
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait(timeout=30)


BAD = {
    "invalid json": (b"{not json", 400, "not valid JSON"),
    "not an object": (b"[1, 2]", 400, "must be a JSON object"),
    "missing key": ({"query": ["x"], "prompts": ["x"]}, 400, 'missing "labels"'),
    "unequal lengths": (
        {"query": ["x", "y"], "prompts": ["x"], "labels": ["{}"]},
        400,
        "equal lengths, got 2, 1 and 1",
    ),
    "wrong list type": ({"query": "x", "prompts": ["x"], "labels": ["{}"]}, 400, '"query" must be a list'),
    "wrong item type": ({"query": [1], "prompts": ["x"], "labels": ["{}"]}, 400, '"query"[0] and "prompts"[0] must be'),
    "unknown task": ({"query": ["x"], "prompts": ["x"], "labels": ['{"task": "sudoku"}']}, 422, "'sudoku'"),
    "malformed label": (
        {"query": ["x"], "prompts": ["x"], "labels": ['{"task": "countdown", "target": "60"}']},
        422,
        "'target' must be an integer",
    ),
    "label not json": ({"query": ["x"], "prompts": ["x"], "labels": ["{oops"]}, 422, "not valid JSON"),
    "label wrong type": ({"query": ["x"], "prompts": ["x"], "labels": [5]}, 422, "must be a JSON object"),
    "body over the limit": (b'{"query": ["' + b"x" * (2 << 20) + b'"]}', 413, "over the 1 MB limit"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_a_4xx_and_the_service_stays_up(server, case):
    body, status, message = BAD[case]
    got, answer = post(server, body)
    assert got == status and message in answer["error"], answer
    assert post(server, GOOD) == (
        200,
        {"rewards": [1.0], "scores": [1.0], "extra_logs": {"accuracy": [1.0], "format": [1.0]}},
    )


def test_chunked_body_over_the_limit_gets_a_413_not_a_reset(server):
    """No Content-Length to refuse up front: the service reads past the limit, discards, and answers 413."""
    connection = connect(server)
    try:
        chunks = iter([b'{"query": ["'] + [b"x" * (256 << 10)] * 8 + [b'"]}'])
        connection.request(
            "POST", "/get_reward", body=chunks, headers={"Content-Type": "application/json"}, encode_chunked=True
        )
        answer = connection.getresponse()
        assert answer.status == 413 and "over the 1 MB limit" in json.loads(answer.read())["error"]
        assert answer.getheader("connection") == "close"
    finally:
        connection.close()
    assert post(server, GOOD)[0] == 200


def test_body_past_the_drain_limit_is_cut_off_and_the_service_stays_up(server):
    """A declared length beyond the limit plus DRAIN_BYTES is refused without reading it; the client may see a
    413 or a reset, never a hang, and the next request is served."""
    from reward_funcs.server import DRAIN_BYTES

    connection = connect(server)
    try:
        connection.putrequest("POST", "/get_reward")
        connection.putheader("Content-Length", str((1 << 20) + DRAIN_BYTES + 1))
        connection.endheaders()
        try:
            connection.send(b"x" * (1 << 20))
            answer = connection.getresponse()
            assert answer.status == 413
        except (ConnectionResetError, BrokenPipeError):
            pass
    finally:
        connection.close()
    assert post(server, GOOD)[0] == 200


def test_malformed_completion_scores_zero(server):
    body = {**GOOD, "query": ["\x00" * 1000 + "<answer>" * 500]}
    assert post(server, body)[1]["rewards"] == [0.0]


def test_metrics_count_requests_errors_and_rewards(server):
    fresh, url = start_server()
    try:
        post(url, GOOD)
        post(url, {**GOOD, "query": ["Assistant: <answer>1</answer>"]})
        post(url, b"{not json")
        with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
            text = r.read().decode()
        for line in (
            'reward_requests_total{status="200"} 2.0',
            'reward_requests_total{status="400"} 1.0',
            'reward_errors_total{kind="malformed"} 1.0',
            "reward_samples_total 2.0",
            "reward_mean_reward 0.55",
            "reward_accuracy 0.5",
        ):
            assert line in text, text
    finally:
        fresh.send_signal(signal.SIGTERM)
        fresh.wait(timeout=30)


def wait_until_read(server_port: int, client_port: int, timeout: float = 60) -> None:
    """Until the server has read every byte sent on this connection (Linux: its socket's receive queue in
    /proc/net/tcp is empty), so it has parsed the request's headers and holds the request as in flight."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in open("/proc/net/tcp").read().splitlines()[1:]:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
                if int(queues.split(":")[1], 16) == 0:
                    time.sleep(0.2)  # read from the socket; now parsed by the event loop
                    return
        time.sleep(0.05)
    raise AssertionError("the service did not read the request within a minute")


def test_stops_cleanly_on_sigterm_finishing_requests_in_flight():
    """A request whose body is half sent when SIGTERM arrives is still read, scored and answered; then the
    service exits 0."""
    process, url = start_server()
    body = json.dumps({key: value * 200 for key, value in GOOD.items()}).encode()
    connection = connect(url)
    port = url.rsplit(":", 1)[1]
    signalled = False
    try:
        connection.putrequest("POST", "/get_reward")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        connection.send(body[: len(body) // 2])
        wait_until_read(int(port), connection.sock.getsockname()[1])  # the request is in flight
        process.send_signal(signal.SIGTERM)
        signalled = True
        time.sleep(0.5)
        connection.send(body[len(body) // 2 :])
        answer = connection.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["rewards"] == [1.0] * 200
    finally:
        connection.close()
        if not signalled:  # the test failed before its SIGTERM: do not leave the service running
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0
    assert "Traceback" not in process.stderr.read()


def test_bad_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "reward_funcs.server", "--workers", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--workers must be at least 1" in result.stderr


def test_launcher_starts_services_and_preflight_probes_them(tmp_path):
    from data_tools import countdown
    from launch import jobs, runs
    from launch.data_checks import check_http_reward
    from launch.recipe import apply_overrides, load

    data = tmp_path / "countdown"
    assert countdown.main(["--out", str(data), "--train-size", "30", "--test-size", "10"]) == 0
    services = jobs.RewardServices({"instances": 2})
    recipe = apply_overrides(
        load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"), [f"eval.dataset={data / 'test.parquet'}"]
    )
    args = runs.resolve(recipe, tmp_path / "run", reward_urls=services.urls).args()
    assert args.reward.remote_url == services.urls and len(set(services.urls)) == 2
    assert [c.status for c in check_http_reward(args, REPO)] == ["FAIL", "FAIL"]  # not started yet
    services.start()
    try:
        assert [c.status for c in check_http_reward(args, REPO)] == ["ok", "ok"]
    finally:
        services.stop()
    assert all(p.returncode == 0 for p in services.processes)


def test_dry_run_with_services_passes_their_urls():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch",
            "train",
            "recipes/countdown/qwen2.5-3b-ppo.yaml",
            "--dry-run",
            "--set",
            "recipe.reward_service={instances: 2, port: 6100}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--reward.remote_url http://127.0.0.1:6100/get_reward,http://127.0.0.1:6101/get_reward" in result.stdout
