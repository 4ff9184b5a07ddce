"""Several worker processes on one database; a SIGTERM that finishes what is in flight."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from .conftest import Db, EmbeddedMariaDB, Service, make_database, url_of, wait_until
from .test_embedded import children

CREATED = 'http_requests_total{method="POST",route="/api/orders",status="201"}'
ORDER = {"product_id": 3, "quantity": 1, "amount": 9.99, "shipping": 0, "tax": 0.8, "shipping_address": "Worker Way"}


def test_two_workers_lose_no_concurrent_write(mariadb: EmbeddedMariaDB, engine: str, tmp_path: Path) -> None:
    db = make_database(mariadb, f"orders_workers_{engine}")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"DATABASE_URL": url_of(db), "WASM_ENGINE": engine, "DB_POOL_MAX": "4", "TMPDIR": str(tmp)}
    svc = Service(env, tmp_path / "service.log", args=["--workers", "2"])
    try:
        deadline = time.monotonic() + 20
        while len(children(svc.process.pid)) < 2:
            assert time.monotonic() < deadline, "two worker processes did not start"
            time.sleep(0.1)

        def write(client_no: int) -> list[int]:
            ids = []
            with httpx.Client(base_url=svc.base, timeout=30) as client:
                for i in range(25):
                    body = {**ORDER, "shipping_address": f"client {client_no} write {i}"}
                    response = client.post("/api/orders", json=body)
                    assert response.status_code == 201, response.text
                    ids.append(response.json()["order_id"])
            return ids

        with ThreadPoolExecutor(8) as pool:
            acknowledged = sorted(i for ids in pool.map(write, range(8)) for i in ids)
        assert len(acknowledged) == len(set(acknowledged)) == 200
        stored = db.rows("SELECT order_id, shipping_address FROM orders ORDER BY order_id")
        assert [row[0] for row in stored] == acknowledged
        assert {row[1] for row in stored} == {f"client {c} write {i}" for c in range(8) for i in range(25)}
        listed = svc.client.get("/api/orders", params={"limit": 500}).json()
        assert listed["total"] == 200
        # One truthful /metrics, whichever worker answers: both workers' requests, every time.
        for _ in range(12):
            with httpx.Client(base_url=svc.base, timeout=30) as fresh:  # a new connection: any worker
                text = fresh.get("/metrics").text
            created = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(CREATED))
            assert created == 200, text
            assert 'wasm_engine_info{engine="%s"} 1.0' % engine in text  # noqa: UP031
        assert len(list(tmp.iterdir())) == 1  # the workers' metrics files, in a directory of this run
    finally:
        svc.stop()
    assert list(tmp.iterdir()) == []  # removed at exit


def waiting_for_the_lock(db: Db) -> bool:
    """Whether a statement on `db` other than this one is running (the holder of the lock is idle)."""
    sql = "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND COMMAND = 'Query' AND ID <> CONNECTION_ID()"
    return bool(db.rows(sql, (db.url.database,)))


def accepting(base: str) -> bool:
    try:
        httpx.get(base + "/healthz", timeout=2)
    except httpx.TransportError:
        return False
    return True


def test_sigterm_finishes_requests_in_flight(service_db: Db, engine: str, tmp_path: Path) -> None:
    # The update waits for the lock for as long as the test holds it, however slow the machine.
    env = {"DATABASE_URL": url_of(service_db), "WASM_ENGINE": engine, "DB_LOCK_TIMEOUT": "30"}
    svc = Service(env, tmp_path / "service.log")
    try:
        service_db.run("TRUNCATE TABLE orders")
        created = svc.client.post("/api/orders", json=ORDER).json()
        holder = service_db.connect()
        holder.autocommit(False)
        holder.cursor().execute("SELECT * FROM orders WHERE order_id = %s FOR UPDATE", (created["order_id"],))
        result: dict[str, httpx.Response] = {}

        def update() -> None:
            with httpx.Client(base_url=svc.base, timeout=60) as other:
                result["patch"] = other.patch(f"/api/orders/{created['order_id']}", json={"quantity": 4})

        in_flight = threading.Thread(target=update)
        in_flight.start()
        wait_until(lambda: waiting_for_the_lock(service_db), what="the update waiting for the row lock")
        assert in_flight.is_alive()
        svc.process.send_signal(signal.SIGTERM)
        wait_until(lambda: not accepting(svc.base), timeout=10, what="the service refusing connections after SIGTERM")
        # The request in flight is still waited for well after SIGTERM (the service allows 30 s):
        # a shutdown that gave it only a moment would have cut it off by now.
        time.sleep(2)
        assert svc.process.poll() is None and in_flight.is_alive()  # still finishing the request in flight
        holder.rollback()
        holder.close()
        in_flight.join(30)
        assert result["patch"].status_code == 200
        assert svc.process.wait(30) is not None
        assert service_db.rows("SELECT quantity FROM orders WHERE order_id = %s", (created["order_id"],)) == [(4,)]
        assert "Finished server process" in svc.log() or "shutdown" in svc.log().lower()
    finally:
        svc.stop()
