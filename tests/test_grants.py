"""Least privilege: the users of sql/grants.sql run the whole service, the guest's user can do
nothing but change the orders table's rows, and the service sets up the same for its own server."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import httpx
import pymysql
import pytest

from service._database import prepare_guest_user
from service._driver import connect
from service._reaper import Reaper
from service._settings import DatabaseURL

from .conftest import NEW_ORDER, ROOT, EmbeddedMariaDB, Service, guest_env, make_database, url_of

ORDER = {"product_id": 1, "quantity": 2, "amount": 3.5, "shipping": 0, "tax": 0.25, "shipping_address": "least privilege"}
APP = ("orders_app", "s3cret-app")
ADMIN = ("orders_admin", "s3cret-admin")


def statements(path: Path, database: str) -> list[str]:
    text = path.read_text().replace("`orders`.", f"`{database}`.")
    text = text.replace("'change-me'", f"'{APP[1]}'").replace("'change-me-too'", f"'{ADMIN[1]}'")
    code = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    return [s.strip() for s in code.split(";\n") if s.strip().rstrip(";")]


def root(mariadb: EmbeddedMariaDB, database: str | None = None) -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=mariadb.port, user="root", password="", database=database, autocommit=True)


@pytest.fixture(scope="module")
def granted(mariadb: EmbeddedMariaDB) -> str:
    """sql/schema.sql, then sql/grants.sql, applied to a database of their own, as the image's
    entrypoint does in docker-compose.yml; passwords of the test's."""
    make_database(mariadb, "orders_granted")
    with root(mariadb, "orders_granted") as conn, conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS 'orders_app'@'%', 'orders_admin'@'%'")
        for statement in statements(ROOT / "sql" / "schema.sql", "orders_granted"):
            cur.execute(statement)
        for statement in statements(ROOT / "sql" / "grants.sql", "orders_granted"):
            cur.execute(statement)
        cur.execute("CREATE TABLE secret (a INT)")
        cur.execute("INSERT INTO secret VALUES (42)")
    return "orders_granted"


def url(user: tuple[str, str], mariadb: EmbeddedMariaDB, database: str) -> str:
    return DatabaseURL("127.0.0.1", mariadb.port, user[0], user[1], database).unredacted()


def test_the_service_runs_with_the_two_users(granted: str, mariadb: EmbeddedMariaDB, engine: str, tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": url(APP, mariadb, granted),
        "DATABASE_ADMIN_URL": url(ADMIN, mariadb, granted),
        "WASM_ENGINE": engine,
        "ORDERS_ALLOW_RESET": "1",
    }
    svc = Service(env, tmp_path / "service.log")
    try:
        assert svc.client.post("/api/orders", json=ORDER).status_code == 201
        assert svc.client.get("/init").json() == {"status": True}  # the reset, as orders_admin
        assert svc.client.get("/api/orders").json()["total"] == 0
        created = svc.client.post("/api/orders", json=ORDER)
        assert created.status_code == 201
        assert created.json()["order_id"] == 1  # TRUNCATE, not DELETE: the ids start again
        order_id = created.json()["order_id"]
        assert svc.client.patch(f"/api/orders/{order_id}", json={"quantity": 3}).status_code == 200
        assert svc.client.delete(f"/api/orders/{order_id}").status_code == 204
        assert svc.client.get("/readyz").status_code == 200
        assert "can do more than the guest's statements need" not in svc.log()
    finally:
        svc.stop()


def test_an_administrator_as_the_guest_user_works_but_is_warned_of(
    granted: str, mariadb: EmbeddedMariaDB, engine: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": url(("root", ""), mariadb, granted), "WASM_ENGINE": engine}
    svc = Service(env, tmp_path / "service.log")
    try:
        assert svc.client.get("/api/orders").status_code == 200
        assert "the database user root can do more than the guest's statements need" in svc.log()
    finally:
        svc.stop()


FORBIDDEN = [
    "SELECT * FROM mysql.user",
    "SELECT * FROM secret",
    "UPDATE secret SET a = 1",
    "SELECT LOAD_FILE('/etc/passwd')",
    "SELECT 1 INTO OUTFILE '/tmp/orders-grant-test'",
    "CREATE TABLE other (a INT)",
    "DROP TABLE orders",
    "TRUNCATE TABLE orders",
    "ALTER TABLE orders ADD c INT",
    "CREATE DATABASE elsewhere",
    "GRANT SELECT ON orders TO 'orders_app'@'%'",
    "SHOW GRANTS FOR root@localhost",
    "SELECT * FROM information_schema.PROCESSLIST WHERE USER = 'root'",
]


@pytest.mark.parametrize("sql", FORBIDDEN)
def test_the_guest_user_can_do_nothing_else(granted: str, mariadb: EmbeddedMariaDB, sql: str) -> None:
    with pymysql.connect(host="127.0.0.1", port=mariadb.port, user=APP[0], password=APP[1], database=granted) as conn:
        with conn.cursor() as cur:
            try:
                cur.execute(sql)
                result = cur.fetchall()
            except pymysql.err.MySQLError as e:
                assert e.args[0] in (1044, 1045, 1142, 1143, 1227, 1141, 1410), e
            else:
                assert result in (((None,),), ()), f"{sql} should have been refused or read nothing: {result}"
    assert not Path("/tmp/orders-grant-test").exists()


def privileges(mariadb: EmbeddedMariaDB, user: str) -> set[tuple[str, str, str]]:
    with root(mariadb) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE LIKE %s",
            (f"'{user}'@%",),
        )
        table = {tuple(row) for row in cur.fetchall()}
        cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE LIKE %s", (f"'{user}'@%",))
        assert cur.fetchall() == ((0,),)
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE GRANTEE LIKE %s AND PRIVILEGE_TYPE <> 'USAGE'",
            (f"'{user}'@%",),
        )
        assert cur.fetchall() == ((0,),)
    return table  # type: ignore[return-value]


