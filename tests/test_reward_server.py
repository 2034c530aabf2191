"""The reward service over real HTTP on loopback: OpenRLHF's own client against it, every kind of bad input,
metrics, and a clean stop on SIGTERM; slow, idle and oversized clients, huge requests beside small ones, the
token, several workers and a killed master."""

import http.client
import json
import os
import re
import resource
import select
import signal
import socket
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


def start_server(*args, open_files: int | None = None):
    """The service on a free loopback port, answering /health; `open_files` caps its open-file limit (soft and
    hard, so it cannot raise it). REWARD_TOKEN from the shell is not passed on: a test that wants a token says so."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "reward_funcs.server", "--port", str(port), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "REWARD_TOKEN"},
        preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files)))
        if open_files
        else None,
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
    "body nested 5,000 deep": (b'{"query": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "not valid JSON"),
    "label nested 5,000 deep": ({"query": ["x"], "prompts": ["x"], "labels": ["[" * 5000]}, 422, "nested too deeply"),
    "numbers nested 5,000 deep": (
        {"query": ["x"], "prompts": ["x"], "labels": ['{"task": "countdown", "target": 1, "numbers": ' + "[" * 5000]},
        422,
        "nested too deeply",
    ),
    "label object nested 1,000 deep": (
        b'{"query": ["x"], "prompts": ["x"], "labels": [{"task": "multiply", "product": 1, "numbers": '
        + b"[" * 1000
        + b"]" * 1000
        + b"}]}",
        422,
        "nested too deeply",
    ),
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


def test_launcher_starts_services_and_preflight_probes_them(tmp_path, monkeypatch):
    """On loopback the launcher's services need no token, even with one in the shell (meant for a remote one)."""
    from data_tools import countdown
    from launch import jobs, runs
    from launch.data_checks import check_http_reward
    from launch.recipe import apply_overrides, load

    data = tmp_path / "countdown"
    assert countdown.main(["--out", str(data), "--train-size", "30", "--test-size", "10"]) == 0
    monkeypatch.setenv("REWARD_TOKEN", "a-token-for-another-service")
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


# ---- slow, idle, oversized and too many clients ---------------------------------------------------------------


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def raw_socket(url, timeout: float = 30) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_until_closed(sock: socket.socket, seconds: float) -> tuple[bytes, bool]:
    """What the service sends until it closes the connection, and whether it did within `seconds`."""
    data, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not select.select([sock], [], [], min(0.5, max(0.0, deadline - time.monotonic())))[0]:
            continue
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def closed_by_server(sock: socket.socket) -> bool:
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1 << 16) == b""
    except ConnectionResetError:
        return True


@pytest.fixture(scope="module")
def strict_server():
    process, url = start_server("--client-timeout", "1", "--max-body-mb", "1")
    yield url
    stop(process)


HEAD = b"POST /get_reward HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
SLOW = {  # what the client sends at once, then how many bytes of HEAD it dribbles, one every 0.2 s
    "idle": (b"", 0),
    "headers dribbled": (b"", len(HEAD)),
    "body stopped half-way": (HEAD + b"x" * 500, 0),
}


@pytest.mark.parametrize("case", sorted(SLOW))
def test_slow_or_idle_connections_are_closed(strict_server, case):
    """With --client-timeout 1 a client has a second to send a whole request: an idle connection is closed, a
    partial request gets a 408 and is closed, long before the 30 s this test waits (they stayed open for good)."""
    first, dribbled = SLOW[case]
    with raw_socket(strict_server) as s:
        s.sendall(first)
        for i in range(dribbled):
            if select.select([s], [], [], 0.2)[0]:  # the service answered or closed
                break
            try:
                s.sendall(HEAD[i : i + 1])
            except OSError:
                break
        data, closed = read_until_closed(s, 30)
    assert closed, f"still open after 30 s; got {data[:200]!r}"
    assert data.startswith(b"HTTP/1.1 408") == (case != "idle"), data[:200]
    assert post(strict_server, GOOD)[0] == 200


