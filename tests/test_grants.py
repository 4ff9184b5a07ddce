"""The least-privilege user of sql/grants.sql runs the whole service, and nothing more."""

from __future__ import annotations

from pathlib import Path

import pymysql
import pytest

from .conftest import ROOT, EmbeddedMariaDB, Service

ORDER = {"product_id": 1, "quantity": 2, "amount": 3.5, "shipping": 0, "tax": 0.25, "shipping_address": "least privilege"}


@pytest.fixture(scope="module")
def app_user(mariadb: EmbeddedMariaDB) -> str:
    """sql/grants.sql applied to a database of its own, with a password of the test's."""
    script = (ROOT / "sql" / "grants.sql").read_text()
    script = (
        script.replace("`orders`.", "`orders_granted`.")
        .replace("EXISTS `orders`", "EXISTS `orders_granted`")
        .replace("'change-me'", "'s3cret-app'")
    )
    with pymysql.connect(host="127.0.0.1", port=mariadb.port, user="root", password="") as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS `orders_granted`")
        cur.execute("DROP USER IF EXISTS 'orders_app'@'%'")
        code = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
        for statement in [s.strip() for s in code.split(";\n") if s.strip()]:
            cur.execute(statement)
    return f"mysql://orders_app:s3cret-app@127.0.0.1:{mariadb.port}/orders_granted"


def test_the_service_runs_as_the_least_privileged_user(app_user: str, engine: str, tmp_path: Path) -> None:
    svc = Service({"DATABASE_URL": app_user, "WASM_ENGINE": engine, "ORDERS_ALLOW_RESET": "1"}, tmp_path / "service.log")
    try:
        assert svc.client.get("/init").json() == {"status": True}
        created = svc.client.post("/api/orders", json=ORDER)
        assert created.status_code == 201
        order_id = created.json()["order_id"]
        assert svc.client.patch(f"/api/orders/{order_id}", json={"quantity": 3}).status_code == 200
        assert svc.client.get("/api/orders").json()["total"] == 1
        assert svc.client.delete(f"/api/orders/{order_id}").status_code == 204
        assert svc.client.get("/readyz").status_code == 200
    finally:
        svc.stop()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM mysql.user",
        "CREATE TABLE orders_granted.other (a INT)",
        "SELECT LOAD_FILE('/etc/passwd')",
        "CREATE DATABASE elsewhere",
        "GRANT SELECT ON orders_granted.orders TO 'orders_app'@'%'",
    ],
)
def test_the_user_can_do_nothing_else(app_user: str, mariadb: EmbeddedMariaDB, sql: str) -> None:
    with pymysql.connect(host="127.0.0.1", port=mariadb.port, user="orders_app", password="s3cret-app") as conn:
        with conn.cursor() as cur:
            try:
                cur.execute(sql)
                result = cur.fetchall()
            except pymysql.err.MySQLError as e:
                assert e.args[0] in (1044, 1045, 1142, 1143, 1227, 1410), e
            else:
                assert result in (((None,),), ()), f"{sql} should have been refused or read nothing: {result}"
