"""The host layer (`service._exchange.HostLayer`) takes the guest's routes past Starlette's router
and exception middleware: whatever such a route raises must be answered exactly as the router's
path answers it, with the same headers, and nothing may be answered twice."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import weakref
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from service._app import EXCEPTION_HANDLERS
from service._errors import GuestFault, LimitExceeded
from service._exchange import Exchange, HostLayer
from service._http import Overloaded, PayloadTooLarge, RequestTimeout


class SubFault(GuestFault):
    """Answered by its nearest class's handler."""


class Raiser:
    """A raw ASGI endpoint, as the guest's is, raising `make()`; after `answer_first` has begun its
    answer."""

    def __init__(self, make: Callable[[], BaseException], answer_first: bool = False) -> None:
        self.make, self.answer_first = make, answer_first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.answer_first:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        raise self.make()


class Lane(Route):
    """The route as the layer takes the guest's: a full match only."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        return (match, child_scope) if match is Match.FULL else (Match.NONE, {})


RAISED: dict[str, Callable[[], BaseException]] = {
    "405 with Allow": lambda: HTTPException(405, headers={"Allow": "GET, OPTIONS"}),
    "404": lambda: HTTPException(404),
    "payload too large": PayloadTooLarge,
    "request timeout": RequestTimeout,
    "overloaded": lambda: Overloaded("many answers wait"),
    "limit (503)": lambda: LimitExceeded("request_time", "too long"),
    "limit (500)": lambda: LimitExceeded("memory", "too big"),
    "guest fault": lambda: GuestFault("trapped"),
    "a subclass of a handled class": lambda: SubFault("trapped deeper"),
    "unhandled": lambda: ValueError("a bug"),
}


def app(
    make: Callable[[], BaseException],
    through_layer: bool,
    seen: list[Exchange],
    answer_first: bool = False,
    handlers: dict[Any, Any] | None = None,
) -> Starlette:
    route = Lane("/api/orders/{order_id}", Raiser(make, answer_first), methods=["GET", "POST"])
    application = Starlette(routes=[route], exception_handlers=EXCEPTION_HANDLERS if handlers is None else handlers)
    application.state.runtime = SimpleNamespace(settings=SimpleNamespace(max_body_bytes=1024, client_timeout=5.0))
    application.add_middleware(
        HostLayer, observers=[lambda scope, exchange: seen.append(exchange)], lane=route if through_layer else None
    )
    return application


def answer(application: Starlette) -> tuple[int, dict[str, Any], bytes]:
    with TestClient(application, raise_server_exceptions=False) as client:
        response = client.get("/api/orders/7", headers={"x-request-id": "fixed-id"})
    body = re.sub(rb"[0-9a-f]{12}", b"<error id>", response.content)  # made at random per answer
    return response.status_code, dict(response.headers), body


SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "scheme": "http",
    "method": "GET",
    "path": "/api/orders/7",
    "raw_path": b"/api/orders/7",
    "root_path": "",
    "query_string": b"",
    "headers": [],
    "server": ("127.0.0.1", 8080),
    "client": ("127.0.0.1", 50000),
}


@pytest.mark.parametrize("raised", RAISED)
def test_what_a_guest_route_raises_is_answered_as_through_the_router(raised: str) -> None:
    seen_router: list[Exchange] = []
    seen_layer: list[Exchange] = []
    through_router = answer(app(RAISED[raised], False, seen_router))
    through_layer = answer(app(RAISED[raised], True, seen_layer))
    assert through_layer == through_router
    status, headers, _ = through_layer
    assert status >= 400
    if raised != "unhandled":  # the server-error middleware's 500 is outside the layer, as ever
        assert headers["x-request-id"] == "fixed-id"
        assert headers["access-control-allow-origin"] == "*"
    assert [e.status for e in seen_layer] == [e.status for e in seen_router] == [status]


@pytest.mark.parametrize("through_layer", [False, True])
def test_an_error_after_the_answer_began_is_not_answered_again(through_layer: bool) -> None:
    sent: list[dict[str, Any]] = []
    application = app(lambda: GuestFault("late"), through_layer, [], answer_first=True)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = dict(SCOPE)
    with pytest.raises(RuntimeError, match="response already started"):
        asyncio.run(application(scope, receive, send))
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert sent[0]["status"] == 200


def test_the_layer_leaves_other_paths_to_the_router() -> None:
    seen: list[Exchange] = []
    status, headers, _ = answer_path(app(RAISED["guest fault"], True, seen), "/nowhere")
    assert status == 404
    assert headers["x-request-id"] == "fixed-id"
    assert [e.status for e in seen] == [404]


def answer_path(application: Starlette, path: str) -> tuple[int, dict[str, Any], bytes]:
    with TestClient(application, raise_server_exceptions=False) as client:
        response = client.get(path, headers={"x-request-id": "fixed-id"})
    return response.status_code, dict(response.headers), response.content


async def embedders_fault(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(f"the embedder's answer to {exc}", status_code=502)


def embedders_405(request: Request, exc: Exception) -> Response:  # a sync handler: run in a thread
    return PlainTextResponse("the embedder's 405", status_code=405, headers={"allow": "GET"})


@pytest.mark.parametrize("raised", RAISED)
@pytest.mark.parametrize("handlers", ["the service's and an embedder's", "Starlette's defaults only"])
def test_the_apps_own_handlers_answer_on_guest_routes_too(raised: str, handlers: str) -> None:
    # An app that embeds the service may add its own handlers (add_exception_handler), by class
    # and by status; one with none has Starlette's default answer to an HTTPException.
    def made(through_layer: bool) -> Starlette:
        own = handlers.startswith("the service's")
        application = app(RAISED[raised], through_layer, [], handlers=None if own else {})
        if own:
            application.add_exception_handler(GuestFault, embedders_fault)
            application.add_exception_handler(405, embedders_405)
        return application

    assert answer(made(through_layer=True)) == answer(made(through_layer=False))


def test_a_handler_added_after_the_first_request_is_ignored_on_both_paths() -> None:
    # Starlette takes the app's handlers when the app is first called; the layer does the same.
    def answers(through_layer: bool) -> list[tuple[int, dict[str, Any], bytes]]:
        application = app(RAISED["guest fault"], through_layer, [])
        with TestClient(application, raise_server_exceptions=False) as client:
            first = client.get("/api/orders/7", headers={"x-request-id": "fixed-id"})
            application.add_exception_handler(GuestFault, embedders_fault)
            second = client.get("/api/orders/7", headers={"x-request-id": "fixed-id"})
        return [(r.status_code, dict(r.headers), re.sub(rb"[0-9a-f]{12}", b"<id>", r.content)) for r in (first, second)]

    through_layer = answers(True)
    assert through_layer == answers(False)
    assert [status for status, _, _ in through_layer] == [500, 500]


class TrackedFault(GuestFault):
    """A handled exception that can be watched with a weak reference."""


class TrackedBug(Exception):
    """An unhandled one, likewise."""


@pytest.mark.parametrize("through_layer", [False, True])
@pytest.mark.parametrize("kind", ["handled", "unhandled", "after the answer began"])
def test_what_a_route_raised_is_freed_without_the_cycle_collector(through_layer: bool, kind: str) -> None:
    # A reference cycle through the exception's traceback would keep the request's frames, and
    # a body read into them, alive until the collector ran: 100 stalled uploads answered 408 held
    # some 100 MB that way.
    raised: list[weakref.ref[BaseException]] = []

    def make() -> BaseException:
        exc = TrackedBug("a bug") if kind == "unhandled" else TrackedFault("a fault")
        raised.append(weakref.ref(exc))
        return exc

    application = app(make, through_layer, [], answer_first=kind == "after the answer began")

    async def request() -> bool:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            pass

        scope = {**SCOPE, "headers": [], "state": {}}
        try:
            await application(scope, receive, send)
        except Exception:  # the unhandled one, and the refused one, go on to the server
            pass
        return raised[0]() is None

    gc.collect()
    gc.disable()
    logging.disable(logging.CRITICAL)  # a log record would hold the exception for the test's report
    try:
        freed = asyncio.run(request())
    finally:
        logging.disable(logging.NOTSET)
        gc.enable()
    assert len(raised) == 1 and freed
