"""The HTTP ceiling for bench/reward_service.py: the same stack (Starlette on uvicorn, orjson) and settings,
with a handler that parses the body and returns a constant instead of scoring."""

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ANSWER = orjson.dumps({"rewards": [1.0], "scores": [1.0], "extra_logs": {"accuracy": [1.0], "format": [1.0]}})


async def constant(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(ANSWER, media_type="application/json")


def create() -> Starlette:
    return Starlette(routes=[Route("/get_reward", constant, methods=["POST"])])
