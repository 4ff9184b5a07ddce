"""Hypothesis against the live service: no client input gets a 5xx, and every rejected request
leaves the table exactly as it was."""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import Db

FIELDS = ["order_id", "product_id", "quantity", "amount", "shipping", "tax", "shipping_address"]
SEED = [
    {"order_id": i, "product_id": i, "quantity": 1, "amount": 1.5, "shipping": 0, "tax": 0, "shipping_address": f"seed {i}"}
    for i in (1, 2, 3)
]

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-(10**13), max_value=10**13).map(float),
    st.sampled_from([0, 1, 2**31 - 1, 2**31, -1, 0.01, 0.001, 1e12, 9999999999.99, 10000000000]),
)
texts = st.one_of(st.text(max_size=300), st.sampled_from(["", " ", "é" * 256, "é" * 257, "a\u0000b", "\ud7ff", "x" * 300]))
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12
)
orders = st.fixed_dictionaries({}, optional={f: st.one_of(numbers, texts, st.none(), json_values) for f in FIELDS}).flatmap(
    lambda d: st.dictionaries(st.sampled_from(["extra", "Order_ID", ""]), json_values, max_size=1).map(
        lambda extra: {**d, **extra}
    )
)
bodies = st.one_of(
    orders.map(lambda o: json.dumps(o).encode()),
    st.lists(orders, max_size=5).map(lambda os: json.dumps(os).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
ids = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.text(max_size=12),
    st.sampled_from(["1", "2", "0", "-0", "1e3", " 2 "]),
)
content_types = st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "text/plain", "", "application/merge-patch+json"]
)
requests = st.one_of(
    st.tuples(
        st.sampled_from(["POST /create_order", "POST /create_orders", "POST /update_order", "POST /api/orders"]),
        bodies,
        content_types,
        st.just(""),
    ),
    st.tuples(st.sampled_from(["PUT /api/orders/{id}", "PATCH /api/orders/{id}"]), bodies, content_types, ids),
    st.tuples(
        st.sampled_from(
            [
                "GET /delete_order?id={id}",
                "DELETE /api/orders/{id}",
                "GET /api/orders/{id}",
                "GET /api/orders?limit={id}&offset={id}",
            ]
        ),
        st.just(b""),
        content_types,
        ids,
    ),
)


@pytest.fixture
def seeded(client: httpx.Client, service_db: Db) -> httpx.Client:
    assert client.post("/create_orders", json=SEED).json() == {"status": True}
    return client


@pytest.mark.usefixtures("seeded")
def test_no_input_is_a_server_error_and_rejections_change_nothing(seeded: httpx.Client, service_db: Db) -> None:
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(requests)
    def one(request: tuple[str, bytes, str, str]) -> None:
        route, body, content_type, id_text = request
        method, target = route.split(" ", 1)
        target = target.replace("{id}", quote(id_text, safe=""))
        before = service_db.rows()
        headers = {"content-type": content_type} if content_type else {}
        response = seeded.request(method, target, content=body, headers=headers)
        assert response.status_code < 500, (route, body[:300], response.status_code, response.text[:500])
        if response.status_code >= 400:
            assert service_db.rows() == before, (route, body[:300], response.text[:300])
            if response.status_code != 404 or target.startswith("/api/"):
                assert response.headers["content-type"].split(";")[0] in ("application/json", "application/problem+json")

    one()
    assert seeded.get("/healthz").status_code == 200
