"""The endpoint of every order route: read the request, build the session, invoke the guest,
answer. This module knows routes and the envelope, not rules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from ._abi import GuestResponse, encode_request
from ._answers import send_answer, send_whole
from ._deadline import alarm, cancel_from_outside, cancel_handled, deadline
from ._description import GuestRoute
from ._errors import GuestFault, LimitExceeded
from ._exchange import Exchange, current_exchange
from ._hostfuncs import HostSession
from ._http import RequestTimeout, read_body
from ._lifespan import Runtime
from ._request_ids import request_id_var
from ._settings import Settings

#: Host work that must come before the guest runs an operation (`/init`'s schema).
Before = Callable[[Runtime], Awaitable[None]]


class GuestEndpoint:
    """The ASGI endpoint of every guest route (`GuestRoutes` puts the matched GuestRoute in the
    scope): hands the request, by method, to the route's guest operation.

    Every order request passes through here, so it reads the raw ASGI scope and sends the
    response itself rather than building Starlette's Request and Response for it; errors it
    raises reach the app's exception handlers as any route's do.
    """

    __name__ = "guest"

    def __init__(self, *, before: Mapping[str, Before] | None = None) -> None:
        self.before = before or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route: GuestRoute = scope["route"]
        if scope["method"] == "OPTIONS":
            # The original answered its preflights 200; the REST API answers 204, no body.
            await send_whole(send, 204 if route.api == "rest" else 200, [], b"")
            return
        operation = _operation(route, scope["method"])
        runtime: Runtime = scope["app"].state.runtime
        request = await read_request(scope, receive, operation, runtime.settings)
        before = self.before.get(operation)
        if before is not None:
            await before(runtime)
        engine = runtime.guest.engine.name
        answer = await invoke(runtime, request, receive, current_exchange())
        if answer is not None:
            await send_answer(runtime, send, answer, engine)


def _operation(route: GuestRoute, method: str) -> str:
    """The operation `method` runs on `route`; 405 with Allow for a method it does not take, and
    for HEAD where GET changes data."""
    operation = route.methods.get("GET" if method == "HEAD" else method)
    if operation is None or (method == "HEAD" and operation in route.changing):
        allowed = [*route.methods]
        if "GET" in route.methods and route.methods["GET"] not in route.changing:
            allowed.append("HEAD")
        raise HTTPException(405, headers={"Allow": ", ".join([*allowed, "OPTIONS"])})
    return operation


async def read_request(scope: Scope, receive: Receive, operation: str, settings: Settings) -> bytes:
    """The guest's request (guest/ABI.md): its header line and the body. Raises PayloadTooLarge,
    RequestTimeout, or ClientDisconnect."""
    content_type = length = b""
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value
        elif name == b"content-length":
            length = value
    body = b""
    if scope["method"] in ("POST", "PUT", "PATCH"):
        try:
            with deadline(settings.client_timeout):
                body = await read_body(receive, length, settings.max_body_bytes)
        except asyncio.TimeoutError:
            raise RequestTimeout() from None
    # The request's header line (guest/ABI.md): made for every request.
    raw_query = scope["query_string"]
    query = dict(parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)) if raw_query else {}
    path = scope.get("path_params") or {}
    return encode_request(operation, query, path, content_type.decode("latin-1"), settings.allow_reset) + body


def new_session(runtime: Runtime) -> HostSession:
    """The database side of one invocation."""
    limits = runtime.guest.limits
    return HostSession(
        runtime.database,
        runtime.capability,
        max_result_bytes=limits.result_bytes,
        max_result_rows=limits.result_rows,
        request_id=request_id_var.get(),
        metrics=runtime.metrics,
    )


async def invoke(runtime: Runtime, request: bytes, receive: Receive, exchange: Exchange) -> GuestResponse | None:
    """The guest's answer to `request`, counted and timed; None when the client went away
    meanwhile (its statement was killed, and nobody waits for an answer). Raises GuestFault
    (LimitExceeded) when the guest failed."""
    metrics = runtime.metrics
    guest = runtime.guest
    engine = guest.engine.name
    session = new_session(runtime)
    clean = False
    watcher = _Watcher(exchange, receive)
    try:
        answer = await guest.invoke(request, session.call, session.log, session.charged)
        clean = True
    except LimitExceeded as e:
        metrics.labelled(metrics.guest_invocations, engine, "limit").inc()
        e.kept_changes = session.kept_changes
        raise
    except GuestFault:
        metrics.labelled(metrics.guest_invocations, engine, "fault").inc()
        metrics.labelled(metrics.guest_traps, engine).inc()
        raise
    except asyncio.CancelledError:
        if not exchange.disconnected:
            raise
        cancel_handled()
        return None
    finally:
        watcher.cancel()
        await session.close(broken=not clean)
    metrics.labelled(metrics.guest_invocations, engine, "ok").inc()
    metrics.labelled(metrics.guest_seconds, engine).observe(answer.guest_seconds)
    exchange.guest_seconds, exchange.db_seconds = answer.guest_seconds, answer.db_seconds
    return answer


#: How long a request runs before a task starts watching for its client leaving: most answer
#: sooner, and then no task is made for them (a task per request was a visible part of a
#: single-row request's cost; so was a timer of the loop's own, hence the deadlines' shared one);
#: a client that leaves is noticed at most this much later.
WATCH_AFTER_SECONDS = 0.05


class _Watcher:
    """Cancels the request's own task if its client disconnects, so that its database statement
    is killed rather than left to run for nobody; starts watching after WATCH_AFTER_SECONDS."""

    __slots__ = ("_exchange", "_receive", "_request", "_timer", "_task")

    def __init__(self, exchange: Exchange, receive: Receive) -> None:
        request = asyncio.current_task()
        assert request is not None
        self._exchange, self._receive, self._request = exchange, receive, request
        self._task: asyncio.Task[None] | None = None
        self._timer = alarm(WATCH_AFTER_SECONDS, self._start)

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._exchange.disconnected = True
                cancel_from_outside(self._request)
                return

    def cancel(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
