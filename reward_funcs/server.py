"""The reward as an HTTP service on OpenRLHF's remote-reward contract (`--reward.remote_url http://HOST:PORT/get_reward`).

    python -m reward_funcs.server [--port 5000] [--workers 2] [--max-body-mb 16]
    python -m reward_funcs.server --host 0.0.0.0 --port 5000 --token-file ~/.reward-token

POST /get_reward (or /): {"query": [...], "prompts": [...], "labels": [...]}, lists of equal length (OpenRLHF
sends one sample per request) -> {"rewards": [...], "scores": [...], "extra_logs": {"accuracy": [...],
"format": [...]}}, the same scores as the reward file. GET /health answers {"status": "ok"}; GET /metrics
gives request and error counts, samples, mean reward and accuracy since start, and the connections closed for
being slow or too many, in Prometheus' text format, summed over all workers. Started, it prints the URL to give
OpenRLHF.

Only the trainer may score: bound to any address but loopback, the service answers /get_reward and /metrics only
with its token in the URL, `http://HOST:5000/get_reward?token=...` (OpenRLHF's client sends no headers). The
token comes from --token-file, else $REWARD_TOKEN, else ~/.cache/reward_funcs/token; a token file that does not
exist is created with a fresh token, readable by its owner only. On loopback no token is needed unless
--token-file or $REWARD_TOKEN gives one. The token is never printed or logged: the printed URL shows it as ***.

No client can hold the service from the others: a client has --client-timeout seconds (5) to send a whole
request, from connecting or from its previous answer, or the connection is closed (a partial request gets a
408); a request line and headers over 16 KB get a 431; each worker keeps at most --max-connections open (by
default 1,024, or half its open-file limit if lower) and closes the longest-idle one to let a new one in; a
body over 64 KB is parsed and scored in a separate process, a smaller one on the event loop a millisecond at a
time, so a huge request never holds up the small ones.

Bad input never takes the service down and never gets a 5xx: invalid JSON, missing keys, lists of unequal
length, wrong types, an unknown task, a malformed or too deeply nested label, a body over --max-body-mb, a
missing token each get a 4xx with {"error": "<what is wrong>"}; a malformed completion is scored 0 as usual.
SIGTERM answers every request already received, then stops; the workers stop when their master dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import ipaddress
import logging
import multiprocessing
import os
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Generator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import NamedTuple

import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from reward_funcs import LabelError, cli, score_sample

DEFAULT_MAX_BODY_MB = 16
DEFAULT_CLIENT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 1024
DRAIN_BYTES = 64 << 20  # read past the limit, at most, so the client sees the 413
MAX_HEAD_BYTES = 16 << 10  # request line and headers; OpenRLHF's are a few hundred bytes
INLINE_BODY_BYTES = 64 << 10  # larger bodies are parsed and scored in the scoring process
SLICE_SECONDS = 0.001  # scoring on the event loop gives it back this often
LINGER_SECONDS = 1.0  # after a 408 or 431, what the client still sends is read and dropped for this long
ACCEPT_DRAIN_SECONDS = 2.0  # on SIGTERM, the longest wait for the connections queued in the kernel to be accepted
TOKEN_FILE = Path("~/.cache/reward_funcs/token")
TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._~-]{16,}")  # as is in a URL
logger = logging.getLogger("reward_funcs.server")
PROG = "python -m reward_funcs.server"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every worker needs; `run` hands it to the workers in the environment (REWARD_*)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_MB << 20
    client_timeout: float = DEFAULT_CLIENT_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    token: str | None = None
    metrics_dir: str | None = None  # Prometheus' multiprocess folder, with several workers

    def env(self) -> dict[str, str]:
        return {
            "REWARD_MAX_BODY_MB": str(self.max_body_bytes / (1 << 20)),
            "REWARD_CLIENT_TIMEOUT": str(self.client_timeout),
            "REWARD_MAX_CONNECTIONS": str(self.max_connections),
            "REWARD_TOKEN": self.token or "",
            "REWARD_METRICS_DIR": self.metrics_dir or "",
        }

    @classmethod
    def from_env(cls, environ=os.environ) -> Settings:
        return cls(
            max_body_bytes=int(float(environ.get("REWARD_MAX_BODY_MB", DEFAULT_MAX_BODY_MB)) * (1 << 20)),
            client_timeout=float(environ.get("REWARD_CLIENT_TIMEOUT", DEFAULT_CLIENT_TIMEOUT)),
            max_connections=int(environ.get("REWARD_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)),
            token=environ.get("REWARD_TOKEN") or None,
            metrics_dir=environ.get("REWARD_METRICS_DIR") or None,
        )


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


ERROR_KINDS = {400: "malformed", 403: "token", 413: "too_large", 422: "label", 500: "internal"}


class Answer(NamedTuple):
    """A request's answer and what /metrics counts of it; plain data, so the scoring process can send it back."""

    status: int
    body: bytes
    error: str | None = None  # the kind of refusal
    samples: int = 0
    reward_sum: float = 0.0
    correct: int = 0
    trace: str | None = None  # our bug's traceback, logged by the server

    @classmethod
    def refused(cls, status: int, message: str) -> Answer:
        return cls(status, orjson.dumps({"error": message}), ERROR_KINDS.get(status, "other"))