@pytest.mark.parametrize("where", ["url", "header"])
def test_a_head_over_16_kb_gets_a_431(server, where):
    """The request line and headers are bounded (uvicorn's httptools protocol reads any size, quadratically)."""
    big = b"a" * (64 << 10)
    line = b"POST /get_reward?" + big if where == "url" else b"POST /get_reward"
    with raw_socket(server) as s:
        s.sendall(
            line + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (b"X-Padding: " + big + b"\r\n" if where == "header" else b"")
        )
        data, closed = read_until_closed(s, 30)
    assert closed and data.startswith(b"HTTP/1.1 431"), data[:200]
    assert post(server, GOOD)[0] == 200


def test_open_connections_are_bounded_and_good_clients_still_get_in():
    """Under `ulimit -n 256`, 400 idle connections (kept by a long --client-timeout) once left every good request
    failing. The service keeps at most half its open-file limit open, closing the longest idle first."""
    process, url = start_server("--client-timeout", "60", open_files=256)
    idle = []
    try:
        for _ in range(400):
            try:
                idle.append(raw_socket(url, timeout=10))
            except OSError:  # refused or timed out: the service is still free to serve the good ones below
                pass
        for _ in range(3):
            assert post(url, GOOD)[0] == 200
        time.sleep(0.5)  # the closes of the last connections evicted reach us
        still_open = sum(not closed_by_server(s) for s in idle)
        assert still_open <= 128, f"{still_open} of {len(idle)} idle connections still open"
    finally:
        for s in idle:
            s.close()
        stop(process)


# ---- huge requests, SIGTERM ------------------------------------------------------------------------------------


def test_a_huge_request_does_not_hold_up_small_ones():
    """205,000 samples in one request (about 27 MB, a second or two to score): small requests sent once the service
    has read it are all answered before it (the event loop was blocked until it was scored)."""
    process, url = start_server("--max-body-mb", "64")
    n = 205_000
    body = json.dumps({key: value * n for key, value in GOOD.items()}).encode()
    huge = connect(url)
    try:
        huge.putrequest("POST", "/get_reward")
        huge.putheader("Content-Type", "application/json")
        huge.putheader("Content-Length", str(len(body)))
        huge.endheaders()
        huge.send(body)
        wait_until_read(int(url.rsplit(":", 1)[1]), huge.sock.getsockname()[1])
        latencies = []
        for _ in range(3):
            start = time.perf_counter()
            assert post(url, GOOD)[0] == 200
            latencies.append(time.perf_counter() - start)
            assert not select.select([huge.sock], [], [], 0)[0], "the huge request was answered before a small one"
        answer = huge.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["rewards"] == [1.0] * n
        print("small requests beside a huge one:", " ".join(f"{t * 1e3:.1f} ms" for t in latencies))
    finally:
        huge.close()
        stop(process)


def test_sigterm_answers_every_request_already_sent():
    """150 requests of 1,000 samples each, all sent before SIGTERM, are all answered (most got a reset)."""
    process, url = start_server()
    samples = 1000
    body = json.dumps({key: value * samples for key, value in GOOD.items()}).encode()
    request = b"%sContent-Length: %d\r\n\r\n%s" % (HEAD.split(b"Content-Length")[0], len(body), body)
    sockets = []
    try:
        for _ in range(150):
            sockets.append(raw_socket(url, timeout=60))
            sockets[-1].sendall(request)
        process.send_signal(signal.SIGTERM)
        answers = [read_until_closed(s, 60)[0] for s in sockets]
    finally:
        for s in sockets:
            s.close()
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    statuses = [a[9:12].decode() if a.startswith(b"HTTP/1.1 ") else "no answer" for a in answers]
    assert statuses == ["200"] * 150, {s: statuses.count(s) for s in set(statuses)}
    assert all(json.loads(a.split(b"\r\n\r\n", 1)[1])["rewards"] == [1.0] * samples for a in answers)
    assert code == 0


# ---- the token -------------------------------------------------------------------------------------------------


