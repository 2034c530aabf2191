"""The reward as an HTTP service on OpenRLHF's remote-reward contract (`--reward.remote_url http://HOST:PORT/get_reward`).

    python -m reward_funcs.server --host 0.0.0.0 --port 5000 [--workers 2] [--max-body-mb 16]

POST /get_reward (or /): {"query": [...], "prompts": [...], "labels": [...]}, lists of equal length (OpenRLHF
sends one sample per request) -> {"rewards": [...], "scores": [...], "extra_logs": {"accuracy": [...],
"format": [...]}}, the same scores as the reward file. GET /health answers {"status": "ok"}; GET /metrics
gives request and error counts, samples, mean reward and accuracy since start, in Prometheus' text format
(per worker process).

Bad input never takes the service down and never gets a 5xx: invalid JSON, missing keys, lists of unequal
length, wrong types, an unknown task, a malformed label, a body over --max-body-mb each get a 4xx with
{"error": "<what is wrong>"}; a malformed completion is scored 0 as usual. SIGTERM finishes the requests in
flight, then stops.
"""

from __future__ import annotations

import logging
import signal
import sys

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from reward_funcs import LabelError, cli, score_sample

DEFAULT_MAX_BODY_MB = 16
DRAIN_BYTES = 64 << 20  # read past the limit, at most, so the client sees the 413
logger = logging.getLogger("reward_funcs.server")
PROG = "python -m reward_funcs.server"


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _json(data, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class Metrics:
    """Counts kept as plain integers (a request costs a few additions) and handed to the official Prometheus
    client as a collector, read at scrape time."""

    def __init__(self):
        self.requests: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.samples = self.correct = 0
        self.reward_sum = 0.0
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def answered(self, status: int, error: str | None = None) -> None:
        key = str(status)
        self.requests[key] = self.requests.get(key, 0) + 1
        if error:
            self.errors[error] = self.errors.get(error, 0) + 1

    def scored(self, rewards: list[float], correct: int) -> None:
        self.samples += len(rewards)
        self.reward_sum += sum(rewards)
        self.correct += correct

    def collect(self):
        requests = CounterMetricFamily("reward_requests", "POST requests answered, by status code", labels=["status"])
        for status, n in sorted(self.requests.items()):
            requests.add_metric([status], n)
        errors = CounterMetricFamily("reward_errors", "requests refused, by kind", labels=["kind"])
        for kind, n in sorted(self.errors.items()):
            errors.add_metric([kind], n)
        yield requests
        yield errors
        yield CounterMetricFamily("reward_samples", "samples scored", value=self.samples)
        yield GaugeMetricFamily(
            "reward_mean_reward",
            "mean reward since start",
            value=self.reward_sum / self.samples if self.samples else 0.0,
        )
        yield GaugeMetricFamily(
            "reward_accuracy",
            "fraction of correct answers since start",
            value=self.correct / self.samples if self.samples else 0.0,
        )


def _strings(payload: dict, key: str) -> list:
    value = payload.get(key)
    if value is None:
        raise BadRequest(400, f'missing "{key}": the body is {{"query": [...], "prompts": [...], "labels": [...]}}')
    if not isinstance(value, list):
        raise BadRequest(400, f'"{key}" must be a list, got {type(value).__name__}')
    return value


def parse(body: bytes) -> tuple[list, list, list]:
    try:
        payload = orjson.loads(body)
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


async def read_body(request: Request, max_body_bytes: int) -> bytes:
    """The request's body, or a BadRequest: 400 for a malformed Content-Length, 413 over `max_body_bytes`.

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
    return b"".join(chunks)


def create_app(max_body_bytes: int = DEFAULT_MAX_BODY_MB << 20) -> Starlette:
    metrics = Metrics()

    async def get_reward(request: Request) -> Response:
        try:
            queries, prompts, labels = parse(await read_body(request, max_body_bytes))
            scored = []
            for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels, strict=True)):
                try:
                    scored.append(score_sample(query, prompt, label))
                except LabelError as e:
                    raise BadRequest(422, f'"labels"[{i}]: {e}') from None
                except (TypeError, ValueError, OverflowError) as e:  # a label no task can read
                    raise BadRequest(422, f'"labels"[{i}] cannot be read: {type(e).__name__}: {e}') from None
        except BadRequest as e:
            metrics.answered(e.status, {400: "malformed", 413: "too_large", 422: "label"}.get(e.status, "other"))
            answer = _json({"error": e.message}, e.status)
            if e.status == 413:
                answer.headers["connection"] = "close"
            return answer
        except ClientDisconnect:
            metrics.answered(400, "disconnected")
            return Response(status_code=400)
        except Exception:  # our bug: logged in full, answered without taking the service down
            logger.exception("reward_funcs.server: scoring failed")
            metrics.answered(500, "internal")
            return _json({"error": "internal error while scoring; see the service's log"}, 500)
        rewards = [s.reward for s in scored]
        correct = [float(s.correct) for s in scored]
        metrics.answered(200)
        metrics.scored(rewards, int(sum(correct)))
        return _json(
            {
                "rewards": rewards,
                "scores": correct,
                "extra_logs": {"accuracy": correct, "format": [float(s.formatted) for s in scored]},
            }
        )

    async def health(request: Request) -> Response:
        return _json({"status": "ok"})

    async def metrics_page(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            Route("/get_reward", get_reward, methods=["POST"]),
            Route("/", get_reward, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ]
    )
    app.state.metrics = metrics
    return app


def _app_from_env() -> Starlette:
    """What `uvicorn reward_funcs.server:app` (and --workers) loads: limits from the environment."""
    import os

    return create_app(int(float(os.environ.get("REWARD_MAX_BODY_MB", DEFAULT_MAX_BODY_MB)) * (1 << 20)))


def build_parser() -> cli.Parser:
    parser = cli.parser(PROG, __doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on, 0 to 65535 (default: 5000)")
    parser.add_argument(
        "--workers", type=int, default=1, help="processes serving requests, each with its own /metrics (default: 1)"
    )
    parser.add_argument(
        "--max-body-mb",
        type=float,
        default=DEFAULT_MAX_BODY_MB,
        help=f"largest request body accepted, in MB; larger ones get a 413 (default: {DEFAULT_MAX_BODY_MB})",
    )
    parser.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug", "trace"),
        default="warning",
        help="uvicorn's log level (default: warning)",
    )
    return parser


def run(args) -> int:
    import os

    import uvicorn

    if args.workers < 1 or args.max_body_mb <= 0 or not 0 <= args.port < 65536:
        raise cli.UsageError("--workers must be at least 1, --max-body-mb positive, --port 0 to 65535")
    os.environ["REWARD_MAX_BODY_MB"] = str(args.max_body_mb)
    # uvicorn finishes the requests in flight on SIGTERM, then re-raises the signal to the handler that was there
    # before it: make that one a normal exit, so a graceful stop ends with status 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "reward_funcs.server:_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
    )
    return 0


main = cli.entry_point(PROG, build_parser)(run)  # main(argv) -> exit status: 0, or 2 with one line on bad input

if __name__ == "__main__":
    raise SystemExit(main())