def test_the_service_gives_its_own_server_the_same_guest_user(granted: str, mariadb: EmbeddedMariaDB) -> None:
    """What `python -m service` sets up for its private server is what sql/grants.sql grants."""
    db = make_database(mariadb, "orders_embedded_grants")
    prepare_guest_user(db.url, "app_embedded", "127.0.0.1", secrets.token_urlsafe(16), ["orders"])
    prepare_guest_user(db.url, "app_embedded", "127.0.0.1", secrets.token_urlsafe(16), ["orders"])  # idempotent
    ours = {(s.replace("orders_embedded_grants", "DB"), t, p) for s, t, p in privileges(mariadb, "app_embedded")}
    theirs = {(s.replace(granted, "DB"), t, p) for s, t, p in privileges(mariadb, "orders_app")}
    assert ours == theirs == {("DB", "orders", p) for p in ("SELECT", "INSERT", "UPDATE", "DELETE")}
    assert url_of(db)  # the administrator's URL still works for the suite


def app_statements(mariadb: EmbeddedMariaDB, database: str) -> list[tuple[object, ...]]:
    """The guest user's statements running on the server now."""
    with root(mariadb, database) as conn, conn.cursor() as cur:
        cur.execute("SELECT ID, TIME, INFO FROM information_schema.PROCESSLIST WHERE USER = %s AND COMMAND = 'Query'", (APP[0],))
        return list(cur.fetchall())


@pytest.mark.parametrize("how", ["client_leaves", "request_timeout"])
def test_the_two_users_statements_are_killed_when_their_request_ends(
    granted: str, mariadb: EmbeddedMariaDB, engine: str, tmp_path: Path, how: str
) -> None:
    """A statement waiting on a row lock (statement and lock limits far away) is killed on the
    server as soon as its client leaves or its request runs out of time, with the users of
    sql/grants.sql: neither may kill another user's session, so the kill must come from its own."""
    env = {
        "DATABASE_URL": url(APP, mariadb, granted),
        "DATABASE_ADMIN_URL": url(ADMIN, mariadb, granted),
        **guest_env(engine, "rust"),
        "DB_LOCK_TIMEOUT": "30",
        "DB_STATEMENT_TIMEOUT": "30",
        **({"REQUEST_TIMEOUT": "1"} if how == "request_timeout" else {}),
    }
    with root(mariadb, granted) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM orders WHERE order_id = 1")
        cur.execute("INSERT INTO orders VALUES (1, 12, 2, 19.99, 15, 2, 'locked')")
    holder = root(mariadb, granted)
    holder.autocommit(False)
    holder.cursor().execute("SELECT * FROM orders WHERE order_id = 1 FOR UPDATE")
    svc = Service(env, tmp_path / "service.log")
    try:
        with httpx.Client(base_url=svc.base, timeout=1.0 if how == "client_leaves" else 10.0) as client:
            try:
                answer = client.post("/update_order", json={**NEW_ORDER, "order_id": 1, "quantity": 5})
                assert how == "request_timeout" and answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "limit_exceeded", answer.text
            except httpx.TimeoutException:
                assert how == "client_leaves"
        end = time.monotonic() + 3
        while app_statements(mariadb, granted) and time.monotonic() < end:
            time.sleep(0.05)
        assert app_statements(mariadb, granted) == [], "the statement outlived its request"
        assert "could not kill" not in svc.log()
    finally:
        holder.rollback()
        holder.close()
        svc.stop()


@pytest.mark.parametrize("how", ["max_user_connections", "password_changed"])
def test_a_statement_is_killed_by_the_administrator_when_its_own_user_cannot_connect(
    mariadb: EmbeddedMariaDB, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The guest user may not open one more connection to kill its own statement (its connections
    at MAX_USER_CONNECTIONS, or its password rotated meanwhile): the administrative user, root
    here as under `python -m service`, kills it instead."""
    db = make_database(mariadb, "orders_kill_fallback")
    user = "app_kill_fallback"
    guest = prepare_guest_user(db.url, user, "127.0.0.1", secrets.token_urlsafe(12), ["orders"])

    def running() -> list[object]:
        sql = "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND COMMAND = 'Query'"
        return [row[0] for row in db.rows(sql, (user,))]

    async def main() -> None:
        if how == "max_user_connections":
            db.run(f"ALTER USER '{user}'@'127.0.0.1' WITH MAX_USER_CONNECTIONS 1")
        conn = await connect(guest, 5, "SET @x = 1")
        if how == "password_changed":
            db.run(f"ALTER USER '{user}'@'127.0.0.1' IDENTIFIED BY 'rotated'")
        cur = await conn.raw.cursor()
        sleeping = asyncio.ensure_future(cur.execute("SELECT SLEEP(20)"))
        await asyncio.sleep(0.3)
        conn.busy = True
        sleeping.cancel()
        reaper = Reaper(2.0, db.url)
        reaper.drop(conn)
        await reaper.close()

    try:
        asyncio.run(main())
        end = time.monotonic() + 2
        while running() and time.monotonic() < end:
            time.sleep(0.05)
        assert running() == [], [r.getMessage() for r in caplog.records]
        assert not [r for r in caplog.records if "could not kill" in r.getMessage()]
    finally:
        for thread in running():
            db.run(f"KILL {thread}")
        db.run(f"DROP USER '{user}'@'127.0.0.1'")
