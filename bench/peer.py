"""The plain-Python peer, for comparison only: the benchmarked endpoints and their rules written
directly in Python (Starlette + aiomysql), with no Wasm guest. Not part of the service.

    DATABASE_URL=mysql://root@127.0.0.1:3306/orders python bench/peer.py --port 8081 [--workers N] [--plumbing]

With --plumbing it answers behind the service's own host plumbing, the service's modules
composed as service/_app.py composes them: its one middleware (`_exchange.HostLayer`: request
ids, CORS, the exchange record, the order routes taken past the router as the service's guest
routes are) and its observers (the Prometheus metrics of `_metrics`, the access line of `_logs`,
at the service's LOG_LEVEL and LOG_FORMAT), /metrics; and, as the service adds to its answers,
Server-Timing with the time in the logic and in the database, which are also counted where the
service counts the guest's and its statements'. Between this peer and the
service there is then the guest runtime alone: the sandbox, its ABI and host functions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import aiomysql
import uvicorn
from pymysql.constants import CLIENT, FIELD_TYPE
from pymysql.converters import conversions
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Receive, Scope, Send

from service import DatabaseURL
from service._exchange import HostLayer, current_exchange
from service._logs import AccessLog, configure_logging
from service._metrics import Metrics
from service._settings import Settings

COLUMNS = "order_id, product_id, quantity, amount, shipping, tax, shipping_address"
FIELDS = COLUMNS.split(", ")
MAX_INT = 2_147_483_647
MAX_MONEY = Decimal("9999999999.99")
# Trimmed from both ends of an address: Unicode's White_Space, as the guest trims (Python's
# str.strip() would also trim the control characters \x1c-\x1f, which the guest refuses).
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
DECODERS = {**conversions, FIELD_TYPE.NEWDECIMAL: Decimal}
HEADERS = {"access-control-allow-origin": "*"}


def error(
    status: int, code: str, message: str, errors: list[dict[str, str]] | None = None, headers: dict[str, str] = HEADERS
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body.update(field=errors[0]["field"], errors=errors)
    return Response(json.dumps({"status": False, "error": body}), status, media_type="application/json", headers=headers)


def parse_order(value: Any, path: str = "", id_required: bool = False) -> tuple[list[Any] | None, list[dict[str, str]]]:
    """The same rules as the guest (tests/test_describe.py holds them to its cases): every bad
    field at once."""
    if not isinstance(value, dict):
        return None, [{"field": path.rstrip(".") or "body", "message": "must be an order (a JSON object)"}]
    errors = [{"field": path + k, "message": "is not a field of an order"} for k in value if k not in FIELDS]
    out: list[Any] = []
    for field in FIELDS:
        v = value.get(field)
        name = path + field
        if field == "order_id" and v is None and not id_required:
            out.append(None)
        elif v is None:
            errors.append({"field": name, "message": "is required"})
        elif field in ("order_id", "product_id", "quantity"):
            if type(v) is float and v.is_integer() and abs(v) < 2**63:
                v = int(v)  # 2.0 and 1e3 are whole numbers, as JSON Schema's integer counts them
            if type(v) is not int:
                errors.append({"field": name, "message": "must be a whole number"})
            elif not 1 <= v <= MAX_INT:
                errors.append({"field": name, "message": "must be at least 1" if v < 1 else "must be at most 2147483647"})
            else:
                out.append(v)
        elif field == "shipping_address":
            text = v.strip(WHITE_SPACE) if isinstance(v, str) else None
            if not text or len(text) > 256 or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text):
                errors.append({"field": name, "message": "must be a non-empty string of at most 256 characters"})
            else:
                out.append(text)
        else:
            try:
                money = Decimal(str(v)) if type(v) in (int, float) else None
            except InvalidOperation:
                money = None
            if money is None or money < 0 or money > MAX_MONEY or money != money.quantize(Decimal("0.01")):
                errors.append({"field": name, "message": "must be a number from 0 with at most two decimal places"})
            else:
                out.append(money.quantize(Decimal("0.01")))
    return (out if not errors else None), errors


def money(d: Decimal) -> str:
    text = f"{d:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def order_json(row: tuple[Any, ...]) -> str:
    return (
        f'{{"order_id":{row[0]},"product_id":{row[1]},"quantity":{row[2]},"amount":{money(row[3])},'
        f'"shipping":{money(row[4])},"tax":{money(row[5])},"shipping_address":{json.dumps(row[6], ensure_ascii=False)}}}'
    )


OK = b'{"status":true}'
Handler = Callable[[Request], Awaitable[Response]]


def create_app(url: DatabaseURL, plumbing: bool = False) -> Starlette:
    """The peer's app; with `plumbing`, behind the service's host plumbing (the module's doc)."""
    pool: aiomysql.Pool | None = None
    # Behind the service's CORS middleware the peer adds no CORS header of its own.
    headers = {} if plumbing else HEADERS
    metrics = Metrics() if plumbing else None
    ok = Response(OK, media_type="application/json", headers=headers)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        pool = await aiomysql.create_pool(
            **url.connect_args(),
            autocommit=True,
            conv=DECODERS,
            client_flag=CLIENT.FOUND_ROWS,
            maxsize=10,
        )
        yield
        pool.close()
        await pool.wait_closed()
        if metrics is not None:
            metrics.close()

    def fail(status: int, code: str, message: str, errors: list[dict[str, str]] | None = None) -> Response:
        return error(status, code, message, errors, headers)

    def connection() -> Any:
        """A pooled connection, `async with` it; with the plumbing, timed (`timed_connection`)."""
        assert pool is not None
        return pool.acquire() if metrics is None else timed_connection()

    @asynccontextmanager
    async def timed_connection() -> AsyncIterator[aiomysql.Connection]:
        """The time from asking for a connection to giving it back, counted as the database's
        (as the service counts the time its host functions are awaited)."""
        assert pool is not None
        started = time.perf_counter()
        try:
            async with pool.acquire() as conn:
                yield conn
        finally:
            exchange = current_exchange()
            exchange.db_seconds = (exchange.db_seconds or 0.0) + time.perf_counter() - started

    async def execute(cur: aiomysql.Cursor, sql: str, params: Any = None, function: str = "db_execute") -> None:
        """`cur.execute`; with the plumbing, timed and counted as the service's host functions are."""
        if metrics is None:
            await cur.execute(sql, params)
            return
        started = time.perf_counter()
        try:
            await cur.execute(sql, params)
        finally:
            metrics.labelled(metrics.host_calls, function).inc()
            metrics.labelled(metrics.host_call_seconds, function).observe(time.perf_counter() - started)

    def observed(handler: Handler) -> Handler:
        """With the plumbing, what the service's endpoint adds around its guest: the logic's time
        (the request's less the database's, as the guest's is measured) counted in the metrics and
        the exchange, and Server-Timing on the answer."""
        if metrics is None:
            return handler

        async def run(request: Request) -> Response:
            exchange = current_exchange()
            exchange.db_seconds = 0.0
            started = time.perf_counter()
            response = await handler(request)
            db_seconds = exchange.db_seconds
            exchange.guest_seconds = logic_seconds = time.perf_counter() - started - db_seconds
            metrics.labelled(metrics.guest_invocations, "python", "ok").inc()
            metrics.labelled(metrics.guest_seconds, "python").observe(logic_seconds)
            timing = f'app;dur={logic_seconds * 1000:.3f};desc="python", db;dur={db_seconds * 1000:.3f};desc="database"'
            response.raw_headers.append((b"server-timing", timing.encode()))
            return response

        return run

    async def body_json(request: Request) -> Any:
        """The body as JSON, or the 400 answer when it is not JSON."""
        try:
            return json.loads(await request.body())
        except ValueError as e:
            return fail(400, "malformed_json", f"the request body is not valid JSON: {e}")

    async def orders(request: Request) -> Response:
        assert pool is not None
        async with connection() as conn, conn.cursor() as cur:
            await execute(cur, f"SELECT {COLUMNS} FROM orders ORDER BY order_id", function="db_query")
            rows = await cur.fetchall()
        return Response("[" + ",".join(order_json(r) for r in rows) + "]", media_type="application/json", headers=headers)

    async def get_order(request: Request) -> Response:
        assert pool is not None
        raw = request.path_params["order_id"]
        if not re.fullmatch(r"\d{1,10}", raw):
            return fail(404, "order_not_found", f"there is no order with order_id {raw}")
        async with connection() as conn, conn.cursor() as cur:
            await execute(cur, f"SELECT {COLUMNS} FROM orders WHERE order_id = %s", (int(raw),), "db_query")
            row = await cur.fetchone()
        if row is None:
            return fail(404, "order_not_found", f"there is no order with order_id {raw}")
        return Response(order_json(row), media_type="application/json", headers=headers)

    def done() -> Response:
        # Behind the plumbing every answer gets a header of its own (Server-Timing): not shared.
        return ok if metrics is None else Response(OK, media_type="application/json")

    async def create_order(request: Request) -> Response:
        assert pool is not None
        value = await body_json(request)
        if isinstance(value, Response):
            return value
        params, errors = parse_order(value)
        if errors:
            return fail(422, "invalid_order", "; ".join(f"{e['field']} {e['message']}" for e in errors), errors)
        async with connection() as conn, conn.cursor() as cur:
            try:
                await execute(cur, f"INSERT INTO orders ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)", params)
            except aiomysql.IntegrityError:
                return fail(409, "duplicate_order_id", "order_id is already used by another order")
        return done()

    async def create_orders(request: Request) -> Response:
        assert pool is not None
        value = await body_json(request)
        if isinstance(value, Response):
            return value
        if not isinstance(value, list):
            return fail(422, "invalid_order", "body must be a JSON array of orders")
        rows, errors = [], []
        for i, item in enumerate(value):
            params, bad = parse_order(item, f"[{i}].")
            errors += bad
            if params:
                rows.append(params)
        if errors:
            return fail(422, "invalid_order", "; ".join(f"{e['field']} {e['message']}" for e in errors), errors)
        if rows:
            async with connection() as conn:
                await conn.begin()
                try:
                    async with conn.cursor() as cur:
                        placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
                        await execute(cur, f"INSERT INTO orders ({COLUMNS}) VALUES {placeholders}", [p for r in rows for p in r])
                    await conn.commit()
                except aiomysql.IntegrityError:
                    await conn.rollback()
                    return fail(409, "duplicate_order_id", "an order_id is already used by another order")
        return done()

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    routes = [
        Route("/orders", observed(orders)),
        Route("/api/orders/{order_id}", observed(get_order)),
        Route("/create_order", observed(create_order), methods=["POST"]),
        Route("/create_orders", observed(create_orders), methods=["POST"]),
        Route("/healthz", healthz),
    ]
    if metrics is None:
        return Starlette(routes=routes, lifespan=lifespan)

    async def render_metrics(request: Request) -> Response:
        return metrics.render()

    routes.append(Route("/metrics", render_metrics))
    app = Starlette(routes=routes, lifespan=lifespan)
    settings = Settings.from_environ()
    # As service/_app.py adds it, the order routes taken in the layer as the service takes its guest's.
    lane = Lane(routes[:4])
    app.add_middleware(HostLayer, observers=[metrics.observe_request, AccessLog(settings.log_format == "json")], lane=lane)
    return app


class Lane(BaseRoute):
    """The order routes, for the host layer to take straight to their endpoint as the service's
    layer takes the guest's routes (`service._routes.GuestRoutes`), past the router."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return match, {**child_scope, "route": route}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["route"].handle(scope, receive, send)


def app_from_environ() -> Starlette:
    """The app as a uvicorn factory, for worker processes (PEER_PLUMBING=1: with the plumbing)."""
    plumbing = os.environ.get("PEER_PLUMBING") == "1"
    if plumbing:
        settings = Settings.from_environ()
        configure_logging(settings.log_level, settings.log_format == "json")
    return create_app(DatabaseURL.parse(os.environ["DATABASE_URL"]), plumbing)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--plumbing", action="store_true", help="behind the service's host plumbing")
    args = parser.parse_args()
    if args.plumbing:
        os.environ["PEER_PLUMBING"] = "1"
    common: dict[str, Any] = {"host": "127.0.0.1", "port": args.port, "access_log": False}
    if args.plumbing:
        # As python -m service runs uvicorn: its logging, and its limit on requests at once.
        settings = Settings.from_environ()
        configure_logging(settings.log_level, settings.log_format == "json")
        common.update(log_config=None, limit_concurrency=settings.max_connections)
    else:
        common.update(log_level="warning")
    if args.workers == 1:
        uvicorn.run(app_from_environ(), **common)
        return
    shared = None
    if args.plumbing:
        from service.__main__ import _metrics_dir

        shared = _metrics_dir()  # as python -m service: the workers' metrics reported together
    try:
        uvicorn.run(
            "peer:app_from_environ", factory=True, app_dir=str(Path(__file__).resolve().parent), workers=args.workers, **common
        )
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)


if __name__ == "__main__":
    main()
