"""Metrics (Prometheus) and one log line per request, with the request id.

Every process keeps its own metrics; with several worker processes, scrape each, or set
PROMETHEUS_MULTIPROC_DIR as prometheus-client documents.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("service.access")
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
# Set in the scope when the client went away before its answer (logged as 499, nginx's code).
DISCONNECTED_KEY = "service.disconnected"

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The service's metrics, in a registry of their own (so tests can make several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter("http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r)
        self.http_seconds = Histogram(
            "http_request_duration_seconds", "HTTP request latency", ["method", "route"], buckets=_FAST, registry=r
        )
        self.guest_invocations = Counter("guest_invocations", "Guest invocations", ["engine", "outcome"], registry=r)
        self.guest_seconds = Histogram(
            "guest_duration_seconds", "Time spent running the guest, per invocation", ["engine"], buckets=_FAST, registry=r
        )
        self.guest_traps = Counter("guest_traps", "Guest invocations that trapped or broke the ABI", ["engine"], registry=r)
        self.host_calls = Counter("host_calls", "Host function calls by the guest", ["function"], registry=r)
        self.host_call_seconds = Histogram(
            "host_call_duration_seconds", "Host function call time", ["function"], buckets=_FAST, registry=r
        )
        self.db_pool = Gauge("db_pool_connections", "Database pool connections", ["state"], registry=r)
        self.engine = Gauge("wasm_engine_info", "The Wasm engine in use (1)", ["engine"], registry=r)
        self._pool_sizes: Callable[[], tuple[int, int]] | None = None
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def labelled(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, looked up once: labels() costs microseconds on every call."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def watch_pool(self, sizes: Callable[[], tuple[int, int]]) -> None:
        """`sizes()` gives (in use, free); read at every scrape."""
        self._pool_sizes = sizes

    def render(self) -> Response:
        if self._pool_sizes is not None:
            in_use, free = self._pool_sizes()
            self.db_pool.labels("in_use").set(in_use)
            self.db_pool.labels("free").set(free)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def route_of(scope: Scope) -> str:
    """The route's template (`/api/orders/{order_id}`), so labels stay few."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path is not None else "unmatched"


# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators.
_UNPRINTABLE = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


def printable(text: str) -> str:
    """`text` with every character that could end or forge a log line escaped (\\n as \\x0a)."""
    return text.translate(_UNPRINTABLE) if not text.isprintable() else text


# Where an endpoint leaves (guest seconds, database seconds) for the request's log line.
TIMING_KEY = "service.timing"
HeadersFor = Callable[[str], list[tuple[bytes, bytes]]]


class ClientGone(Exception):
    """An answer could not be written because the client's connection is closed."""


def _connection_closed(error: Exception) -> bool:
    """Whether a failed send means the client's connection is closed. ASGI servers say so with
    an OSError. uvicorn on uvloop can write to a transport already closed, which uvloop refuses
    with a RuntimeError naming the closed transport: when a client that pipelined requests
    leaves, uvicorn marks its last request as disconnected, not the one running."""
    return isinstance(error, OSError) or "closed=True" in str(error)


class RequestLog:
    """Gives every request an id (X-Request-ID taken or made, and returned), adds the headers
    `headers_for(path)` names to every response (errors included), counts and times the
    request, and logs one line for it.

    It runs on every request, so it reads the raw scope rather than building Request objects.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, json_lines: bool, headers_for: HeadersFor | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.json_lines = json_lines
        self.headers_for = headers_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                if len(given) <= 128 and given.isprintable():
                    request_id = given
                break
        request_id = request_id or os.urandom(8).hex()
        token = request_id_var.set(request_id)
        extra = [*(self.headers_for(scope["path"]) if self.headers_for else ()), (b"x-request-id", request_id.encode())]
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            try:
                await send(message)
            except (OSError, RuntimeError) as e:
                if not _connection_closed(e):
                    raise
                scope[DISCONNECTED_KEY] = True
                raise ClientGone() from e

        try:
            await self.app(scope, receive, send_with_headers)
        except ClientGone:
            status = 499  # nobody is left to answer, and nothing is wrong with the service
        finally:
            if scope.get(DISCONNECTED_KEY) and status == 500:
                status = 499
            request_id_var.reset(token)
            seconds = time.perf_counter() - started
            route = route_of(scope)
            method = scope["method"]
            metrics = self.metrics
            metrics.labelled(metrics.http_requests, method, route, str(status)).inc()
            metrics.labelled(metrics.http_seconds, method, route).observe(seconds)
            if access_log.isEnabledFor(logging.INFO):
                self._log(scope, status, seconds, request_id, scope.get(TIMING_KEY))

    def _log(self, scope: Scope, status: int, seconds: float, request_id: str, timing: tuple[float, float] | None) -> None:
        guest_ms = None if timing is None else round(timing[0] * 1000, 3)
        db_ms = None if timing is None else round(timing[1] * 1000, 3)
        if self.json_lines:
            record: dict[str, Any] = {
                "event": "request",
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "guest_ms": guest_ms,
                "db_ms": db_ms,
            }
            access_log.info(json.dumps(record))
        else:
            access_log.info(
                "%s %s %d %.3fms guest=%sms db=%sms request_id=%s",
                scope["method"],
                printable(scope["path"]),
                status,
                seconds * 1000,
                "-" if guest_ms is None else guest_ms,
                "-" if db_ms is None else db_ms,
                request_id,
            )


class JsonFormatter(logging.Formatter):
    """LOG_FORMAT=json: one JSON object per line; request lines carry their own fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "service.access" and message.startswith("{"):
            out: dict[str, Any] = json.loads(message)
        else:
            out = {"event": "log", "message": message}
            request_id = request_id_var.get()
            if request_id != "-":
                out["request_id"] = request_id
        out.update(time=self.formatTime(record), level=record.levelname, logger=record.name)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(level: str, json_lines: bool) -> None:
    handler = logging.StreamHandler()
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
