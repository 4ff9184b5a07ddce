"""The routes: every order route is one guest invocation; this module knows routes, not rules."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from . import _malloc
from ._abi import encode_request
from ._database import SCHEMA_DIR, Database, deadline
from ._engines import load_engine
from ._errors import DatabaseError, GuestFault, GuestLoadError, LimitExceeded, ServiceError
from ._guest import FUEL_SLICE, Guest
from ._hostfuncs import HostSession
from ._http import (
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    cors_headers,
    error_response,
    guest_fault,
    http_error,
    internal_error,
    limit_exceeded,
    overloaded,
    read_body,
    request_timeout,
    too_large,
)
from ._observability import DISCONNECTED_KEY, TIMING_KEY, Metrics, RequestLog, configure_logging, printable, request_id_var
from ._openapi import openapi_document
from ._resources import project_dir
from ._settings import Settings
from ._sql import Capability

log = logging.getLogger("service")
# Tasks started from signal handlers, kept referenced until they end.
_background: set[asyncio.Task[None]] = set()

INDEX_TEXT = "The valid endpoints are /init /create_order /create_orders /update_order /orders /delete_order"
STATIC_DIR = project_dir("static")

# (path, methods, guest operation): the original's routes, then the REST API.
GUEST_ROUTES: list[tuple[str, list[str], str]] = [
    ("/init", ["GET"], "init"),
    ("/create_order", ["POST"], "create_order"),
    ("/create_orders", ["POST"], "create_orders"),
    ("/orders", ["GET"], "orders"),
    ("/update_order", ["POST"], "update_order"),
    ("/delete_order", ["GET"], "delete_order"),
    ("/echo", ["POST"], "echo"),
]
REST_ROUTES: list[tuple[str, dict[str, str]]] = [
    ("/api/orders", {"GET": "list", "POST": "create"}),
    ("/api/orders/{order_id}", {"GET": "get", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"}),
]
# The original's GET routes that change data: HEAD must not run them (it answers 405).
CHANGING_GET_OPERATIONS = frozenset({"init", "delete_order"})
# Answers larger than this are sent in pieces this large, as the client takes them.
SMALL_ANSWER_BYTES = 64 * 1024


@dataclass
class Runtime:
    """What the routes use, built once in the lifespan."""

    settings: Settings
    guest: Guest
    database: Database
    metrics: Metrics
    capability: Capability
    reloading: bool = False
    #: bytes of large answers being sent to clients that have not taken them yet
    unsent_bytes: int = 0


def guest_tables() -> list[str]:
    """The service's own tables, from sql/schema.sql: the only ones a guest may use."""
    return sorted(Capability.from_schema_file(SCHEMA_DIR / "schema.sql").tables)


class GuestEndpoint:
    """An ASGI endpoint that hands the request, by method, to a guest operation.

    Every order request passes through here, so it reads the raw ASGI scope and sends the
    response itself rather than building Starlette's Request and Response for it; errors it
    raises reach the app's exception handlers as any route's do.
    """

    def __init__(self, operations: dict[str, str], preflight_status: int) -> None:
        self.operations = operations
        self.preflight_status = preflight_status
        self.__name__ = "_".join(operations.values())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await _send(send, self.preflight_status, [], b"")
            return
        operation = self.operations["GET" if method == "HEAD" else method]
        if method == "HEAD" and operation in CHANGING_GET_OPERATIONS:
            allow = ", ".join([*self.operations, "OPTIONS"])
            raise HTTPException(405, headers={"Allow": allow})
        runtime: Runtime = scope["app"].state.runtime
        settings = runtime.settings
        content_type = length = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        body = b""
        if method in ("POST", "PUT", "PATCH"):
            try:
                async with deadline(settings.client_timeout):
                    body = await read_body(receive, length, settings.max_body_bytes)
            except asyncio.TimeoutError:
                raise RequestTimeout() from None
        # The request's header line (guest/ABI.md): made for every request.
        raw_query = scope["query_string"]
        query = dict(parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True)) if raw_query else {}
        path = scope.get("path_params") or {}
        header = encode_request(operation, query, path, content_type.decode("latin-1"), settings.allow_reset)
        if operation == "init":
            try:
                await runtime.database.ensure_schema()
            except DatabaseError:
                pass  # the guest's own statement meets the same trouble and answers for it
        metrics = runtime.metrics
        guest = runtime.guest
        engine = guest.engine.name
        limits = guest.limits
        session = HostSession(
            runtime.database,
            runtime.capability,
            max_result_bytes=limits.result_bytes,
            max_result_rows=limits.result_rows,
            request_id=request_id_var.get(),
            metrics=metrics,
        )
        clean = False
        watcher = _watch_for_disconnect(scope, receive)
        try:
            answer = await guest.invoke(header + body, session.call, session.log, session.charged)
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
            if not scope.get(DISCONNECTED_KEY):
                raise
            _uncancel()
            return  # the client went away: its statement was killed, and nobody waits for an answer
        finally:
            watcher.cancel()
            await session.close(broken=not clean)
        metrics.labelled(metrics.guest_invocations, engine, "ok").inc()
        metrics.labelled(metrics.guest_seconds, engine).observe(answer.guest_seconds)
        scope[TIMING_KEY] = (answer.guest_seconds, answer.db_seconds)
        headers = [(name.encode(), value.encode()) for name, value in answer.headers]
        if answer.content_type:
            headers.append((b"content-type", answer.content_type.encode()))
        if answer.status == 503 and not any(name == b"retry-after" for name, _ in headers):
            headers.append((b"retry-after", b"1"))
        timing = (
            f'wasm;dur={answer.guest_seconds * 1000:.3f};desc="guest on {engine}", '
            f'db;dur={answer.db_seconds * 1000:.3f};desc="database"'
        )
        headers += [(b"x-wasm-engine", engine.encode()), (b"server-timing", timing.encode())]
        if len(answer.body) <= SMALL_ANSWER_BYTES:
            await _send(send, answer.status, headers, answer.body)
        else:
            await _send_large(runtime, send, answer.status, headers, answer.body)