class Metrics:
    """Counters of the official Prometheus client. With several workers they live in Prometheus' multiprocess
    folder, and a scrape of any worker adds up every worker's; the mean reward and the accuracy are derived from
    the sums at scrape time."""

    def __init__(self, multiprocess_dir: str | None = None):
        disable_created_metrics()  # no reward_requests_created lines: the counts are what is read
        own = CollectorRegistry()
        self.requests = Counter("reward_requests", "POST requests answered, by status code", ["status"], registry=own)
        self.errors = Counter("reward_errors", "requests refused, by kind", ["kind"], registry=own)
        self.closed = Counter(
            "reward_connections_closed",
            "connections closed before a whole request arrived: timeout, head_too_large, evicted (too many open)",
            ["reason"],
            registry=own,
        )
        self.samples = Counter("reward_samples", "samples scored", registry=own)
        self.correct = Counter("reward_correct", "correct answers", registry=own)
        self.reward_sum = Counter("reward_sum", "sum of the rewards given", registry=own)
        self.ok = self.requests.labels("200")  # the common case, looked up once
        self.source = MultiProcessCollector(None, path=multiprocess_dir) if multiprocess_dir else own
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def record(self, answer: Answer) -> None:
        (self.ok if answer.status == 200 else self.requests.labels(str(answer.status))).inc()
        if answer.error:
            self.errors.labels(answer.error).inc()
        if answer.samples:
            self.samples.inc(answer.samples)
            self.correct.inc(answer.correct)
            self.reward_sum.inc(answer.reward_sum)

    def collect(self):
        families = list(self.source.collect())
        totals: dict[str, float] = {}
        for family in families:
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        yield from families
        samples = totals.get("reward_samples_total", 0.0)
        mean = totals.get("reward_sum_total", 0.0) / samples if samples else 0.0
        yield GaugeMetricFamily("reward_mean_reward", "mean reward since start", value=mean)
        accuracy = totals.get("reward_correct_total", 0.0) / samples if samples else 0.0
        yield GaugeMetricFamily("reward_accuracy", "fraction of correct answers since start", value=accuracy)


# ---- scoring: the same code on the event loop and in the scoring process ----------------------------------------


def _strings(payload: dict, key: str) -> list:
    value = payload.get(key)
    if value is None:
        raise BadRequest(400, f'missing "{key}": the body is {{"query": [...], "prompts": [...], "labels": [...]}}')
    if not isinstance(value, list):
        raise BadRequest(400, f'"{key}" must be a list, got {type(value).__name__}')
    return value