def test_the_token_a_service_requires(tmp_path):
    """Loopback needs none; any other address gets one from --token-file, $REWARD_TOKEN or the default file
    (created with a fresh token, readable by its owner only, and kept for the next start)."""
    from reward_funcs.cli import UsageError
    from reward_funcs.tokens import resolve_token

    default = tmp_path / "cache" / "token"
    for host in ("127.0.0.1", "localhost", "::1"):
        assert resolve_token(host, None, {}, default) == (None, "")
    assert not default.exists()
    token, where = resolve_token("0.0.0.0", None, {}, default)
    assert len(token) >= 32 and where == str(default) and default.read_text().strip() == token
    assert default.stat().st_mode & 0o777 == 0o600
    assert resolve_token("10.1.2.3", None, {}, default) == (token, str(default))
    assert resolve_token("", None, {}, default)[0] == token  # "" is every interface
    given = "abcdefghijklmnopqrstuvwxyz"
    assert resolve_token("127.0.0.1", None, {"REWARD_TOKEN": given}, default) == (given, "$REWARD_TOKEN")
    assert resolve_token("0.0.0.0", tmp_path / "mine", {"REWARD_TOKEN": given}, default)[0] not in (given, token)
    (tmp_path / "weak").write_text("hunter2\n")
    (tmp_path / "weak").chmod(0o600)
    with pytest.raises(UsageError, match="16 or more") as refused:
        resolve_token("0.0.0.0", tmp_path / "weak", {}, default)
    assert "hunter2" not in str(refused.value)
    default.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        resolve_token("0.0.0.0", None, {}, default)


def test_with_a_token_only_requests_that_carry_it_are_scored(tmp_path, char_tokenizer, stand_in_engine):
    token_file = tmp_path / "token"
    process, url = start_server("--token-file", str(token_file))
    try:
        token = token_file.read_text().strip()
        assert post(url, GOOD)[0] == 403
        assert post(url, GOOD, path="/get_reward?token=" + "x" * len(token))[0] == 403
        assert post(url, GOOD, path=f"/?token={token}")[0] == 200
        prompt, label, completion, max_tokens, reward, *_ = CASES["countdown-correct"]
        executor = SingleTurnAgentExecutor(f"{url}/get_reward?token={token}")  # OpenRLHF's own client
        assert run_executor(executor, prompt, label, stand_in_engine(completion), char_tokenizer, max_tokens)[
            "reward"
        ] == [reward]
        with urllib.request.urlopen(url + "/health", timeout=30) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(url + "/metrics", timeout=30)
        with urllib.request.urlopen(f"{url}/metrics?token={token}", timeout=30) as r:
            assert 'reward_requests_total{status="403"} 2.0' in r.read().decode()
    finally:
        stop(process)
    out, err = process.communicate()
    assert token not in out + err
    assert "/get_reward?token=***" in out and str(token_file) in out


# ---- what it prints, several workers, a killed master ----------------------------------------------------------


def test_a_started_server_prints_where_it_listens():
    process = subprocess.Popen(
        [sys.executable, "-m", "reward_funcs.server", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "REWARD_TOKEN"},
    )
    try:
        assert select.select([process.stdout], [], [], 60)[0], "nothing printed within a minute"
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/get_reward\b", line)
        assert found and found.group(1) != "0", line
        assert post(found.group(0).removesuffix("/get_reward"), GOOD)[0] == 200
    finally:
        stop(process)


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every living process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{entry}/stat").read() if entry.isdigit() else ""
            command = open(f"/proc/{entry}/cmdline").read().replace("\0", " ") if stat else ""
        except OSError:  # it ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if fields and fields[0] != "Z":
            table[int(entry)] = (int(fields[1]), command)
    return table


def workers_of(pid: int) -> list[int]:
    return [p for p, (parent, command) in process_table().items() if parent == pid and "spawn_main" in command]


