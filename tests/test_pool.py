"""The guest connections' pool against the suite's MariaDB: DB_POOL_MIN connections open at start
and stay open while idle or after losing some, and nothing is left open after close."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import pytest

from service._database import Database, prepare_guest_user
from service._settings import DatabaseURL

from .conftest import Db, EmbeddedMariaDB, make_database


@pytest.fixture(scope="module")
def db(mariadb: EmbeddedMariaDB) -> Db:
    return make_database(mariadb, "orders_pool")


@pytest.fixture(scope="module")
def users(db: Db) -> Iterator[tuple[DatabaseURL, DatabaseURL]]:
    """(guest URL, admin URL): users of these tests alone, so their sessions can be counted."""
    guest = prepare_guest_user(db.url, "pool_guest", "127.0.0.1", secrets.token_urlsafe(16), ["orders"])
    password = secrets.token_urlsafe(16)
    db.run("CREATE USER IF NOT EXISTS 'pool_admin'@'127.0.0.1'")
    db.run("ALTER USER 'pool_admin'@'127.0.0.1' IDENTIFIED BY %s", (password,))
    db.run("GRANT ALL PRIVILEGES ON *.* TO 'pool_admin'@'127.0.0.1'")
    yield guest, DatabaseURL(db.url.host, db.url.port, "pool_admin", password, db.url.database)
    db.run("DROP USER 'pool_guest'@'127.0.0.1'")
    db.run("DROP USER 'pool_admin'@'127.0.0.1'")


def sessions(db: Db, user: str) -> list[int]:
    return sorted(int(row[0]) for row in db.rows("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,)))


async def settle(db: Db, user: str, count: int) -> list[int]:
    """The user's sessions once there are `count` of them (the server notices a close a moment later)."""
    deadline = time.monotonic() + 5
    while len(ids := sessions(db, user)) != count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return ids


def test_pool_min_connections_open_at_start_and_stay_open(db: Db, users: tuple[DatabaseURL, DatabaseURL]) -> None:
    guest, admin = users

    async def work() -> None:
        database = Database(guest, admin_url=admin, pool_min=3, pool_max=5, keep_interval=0.2, guest_tables=frozenset({"orders"}))
        await database.start()
        started = sessions(db, "pool_guest")
        assert len(started) == 3
        assert database.pool_sizes() == (0, 3)

        # Idle for several rounds of the keeper: the same sessions, pinged, not replaced.
        await asyncio.sleep(1.0)
        assert sessions(db, "pool_guest") == started

        # The server ends them (as wait_timeout or a restart would): the keeper opens others.
        for thread_id in started:
            db.run(f"KILL CONNECTION {thread_id}")
        await asyncio.sleep(1.0)
        replaced = await settle(db, "pool_guest", 3)
        assert len(replaced) == 3 and not set(replaced) & set(started)

        # A connection given back broken is closed, and another opened in its place at once.
        conn = await database.acquire()
        database.release(conn, broken=True)
        await asyncio.sleep(0.1)
        assert database.pool_sizes() == (0, 3)
        assert len(await settle(db, "pool_guest", 3)) == 3

        await database.close()
        assert await settle(db, "pool_guest", 0) == []

    asyncio.run(work())


def test_without_a_minimum_the_pool_connects_on_demand(db: Db, users: tuple[DatabaseURL, DatabaseURL]) -> None:
    guest, admin = users

    async def work() -> None:
        database = Database(guest, admin_url=admin, keep_interval=0.2, guest_tables=frozenset({"orders"}))
        await database.start()
        # The one the start's privilege check used, and no other, however long it waits.
        first = sessions(db, "pool_guest")
        assert len(first) == 1
        await asyncio.sleep(0.5)
        conn = await database.acquire()
        database.release(conn)
        assert sessions(db, "pool_guest") == first
        await database.close()
        assert await settle(db, "pool_guest", 0) == []

    asyncio.run(work())


def test_close_leaves_no_session_of_either_user(db: Db, users: tuple[DatabaseURL, DatabaseURL]) -> None:
    """The pool's connections and the administrative ones (schema, reset, kills) are all closed."""
    guest, admin = users

    async def work() -> None:
        database = Database(guest, admin_url=admin, pool_min=2, guest_tables=frozenset({"orders"}))
        await database.start()
        await database.reset("TRUNCATE TABLE `orders`")
        conn = await database.acquire()
        # A statement whose request is cancelled: its connection is dropped, its session killed
        # on a connection of the administrator's.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(database.query(conn, "SELECT SLEEP(5)", lambda row: None), 0.3)
        database.release(conn, broken=True)
        await database.close()
        assert await settle(db, "pool_guest", 0) == []
        assert await settle(db, "pool_admin", 0) == []

    asyncio.run(work())