def _watch_for_disconnect(scope: Scope, receive: Receive) -> asyncio.Task[None]:
    """A task that cancels the request's own task if the client disconnects, so that its
    database statement is killed rather than left to run for nobody."""
    request_task = asyncio.current_task()
    assert request_task is not None

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope[DISCONNECTED_KEY] = True
                request_task.cancel()
                return

    return asyncio.get_running_loop().create_task(watch())


def _uncancel() -> None:
    """Clears the current task's pending cancellation (Python 3.11+ counts them)."""
    task = asyncio.current_task()
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()


async def _send_large(runtime: Runtime, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Sends a large answer in pieces, as the client takes them, within CLIENT_TIMEOUT; answers
    held for clients that do not read are bounded in all (MAX_UNSENT_MB)."""
    settings = runtime.settings
    if runtime.unsent_bytes + len(body) > settings.max_unsent_bytes:
        raise Overloaded(f"{runtime.unsent_bytes} bytes of answers are waiting for their clients (MAX_UNSENT_MB)")
    runtime.unsent_bytes += len(body)
    try:
        headers.append((b"content-length", str(len(body)).encode()))
        async with deadline(settings.client_timeout):
            await send({"type": "http.response.start", "status": status, "headers": headers})
            view = memoryview(body)
            for start in range(0, len(body), SMALL_ANSWER_BYTES):
                piece = view[start : start + SMALL_ANSWER_BYTES]
                await send({"type": "http.response.body", "body": bytes(piece), "more_body": start + len(piece) < len(body)})
    except asyncio.TimeoutError:
        # Returning with the answer unfinished makes the server close the connection.
        log.warning(
            "the client took less than its %d-byte answer within %g s (CLIENT_TIMEOUT); closing",
            len(body),
            settings.client_timeout,
        )
    finally:
        runtime.unsent_bytes -= len(body)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if status >= 200 and status not in (204, 304):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def index(request: Request) -> Response:
    """The demo page for browsers; the original's text for every other client."""
    if request.method == "OPTIONS":
        return Response(status_code=200)
    if "text/html" in request.headers.get("accept", ""):
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")
    return PlainTextResponse(INDEX_TEXT)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document())


async def healthz(request: Request) -> Response:
    """The process is up and serving."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the guest is loaded and the database answers; 503 otherwise."""
    runtime: Runtime = request.app.state.runtime
    try:
        await runtime.database.ping()
    except DatabaseError as e:
        response = error_response(request, 503, "not_ready", f"the database is not reachable: {e.message}")
        response.headers["retry-after"] = "1"
        return response
    return JSONResponse({"status": "ready", "engine": runtime.guest.engine.name, "database": "ok"})


async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return runtime.metrics.render()


