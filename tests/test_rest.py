"""The REST API under /api/orders, on every installed engine: statuses, problems, headers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from .conftest import NEW_ORDER, Db

ORDER: dict[str, Any] = dict(NEW_ORDER)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:problem-type:orders:")
    assert body["title"] and body["detail"]
    return dict(body)


def fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body.get("errors", [])]


def test_create_get_replace_patch_delete(client: httpx.Client, service_db: Db) -> None:
    created = client.post("/api/orders", json=ORDER)
    assert created.status_code == 201
    order = created.json()
    assert order == {"order_id": 1, **ORDER}
    assert created.headers["location"] == "/api/orders/1"

    assert client.get("/api/orders/1").json() == order
    replaced = client.put("/api/orders/1", json={**ORDER, "quantity": 5, "shipping_address": "  20 Havelock  "})
    assert replaced.status_code == 200
    assert replaced.json() == {**order, "quantity": 5, "shipping_address": "20 Havelock"}

    patched = client.patch("/api/orders/1", json={"tax": 3.5})
    assert patched.status_code == 200
    assert patched.json() == {**order, "quantity": 5, "shipping_address": "20 Havelock", "tax": 3.5}
    assert service_db.rows("SELECT quantity, tax, shipping_address FROM orders") == [(5, Decimal("3.50"), "20 Havelock")]

    merge = client.patch("/api/orders/1", content=b'{"quantity": 6}', headers={"content-type": "application/merge-patch+json"})
    assert merge.json()["quantity"] == 6

    deleted = client.delete("/api/orders/1")
    assert (deleted.status_code, deleted.content) == (204, b"")
    problem(client.get("/api/orders/1"), 404)
    assert service_db.rows() == []


def test_create_with_a_chosen_id(client: httpx.Client) -> None:
    assert client.post("/api/orders", json={**ORDER, "order_id": 42}).headers["location"] == "/api/orders/42"
    body = problem(client.post("/api/orders", json={**ORDER, "order_id": 42}), 409)
    assert fields(body) == ["order_id"]


def test_paging(client: httpx.Client) -> None:
    client.post("/create_orders", json=[{**ORDER, "order_id": i} for i in range(1, 121)])
    first = client.get("/api/orders").json()
    assert (first["total"], first["limit"], first["offset"], len(first["items"])) == (120, 50, 0, 50)
    assert [o["order_id"] for o in first["items"]] == list(range(1, 51))
    last = client.get("/api/orders", params={"limit": 50, "offset": 100}).json()
    assert [o["order_id"] for o in last["items"]] == list(range(101, 121))
    assert client.get("/api/orders", params={"limit": 500, "offset": 1000}).json()["items"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"limit": "ten"},
        {"offset": -1},
        {"offset": "x"},
        {"limit": "+5"},
        {"limit": "05"},
        {"offset": " 1"},
        {"offset": "1\u00a0"},
    ],
)
def test_bad_paging_is_400(client: httpx.Client, params: dict[str, Any]) -> None:
    body = problem(client.get("/api/orders", params=params), 400)
    assert fields(body) == list(params)


@pytest.mark.parametrize("raw", ["01", "+1", "%201", "1%20", "%C2%A01", "1.0", "-1", "0x1"])
def test_an_id_written_any_other_way_names_no_order(client: httpx.Client, raw: str) -> None:
    assert client.post("/api/orders", json={**ORDER, "order_id": 1}).status_code == 201
    assert client.get("/api/orders/1").status_code == 200
    assert problem(client.get(f"/api/orders/{raw}"), 404)["status"] == 404
    assert problem(client.delete(f"/api/orders/{raw}"), 404)["status"] == 404
    assert client.get("/api/orders/1").status_code == 200


def test_every_invalid_field_at_once_and_nothing_written(client: httpx.Client, service_db: Db) -> None:
    body = problem(client.post("/api/orders", json={"product_id": 0, "quantity": "2", "amount": 1.234, "tax": -1}), 422)
    assert fields(body) == ["product_id", "quantity", "amount", "shipping", "tax", "shipping_address"]
    assert service_db.rows() == []


@pytest.mark.parametrize(
    "method, path, content_type, body, status",
    [
        ("POST", "/api/orders", "text/plain", b"{}", 415),
        ("POST", "/api/orders", "application/x-www-form-urlencoded", b"a=b", 415),
        ("POST", "/api/orders", None, b"{}", 415),
        ("POST", "/api/orders", "application/json", b"{", 400),
        ("POST", "/api/orders", "application/json", b"[]", 422),
        ("PUT", "/api/orders/1", "application/json", b'{"quantity": 1}', 422),
        ("PUT", "/api/orders/1", "text/csv", b"1,2", 415),
        ("PATCH", "/api/orders/1", "application/json", b'{"colour": "red"}', 422),
        ("PATCH", "/api/orders/1", "application/json", b'{"order_id": 2}', 422),
        ("PATCH", "/api/orders/1", "application/json", b'{"amount": -5}', 422),
        ("PATCH", "/api/orders/1", "application/json", b'{"shipping_address": null}', 422),
    ],
)
def test_bad_requests_change_nothing(
    client: httpx.Client, service_db: Db, method: str, path: str, content_type: str | None, body: bytes, status: int
) -> None:
    client.post("/api/orders", json=ORDER)
    before = service_db.rows()
    headers = {"content-type": content_type} if content_type else {}
    problem(client.request(method, path, content=body, headers=headers), status)
    assert service_db.rows() == before


@pytest.mark.parametrize("order_id", ["999", "0", "-1", "abc", "99999999999999999999"])
def test_unknown_ids_are_404(client: httpx.Client, order_id: str) -> None:
    problem(client.get(f"/api/orders/{order_id}"), 404)
    problem(client.put(f"/api/orders/{order_id}", json=ORDER), 404)
    problem(client.patch(f"/api/orders/{order_id}", json={"tax": 1}), 404)
    problem(client.delete(f"/api/orders/{order_id}"), 404)


def test_wrong_methods_are_405_with_allow(client: httpx.Client) -> None:
    response = client.delete("/api/orders")
    problem(response, 405)
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    response = client.post("/api/orders/1", json=ORDER)
    problem(response, 405)
    assert "PATCH" in response.headers["allow"]


def test_host_errors_under_api_are_problems(client: httpx.Client) -> None:
    problem(client.get("/api/nothing"), 404)
    problem(client.post("/api/orders", content=b" " * (1024 * 1024 + 1), headers={"content-type": "application/json"}), 413)


def test_answers_show_the_sandbox(client: httpx.Client, engine: str) -> None:
    response = client.get("/api/orders")
    assert response.headers["x-wasm-engine"] == engine
    timing = response.headers["server-timing"]
    assert timing.startswith("wasm;dur=") and ", db;dur=" in timing
    assert response.headers["x-request-id"]
    assert client.get("/orders", headers={"x-request-id": "abc123"}).headers["x-request-id"] == "abc123"


def test_legacy_and_rest_agree(client: httpx.Client) -> None:
    """Both come from the same guest: same statuses, same messages, different shapes."""
    bad = {**ORDER, "order_id": 1, "quantity": -1}
    legacy = client.post("/create_order", json=bad)
    rest = client.post("/api/orders", json=bad)
    assert legacy.status_code == rest.status_code == 422
    assert legacy.json()["error"]["errors"] == rest.json()["errors"]
    assert legacy.json()["error"]["message"] == rest.json()["detail"]


def test_one_client_cannot_use_up_the_ids(client: httpx.Client, service_db: Db) -> None:
    """An order with the largest id moves MariaDB's AUTO_INCREMENT to its end for good; orders
    without an id then go on from the highest id below it (or take a free one lower down),
    before and after that order is deleted."""
    assert client.post("/api/orders", json={**ORDER, "order_id": 5}).status_code == 201
    assert client.post("/api/orders", json={**ORDER, "order_id": 2147483647}).status_code == 201
    assert client.post("/api/orders", json=ORDER).json()["order_id"] == 6
    assert client.post("/create_order", json=ORDER).json() == {"status": True}  # 7
    # A batch: the given id goes in first, the others after the highest id then.
    assert client.post("/create_orders", json=[ORDER, {**ORDER, "order_id": 10}, ORDER]).json() == {"status": True}
    assert [row[0] for row in service_db.rows("SELECT order_id FROM orders")] == [5, 6, 7, 10, 11, 12, 2147483647]
    assert client.delete("/api/orders/2147483647").status_code == 204
    assert client.post("/api/orders", json=ORDER).json()["order_id"] in (2147483647, 13)
    # The top band taken too: what is left is found lower down.
    assert client.post("/api/orders", json={**ORDER, "order_id": 2147483646}).status_code == 201
    assert client.post("/api/orders", json={**ORDER, "order_id": 2147483647}).status_code in (201, 409)
    assert client.post("/api/orders", json=ORDER).json()["order_id"] == 1
