"""The reward service's connections: uvicorn's HTTP protocol, server and multi-worker master with the limits a
service open to a network needs (a client has a few seconds to send a whole request, request heads are bounded,
open connections are bounded with the longest-idle closed first), and a stop on SIGTERM that answers every
request already sent."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from reward_funcs import cli

DEFAULT_CLIENT_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 1024
MAX_HEAD_BYTES = 16 << 10  # request line and headers; OpenRLHF's are a few hundred bytes
LINGER_SECONDS = 1.0  # after a 408 or 431, what the client still sends is read and dropped for this long
ACCEPT_DRAIN_SECONDS = 2.0  # on SIGTERM, the longest wait for the connections queued in the kernel to be accepted


class Limits(NamedTuple):
    """What a connection may take; the service sets them, with a callback that counts the connections it closes."""

    client_timeout: float = DEFAULT_CLIENT_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    on_closed: Callable[[str], None] | None = None  # called with the reason: timeout, head_too_large, evicted


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

    limits = Limits()  # set by the service
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
        if len(self.connections) > self.limits.max_connections:
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
        self.clock = self.loop.call_later(self.limits.client_timeout, self._close, "timeout")
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
        if self.limits.on_closed is not None:
            self.limits.on_closed(reason)
        cycle = self.cycle
        answering = cycle is not None and not cycle.response_complete
        if not (self.receiving or reason == "head_too_large") or (answering and not self.head_done):
            self.transport.close()  # idle, or the answer to a previous request on its way: nothing to say
            return
        if answering:  # the handler waiting for the body sees a disconnect and answers nothing
            cycle.scope["reward.closed"] = reason
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(_raw_answer(reason, self.limits.client_timeout))
        self.dropping = True
        self.flow.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.waiting[self] = None
        self.waiting.move_to_end(self, last=False)  # the first to go if room is needed
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


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


def open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (the workers inherit it); return it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 1 << 20) if hard != resource.RLIM_INFINITY else 1 << 20
    if wanted > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return soft


def listen(host: str, port: int, backlog: int) -> socket.socket:
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