def parse(body: bytes) -> tuple[list, list, list]:
    try:
        payload = orjson.loads(body)  # nesting beyond 1,024 levels is a JSONDecodeError, never a RecursionError
    except orjson.JSONDecodeError as e:
        raise BadRequest(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(payload, dict):
        raise BadRequest(400, f"the body must be a JSON object, got {type(payload).__name__}")
    queries, prompts, labels = (_strings(payload, k) for k in ("query", "prompts", "labels"))
    if not len(queries) == len(prompts) == len(labels):
        raise BadRequest(
            400,
            f'"query", "prompts" and "labels" must have equal lengths, got {len(queries)}, '
            f"{len(prompts)} and {len(labels)}",
        )
    for i, (q, p) in enumerate(zip(queries, prompts, strict=True)):
        if not isinstance(q, str) or not (p is None or isinstance(p, str)):
            raise BadRequest(400, f'"query"[{i}] and "prompts"[{i}] must be strings')
    return queries, prompts, labels


def _score_one(i: int, query: str, prompt: str | None, label):
    try:
        return score_sample(query, prompt, label)
    except LabelError as e:
        raise BadRequest(422, f'"labels"[{i}]: {e}') from None
    except RecursionError:  # json.loads of '[' * 5000, or the repr of a label object nested 1,000 deep
        raise BadRequest(422, f'"labels"[{i}] is nested too deeply: a label is a flat JSON object') from None
    except (TypeError, ValueError, OverflowError) as e:  # a label no task can read
        raise BadRequest(422, f'"labels"[{i}] cannot be read: {type(e).__name__}: {e}') from None


def scoring(body: bytes) -> Generator[None, None, Answer]:
    """The answer to a request body, computed a sample per step, so that the event loop can take turns."""
    try:
        queries, prompts, labels = parse(body)
        scored = []
        for i, sample in enumerate(zip(queries, prompts, labels, strict=True)):
            scored.append(_score_one(i, *sample))
            yield
    except BadRequest as e:
        return Answer.refused(e.status, e.message)
    except Exception:  # our bug: logged in full by the server, answered without taking the service down
        failed = Answer.refused(500, "internal error while scoring; see the service's log")
        return failed._replace(trace=traceback.format_exc())
    rewards = [s.reward for s in scored]
    correct = [float(s.correct) for s in scored]
    formatted = [float(s.formatted) for s in scored]
    answer = {"rewards": rewards, "scores": correct, "extra_logs": {"accuracy": correct, "format": formatted}}
    return Answer(200, orjson.dumps(answer), None, len(scored), sum(rewards), int(sum(correct)))


def score_in_process(chunks: list[bytes]) -> Answer:
    """What the scoring process runs: the whole body at once."""
    steps = scoring(b"".join(chunks))
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


async def score_on_loop(body: bytes) -> Answer:
    """A small body scored on the event loop, handing it back every SLICE_SECONDS (64 KB of tiny samples take 3 ms)."""
    steps, start = scoring(body), time.perf_counter()
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        if time.perf_counter() - start > SLICE_SECONDS:
            await asyncio.sleep(0)
            start = time.perf_counter()


def _stop_with_parent(parent: int, sig: int) -> None:
    """Have this process get `sig` when its parent `parent` dies: Linux's PR_SET_PDEATHSIG, elsewhere a thread that
    watches the parent's pid."""
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        armed = ctypes.CDLL(None, use_errno=True).prctl(1, ctypes.c_ulong(sig), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    if not armed:

        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os.kill(os.getpid(), sig)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # it died before we asked
        os.kill(os.getpid(), sig)


def _scoring_process_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server decides when we stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _stop_with_parent(parent, signal.SIGKILL)


class ScoringProcess:
    """One process beside the event loop for the bodies too large to score on it (16 MB, or 200,000 samples, take
    a second). Started before the first request, from the main thread, which PR_SET_PDEATHSIG watches."""

    def __init__(self):
        self.pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads and an event loop
        return ProcessPoolExecutor(1, mp_context=context, initializer=_scoring_process_init, initargs=(os.getpid(),))

    async def start(self) -> None:
        self.pool = self._new_pool()
        await asyncio.get_running_loop().run_in_executor(self.pool, int)  # spawned and ready

    async def score(self, chunks: list[bytes]) -> Answer:
        pool = self.pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, score_in_process, chunks)
        except BrokenProcessPool:
            if self.pool is pool:  # the first request to notice replaces it
                logger.error("reward_funcs.server: the scoring process died; starting another")
                self.pool = self._new_pool()
                pool.shutdown(wait=False)
            return Answer.refused(500, "the scoring process died; see the service's log")

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


# ---- the application --------------------------------------------------------------------------------------------


async def read_body(request: Request, max_body_bytes: int) -> list[bytes]:
    """The request's body in chunks, or a BadRequest: 400 for a malformed Content-Length, 413 over `max_body_bytes`.

    A client writes its whole body before it reads the answer. Closing the connection on unread bytes makes the
    kernel send a reset, and the client sees "connection reset" instead of our 413; so a body over the limit is
    read and discarded, up to DRAIN_BYTES more, before the 413 goes out (with Connection: close)."""
    drain_bytes = max_body_bytes + DRAIN_BYTES
    too_large = f"the body is over the {max_body_bytes / (1 << 20):g} MB limit (--max-body-mb)"
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise BadRequest(400, f"the Content-Length header is not a number: {declared[:40]!r}")
    over = declared is not None and int(declared) > max_body_bytes
    if over and int(declared) > drain_bytes:
        raise BadRequest(413, too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        over = over or size > max_body_bytes
        if over:
            if size > drain_bytes:
                break
            continue
        chunks.append(chunk)
    if over:
        raise BadRequest(413, too_large)
    return chunks


def _respond(answer: Answer, metrics: Metrics) -> Response:
    if answer.trace:
        logger.error("reward_funcs.server: scoring failed\n%s", answer.trace)
    metrics.record(answer)
    response = Response(answer.body, status_code=answer.status, media_type="application/json")
    if answer.status == 413:
        response.headers["connection"] = "close"
    return response


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    metrics = Metrics(settings.metrics_dir)
    scorer = ScoringProcess()
    GuardedHttpProtocol.settings, GuardedHttpProtocol.metrics = settings, metrics
    token = settings.token.encode() if settings.token else None
    no_token = Answer.refused(403, "this service needs its token: add ?token=<the token> to the URL")

    def authorized(request: Request) -> bool:
        return token is None or hmac.compare_digest(request.query_params.get("token", "").encode(), token)

    async def get_reward(request: Request) -> Response:
        if not authorized(request):
            return _respond(no_token, metrics)
        try:
            chunks = await read_body(request, settings.max_body_bytes)
        except BadRequest as e:
            return _respond(Answer.refused(e.status, e.message), metrics)
        except ClientDisconnect:
            if "reward.closed" not in request.scope:  # else counted among the connections closed, and answered
                metrics.record(Answer(400, b"", "disconnected"))
            return Response(status_code=400)
        if sum(map(len, chunks)) <= INLINE_BODY_BYTES:
            return _respond(await score_on_loop(b"".join(chunks)), metrics)
        return _respond(await scorer.score(chunks), metrics)

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def metrics_page(request: Request) -> Response:
        if not authorized(request):
            return Response(no_token.body, status_code=403, media_type="application/json")
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await scorer.start()
        yield
        scorer.stop()  # after every request is answered

    app = Starlette(
        routes=[
            Route("/get_reward", get_reward, methods=["POST"]),
            Route("/", get_reward, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    return app


def _app_from_env() -> Starlette:
    """What each worker loads: Settings from the environment (REWARD_*); a worker of a master (REWARD_MASTER_PID)
    stops when the master dies."""
    master = os.environ.get("REWARD_MASTER_PID")
    if master:
        _stop_with_parent(int(master), signal.SIGTERM)  # SIGTERM: the requests already received are answered
    return create_app(Settings.from_env())


# ---- connections --------------------------------------------------------------------------------------------


CLOSED = {  # why a connection is closed mid-request -> what its client is told
    "timeout": (408, "Request Timeout", "the request did not arrive whole within {timeout:g} s (--client-timeout)"),
    "evicted": (408, "Request Timeout", "closed to make room: of the open connections, this one had waited longest"),
    "head_too_large": (
        431,
        "Request Header Fields Too Large",
        f"the request line and headers are over {MAX_HEAD_BYTES >> 10} KB",
    ),
}


def _raw_answer(reason: str, timeout: float) -> bytes:
    status, phrase, message = CLOSED[reason]
    body = orjson.dumps({"error": message.format(timeout=timeout)})
    head = f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"connection: close\r\n\r\n" + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits it lacks: it arms its keep-alive timer only after an answer
    (so a client that connects and stays silent, dribbles its headers or stops half-way through its body is kept
    forever), it reads request heads of any size (quadratically), and it bounds open connections only with a 503.

    Here a connection waiting for a request (new, kept alive, or in the middle of one) has `client_timeout` seconds
    to deliver all of it; the head is bounded by MAX_HEAD_BYTES; over `max_connections` the connection that has
    waited longest is closed; nothing more is read from a connection while its request is scored. On SIGTERM a
    connection is closed only when it holds no request: one on its way is read and answered."""

    settings = Settings()  # set by create_app
    metrics: Metrics | None = None
    waiting: OrderedDict = OrderedDict()  # connections waiting for a request, the longest-waiting first

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.clock = None
        self.head_bytes = 0
        self.in_head = True  # reading a request line and headers, or waiting for one
        self.receiving = False  # between a request's first byte and its last
        self.head_done = False
        self.dropping = False  # after a 408 or 431: what arrives is read and dropped
        self.stopping = False
        self._wait()
        if len(self.connections) > self.settings.max_connections:
            oldest = next((c for c in self.waiting if c is not self), self)
            oldest._close("evicted")

    def connection_lost(self, exc) -> None:
        self._unwait()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.dropping:
            return
        if self.in_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.in_head and self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._close("head_too_large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.receiving, self.head_done = True, False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.in_head, self.head_bytes, self.head_done = False, 0, True
        if self.stopping:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.receiving, self.in_head, self.head_bytes = False, True, 0
        if self.cycle.response_complete:  # answered before its body ended (a 413): waiting for the next one
            return
        self._unwait()
        self.flow.pause_reading()  # until the answer is out: nothing buffered, and no clock runs meanwhile

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.receiving or self.cycle.response_complete):
            self._wait()

    def shutdown(self) -> None:
        """SIGTERM: a connection with a request on its way, or not used yet (its request may be unread in the
        kernel), is left to deliver it, be answered and closed; the clock bounds the wait."""
        self.stopping = True
        if self.cycle is None or self.receiving:
            return
        super().shutdown()

    def _wait(self) -> None:
        """The clock starts for a whole request to arrive."""
        self._unwait()
        self.clock = self.loop.call_later(self.settings.client_timeout, self._close, "timeout")
        self.waiting[self] = None

    def _unwait(self) -> None:
        if self.clock is not None:
            self.clock.cancel()
            self.clock = None
        self.waiting.pop(self, None)

    def _close(self, reason: str) -> None:
        """Close the connection. A client in the middle of a request is told why (408, 431) and what it still
        sends is read and dropped for LINGER_SECONDS, so that it sees the answer rather than a reset."""
        self._unwait()
        if self.transport.is_closing() or self.dropping:  # a connection already told why goes now
            self.transport.close()
            return
        if self.metrics is not None:
            self.metrics.closed.labels(reason).inc()
        cycle = self.cycle
        answering = cycle is not None and not cycle.response_complete
        if not (self.receiving or reason == "head_too_large") or (answering and not self.head_done):
            self.transport.close()  # idle, or the answer to a previous request on its way: nothing to say
            return
        if answering:  # the handler waiting for the body sees a disconnect and answers nothing
            cycle.scope["reward.closed"] = reason
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(_raw_answer(reason, self.settings.client_timeout))
        self.dropping = True
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.waiting[self] = None
        self.waiting.move_to_end(self, last=False)  # the first to go if room is needed
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


# ---- stopping: what was sent before SIGTERM is answered ------------------------------------------------------


def accept_queue(sock: socket.socket) -> int:
    """Connections the kernel has completed for the listening `sock` and nobody has accepted yet (Linux reports
    them as tcpi_unacked of a listening socket); 0 where that cannot be read."""
    try:
        return struct.unpack_from("I", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 24)[0]
    except (AttributeError, OSError, struct.error):
        return 0


class Server(uvicorn.Server):
    """uvicorn's server for one worker, which on SIGTERM first accepts every connection already queued: closing a
    listening socket resets them, requests sent before the signal included."""

    async def shutdown(self, sockets=None) -> None:
        deadline = time.monotonic() + ACCEPT_DRAIN_SECONDS
        while any(accept_queue(s) for s in sockets or []) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await super().shutdown(sockets)


class Supervisor(Multiprocess):
    """uvicorn's master for several workers, which on SIGTERM or Ctrl-C lets the workers accept every connection
    already queued before it stops them (it holds the socket meanwhile, so nothing queued is reset)."""

    def _drain(self) -> None:
        deadline = time.monotonic() + ACCEPT_DRAIN_SECONDS
        while any(accept_queue(s) for s in self.sockets) and time.monotonic() < deadline:
            time.sleep(0.01)

    def handle_term(self) -> None:
        self._drain()
        super().handle_term()

    def handle_int(self) -> None:
        self._drain()
        super().handle_int()


# ---- the command ------------------------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether every address `host` stands for is this machine's loopback ("" and 0.0.0.0 are every interface)."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)} if host else set()
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def _read_or_create_token(path: Path) -> str:
    """The token in `path`; a file that does not exist is created with a fresh token, readable by its owner only
    (written aside, then linked into place: two services starting at once read the same token)."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        aside = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        finally:
            aside.unlink()
    if path.stat().st_mode & 0o077:
        raise cli.UsageError(f"the token file {path} can be read by other users: chmod 600 {path}")
    return path.read_text().strip()


def resolve_token(
    host: str, token_file: Path | None, environ=os.environ, default_file: Path = TOKEN_FILE
) -> tuple[str | None, str]:
    """The token the service requires and where it comes from (for the printed line): --token-file, else
    $REWARD_TOKEN, else, on any address but loopback, the default file; no token on loopback without either."""
    if token_file is None and environ.get("REWARD_TOKEN"):
        token, where = environ["REWARD_TOKEN"].strip(), "$REWARD_TOKEN"
    elif token_file is None and is_loopback(host):
        return None, ""
    else:
        path = (token_file or default_file).expanduser()
        try:
            token, where = _read_or_create_token(path), str(path)
        except OSError as e:
            raise cli.UsageError(f"cannot read or create the token file {path}: {e.strerror}") from None
    if not TOKEN_CHARACTERS.fullmatch(token):
        fix = "set another" if where == "$REWARD_TOKEN" else "remove the file to have a fresh one made"
        raise cli.UsageError(
            f"the token in {where} must be 16 or more of A-Z a-z 0-9 - _ . ~ (it goes into a URL as it is): {fix}"
        )
    return token, where


def _open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (the workers inherit it); return it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 1 << 20) if hard != resource.RLIM_INFINITY else 1 << 20
    if wanted > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return soft


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise cli.UsageError(f"cannot listen on {host}:{port}: {e.strerror}; choose another --port or --host") from None
    sock.listen(backlog)  # connections queue from now on, while the workers start
    sock.set_inheritable(True)
    return sock


def build_parser() -> cli.Parser:
    parser = cli.parser(PROG, __doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on, 0 to 65535 (default: 5000)")
    parser.add_argument("--workers", type=int, default=1, help="processes serving requests (default: 1)")
    parser.add_argument(
        "--max-body-mb",
        type=float,
        default=DEFAULT_MAX_BODY_MB,
        help=f"largest request body accepted, in MB; larger ones get a 413 (default: {DEFAULT_MAX_BODY_MB})",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        help="file holding the token requests must carry (?token=...), created with a fresh token if missing "
        f"(default: $REWARD_TOKEN, else {TOKEN_FILE} on any address but loopback, else no token)",
    )
    parser.add_argument(
        "--client-timeout",
        type=float,
        default=DEFAULT_CLIENT_TIMEOUT,
        help="seconds a client has to send a whole request, from connecting or from its previous answer; slower "
        f"or idle connections are closed (default: {DEFAULT_CLIENT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        help=f"open connections per worker; a new one beyond it closes the longest-idle one (default: "
        f"{DEFAULT_MAX_CONNECTIONS}, or half the open-file limit if lower)",
    )
    parser.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
        default="warning",
        help="uvicorn's log level (default: warning)",
    )
    return parser


def run(args) -> int:
    import shutil
    import tempfile

    if (
        args.workers < 1
        or args.max_body_mb <= 0
        or args.client_timeout <= 0
        or (args.max_connections is not None and args.max_connections < 1)
        or not 0 <= args.port < 65536
    ):
        raise cli.UsageError(
            "--workers must be at least 1, --max-body-mb and --client-timeout positive, --max-connections at least "
            "1, --port 0 to 65535"
        )
    token, where = resolve_token(args.host, args.token_file)
    if token and args.log_level == "trace":
        raise cli.UsageError("--log-level trace logs every request's URL, the token with it: use debug at most")
    open_files = _open_file_limit()
    # Half the open files for connections, half for the burst accepted at once (the backlog) and the rest.
    max_connections = args.max_connections or max(1, min(DEFAULT_MAX_CONNECTIONS, (open_files - 64) // 2))
    sock = _listen(args.host, args.port, backlog=min(2048, max_connections))
    port = sock.getsockname()[1]
    metrics_dir = tempfile.mkdtemp(prefix="reward-metrics-") if args.workers > 1 else None
    settings = Settings(int(args.max_body_mb * (1 << 20)), args.client_timeout, max_connections, token, metrics_dir)
    os.environ.update(settings.env())
    os.environ.pop("REWARD_MASTER_PID", None)
    if metrics_dir:  # read by prometheus_client when a worker imports it
        os.environ.update(PROMETHEUS_MULTIPROC_DIR=metrics_dir, REWARD_MASTER_PID=str(os.getpid()))
    config = uvicorn.Config(
        "reward_funcs.server:_app_from_env",
        factory=True,
        http="reward_funcs.server:GuardedHttpProtocol",
        ws="none",
        lifespan="on",
        loop="uvloop",
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,  # the URL holds the token
        proxy_headers=False,
        timeout_keep_alive=max(1, round(args.client_timeout)),
        timeout_graceful_shutdown=30,
        backlog=min(2048, max_connections),
    )
    shown = socket.gethostname() if args.host in ("", "0.0.0.0", "::") else args.host
    url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/get_reward" + ("?token=***" if token else "")
    print(
        f"{PROG}: listening on {args.host or '*'}:{port} with {args.workers} worker(s); "
        f"give OpenRLHF --reward.remote_url {url}" + (f" (*** is the token in {where})" if token else ""),
        flush=True,
    )
    # uvicorn finishes the requests in flight on SIGTERM, then re-raises the signal to the handler that was there
    # before it: make that one a normal exit, so a graceful stop ends with status 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if args.workers > 1:
            Supervisor(config, sockets=[sock]).run()
        else:
            Server(config).run(sockets=[sock])
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


main = cli.entry_point(PROG, build_parser)(run)  # main(argv) -> exit status: 0, or 2 with one line on bad input

if __name__ == "__main__":
    raise SystemExit(main())
