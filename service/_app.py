"""HTTP: the original service's routes, CORS, body limits, and errors mapped to answers.

Every order route becomes one guest invocation; this module knows the routes, not the rules.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._database import Database
from ._engines import load_engine
from ._errors import DatabaseUnavailable, GuestFault, ServiceError
from ._guest import Guest
from ._hostfuncs import HostSession
from ._settings import Settings

log = logging.getLogger("service")

INDEX_TEXT = "The valid endpoints are /init /create_order /create_orders /update_order /orders /delete_order"

# The original answers every response with these, so a page from another origin works.
CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"api,Keep-Alive,User-Agent,Content-Type"),
]

# (path, HTTP method, guest operation)
LEGACY_ROUTES = [
    ("/init", "GET", "init"),
    ("/create_order", "POST", "create_order"),
    ("/create_orders", "POST", "create_orders"),
    ("/orders", "GET", "orders"),
    ("/update_order", "POST", "update_order"),
    ("/delete_order", "GET", "delete_order"),
    ("/echo", "POST", "echo"),
]


@dataclass
class Runtime:
    """What the routes use, built once in the lifespan."""

    settings: Settings
    guest: Guest
    database: Database


class PayloadTooLarge(ServiceError):
    pass


def error_body(code: str, message: str, **extra: str) -> bytes:
    """The original's error shape, for errors the host answers itself."""
    return json.dumps({"status": False, "error": {"code": code, "message": message, **extra}}).encode()


def json_error(status: int, code: str, message: str, **extra: str) -> Response:
    return Response(error_body(code, message, **extra), status, media_type="application/json")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body; raises PayloadTooLarge past `limit` bytes without reading further."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge()
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def guest_endpoint(operation: str):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=200)
        runtime: Runtime = request.app.state.runtime
        settings = runtime.settings
        body = await read_body(request, settings.max_body_bytes) if request.method == "POST" else b""
        header = {
            "op": operation,
            "query": dict(request.query_params),
            "content_type": request.headers.get("content-type", ""),
            "allow_reset": settings.allow_reset,
        }
        request_id = request.headers.get("x-request-id", "") or uuid.uuid4().hex[:16]
        if operation == "init":
            try:
                await runtime.database.ensure_schema()
            except DatabaseUnavailable:
                pass  # the guest's own statement will meet the outage and answer 503
        session = HostSession(runtime.database, max_result_bytes=settings.max_result_bytes, request_id=request_id)
        try:
            answer = await runtime.guest.invoke(
                json.dumps(header, separators=(",", ":")).encode() + b"\n" + body,
                session.call,
                session.log,
                max_statement_bytes=settings.max_statement_bytes,
                max_response_bytes=settings.max_response_bytes,
            )
        finally:
            await session.close()
        return Response(answer.body, answer.status, media_type=answer.content_type or None)

    endpoint.__name__ = operation
    return endpoint


async def index(request: Request) -> Response:
    if request.method == "OPTIONS":
        return Response(status_code=200)
    return PlainTextResponse(INDEX_TEXT)


async def guest_fault(request: Request, exc: Exception) -> Response:
    error_id = uuid.uuid4().hex[:12]
    log.error("guest fault %s on %s %s: %s", error_id, request.method, request.url.path, exc)
    return json_error(500, "guest_fault", f"the order logic failed; error id {error_id} is in the service log", error_id=error_id)


async def internal_error(request: Request, exc: Exception) -> Response:
    error_id = uuid.uuid4().hex[:12]
    log.exception("internal error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    return json_error(500, "internal_error", f"the service failed; error id {error_id} is in the service log", error_id=error_id)


async def too_large(request: Request, exc: Exception) -> Response:
    limit = request.app.state.runtime.settings.max_body_bytes
    return json_error(413, "payload_too_large", f"the request body is over the limit of {limit} bytes")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return json_error(404, "not_found", f"no route {request.url.path}; {INDEX_TEXT}")
    if exc.status_code == 405:
        response = json_error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
        response.headers.update(exc.headers or {})
        return response
    return json_error(exc.status_code, "http_error", exc.detail)


class CorsHeaders:
    """Adds the original service's CORS headers to every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *CORS_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_cors)


def create_app(settings: Settings, guest: Guest | None = None) -> Starlette:
    """The ASGI app. The guest is loaded in the lifespan unless one is given (already checked)."""
    if settings.database_url is None:
        raise ServiceError("create_app needs settings.database_url (python -m service starts a database itself)")
    database_url = settings.database_url

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loaded = guest or Guest.load(load_engine(settings.wasm_engine), settings.guest_module, pool_max=settings.guest_pool_max)
        database = Database(
            database_url,
            pool_min=settings.db_pool_min,
            pool_max=settings.db_pool_max,
            connect_timeout=settings.db_connect_timeout,
            acquire_timeout=settings.db_acquire_timeout,
        )
        await database.start()
        app.state.runtime = Runtime(settings, loaded, database)
        log.info("serving with the %s engine, database %s", loaded.engine.name, database_url.redacted())
        try:
            yield
        finally:
            await database.close()

    routes = [Route("/", index, methods=["GET", "OPTIONS"])]
    routes += [Route(path, guest_endpoint(op), methods=[method, "OPTIONS"]) for path, method, op in LEGACY_ROUTES]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            Exception: internal_error,
            GuestFault: guest_fault,
            PayloadTooLarge: too_large,
            HTTPException: http_error,
        },
    )
    app.add_middleware(CorsHeaders)
    return app
