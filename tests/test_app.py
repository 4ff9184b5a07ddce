"""The original service's API, route by route, on every installed engine, against MariaDB."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import NEW_ORDER, Db, Service

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

ORDERS_JSON = (SAMPLES / "orders.json").read_bytes()
UPDATE_JSON = (SAMPLES / "update_order.json").read_bytes()
FORM = {"content-type": "application/x-www-form-urlencoded"}  # what `curl -d @file` sends

ORDER: dict[str, Any] = {"order_id": 7, **NEW_ORDER}
INDEX = "The valid endpoints are /init /create_order /create_orders /update_order /orders /delete_order"


def compact(raw: bytes) -> bytes:
    """The body as `curl -d @file` sends it: newlines stripped."""
    return raw.replace(b"\r", b"").replace(b"\n", b"")


def expect_error(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] is False
    assert body["error"]["message"]
    if field is not None:
        fields = [e["field"] for e in body["error"].get("errors", [])]
        assert field in fields, body
        assert body["error"]["field"] == fields[0]
    return dict(body["error"])


def test_the_original_walkthrough(client: httpx.Client, service_db: Db) -> None:
    assert client.get("/").text == INDEX
    assert client.get("/init").json() == {"status": True}
    assert client.post("/create_orders", content=compact(ORDERS_JSON), headers=FORM).json() == {"status": True}
    samples = json.loads(ORDERS_JSON)
    assert client.get("/orders").json() == samples

    assert client.get("/delete_order", params={"id": 2}).json() == {"status": True}
    assert client.get("/orders").json() == [o for o in samples if o["order_id"] != 2]

    assert client.post("/update_order", content=compact(UPDATE_JSON), headers=FORM).json() == {"status": True}
    update = json.loads(UPDATE_JSON)
    listed = client.get("/orders").json()
    assert [o["order_id"] for o in listed] == [1, 3, 4, 5]
    assert listed[1] == update
    assert service_db.rows("SELECT shipping_address FROM orders WHERE order_id = 3") == [("123 Main Street",)]


def test_orders_json_is_byte_compatible(client: httpx.Client) -> None:
    client.post("/create_order", json=ORDER)
    assert client.get("/orders").content == (
        b'[{"order_id":7,"product_id":12,"quantity":2,"amount":19.99,"shipping":15.0,"tax":2.0,'
        b'"shipping_address":"Mataderos 2312"}]'
    )


def test_money_is_stored_exactly(client: httpx.Client, service_db: Db) -> None:
    assert client.post("/create_order", json=ORDER).json() == {"status": True}
    assert service_db.rows("SELECT amount, shipping, tax FROM orders") == [(Decimal("19.99"), Decimal("15.00"), Decimal("2.00"))]
    assert client.get("/orders").json()[0]["amount"] == 19.99


def test_create_order_without_id_gets_one(client: httpx.Client) -> None:
    body = {k: v for k, v in ORDER.items() if k != "order_id"}
    assert client.post("/create_order", json=body).json() == {"status": True}
    assert client.post("/create_order", json=body).json() == {"status": True}
    assert [o["order_id"] for o in client.get("/orders").json()] == [1, 2]


def test_unicode_addresses_round_trip(client: httpx.Client) -> None:
    address = "Calle Ñandú 7, 東京都 🚚"
    assert client.post("/create_order", json={**ORDER, "shipping_address": address}).status_code == 200
    assert client.get("/orders").json()[0]["shipping_address"] == address
    assert client.post("/create_order", json={**ORDER, "order_id": 8, "shipping_address": "é" * 256}).status_code == 200


def test_init_resets_only_when_allowed(client: httpx.Client, service_db: Db) -> None:
    client.post("/create_order", json=ORDER)
    assert client.get("/init").json() == {"status": True}
    assert client.get("/orders").json() == []
    assert client.post("/create_order", json={k: v for k, v in ORDER.items() if k != "order_id"}).status_code == 200
    assert service_db.rows("SELECT order_id FROM orders") == [(1,)]


def test_echo_returns_the_body(client: httpx.Client) -> None:
    body = b'{"anything": [1, 2, 3]}\n\xff raw bytes'
    response = client.post("/echo", content=body, headers={"content-type": "text/plain"})
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-type"].startswith("text/plain")


CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "GET, POST, OPTIONS",
    "access-control-allow-headers": "api,Keep-Alive,User-Agent,Content-Type",
}


@pytest.mark.parametrize(
    "path", ["/", "/init", "/create_order", "/create_orders", "/orders", "/update_order", "/delete_order", "/echo"]
)
def test_options_and_cors_on_every_route(client: httpx.Client, path: str) -> None:
    response = client.options(path, headers={"origin": "http://localhost:8090", "access-control-request-method": "POST"})
    assert response.status_code == 200
    assert {k: response.headers.get(k) for k in CORS} == CORS


@pytest.mark.parametrize(
    "method, path, body",
    [("GET", "/orders", None), ("POST", "/create_order", b"{"), ("GET", "/nowhere", None), ("GET", "/delete_order", None)],
)
def test_cors_on_answers_and_errors(client: httpx.Client, method: str, path: str, body: bytes | None) -> None:
    response = client.request(method, path, content=body)
    assert {k: response.headers.get(k) for k in CORS} == CORS


def test_unknown_path_and_wrong_method(client: httpx.Client) -> None:
    expect_error(client.get("/nowhere"), 404)
    response = client.get("/create_order")
    expect_error(response, 405)
    assert "POST" in response.headers["allow"]


# --- bad input: a clear 4xx naming the field, nothing written, the next request served --------

BAD_ORDERS: list[tuple[str, bytes, int, str | None]] = [
    ("malformed JSON", b'{"order_id": 1,', 400, None),
    ("empty body", b"", 400, None),
    ("not JSON at all", b"order please", 400, None),
    ("nested too deep", b"[" * 100_000 + b"]" * 100_000, 400, None),
    ("invalid UTF-8", b'{"shipping_address": "\xff"}', 400, None),
    ("an array", b"[1, 2]", 422, "body"),
    ("a string", b'"order"', 422, "body"),
    ("null", b"null", 422, "body"),
    ("missing field", json.dumps({k: v for k, v in ORDER.items() if k != "quantity"}).encode(), 422, "quantity"),
    ("mistyped field", json.dumps({**ORDER, "product_id": "12"}).encode(), 422, "product_id"),
    ("fractional quantity", json.dumps({**ORDER, "quantity": 2.5}).encode(), 422, "quantity"),
    ("quantity over INT", json.dumps({**ORDER, "quantity": 2**31}).encode(), 422, "quantity"),
    ("huge order_id", json.dumps({**ORDER, "order_id": 10**30}).encode(), 422, "order_id"),
    ("zero order_id", json.dumps({**ORDER, "order_id": 0}).encode(), 422, "order_id"),
    ("negative quantity", json.dumps({**ORDER, "quantity": -2}).encode(), 422, "quantity"),
    ("zero quantity", json.dumps({**ORDER, "quantity": 0}).encode(), 422, "quantity"),
    ("negative amount", json.dumps({**ORDER, "amount": -1}).encode(), 422, "amount"),
    ("negative tax", json.dumps({**ORDER, "tax": -0.01}).encode(), 422, "tax"),
    ("three decimals", json.dumps({**ORDER, "shipping": 1.234}).encode(), 422, "shipping"),
    ("money too large", json.dumps({**ORDER, "amount": 1e12}).encode(), 422, "amount"),
    ("money as string", json.dumps({**ORDER, "amount": "19.99"}).encode(), 422, "amount"),
    ("empty address", json.dumps({**ORDER, "shipping_address": ""}).encode(), 422, "shipping_address"),
    ("blank address", json.dumps({**ORDER, "shipping_address": "   "}).encode(), 422, "shipping_address"),
    ("over-long address", json.dumps({**ORDER, "shipping_address": "x" * 257}).encode(), 422, "shipping_address"),
    ("address not a string", json.dumps({**ORDER, "shipping_address": 5}).encode(), 422, "shipping_address"),
    ("unknown field", json.dumps({**ORDER, "discount": 5}).encode(), 422, "discount"),
]


@pytest.mark.parametrize("name, body, status, field", BAD_ORDERS, ids=[b[0] for b in BAD_ORDERS])
def test_bad_create_order(client: httpx.Client, service_db: Db, name: str, body: bytes, status: int, field: str | None) -> None:
    expect_error(client.post("/create_order", content=body, headers=FORM), status, field)
    assert service_db.rows() == []
    assert client.post("/create_order", json=ORDER).json() == {"status": True}


@pytest.mark.parametrize("name, body, status, field", BAD_ORDERS, ids=[b[0] for b in BAD_ORDERS])
def test_bad_update_order(client: httpx.Client, service_db: Db, name: str, body: bytes, status: int, field: str | None) -> None:
    client.post("/create_order", json=ORDER)
    before = service_db.rows()
    expect_error(client.post("/update_order", content=body), status, field)
    assert service_db.rows() == before


def test_every_bad_field_is_reported(client: httpx.Client) -> None:
    body = {
        "order_id": "x",
        "product_id": -1,
        "quantity": 1.5,
        "amount": 1.001,
        "shipping": None,
        "tax": [],
        "shipping_address": "",
    }
    error = expect_error(client.post("/create_order", json=body), 422)
    assert [e["field"] for e in error["errors"]] == list(body)


def test_duplicate_order_id_is_409(client: httpx.Client, service_db: Db) -> None:
    assert client.post("/create_order", json=ORDER).json() == {"status": True}
    expect_error(client.post("/create_order", json={**ORDER, "quantity": 9}), 409, "order_id")
    assert service_db.rows("SELECT quantity FROM orders") == [(2,)]


def test_create_orders_is_all_or_nothing(client: httpx.Client, service_db: Db) -> None:
    client.post("/create_order", json={**ORDER, "order_id": 3})
    batch = json.loads(ORDERS_JSON)  # order 3 clashes with the one already stored
    expect_error(client.post("/create_orders", json=batch), 409, "[2].order_id")
    assert service_db.rows("SELECT order_id FROM orders") == [(3,)]

    batch[1]["quantity"] = -1
    batch[4]["shipping_address"] = ""
    error = expect_error(client.post("/create_orders", json=batch), 422, "[1].quantity")
    assert "[4].shipping_address" in [e["field"] for e in error["errors"]]
    assert service_db.rows("SELECT order_id FROM orders") == [(3,)]


def test_create_orders_rejects_repeated_ids_and_non_arrays(client: httpx.Client, service_db: Db) -> None:
    expect_error(client.post("/create_orders", json=[ORDER, ORDER]), 409, "[1].order_id")
    expect_error(client.post("/create_orders", json=ORDER), 422, "body")
    expect_error(client.post("/create_orders", content=b"[{]"), 400)
    assert service_db.rows() == []
    assert client.post("/create_orders", json=[]).json() == {"status": True}


def test_update_of_a_missing_order_is_404(client: httpx.Client, service_db: Db) -> None:
    expect_error(client.post("/update_order", json=ORDER), 404, "order_id")
    assert service_db.rows() == []
    client.post("/create_order", json=ORDER)
    assert client.post("/update_order", json=ORDER).json() == {"status": True}  # unchanged, still found


@pytest.mark.parametrize(
    "params, status",
    [
        ({}, 400),
        ({"id": "abc"}, 400),
        ({"id": ""}, 400),
        ({"id": "1.5"}, 400),
        ({"id": "99"}, 404),
        ({"id": "0"}, 404),
        ({"id": "2147483648"}, 404),
        # an id is written one way only: no sign, no spaces of any kind, no leading zeros
        ({"id": "-1"}, 400),
        ({"id": "+1"}, 400),
        ({"id": "01"}, 400),
        ({"id": " 1"}, 400),
        ({"id": "1\u00a0"}, 400),
        ({"id": "\u20071"}, 400),
        ({"id": "１"}, 400),
    ],
)
def test_bad_delete(client: httpx.Client, service_db: Db, params: dict[str, str], status: int) -> None:
    client.post("/create_order", json=ORDER)
    expect_error(client.get("/delete_order", params=params), status, "id")
    assert len(service_db.rows()) == 1
    assert client.get("/delete_order", params={"id": ORDER["order_id"]}).json() == {"status": True}
    assert service_db.rows() == []


def test_body_over_the_limit_is_413(client: httpx.Client, service_db: Db) -> None:
    big = b"[" + b" " * (1024 * 1024) + b"]"
    expect_error(client.post("/create_orders", content=big), 413)

    def chunks():  # no Content-Length: the limit holds while streaming too
        for _ in range(17):
            yield b" " * 65536

    expect_error(client.post("/create_orders", content=chunks()), 413)
    assert service_db.rows() == []
    assert client.post("/create_order", json=ORDER).json() == {"status": True}


def test_a_large_batch_within_the_limit(client: httpx.Client, service_db: Db) -> None:
    batch = [{**ORDER, "order_id": i + 1, "shipping_address": f"{i} Long Road"} for i in range(2000)]
    assert client.post("/create_orders", json=batch).json() == {"status": True}
    assert service_db.rows("SELECT COUNT(*), SUM(amount) FROM orders") == [(2000, Decimal("39980.00"))]
    assert len(client.get("/orders").json()) == 2000


def test_the_service_logs_the_engine(service: Service, engine: str) -> None:
    assert f"wasm engine: {engine}" in service.log()
