"""One HTTP exchange as the service's observers see it, and the service's one middleware.

`HostLayer` is the host's HTTP plumbing around every request, in one layer: it gives the request
its id (`_request_ids`), times it, adds the CORS headers (`_cors`) and the id to the answer, notes
the status that was sent (499, nginx's code, when the client went away first) and, once the
request is over, hands the record to each observer (metrics, the access line). The parts inside
write into the record of the running request, `current_exchange()`: the guest's timings.

It is one layer rather than one middleware per part because most of a single-row request's cost
is per-request Python: each middleware is a coroutine more per request and a wrapper more per
message sent. For the same reason it hands a request for one of the guest's routes straight to
that route, without Starlette's router, and without Starlette's exception middleware unless the
route raises (every other request goes through both).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._cors import HeadersFor, cors_headers
from ._request_ids import request_id_of, request_id_var


class Exchange:
    """What is known of one request: set by the parts that learn it, read by the observers."""

    __slots__ = ("started", "seconds", "status", "answered", "request_id", "guest_seconds", "db_seconds", "disconnected")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds = 0.0
        #: the status sent; 500 until one is (an error answered outside the middleware is a 500)
        self.status = 500
        #: whether the answer's status line has been handed to the server
        self.answered = False
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


class HostLayer:
    """The service's middleware (see the module's docstring). It runs on every request, so it
    reads the raw scope. `lane`: the guest's routes, taken here when they match."""

    def __init__(
        self, app: ASGIApp, observers: Sequence[Observer], lane: BaseRoute | None = None, headers_for: HeadersFor = cors_headers
    ) -> None:
        self.app = app
        self.observers = tuple(observers)
        self.lane = lane
        self.headers_for = headers_for
        #: the app's exception handlers as they were at its first call (see `_guest_route`)
        self._handlers: dict[Any, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._handlers is None:
            # As Starlette gives its exception middleware the handlers when the app is first
            # called (its lifespan, or a first request), and never again.
            self._handlers = {k: v for k, v in scope["app"].exception_handlers.items() if k not in (500, Exception)}
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange()
        token = _current.set(exchange)
        exchange.request_id = request_id = request_id_of(scope["headers"])
        id_token = request_id_var.set(request_id)
        headers_for = self.headers_for

        async def send_host(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                exchange.answered = True
                # The router has matched by now: the CORS headers are the route's.
                headers = [*message.get("headers", ()), *headers_for(scope), (b"x-request-id", request_id.encode())]
                message["headers"] = headers
            try:
                await send(message)
            except (OSError, RuntimeError) as e:
                if not _connection_closed(e):
                    raise
                exchange.disconnected = True
                raise ClientGone() from e

        try:
            lane = self.lane
            match, child_scope = lane.matches(scope) if lane is not None else (Match.NONE, {})
            if match is Match.FULL:
                scope.update(child_scope)
                await self._guest_route(scope, receive, send_host, exchange)
            else:
                await self.app(scope, receive, send_host)
        except ClientGone:
            exchange.status = 499  # nobody is left to answer, and nothing is wrong with the service
        finally:
            request_id_var.reset(id_token)
            if exchange.disconnected and exchange.status == 500:
                exchange.status = 499
            _current.reset(token)
            exchange.seconds = time.perf_counter() - exchange.started
            for observe in self.observers:
                observe(scope, exchange)

    async def _guest_route(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        assert self.lane is not None
        try:
            await self.lane.handle(scope, receive, send)
        except Exception as exc:
            # Handed to Starlette's own exception middleware, with the app's handlers as the app
            # gave them to its own (`Exception` and 500 are the server-error middleware's, outside
            # this layer), so that it is answered, or refused once the answer has begun, or raised
            # on, exactly as for any other route. Made only when something was raised: a request
            # that answers pays nothing for it.
            assert self._handlers is not None
            answered = exchange.answered
            middleware = ExceptionMiddleware(_Raising(exc, answered), handlers=self._handlers, debug=scope["app"].debug)
            await middleware(scope, receive, _nowhere if answered else send)


class _Raising:
    """An ASGI app that raises one exception, for the exception middleware to answer (after
    telling it the answer has begun, when it has). It keeps no reference to the exception once
    raised: one from its frame, which the exception's own traceback holds, would be a cycle that
    kept the request (its body too) alive until the cycle collector came by."""

    def __init__(self, exc: Exception, answered: bool) -> None:
        self._exc: Exception | None = exc
        self._answered = answered

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._answered:
            await send({"type": "http.response.start", "status": 500, "headers": []})
        exc, self._exc = self._exc, None
        assert exc is not None
        try:
            raise exc
        finally:
            del exc


async def _nowhere(message: Message) -> None:
    """Where the exception middleware's messages go once the answer has begun."""
