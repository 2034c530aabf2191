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

import contextlib
import dataclasses
import hmac
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from reward_funcs import answers, cli
from reward_funcs.answers import Answer, BadRequest, ScoringProcess, score_on_loop, stop_with_parent
from reward_funcs.connections import (
    DEFAULT_CLIENT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    GuardedHttpProtocol,
    Limits,
    Server,
    Supervisor,
    listen,
    open_file_limit,
)
from reward_funcs.tokens import TOKEN_FILE, resolve_token

DEFAULT_MAX_BODY_MB = 16
DRAIN_BYTES = 64 << 20  # read past the limit, at most, so the client sees the 413
INLINE_BODY_BYTES = 64 << 10  # larger bodies are parsed and scored in the scoring process
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

    def count_closed(self, reason: str) -> None:
        self.closed.labels(reason).inc()

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
    GuardedHttpProtocol.limits = Limits(settings.client_timeout, settings.max_connections, metrics.count_closed)
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
        if answers.JOURNAL is not None:  # a worker ends by its signal, past atexit: its journal is flushed here
            answers.JOURNAL.close()

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
        stop_with_parent(int(master), signal.SIGTERM)  # SIGTERM: the requests already received are answered
    return create_app(Settings.from_env())


# ---- the command ------------------------------------------------------------------------------------------------


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
    if answers.JOURNAL_ERROR:
        raise cli.UsageError(answers.JOURNAL_ERROR)
    token, where = resolve_token(args.host, args.token_file)
    if token and args.log_level == "trace":
        raise cli.UsageError("--log-level trace logs every request's URL, the token with it: use debug at most")
    open_files = open_file_limit()
    # Half the open files for connections, half for the burst accepted at once (the backlog) and the rest.
    max_connections = args.max_connections or max(1, min(DEFAULT_MAX_CONNECTIONS, (open_files - 64) // 2))
    sock = listen(args.host, args.port, backlog=min(2048, max_connections))
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
        http="reward_funcs.connections:GuardedHttpProtocol",
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
