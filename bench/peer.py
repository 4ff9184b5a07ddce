"""The plain-Python peer, for comparison only: the benchmarked endpoints and their rules written
directly in Python (Starlette + aiomysql), with no Wasm guest. Not part of the service.

    DATABASE_URL=mysql://root@127.0.0.1:3306/orders python bench/peer.py --port 8081
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

import aiomysql
import uvicorn
from pymysql.constants import CLIENT, FIELD_TYPE
from pymysql.converters import conversions
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import DatabaseURL

COLUMNS = "order_id, product_id, quantity, amount, shipping, tax, shipping_address"
FIELDS = COLUMNS.split(", ")
MAX_INT = 2_147_483_647
MAX_MONEY = Decimal("9999999999.99")
# Trimmed from both ends of an address: Unicode's White_Space, as the guest trims (Python's
# str.strip() would also trim the control characters \x1c-\x1f, which the guest refuses).
WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
DECODERS = {**conversions, FIELD_TYPE.NEWDECIMAL: Decimal}
HEADERS = {"access-control-allow-origin": "*"}


def error(status: int, code: str, message: str, errors: list[dict[str, str]] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body.update(field=errors[0]["field"], errors=errors)
    return Response(json.dumps({"status": False, "error": body}), status, media_type="application/json", headers=HEADERS)


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


OK = Response(b'{"status":true}', media_type="application/json", headers=HEADERS)


def create_app(url: DatabaseURL) -> Starlette:
    pool: aiomysql.Pool | None = None

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

    async def body_json(request: Request) -> Any:
        """The body as JSON, or the 400 answer when it is not JSON."""
        try:
            return json.loads(await request.body())
        except ValueError as e:
            return error(400, "malformed_json", f"the request body is not valid JSON: {e}")

    async def orders(request: Request) -> Response:
        assert pool is not None
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"SELECT {COLUMNS} FROM orders ORDER BY order_id")
            rows = await cur.fetchall()
        return Response("[" + ",".join(order_json(r) for r in rows) + "]", media_type="application/json", headers=HEADERS)

    async def get_order(request: Request) -> Response:
        assert pool is not None
        raw = request.path_params["order_id"]
        if not re.fullmatch(r"\d{1,10}", raw):
            return error(404, "order_not_found", f"there is no order with order_id {raw}")
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"SELECT {COLUMNS} FROM orders WHERE order_id = %s", (int(raw),))
            row = await cur.fetchone()
        if row is None:
            return error(404, "order_not_found", f"there is no order with order_id {raw}")
        return Response(order_json(row), media_type="application/json", headers=HEADERS)

    async def create_order(request: Request) -> Response:
        assert pool is not None
        value = await body_json(request)
        if isinstance(value, Response):
            return value
        params, errors = parse_order(value)
        if errors:
            return error(422, "invalid_order", "; ".join(f"{e['field']} {e['message']}" for e in errors), errors)
        async with pool.acquire() as conn, conn.cursor() as cur:
            try:
                await cur.execute(f"INSERT INTO orders ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)", params)
            except aiomysql.IntegrityError:
                return error(409, "duplicate_order_id", "order_id is already used by another order")
        return OK

    async def create_orders(request: Request) -> Response:
        assert pool is not None
        value = await body_json(request)
        if isinstance(value, Response):
            return value
        if not isinstance(value, list):
            return error(422, "invalid_order", "body must be a JSON array of orders")
        rows, errors = [], []
        for i, item in enumerate(value):
            params, bad = parse_order(item, f"[{i}].")
            errors += bad
            if params:
                rows.append(params)
        if errors:
            return error(422, "invalid_order", "; ".join(f"{e['field']} {e['message']}" for e in errors), errors)
        if rows:
            async with pool.acquire() as conn:
                await conn.begin()
                try:
                    async with conn.cursor() as cur:
                        placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
                        await cur.execute(f"INSERT INTO orders ({COLUMNS}) VALUES {placeholders}", [p for r in rows for p in r])
                    await conn.commit()
                except aiomysql.IntegrityError:
                    await conn.rollback()
                    return error(409, "duplicate_order_id", "an order_id is already used by another order")
        return OK

    routes = [
        Route("/orders", orders),
        Route("/api/orders/{order_id}", get_order),
        Route("/create_order", create_order, methods=["POST"]),
        Route("/create_orders", create_orders, methods=["POST"]),
        Route("/healthz", lambda r: Response(b'{"status":"ok"}', media_type="application/json")),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    uvicorn.run(
        create_app(DatabaseURL.parse(os.environ["DATABASE_URL"])),
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
    )
