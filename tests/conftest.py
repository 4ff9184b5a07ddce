"""Fixtures: a private MariaDB for the whole run, and the real service on every installed engine,
running each guest (the Rust one and the AssemblyScript one)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pymysql
import pytest

from service import EmbeddedMariaDB, available_engines
from service._database import prepare_guest_user
from service._embedded import free_port
from service._settings import DatabaseURL

ROOT = Path(__file__).resolve().parent.parent
ENGINES = available_engines()
# The guests the service is tested with, by name: the same logic in two languages, which must
# give the same answers (tests/test_guests_agree.py).
GUESTS = {
    "rust": ROOT / "service" / "guest" / "orders.wasm",
    "as": ROOT / "service" / "guest" / "orders-as.wasm",
}
# The first sample order, without an id: the body most tests send.
NEW_ORDER = {
    "product_id": 12,
    "quantity": 2,
    "amount": 19.99,
    "shipping": 15.0,
    "tax": 2.0,
    "shipping_address": "Mataderos 2312",
}


def guest_env(engine: str, guest: str) -> dict[str, str]:
    """The environment that runs `guest` (a name in `GUESTS`) on `engine`."""
    return {"WASM_ENGINE": engine, "GUEST_MODULE": str(GUESTS[guest])}


def pytest_report_header() -> str:
    return f"wasm engines under test: {', '.join(ENGINES)}; guests: {', '.join(GUESTS)}"


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMariaDB]:
    """A MariaDB server of the suite's own: private data directory and port, stopped at the end."""
    server = EmbeddedMariaDB(tmp_path_factory.mktemp("mariadb") / "data", database="orders_test")
    server.start()
    yield server
    server.stop()


class Db:
    """Direct access to a test database, to see what the service really wrote."""

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url

    def connect(self) -> pymysql.connections.Connection:
        u = self.url
        return pymysql.connect(host=u.host, port=u.port, user=u.user, password=u.password, database=u.database, autocommit=True)

    def rows(
        self, sql: str = "SELECT * FROM orders ORDER BY order_id", params: tuple[object, ...] = ()
    ) -> list[tuple[object, ...]]:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def run(self, sql: str, params: tuple[object, ...] = ()) -> None:
        with self.connect() as conn, conn.cursor() as cur:
            cur.execute(sql, params)


def make_database(mariadb: EmbeddedMariaDB, name: str) -> Db:
    with pymysql.connect(host="127.0.0.1", port=mariadb.port, user="root", password="") as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return Db(DatabaseURL("127.0.0.1", mariadb.port, "root", "", name))


def wait_until(check: Callable[[], object], timeout: float = 20, what: str = "the condition") -> None:
    """Returns once `check()` is true; fails if it is still false after `timeout` seconds. For
    what a test must see happen, however long the machine takes (not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


def url_of(db: Db) -> str:
    return db.url.unredacted()


def least_privilege(db: Db) -> dict[str, str]:
    """The environment of a service whose guest statements run as a user of `db`'s own that can
    reach only the orders table (as `python -m service` sets up its private server), and whose
    schema work runs as the administrator of `db`."""
    user = f"app_{db.url.database}"[:32]
    guest = prepare_guest_user(db.url, user, "127.0.0.1", secrets.token_urlsafe(16), ["orders"])
    return {"DATABASE_URL": guest.unredacted(), "DATABASE_ADMIN_URL": url_of(db)}


class Service:
    """`python -m service` running in a child process, as a user starts it."""

    def __init__(self, env: dict[str, str], log_path: Path, args: list[str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "--port", str(self.port), *(args or [])],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.base, timeout=30)
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}:\n{self.log()}")
            try:
                self.client.get("/")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service did not answer within 60 s:\n{self.log()}") from None
                time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is not None:
            self._log.close()
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def own_mariadb(tmp_path: Path) -> Iterator[EmbeddedMariaDB]:
    """A MariaDB server of one test's own, which it may stop, kill and start again (same port, same data)."""
    server = EmbeddedMariaDB(tmp_path / "own-mariadb", database="orders")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def guest_db(mariadb: EmbeddedMariaDB) -> Db:
    """A database with the schema, for hand-written guests run in-process."""
    db = make_database(mariadb, "orders_guests")
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute((ROOT / "sql" / "schema.sql").read_text())
    return db


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session", params=list(GUESTS))
def guest(request: pytest.FixtureRequest) -> str:
    """Which guest module the service runs (`GUESTS`)."""
    return str(request.param)


@pytest.fixture(scope="session")
def service_db(mariadb: EmbeddedMariaDB, engine: str, guest: str) -> Db:
    return make_database(mariadb, f"orders_{engine}_{guest}")


@pytest.fixture(scope="session")
def service(service_db: Db, engine: str, guest: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service on one engine running one guest, with ORDERS_ALLOW_RESET on, as in the
    README's demo, its guest's statements running as a user that can reach only the orders table."""
    env = {**least_privilege(service_db), **guest_env(engine, guest), "ORDERS_ALLOW_RESET": "1"}
    svc = Service(env, tmp_path_factory.mktemp(f"service-{engine}-{guest}") / "service.log")
    yield svc
    svc.stop()


@pytest.fixture
def client(service: Service, service_db: Db) -> httpx.Client:
    """A client for a service whose orders table starts empty."""
    service_db.run("TRUNCATE TABLE orders")
    return service.client