class paused:
    """A worker stopped (SIGSTOP) for the block: it accepts nothing, so the other worker answers."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGCONT)


def test_metrics_add_up_across_workers():
    """Three requests answered by each of two workers; /metrics says 6 whichever worker answers the scrape."""
    process, url = start_server("--workers", "2")
    try:
        workers = workers_of(process.pid)
        assert len(workers) == 2, workers
        for worker in workers:
            with paused(worker):
                assert [post(url, GOOD)[0] for _ in range(3)] == [200] * 3
        for worker in workers:
            with paused(worker):
                with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
                    text = r.read().decode()
            for line in ('reward_requests_total{status="200"} 6.0', "reward_samples_total 6.0", "reward_accuracy 1.0"):
                assert line in text, text
    finally:
        stop(process)


def test_workers_stop_when_their_master_is_killed():
    process, url = start_server("--workers", "2")
    below, frontier = set(), {process.pid}
    while frontier:  # every process the service started, and theirs
        frontier = {p for p, (parent, _) in process_table().items() if parent in frontier} - below
        below |= frontier
    assert len(workers_of(process.pid)) == 2
    process.kill()
    process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and below & process_table().keys():
        time.sleep(0.2)
    left = below & process_table().keys()
    try:
        assert not left, f"still running after their master was killed: {left}"
        with pytest.raises(OSError):
            urllib.request.urlopen(url + "/health", timeout=5)
    finally:
        for pid in left:
            os.kill(pid, signal.SIGKILL)


def test_preflight_probes_a_service_with_its_token_and_never_shows_it(tmp_path, monkeypatch):
    """A recipe whose reward URL holds the service's token: preflight's probe calls it with the token (the recipe
    now holds ${REWARD_TOKEN}), and neither a pass nor a failure shows it."""
    from data_tools import countdown
    from launch import preflight, runs
    from launch.recipe import apply_overrides, load

    token = "probe-token-0123456789abcdef"
    (tmp_path / "token").write_text(token)
    (tmp_path / "token").chmod(0o600)
    process, url = start_server("--token-file", str(tmp_path / "token"))
    data = tmp_path / "countdown"
    assert countdown.main(["--out", str(data), "--train-size", "30", "--test-size", "10"]) == 0
    monkeypatch.delenv("REWARD_TOKEN", raising=False)
    try:
        for given, status in ((token, "ok"), ("wrong-token-0123456789abcdef", "FAIL")):
            overrides = [f"eval.dataset={data / 'test.parquet'}", f"reward.remote_url={url}/get_reward?token={given}"]
            recipe = runs.resolve(
                apply_overrides(load(REPO / "recipes/countdown/qwen2.5-3b-ppo.yaml"), overrides), tmp_path / "r"
            )
            checks = [c for c in preflight.check_files(recipe, recipe.args(), REPO) if c.name == "reward"]
            assert [c.status for c in checks] == [status], checks
            assert given not in checks[0].message and "token=" in checks[0].message
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_the_service_journals_every_sample_it_scores(tmp_path, monkeypatch):
    """With REWARD_JOURNAL_DIR, each worker and the scoring process write their own journal files: every sample,
    small requests and one large enough for the scoring process, is in the run's journal after SIGTERM; with
    REWARD_TASK_LOGS=1 the answers carry the per-task logs."""
    from analysis.journal import load_run
    from reward_funcs.task_logs import keys

    monkeypatch.setenv("REWARD_JOURNAL_DIR", str(tmp_path / "run" / "journal"))
    monkeypatch.setenv("REWARD_TASK_LOGS", "1")
    process, url = start_server("--workers", "2")
    try:
        for _ in range(10):
            status, answer = post(url, GOOD)
            assert status == 200 and answer["extra_logs"]["countdown_correct"] == [1.0]
        assert set(answer["extra_logs"]) == {"accuracy", "format", *keys("countdown"), *keys("multiply")}
        large = {key: value * 600 for key, value in GOOD.items()}  # about 80 KB: scored in the scoring process
        assert len(json.dumps(large)) > 64 << 10
        status, answer = post(url, large)
        assert status == 200 and answer["rewards"] == [1.0] * 600
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    journal = load_run(tmp_path / "run")
    assert sum(s.n for s in journal.stats) == 610
    assert all(s.accuracy == 1.0 and s.task == "countdown" for s in journal.stats)
    assert journal.samples and all(r["answer"] == "44 - 19 + 35" for r in journal.samples)
    assert len({p.name.split("-")[1] for p in (tmp_path / "run" / "journal").glob("*.rows")}) >= 2  # processes


def test_a_bad_journal_setting_is_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "reward_funcs.server", "--port", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REWARD_JOURNAL_DIR": "/tmp/unused-journal", "REWARD_JOURNAL_SAMPLE": "most"},
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "REWARD_JOURNAL_SAMPLE" in result.stderr
