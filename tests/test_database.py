"""The database layer against the suite's MariaDB: errors made ours, schema applied idempotently."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pymysql
import pytest

from service import DatabaseError, DatabaseUnavailable, DatabaseURL
from service._database import Database, convert_error, schema_statements

from .conftest import Db, EmbeddedMariaDB, make_database


def test_driver_errors_become_kinds() -> None:
    assert convert_error(pymysql.err.IntegrityError(1062, "Duplicate entry '1' for key 'PRIMARY'")).kind == "duplicate"
    assert isinstance(convert_error(pymysql.err.OperationalError(2003, "Can't connect")), DatabaseUnavailable)
    assert isinstance(convert_error(ConnectionResetError()), DatabaseUnavailable)
    other = convert_error(pymysql.err.ProgrammingError(1146, "Table 'x' doesn't exist"))
    assert (type(other), other.kind, other.code) == (DatabaseError, "error", 1146)


def test_schema_is_one_create_if_not_exists() -> None:
    statements = schema_statements()
    assert len(statements) == 1
    assert statements[0].startswith("CREATE TABLE IF NOT EXISTS orders")
    assert "DECIMAL(12,2)" in statements[0] and "VARCHAR(256)" in statements[0]


@pytest.fixture(scope="module")
def db(mariadb: EmbeddedMariaDB) -> Db:
    return make_database(mariadb, "orders_database")


def test_schema_is_applied_idempotently_and_keeps_data(db: Db) -> None:
    async def start_and_close() -> None:
        database = Database(db.url)
        await database.start()
        await database.ensure_schema()
        await database.close()

    asyncio.run(start_and_close())
    db.run("INSERT INTO orders VALUES (1, 2, 3, 19.99, 0.5, 0, 'x')")
    asyncio.run(start_and_close())
    assert db.rows() == [(1, 2, 3, Decimal("19.99"), Decimal("0.50"), Decimal("0.00"), "x")]
    columns = {row[0]: row[1] for row in db.rows("SHOW COLUMNS FROM orders")}
    assert columns["amount"] == "decimal(12,2)"
    assert db.rows(
        "SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND COLUMN_NAME = 'shipping_address'",
        (db.url.database,),
    ) == [("utf8mb4",)]


def test_an_unreachable_database_is_unavailable_not_fatal() -> None:
    async def work() -> None:
        database = Database(DatabaseURL("127.0.0.1", 1, "root", "", "none"), connect_timeout=1, acquire_timeout=2)
        await database.start()  # logs and goes on
        with pytest.raises(DatabaseUnavailable):
            await database.acquire()
        await database.close()

    asyncio.run(work())
