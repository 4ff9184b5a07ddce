"""Health, readiness, metrics and request logs, on the real service."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service import EmbeddedMariaDB

from .conftest import Db, Service, make_database, url_of

ORDER = {"product_id": 1, "quantity": 1, "amount": 1, "shipping": 0, "tax": 0, "shipping_address": "x"}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        metric_name, _, rest = sample.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric_name == name and got == want:
            return float(value)
    return 0.0


def test_healthz_and_readyz(client: httpx.Client, engine: str) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "engine": engine, "database": "ok"}


def test_metrics_count_requests_guests_and_host_calls(client: httpx.Client, engine: str) -> None:
    before = client.get("/metrics").text
    client.post("/api/orders", json=ORDER)
    client.get("/api/orders/1")
    client.get("/api/orders/999")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("http_requests_total", method="POST", route="/api/orders", status="201") == 1
    assert grew("http_requests_total", method="GET", route="/api/orders/{order_id}", status="200") == 1
    assert grew("http_requests_total", method="GET", route="/api/orders/{order_id}", status="404") == 1
    assert grew("guest_invocations_total", engine=engine, outcome="ok") == 3
    assert grew("guest_duration_seconds_count", engine=engine) == 3
    assert grew("host_calls_total", function="db_execute") == 1
    assert grew("host_calls_total", function="db_query") == 2
    assert grew("host_call_duration_seconds_count", function="db_query") == 2
    assert grew("http_request_duration_seconds_count", method="GET", route="/api/orders/{order_id}") == 2
    assert metric(after, "wasm_engine_info", engine=engine) == 1
    assert metric(after, "db_pool_connections", state="free") >= 1
    assert 'db_pool_connections{state="in_use"}' in after
    assert "guest_traps_total" in after


def test_every_request_has_an_id(client: httpx.Client, service: Service) -> None:
    made = client.get("/healthz").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", made)
    assert client.get("/orders", headers={"x-request-id": "trace-42"}).headers["x-request-id"] == "trace-42"
    assert client.get("/nowhere", headers={"x-request-id": "trace-43"}).headers["x-request-id"] == "trace-43"
    deadline = time.monotonic() + 5
    while "request_id=trace-43" not in service.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in service.log().splitlines() if "request_id=trace-42" in line)
    assert re.search(r"GET /orders 200 [\d.]+ms guest=[\d.]+ms db=[\d.]+ms request_id=trace-42", line), line


@pytest.fixture
def json_service(service_db: Db, engine: str, tmp_path: Path) -> Iterator[Service]:
    env = {"DATABASE_URL": url_of(service_db), "WASM_ENGINE": engine, "LOG_FORMAT": "json", "ORDERS_ALLOW_RESET": "1"}
    svc = Service(env, tmp_path / "service.log")
    yield svc
    svc.stop()


def test_json_logs_carry_the_request_id_into_guest_logs(json_service: Service) -> None:
    json_service.client.get("/init", headers={"x-request-id": "reset-1"})  # the guest logs the reset
    deadline = time.monotonic() + 5
    while '"request_id": "reset-1", "method"' not in json_service.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    records = [json.loads(line) for line in json_service.log().splitlines() if line.startswith("{")]
    assert records, json_service.log()
    request = next(r for r in records if r.get("event") == "request" and r["request_id"] == "reset-1")
    assert request["method"] == "GET" and request["path"] == "/init" and request["status"] == 200
    assert request["duration_ms"] > 0 and request["guest_ms"] >= 0 and request["db_ms"] >= 0
    guest = next(r for r in records if r["logger"] == "service.guest.log")
    assert guest["request_id"] == "reset-1"
    assert "emptied by /init" in guest["message"]


def test_readyz_follows_the_database(own_mariadb: EmbeddedMariaDB, engine: str, tmp_path: Path) -> None:
    db = make_database(own_mariadb, "orders_ready")
    env = {"DATABASE_URL": url_of(db), "WASM_ENGINE": engine, "DB_CONNECT_TIMEOUT": "1", "DB_ACQUIRE_TIMEOUT": "2"}
    svc = Service(env, tmp_path / "service.log")
    try:
        assert svc.client.get("/readyz").status_code == 200
        own_mariadb.stop()
        down = svc.client.get("/readyz")
        assert down.status_code == 503
        assert down.headers["retry-after"] == "1"
        assert svc.client.get("/healthz").status_code == 200  # alive, only not ready
        api = svc.client.get("/api/orders")
        assert (api.status_code, api.headers["retry-after"]) == (503, "1")
        assert api.json()["title"] == "The database is unavailable"
        own_mariadb.start()
        deadline = time.monotonic() + 20
        while svc.client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "not ready again after the database came back"
            time.sleep(0.2)
        assert svc.client.get("/api/orders").status_code == 200
    finally:
        svc.stop()
