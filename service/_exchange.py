"""One HTTP exchange as the service's observers see it, and the middleware that records it.

`Exchanges` is the outermost of the service's middleware: it times the request, notes the status
that was sent (499, nginx's code, when the client went away first) and, once the request is over,
hands the record to each observer (metrics, the access line). The parts inside write into the
record of the running request, `current_exchange()`: the request id, the guest's timings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Exchange:
    """What is known of one request: set by the parts that learn it, read by the observers."""

    __slots__ = ("started", "seconds", "status", "request_id", "guest_seconds", "db_seconds", "disconnected")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds = 0.0
        #: the status sent; 500 until one is (an error answered outside the middleware is a 500)
        self.status = 500
        self.request_id = "-"
        #: the guest's time and the database's, when the request ran the guest
        self.guest_seconds: float | None = None
        self.db_seconds: float | None = None
        #: the client went away before its answer
        self.disconnected = False


_current: ContextVar[Exchange | None] = ContextVar("exchange", default=None)


def current_exchange() -> Exchange:
    """The running request's record (a record of its own, outside a request)."""
    return _current.get() or Exchange()


Observer = Callable[[Scope, Exchange], None]


class ClientGone(Exception):
    """An answer could not be written because the client's connection is closed."""


def _connection_closed(error: Exception) -> bool:
    """Whether a failed send means the client's connection is closed. ASGI servers say so with
    an OSError. uvicorn on uvloop can write to a transport already closed, which uvloop refuses
    with a RuntimeError naming the closed transport: when a client that pipelined requests
    leaves, uvicorn marks its last request as disconnected, not the one running."""
    return isinstance(error, OSError) or "closed=True" in str(error)


class Exchanges:
    """Records every HTTP request (it runs on every one, so it reads the raw scope) and hands the
    record to `observers` when the request is over."""

    def __init__(self, app: ASGIApp, observers: Sequence[Observer]) -> None:
        self.app = app
        self.observers = tuple(observers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange()
        token = _current.set(exchange)

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
            try:
                await send(message)
            except (OSError, RuntimeError) as e:
                if not _connection_closed(e):
                    raise
                exchange.disconnected = True
                raise ClientGone() from e

        try:
            await self.app(scope, receive, send_recorded)
        except ClientGone:
            exchange.status = 499  # nobody is left to answer, and nothing is wrong with the service
        finally:
            if exchange.disconnected and exchange.status == 500:
                exchange.status = 499
            _current.reset(token)
            exchange.seconds = time.perf_counter() - exchange.started
            for observe in self.observers:
                observe(scope, exchange)
