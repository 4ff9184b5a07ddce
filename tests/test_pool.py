"""The guest connections' pool against the suite's MariaDB: DB_POOL_MIN connections open at start
and stay open while idle or after losing some, and nothing is left open after close."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiomysql
import pytest

from service._database import Database, prepare_guest_user
from service._driver import _abandoned as driver_abandoned
from service._driver import connect, open_raw
from service._errors import DatabaseUnavailable
from service._settings import DatabaseURL

from .conftest import Db, EmbeddedMariaDB, make_database, wait_until


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


@contextlib.asynccontextmanager
async def running(database: Database) -> AsyncIterator[Database]:
    """The database started, and closed however the test ends (a failed test must not leave its
    sessions open to be counted by the next)."""
    try:
        await database.start()
        yield database
    finally:
        await database.close()


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
        async with running(database):
            await check(database)
        assert await settle(db, "pool_guest", 0) == []

    async def check(database: Database) -> None:
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

    asyncio.run(work())


def test_without_a_minimum_the_pool_connects_on_demand(db: Db, users: tuple[DatabaseURL, DatabaseURL]) -> None:
    guest, admin = users

    async def work() -> None:
        database = Database(guest, admin_url=admin, keep_interval=0.2, guest_tables=frozenset({"orders"}))
        async with running(database):
            # The one the start's privilege check used, and no other, however long it waits.
            first = sessions(db, "pool_guest")
            assert len(first) == 1
            await asyncio.sleep(0.5)
            conn = await database.acquire()
            database.release(conn)
            assert sessions(db, "pool_guest") == first
        assert await settle(db, "pool_guest", 0) == []

    asyncio.run(work())


def test_close_leaves_no_session_of_either_user(db: Db, users: tuple[DatabaseURL, DatabaseURL]) -> None:
    """The pool's connections and the administrative ones (schema, reset, kills) are all closed."""
    guest, admin = users

    async def work() -> None:
        database = Database(guest, admin_url=admin, pool_min=2, guest_tables=frozenset({"orders"}))
        async with running(database):
            await database.reset("TRUNCATE TABLE `orders`")
            conn = await database.acquire()
            # A statement whose request is cancelled: its connection is dropped, its session
            # killed on a connection of the administrator's.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(database.query(conn, "SELECT SLEEP(5)", lambda row: None), 0.3)
            database.release(conn, broken=True)
        assert await settle(db, "pool_guest", 0) == []
        assert await settle(db, "pool_admin", 0) == []

    asyncio.run(work())