def build_routes() -> list[BaseRoute]:
    # The order routes first: the router tries routes in turn, on every request.
    routes: list[BaseRoute] = []
    for path, by_method in REST_ROUTES:
        routes.append(Route(path, GuestEndpoint(by_method, 204), methods=[*by_method, "OPTIONS"]))
    for path, methods, operation in GUEST_ROUTES:
        routes.append(Route(path, GuestEndpoint({m: operation for m in methods}, 200), methods=[*methods, "OPTIONS"]))
    routes += [
        Route("/", index, methods=["GET", "OPTIONS"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    return routes


def load_guest(settings: Settings) -> Guest:
    """The engine and guest the settings name, checked. Raises ConfigError or GuestLoadError."""
    engine = load_engine(settings.wasm_engine)
    guest = Guest.load(
        engine,
        settings.guest_module,
        pool_max=settings.guest_pool_max,
        limits=settings.limits,
        cache_dir=settings.cache_dir,
        memory_total=settings.guest_memory_total,
    )
    if guest.metered:
        log.info(
            "the %s engine cannot interrupt running code: the guest is metered, and looks at the clock every %d "
            "instructions or so, to stop at GUEST_TIME_LIMIT_MS",
            engine.name,
            FUEL_SLICE,
        )
    return guest


def watch_for_reload(runtime: Runtime) -> None:
    """On SIGHUP, load the guest module again and swap it in; a module that does not load is
    refused and the running one keeps serving. The module is compiled in a child process, so
    requests are served meanwhile; requests in flight finish on the guest they started on."""

    async def reload() -> None:
        settings = runtime.settings
        try:
            fresh = await Guest.load_isolated(
                runtime.guest.engine,
                settings.guest_module,
                compile_timeout=settings.guest_compile_timeout,
                pool_max=settings.guest_pool_max,
                limits=settings.limits,
                cache_dir=settings.cache_dir,
                memory_total=settings.guest_memory_total,
            )
        except GuestLoadError as e:
            log.error("SIGHUP: the new guest module was refused; the running one keeps serving: %s", printable(str(e)))
            return
        except Exception as e:  # a failure of ours or of the engine: still, never stop serving
            log.error("SIGHUP: loading the new guest module failed; the running one keeps serving", exc_info=e)
            return
        finally:
            runtime.reloading = False
        old, runtime.guest = runtime.guest, fresh
        old.retire()
        log.info("SIGHUP: guest module reloaded from %s", fresh.name)

    def on_sighup() -> None:
        if runtime.reloading:
            log.warning("SIGHUP: a reload is already under way; this one is ignored")
            return
        runtime.reloading = True
        task = asyncio.get_running_loop().create_task(reload())
        _background.add(task)
        task.add_done_callback(_background.discard)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        log.info("no SIGHUP here (not the main thread, or not POSIX): the guest module cannot be reloaded")


def create_app(settings: Settings, guest: Guest | None = None) -> Starlette:
    """The ASGI app. The guest is loaded in the lifespan unless one is given (already checked)."""
    if settings.database_url is None:
        raise ServiceError("create_app needs settings.database_url (python -m service starts a database itself)")
    database_url = settings.database_url
    app_metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        _malloc.tune()
        loaded = guest or load_guest(settings)
        capability = Capability.from_schema_file(SCHEMA_DIR / "schema.sql", truncate=settings.allow_reset)
        database = Database(
            database_url,
            admin_url=settings.database_admin_url,
            pool_min=settings.db_pool_min,
            pool_max=settings.db_pool_max,
            connect_timeout=settings.db_connect_timeout,
            acquire_timeout=settings.db_acquire_timeout,
            statement_timeout=settings.db_statement_timeout,
            lock_timeout=settings.db_lock_timeout,
            guest_tables=frozenset(capability.tables),
        )
        await database.start()
        runtime = app.state.runtime = Runtime(settings, loaded, database, app_metrics, capability)
        watch_for_reload(runtime)
        app_metrics.engine.labels(loaded.engine.name).set(1)
        app_metrics.watch_pool(database.pool_sizes)
        log.info("serving with the %s engine, database %s", loaded.engine.name, database_url.redacted())
        try:
            yield
        finally:
            await database.close()

    app = Starlette(
        routes=build_routes(),
        lifespan=lifespan,
        exception_handlers={
            Exception: internal_error,
            LimitExceeded: limit_exceeded,
            GuestFault: guest_fault,
            PayloadTooLarge: too_large,
            RequestTimeout: request_timeout,
            Overloaded: overloaded,
            HTTPException: http_error,
        },
    )
    app.add_middleware(RequestLog, metrics=app_metrics, json_lines=settings.log_format == "json", headers_for=cors_headers)
    return app


def app_from_environ() -> Starlette:
    """The app as a uvicorn factory, for worker processes: settings from the environment."""
    settings = Settings.from_environ()
    configure_logging(settings.log_level, settings.log_format == "json")
    return create_app(settings)
