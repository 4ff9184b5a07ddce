"""The service under database trouble: outages answer 503 and heal, a slow statement blocks no one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from service import EmbeddedMariaDB

from .conftest import Db, Service, guest_env, make_database, url_of

ORDER = {"order_id": 1, "product_id": 2, "quantity": 3, "amount": 4.5, "shipping": 0, "tax": 0, "shipping_address": "here"}


def start_service(db: Db, engine: str, guest: str, log: Path) -> Service:
    env = {"DATABASE_URL": url_of(db), **guest_env(engine, guest), "DB_CONNECT_TIMEOUT": "1", "DB_ACQUIRE_TIMEOUT": "3"}
    return Service(env, log)


def wait_for_status(client: httpx.Client, status: int, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/orders")
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_an_outage_answers_503_and_heals_without_a_restart(
    own_mariadb: EmbeddedMariaDB, engine: str, guest: str, tmp_path: Path
) -> None:
    db = Db(own_mariadb.url)
    svc = start_service(db, engine, guest, tmp_path / "service.log")
    try:
        assert svc.client.post("/create_order", json=ORDER).json() == {"status": True}
        own_mariadb.stop()
        for _ in range(3):
            down = svc.client.get("/orders")
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "database_unavailable"
            refused = svc.client.post("/create_order", json={**ORDER, "order_id": 2})
            assert refused.status_code == 503
        own_mariadb.start()
        up = wait_for_status(svc.client, 200)
        assert [o["order_id"] for o in up.json()] == [1]  # the acknowledged write survived, the refused one is absent
        assert svc.client.post("/create_order", json={**ORDER, "order_id": 2}).json() == {"status": True}
    finally:
        svc.stop()


def test_the_service_starts_while_the_database_is_down(
    own_mariadb: EmbeddedMariaDB, engine: str, guest: str, tmp_path: Path
) -> None:
    db = make_database(own_mariadb, f"orders_late_{engine}")
    own_mariadb.stop()
    svc = start_service(db, engine, guest, tmp_path / "service.log")
    try:
        assert svc.client.get("/orders").status_code == 503
        own_mariadb.start()
        assert wait_for_status(svc.client, 200).json() == []  # the schema was applied once it could be
        assert svc.client.post("/create_order", json=ORDER).json() == {"status": True}
    finally:
        svc.stop()


def test_a_blocked_statement_does_not_block_other_requests(client: httpx.Client, service_db: Db, service: Service) -> None:
    """While one request waits on a row lock, the event loop keeps serving others."""
    assert client.post("/create_order", json=ORDER).json() == {"status": True}
    holder = service_db.connect()
    holder.autocommit(False)
    holder.cursor().execute("SELECT * FROM orders WHERE order_id = 1 FOR UPDATE")
    result: dict[str, httpx.Response] = {}

    def update() -> None:
        with httpx.Client(base_url=service.base, timeout=60) as other:
            result["update"] = other.post("/update_order", json={**ORDER, "quantity": 9})

    blocked = threading.Thread(target=update)
    blocked.start()
    try:
        time.sleep(0.5)
        assert blocked.is_alive(), "the update should be waiting for the row lock"
        started = time.monotonic()
        for _ in range(10):
            assert client.get("/orders").status_code == 200
            assert client.post("/echo", content=b"still here").content == b"still here"
        assert time.monotonic() - started < 5
        assert blocked.is_alive()
    finally:
        holder.rollback()
        holder.close()
        blocked.join(30)
    assert result["update"].json() == {"status": True}
    assert service_db.rows("SELECT quantity FROM orders") == [(9,)]