def test_a_broken_connection_given_back_while_the_keeper_pings_is_replaced_once(
    db: Db, users: tuple[DatabaseURL, DatabaseURL], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keeper takes a free connection out to ping it; a broken one given back meanwhile must
    not count that one as missing, or the pool ends with one more than its minimum (found by CI)."""
    guest, admin = users

    async def work() -> None:
        started = asyncio.Event()
        real_ping = aiomysql.Connection.ping

        async def slow_ping(self: aiomysql.Connection, reconnect: bool = True) -> None:
            started.set()
            await asyncio.sleep(0.5)
            await real_ping(self, reconnect)

        monkeypatch.setattr(aiomysql.Connection, "ping", slow_ping)
        database = Database(guest, admin_url=admin, pool_min=2, pool_max=5, keep_interval=0.1, guest_tables=frozenset({"orders"}))
        async with running(database):
            conn = await database.acquire()
            await asyncio.wait_for(started.wait(), 5)  # the keeper holds the other one
            database.release(conn, broken=True)
            await asyncio.sleep(1.5)  # the ping, the refill and a few rounds of the keeper
            assert sum(database.pool_sizes()) == 2
            assert len(await settle(db, "pool_guest", 2)) == 2
        assert await settle(db, "pool_guest", 0) == []

    asyncio.run(work())


def test_a_request_waiting_for_a_full_pool_gives_up_in_time_and_leaks_no_slot(
    db: Db, users: tuple[DatabaseURL, DatabaseURL]
) -> None:
    """DB_POOL_MAX connections in use: the next acquire waits DB_ACQUIRE_TIMEOUT, then is refused
    with a message naming the limit; a waiter that gives up, or is cancelled, takes no slot with
    it, so the pool serves again as soon as the connection comes back."""
    guest, admin = users

    async def work() -> None:
        database = Database(guest, admin_url=admin, pool_max=1, acquire_timeout=0.3, guest_tables=frozenset({"orders"}))
        async with running(database):
            held = await database.acquire()
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match="DB_POOL_MAX is 1"):
                await database.acquire()
            assert 0.25 < time.monotonic() - started < 2
            waiter = asyncio.ensure_future(database.acquire())
            await asyncio.sleep(0.05)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            database.release(held)
            again = await asyncio.wait_for(database.acquire(), 1)
            database.release(again)
            assert database.pool_sizes() == (0, 1)

    asyncio.run(work())


def test_a_cancellation_arriving_as_a_connection_opens_is_never_lost(db: Db, users: tuple[DatabaseURL, DatabaseURL]) -> None:
    """Opening a connection is cancelled at every moment of its course, over and over: each
    cancelled opening raises CancelledError (none returns a connection as if it had not been
    cancelled: a request's deadline would be lost), and no session is left open by those that
    were opened as they were cancelled. (aiomysql opens its socket under asyncio.wait_for, which
    before Python 3.12 drops a cancellation that arrives with its result.)"""
    guest, _ = users
    INIT = "SET SESSION max_statement_time = 5"  # noqa: N806 (as the service's, one statement after the handshake)

    async def work() -> tuple[int, int, int]:
        loop = asyncio.get_running_loop()
        times = []
        for _ in range(5):
            started = time.perf_counter()
            (await connect(guest, 5, INIT)).raw.close()
            times.append(time.perf_counter() - started)
        took = statistics.median(times)
        rng = random.Random(7)
        lost = raised = finished = 0
        for _ in range(400):
            opening = asyncio.ensure_future(connect(guest, 5, INIT))
            cancelled: list[bool] = []
            loop.call_later(rng.uniform(0, took * 2), lambda task=opening, seen=cancelled: seen.append(task.cancel()))
            try:
                conn = await opening
            except asyncio.CancelledError:
                raised += 1
                continue
            finally:
                while not cancelled:  # the cancel is made, whether before or after the end
                    await asyncio.sleep(0.001)
            conn.raw.close()
            if cancelled[0]:
                lost += 1
            else:
                finished += 1
        return lost, raised, finished

    lost, raised, finished = asyncio.run(work())
    print(f"400 openings: {raised} cancelled, {finished} finished before their cancel, {lost} cancelled but returned")
    assert lost == 0
    assert raised > 40 and finished > 40, "the cancellations must fall both during and after the openings"
    wait_until(lambda: sessions(db, "pool_guest") == [], 10, "every session opened by a cancelled opening closed")


def test_an_abandoned_opening_against_a_database_that_never_greets_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A database that accepts connections and never says a word (frozen), and a request cancelled
    just as its socket opens: the request is cancelled at once, and the opening it leaves behind
    (whose own cancellation aiomysql's wait_for drops, before Python 3.12) is stopped within the
    connect timeout, its socket closed, rather than waiting for the greeting for ever."""

    async def work() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        closed = loop.create_future()

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # b"" once the client closes its socket
            closed.set_result(loop.time())
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        real_open = aiomysql.connection._open_connection
        caller: asyncio.Task[Any] | None = None

        async def open_and_cancel_the_caller(*args: Any, **kwargs: Any) -> Any:
            opened = await real_open(*args, **kwargs)
            assert caller is not None
            loop.call_soon(caller.cancel)  # with the socket's opening, in wait_for's last iteration
            return opened

        monkeypatch.setattr(aiomysql.connection, "_open_connection", open_and_cancel_the_caller)
        caller = asyncio.ensure_future(open_raw(host="127.0.0.1", port=port, user="u", password="p", connect_timeout=1))
        started = loop.time()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert loop.time() - started < 0.5
        closed_at = await asyncio.wait_for(closed, 5)
        server.close()
        await asyncio.sleep(0)
        return closed_at - started, len(driver_abandoned)

    took, left = asyncio.run(work())
    assert took < 2.5, f"the abandoned opening's socket closed after {took:.2f} s"
    assert left == 0
