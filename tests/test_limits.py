"""Hostile guests against the sandbox: each is stopped with its limit named, reaches nothing but
the orders table, leaves nothing behind, and the next request is served. On every engine.

Guests are small WAT modules (tests/wat_guests.py), post-processed with asyncify as the real
guest is, run through the host's own invocation path against the suite's MariaDB, as a user
that may use only the orders table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import Guest, GuestFault, GuestLoadError, LimitExceeded, Limits, load_engine
from service._database import Database, prepare_guest_user
from service._guest_imports import Invocation
from service._hostfuncs import HostSession
from service._instance import GuestInstance
from service._settings import DatabaseURL
from service._sql import Capability
from service._wasm_caps import cap_memory
from service._wasm_format import PAGE

from . import wat_guests
from .conftest import ENGINES, ROOT, Db, EmbeddedMariaDB, Service, least_privilege, make_database
from .wat_guests import (
    CAPABILITY,
    INSERT,
    INSERT_LEN,
    REQUEST,
    RESPOND,
    build,
    statement_guest,
    wat_guest,
    with_data,
    with_locals,
)

ROWS_QUERY = {"sql": "SELECT order_id FROM orders", "params": []}


@pytest.fixture(scope="module")
def hostile_db(mariadb: EmbeddedMariaDB) -> Iterator[tuple[Db, DatabaseURL]]:
    """A database holding the orders table and a `secret` table beside it, and a user that may
    use only the orders table: (the administrator's Db, the guest user's URL)."""
    db = make_database(mariadb, "orders_hostile")
    guest = prepare_guest_user(db.url, "app_hostile", "127.0.0.1", "hostile-pass", ["orders"])
    db.run("CREATE TABLE secret (a INT, b VARCHAR(40))")
    db.run("INSERT INTO secret VALUES (1, 'the secret')")
    yield db, guest


def seed(db: Db, rows: int = 1) -> None:
    db.run("DELETE FROM orders")
    db.run(
        "INSERT INTO orders SELECT seq, 1, 1, 1, 1, 1, CONCAT('row ', seq) FROM seq_1_to_%s" % int(rows)  # noqa: UP031
    )


def guest_with(engine: str, wat: str, tmp_path: Path, **limits: Any) -> Guest:
    return Guest(load_engine(engine), build(wat, tmp_path), limits=Limits(**limits))


def run(db: tuple[Db, DatabaseURL], work: Any, **database: Any) -> Any:
    admin, guest = db
    return wat_guests.run(admin, work, guest, **database)


def service_with(wat: str, engine: str, db: Db, tmp_path: Path, **env: str) -> Service:
    """The service, as `python -m service`, running the guest `wat` on `engine` against `db`."""
    path = tmp_path / "hostile.wasm"
    path.write_bytes(build(wat, tmp_path))
    return Service({"GUEST_MODULE": str(path), "WASM_ENGINE": engine, **least_privilege(db), **env}, tmp_path / "service.log")


async def invoke(guest: Guest, database: Database, request: bytes = b'{"op":"x"}\n', **session: Any) -> Any:
    host = HostSession(
        database,
        CAPABILITY,
        max_result_bytes=session.get("max_result_bytes", 1 << 20),
        max_result_rows=session.get("rows", 1000),
    )
    clean = False
    try:
        response = await guest.invoke(request, host.call, host.log, host.charged)
        clean = True
        return response
    finally:
        await host.close(broken=not clean)


def result_of(response: Any) -> Any:
    return json.loads(response.body)


# --- SQL: nothing but the orders table ------------------------------------------------------------

# (statement, params): each once got past the host's check, or would get past a deny-list.
FORBIDDEN = [
    ("DROP TABLE orders", []),
    ("DELETE FROM orders; DROP TABLE orders", []),
    ("SELECT * FROM mysql.user", []),
    ("SELECT * FROM `mysql`.`user`", []),
    ("SELECT * FROM information_schema.tables", []),
    ("SELECT * FROM secret", []),
    ("SELECT * FROM `orders`JOIN`secret`", []),
    ("SELECT * FROM (secret)", []),
    ("SELECT * FROM orders STRAIGHT_JOIN secret", []),
    ("SELECT * FROM orders USE INDEX (PRIMARY) JOIN secret ON 1", []),
    ("UPDATE orders, secret SET secret.b = ?", ["pwned"]),
    ("DELETE orders, secret FROM orders JOIN secret", []),
    ("INSERT INTO orders SELECT a, a, a, a, a, a, b FROM secret", []),
    ("SELECT * FROM orders INTO OUTFILE ?", ["/tmp/orders-hostile-outfile"]),
    ("SELECT LOAD_FILE(?)", ["/etc/passwd"]),
    ("SELECT USER()", []),
    ("SELECT VERSION()", []),
    ("SELECT SLEEP(?)", [5]),
    ("SELECT MASTER_GTID_WAIT(?, ?)", ["0-1-100", 5]),
    ("SELECT GET_LOCK(?, ?)", ["held", 0]),
    ("SELECT @x", []),
    ("UPDATE orders SET shipping_address = 'pwned'", []),
    ("TRUNCATE TABLE orders", []),  # resets are off for this guest
    # the driver's own formatting, which once turned a value into SQL after the check
    ("SELECT COUNT(*) FROM orders WHERE shipping_address = %.200s", ["x' UNION SELECT LOAD_FILE('/etc/passwd') -- "]),
    ("SELECT COUNT(*) FROM orders WHERE order_id = %c", [39]),
    ("SELECT COUNT(*) FROM orders WHERE order_id = %r", ["1 OR 1=1"]),
    ("SELECT COUNT(*) FROM orders WHERE order_id = %s", ["1 UNION SELECT b FROM secret"]),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("sql, params", FORBIDDEN, ids=[f[0][:50] for f in FORBIDDEN])
def test_a_statement_outside_the_capability_stops_the_guest_and_changes_nothing(
    engine: str, sql: str, params: list[Any], hostile_db: tuple[Db, DatabaseURL], tmp_path: Path
) -> None:
    admin, _ = hostile_db
    seed(admin)
    guest = guest_with(engine, statement_guest({"sql": sql, "params": params}, call="$db_execute"), tmp_path)

    async def work(database: Database) -> None:
        with pytest.raises(GuestFault, match="may not run"):
            await invoke(guest, database)

    run(hostile_db, work)
    assert admin.rows("SELECT order_id, shipping_address FROM orders") == [(1, "row 1")]
    assert admin.rows("SELECT * FROM secret") == [(1, "the secret")]
    assert not Path("/tmp/orders-hostile-outfile").exists()


INJECTIONS = [
    "x' OR '1'='1",
    "row 1' -- ",
    "%s",
    "%(x)s",
    "\\' OR 1=1 #",
    "\x00' OR '1'='1",  # (a NUL alone would match: utf8mb4_unicode_ci ignores it)
    "row 1\\",
    "'; DROP TABLE orders; --",
    "_utf8mb4 X'726f772031'",
]


@pytest.mark.parametrize("engine", ENGINES)
def test_values_stay_values(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    """Whatever a value holds, it is compared as a value: none matches 'row 1' but 'row 1'."""
    admin, _ = hostile_db
    seed(admin, 3)
    values = [*INJECTIONS, "row 1"]
    statement = {"sql": "SELECT COUNT(*) FROM orders WHERE shipping_address IN (" + ", ".join("?" * len(values)) + ")"}
    counts = []
    for value in values:
        statement["params"] = [value] * len(values)
        guest = guest_with(engine, statement_guest(statement), tmp_path)
        counts.append(run(hostile_db, lambda database, g=guest: invoke(g, database)))
    assert [result_of(c)["rows"] for c in counts] == [[[0]]] * len(INJECTIONS) + [[[1]]]
    assert admin.rows("SELECT COUNT(*) FROM orders") == [(3,)]


def test_garbage_instead_of_a_statement_is_answered_not_run(hostile_db: tuple[Db, DatabaseURL]) -> None:
    async def work(database: Database) -> list[bytes]:
        session = HostSession(database, CAPABILITY, max_result_bytes=1 << 20)
        try:
            return [
                await session.call("query", b"\xff not json"),
                await session.call("execute", b'{"sql": 5, "params": []}'),
                await session.call("query", b'{"sql": "SELECT 1", "params": "1"}'),
                # UTF-8 without a byte-order mark is the only encoding (guest/ABI.md, "Conventions")
                await session.call("query", b"\xef\xbb\xbf" + json.dumps(ROWS_QUERY).encode()),
                await session.call("query", json.dumps(ROWS_QUERY).encode("utf-16")),
                await session.call("query", json.dumps(ROWS_QUERY).encode("utf-32-le")),
                await session.call("query", json.dumps(ROWS_QUERY).encode() + b" []"),
                # a surrogate is not UTF-8, even where json.loads on bytes would take it
                await session.call("query", b'{"sql": "SELECT order_id FROM orders", "params": [], "x": "\xed\xa0\x80"}'),
            ]
        finally:
            await session.close()

    answers = run(hostile_db, work)
    assert len(answers) == 8
    for answer in answers:
        assert json.loads(answer)["error"]["kind"] == "invalid"


def test_a_statement_is_json_with_the_whitespace_json_allows(hostile_db: tuple[Db, DatabaseURL]) -> None:
    async def work(database: Database) -> bytes:
        session = HostSession(database, CAPABILITY, max_result_bytes=1 << 20)
        try:
            return await session.call("query", b" \n\t" + json.dumps(ROWS_QUERY, indent=2).encode() + b"\r\n ")
        finally:
            await session.close()

    assert "rows" in json.loads(run(hostile_db, work))


@pytest.mark.parametrize("engine", ENGINES)
def test_a_value_that_is_not_plain_stops_the_guest(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    for params in ([{"nested": 1}], [[1]], [1, 2]):
        guest = guest_with(
            engine, statement_guest({"sql": "SELECT COUNT(*) FROM orders WHERE order_id = ?", "params": params}), tmp_path
        )

        async def work(database: Database, g: Guest = guest) -> None:
            with pytest.raises(GuestFault, match="may not run"):
                await invoke(g, database)

        run(hostile_db, work)


# --- statements end ---------------------------------------------------------------------------------

# O(n^2) over the orders table: minutes for 30,000 rows, unless something stops it.
SLOW_QUERY = (
    "SELECT COUNT(*) FROM orders AS a WHERE a.quantity < "
    "(SELECT COUNT(*) FROM orders AS b WHERE b.order_id + a.order_id > ? AND b.amount < a.amount + ?)"
)


def running_statements(admin: Db, user: str) -> list[tuple[Any, ...]]:
    return admin.rows("SELECT ID, TIME, INFO FROM information_schema.PROCESSLIST WHERE USER = %s AND COMMAND = 'Query'", (user,))


async def killed(admin: Db, user: str, timeout: float = 20) -> None:
    """Returns once `user` runs no statement, the kills running in the background of this loop
    meanwhile; fails after `timeout` seconds (a kill normally takes milliseconds)."""
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(running_statements, admin, user):
        assert time.monotonic() < deadline, f"{user}'s statements still run {timeout:g} s later"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_statement_stops_at_its_time_limit(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    admin, guest_url = hostile_db
    seed(admin, 30_000)
    guest = guest_with(engine, statement_guest({"sql": SLOW_QUERY, "params": [0, 5]}), tmp_path)
    started = time.monotonic()
    response = run(hostile_db, lambda database: invoke(guest, database), statement_timeout=1.0)
    assert time.monotonic() - started < 5
    assert result_of(response)["error"]["kind"] == "timeout"
    assert running_statements(admin, guest_url.user) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_a_request_stops_at_its_time_limit_and_its_statement_is_killed(
    engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path
) -> None:
    """REQUEST_TIMEOUT bounds the whole invocation: the statement it waits on is killed."""
    admin, guest_url = hostile_db
    seed(admin, 30_000)
    guest = guest_with(engine, statement_guest({"sql": SLOW_QUERY, "params": [0, 5]}), tmp_path, request_seconds=1.0)

    async def work(database: Database) -> float:
        started = time.monotonic()
        with pytest.raises(LimitExceeded) as stopped:
            await invoke(guest, database)
        assert stopped.value.limit == "request_time"
        stopped_after = time.monotonic() - started
        await killed(admin, guest_url.user)  # the kill runs in the background
        return stopped_after

    assert run(hostile_db, work, statement_timeout=60.0) < 5
    assert running_statements(admin, guest_url.user) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_a_row_lock_held_across_suspension_is_released_at_the_limit(
    engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path
) -> None:
    """A guest takes a row lock, then stays suspended in a slow statement: another request
    waiting for the row gives up after the lock wait limit with `conflict` (not minutes later
    with an error), and the lock is gone when the hostile request's time is up."""
    admin, guest_url = hostile_db
    seed(admin, 30_000)
    lock = json.dumps({"sql": "SELECT order_id FROM orders WHERE order_id = ? FOR UPDATE", "params": [1]})
    before = f"""
    (drop (call $db_begin))
    (drop (call $db_query (i32.const 12288) (i32.const {len(lock)})))"""
    holder_wat = statement_guest({"sql": SLOW_QUERY, "params": [0, 5]}, before=before)
    holder_wat = with_data(holder_wat, 12288, lock)
    holder = guest_with(engine, holder_wat, tmp_path, request_seconds=3.0)
    update = {"sql": "UPDATE orders SET quantity = ? WHERE order_id = ?", "params": [9, 1]}
    waiter = guest_with(engine, statement_guest(update, call="$db_execute"), tmp_path)

    async def work(database: Database) -> tuple[Any, float, Any]:
        held = asyncio.ensure_future(invoke(holder, database))
        # The holder has the row once it runs its slow statement (after the one taking the lock).
        deadline = time.monotonic() + 20
        while not any("COUNT(*)" in str(row[2]) for row in await asyncio.to_thread(running_statements, admin, guest_url.user)):
            assert time.monotonic() < deadline and not held.done(), "the holder never ran its slow statement"
            await asyncio.sleep(0.05)
        started = time.monotonic()
        blocked = await invoke(waiter, database)
        waited = time.monotonic() - started
        with pytest.raises(LimitExceeded):
            await held
        await killed(admin, guest_url.user)  # its session is killed in the background
        return blocked, waited, await invoke(waiter, database)

    blocked, waited, later = run(hostile_db, work, lock_timeout=1, statement_timeout=30.0)
    assert result_of(blocked)["error"]["kind"] == "conflict"
    assert waited < 2.5
    assert result_of(later) == {"rows_affected": 1, "last_insert_id": 0}
    assert admin.rows("SELECT quantity FROM orders WHERE order_id = 1") == [(9,)]


# --- CPU: every call into the guest is bounded, on every engine -------------------------------------

LOOP = "(loop $forever (br $forever))"


@pytest.mark.parametrize("engine", ENGINES)
def test_a_guest_that_never_returns_is_stopped_at_its_deadline(
    engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path
) -> None:
    guest = guest_with(engine, wat_guest(f"{LOOP} (i64.const 0)"), tmp_path, time_seconds=0.2)

    async def work(database: Database) -> float:
        started = time.monotonic()
        for _ in range(2):
            with pytest.raises(LimitExceeded) as stopped:
                await invoke(guest, database)
            assert stopped.value.limit == "time"
        return (time.monotonic() - started) / 2

    assert run(hostile_db, work) < 2


@pytest.mark.parametrize("engine", ENGINES)
def test_a_guest_that_loops_after_the_database_is_stopped(
    engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path
) -> None:
    """The budget counts guest time across suspensions: resuming gives no fresh budget."""
    body = f"(drop (call $db_begin)) (drop (call $db_rollback)) {LOOP} (i64.const 0)"
    guest = guest_with(engine, wat_guest(body), tmp_path, time_seconds=0.3)

    async def work(database: Database) -> None:
        with pytest.raises(LimitExceeded, match="time limit"):
            await invoke(guest, database)

    started = time.monotonic()
    run(hostile_db, work)
    assert time.monotonic() - started < 3


def with_export_body(wat: str, export: str, body: str) -> str:
    """`wat` with the function exported as `export` doing `body` first."""
    marker = {
        "abi_version": '(func (export "abi_version") (result i32)',
        "inbox": '(func (export "inbox") (result i64)',
        "alloc": '(func $alloc (export "alloc") (param $n i32) (result i32) (local $p i32)',
    }[export]
    assert marker in wat
    return wat.replace(marker, marker + "\n    " + body)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("export", ["abi_version", "inbox", "start"])
def test_a_guest_that_never_starts_is_refused_in_one_line(engine: str, export: str, tmp_path: Path) -> None:
    wat = wat_guest(RESPOND)
    if export == "start":
        wat = wat.replace("(memory (export", f"(func $start {LOOP})\n  (start $start)\n  (memory (export")
    else:
        wat = with_export_body(wat, export, LOOP)
    started = time.monotonic()
    with pytest.raises(GuestLoadError, match="failed while starting") as refused:
        guest_with(engine, wat, tmp_path, time_seconds=0.3)
    assert "\n" not in str(refused.value)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("engine", ENGINES)
def test_alloc_for_a_large_request_is_under_the_deadline(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    """The request buffer grows through the guest's `alloc`: a guest that loops there only on a
    request larger than it has room for is stopped as well."""
    wat = with_export_body(wat_guest(RESPOND), "alloc", f"(if (i32.gt_u (local.get $n) (i32.const 70000)) (then {LOOP}))")
    guest = guest_with(engine, wat, tmp_path, time_seconds=0.3)

    async def work(database: Database) -> None:
        assert (await invoke(guest, database)).status == 200
        with pytest.raises(LimitExceeded, match="time limit"):
            await invoke(guest, database, b'{"op":"x"}\n' + b"x" * 100_000)
        assert (await invoke(guest, database)).status == 200

    run(hostile_db, work)


# --- host calls, results, logs ------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_a_guest_that_calls_the_host_forever_is_stopped(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    wat = wat_guest("(loop $forever (call $log (i32.const 20) (i32.const 1024) (i32.const 4)) (br $forever)) (i64.const 0)")
    guest = guest_with(engine, wat, tmp_path, host_calls=50)

    async def work(database: Database) -> None:
        with pytest.raises(LimitExceeded, match="more than 50 host calls") as stopped:
            await invoke(guest, database)
        assert stopped.value.limit == "host_calls"

    run(hostile_db, work)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_guest_logs_at_most_its_share(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    """200 lines of 64 KiB each: what reaches the log is GUEST_LOG_BYTES and a note."""
    body = f"""
    (local.set $n (i32.const 0))
    (loop $more
      (call $log (i32.const 20) (i32.const 65536) (i32.const 65536))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $n) (i32.const 190))))
    {RESPOND}"""
    wat = with_locals(wat_guest(body), "(local $n i32)")
    guest = guest_with(engine, wat, tmp_path, log_bytes=4096)
    lines: list[str] = []

    async def work(database: Database) -> Any:
        return await guest.invoke(b'{"op":"x"}\n', _no_database, lambda level, message: lines.append(message))

    assert run(hostile_db, work).status == 200
    assert sum(len(line) for line in lines) < 4096 + 200
    assert "guest log cut" in lines[-1]


async def _no_database(operation: str, payload: bytes) -> bytes:
    raise AssertionError("no database call expected")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_guest_that_asks_for_huge_results_is_stopped(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    admin, _ = hostile_db
    seed(admin, 20)
    guest = guest_with(engine, statement_guest(ROWS_QUERY), tmp_path)

    async def work(database: Database) -> None:
        with pytest.raises(LimitExceeded, match="more than 5 rows") as stopped:
            await invoke(guest, database, rows=5)
        assert stopped.value.limit == "result_rows"
        with pytest.raises(LimitExceeded) as stopped:
            await invoke(guest, database, max_result_bytes=16)
        assert stopped.value.limit == "result_bytes"
        assert len(result_of(await invoke(guest, database, rows=20))["rows"]) == 20

    run(hostile_db, work)


def rss() -> int:
    for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_huge_result_is_stopped_as_it_streams(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    """A query whose result is some 140 MB is stopped at MAX_RESULT_BYTES, without the process
    holding the result first, and its statement is killed on the server."""
    admin, guest_url = hostile_db
    seed(admin, 20_000)
    wide = "JSON_ARRAY(" + ", ".join(["shipping_address"] * 400) + ")"  # some 7 KB a row, 140 MB in all
    guest = guest_with(engine, statement_guest({"sql": f"SELECT {wide} FROM orders", "params": [], "json_rows": True}), tmp_path)

    async def work(database: Database) -> int:
        before = rss()
        for _ in range(3):
            with pytest.raises(LimitExceeded) as stopped:
                await invoke(guest, database, max_result_bytes=4 << 20, rows=1_000_000)
            assert stopped.value.limit == "result_bytes"
        await killed(admin, guest_url.user)  # the kill runs in the background
        return rss() - before

    started = time.monotonic()
    grown = run(hostile_db, work)
    assert time.monotonic() - started < 10
    assert grown < 64 << 20, f"the process grew by {grown >> 20} MiB"
    assert running_statements(admin, guest_url.user) == []


# --- memory ---------------------------------------------------------------------------------------

GROW_FOREVER = """
    (loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (unreachable)"""


@pytest.mark.parametrize("engine", ENGINES)
def test_a_guest_that_grows_memory_without_end_is_capped(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    guest = guest_with(engine, wat_guest(GROW_FOREVER), tmp_path, memory_bytes=8 * 1024 * 1024)

    async def work(database: Database) -> None:
        with pytest.raises(LimitExceeded, match="memory") as stopped:
            await invoke(guest, database)
        assert stopped.value.limit == "memory"

    run(hostile_db, work)


# Grows the memory by 64 pages, then hands the host a statement in the new pages and one
# written over old ones after the growth: what the host reads and writes must be the memory as
# it is now, wherever the engine put it, however its views of the memory are kept.
GROWN_AT = 4 * PAGE + 8


@pytest.mark.parametrize("engine", ENGINES)
def test_what_the_host_reads_and_writes_follows_the_memory_as_it_grows(engine: str, tmp_path: Path) -> None:
    first = json.loads(INSERT)
    stale = json.dumps({**first, "params": [43, *first["params"][1:]]})  # as long as INSERT
    assert len(stale) == INSERT_LEN
    before = f"""
    (drop (memory.grow (i32.const 64)))
    (call $copy (i32.const {GROWN_AT}) (i32.const 4096) (i32.const {INSERT_LEN}))
    (drop (call $db_execute (i32.const {GROWN_AT}) (i32.const {INSERT_LEN})))
    (call $copy (i32.const {wat_guests.STATEMENT_AT}) (i32.const 4096) (i32.const {INSERT_LEN}))"""
    wat = statement_guest(json.loads(stale), call="$db_execute", before=before)
    guest = guest_with(engine, wat, tmp_path)
    seen: list[bytes] = []
    results = iter(b'{"rows_affected":1,"last_insert_id":%d}' % n for n in range(1, 100))

    async def host_call(operation: str, payload: bytes) -> bytes:
        seen.append(payload)
        return next(results)

    async def twice() -> list[Any]:
        # The second request on the same instance: written into the memory as the first left it.
        return [await guest.invoke(REQUEST, host_call, lambda level, message: None) for _ in range(2)]

    answers = asyncio.run(twice())
    assert seen == [INSERT.encode()] * 4, seen
    assert [a.body for a in answers] == [b'{"rows_affected":1,"last_insert_id":2}', b'{"rows_affected":1,"last_insert_id":4}']
    (instance,) = guest.idle_instances()
    assert instance.raw.memory_size() == (4 + 2 * 64) * PAGE


def test_the_memory_cap_is_written_into_the_module(tmp_path: Path) -> None:
    wasm = build(wat_guest(RESPOND), tmp_path)
    capped = cap_memory(wasm, 8 * PAGE)
    assert capped != wasm
    assert cap_memory(capped, 8 * PAGE) == capped  # idempotent
    with pytest.raises(Exception, match="starts with"):
        cap_memory(wasm, 2 * PAGE)  # the WAT guests start with 4 pages


TABLE_GROW = """
  (table $t 1 funcref)
  (func $grow_all (result i32) (local $n i32)
    (loop $more
      (if (i32.ne (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1))
        (then (local.set $n (i32.add (local.get $n) (i32.const 1))) (br $more))))
    (local.get $n))"""


@pytest.mark.parametrize("engine", ENGINES)
def test_tables_are_capped_like_memory(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    body = f"(if (i32.ne (call $grow_all) (i32.const 4)) (then (unreachable))) {RESPOND}"
    guest = guest_with(engine, wat_guest(body, extra=TABLE_GROW), tmp_path, table_elements=4096)
    assert run(hostile_db, lambda database: invoke(guest, database)).status == 200


@pytest.mark.parametrize("engine", ENGINES)
def test_discarded_instances_are_freed_at_once(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    """Each invocation grows its instance by 32 MiB and traps, so the instance is dropped: 60 of
    them would hold 2 GB if a dropped instance were kept."""
    touch = "".join(f"(i32.store (i32.const {4 * PAGE + i * PAGE * 8}) (i32.const 1))" for i in range(64))
    guest = guest_with(engine, wat_guest(f"(drop (memory.grow (i32.const 512))) {touch} (unreachable)"), tmp_path)

    async def work(database: Database) -> int:
        for _ in range(5):  # warm up
            with pytest.raises(GuestFault):
                await invoke(guest, database)
        before = rss()
        for _ in range(60):
            with pytest.raises(GuestFault):
                await invoke(guest, database)
        return rss() - before

    grown = run(hostile_db, work)
    assert grown < 128 << 20, f"the process grew by {grown >> 20} MiB over 60 dropped instances"
    assert guest.memory_in_use() < 8 << 20


@pytest.mark.parametrize("engine", ENGINES)
def test_guest_memory_is_bounded_in_total(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    """Suspended requests each hold an instance; past GUEST_MEMORY_TOTAL_MB the one that grows is
    stopped (503, the service is busy), not the process."""
    query = json.dumps(ROWS_QUERY)
    body = f"""
    (drop (memory.grow (i32.const 256)))
    (drop (call $db_query (i32.const 12288) (i32.const {len(query)})))
    {RESPOND}"""
    wat = with_data(wat_guest(body), 12288, query)
    guest = Guest(load_engine(engine), build(wat, tmp_path), memory_total=64 << 20)
    admin, _ = hostile_db
    seed(admin, 1)

    async def work(database: Database) -> list[Any]:
        return await asyncio.gather(*(invoke(guest, database) for _ in range(8)), return_exceptions=True)

    outcomes = run(hostile_db, work)
    stopped = [o for o in outcomes if isinstance(o, LimitExceeded)]
    assert stopped and all(o.limit == "memory_total" for o in stopped)
    assert any(not isinstance(o, BaseException) and o.status == 200 for o in outcomes)
    assert guest.memory_in_use() <= 64 << 20


# --- through HTTP: the limit named, the next request served ------------------------------------

LOOP_ON_L = f"""
    (if (i32.eq (i32.load8_u (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 1))) (i32.const 76))
      (then {LOOP}))
    {RESPOND}"""


@pytest.mark.parametrize("engine", ENGINES)
def test_the_service_names_the_limit_and_keeps_serving(engine: str, guest_db: Db, tmp_path: Path) -> None:
    svc = service_with(wat_guest(LOOP_ON_L), engine, guest_db, tmp_path, GUEST_TIME_LIMIT_MS="300")
    try:
        for _ in range(2):
            stopped = svc.client.post("/echo", content=b"L")
            assert stopped.status_code == 500
            assert stopped.json()["error"]["code"] == "limit_exceeded"
            assert stopped.json()["error"]["limit"] == "time"
            assert "time limit" in stopped.json()["error"]["message"]
            assert "nothing it did was kept" in stopped.json()["error"]["message"]
            assert svc.client.post("/echo", content=b"x").json() == {"status": True}
        assert f'guest_invocations_total{{engine="{engine}",outcome="limit"}} 2.0' in svc.client.get("/metrics").text
    finally:
        svc.stop()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_limit_says_what_was_kept(engine: str, guest_db: Db, tmp_path: Path) -> None:
    """A guest that autocommits an insert, then loops: the answer says its change was kept."""
    guest_db.run("DELETE FROM orders")
    body = f"(drop (call $db_execute (i32.const 4096) (i32.const {len(INSERT)}))) {LOOP} {RESPOND}"
    svc = service_with(wat_guest(body), engine, guest_db, tmp_path, GUEST_TIME_LIMIT_MS="300")
    try:
        stopped = svc.client.post("/echo", content=b"x")
        assert (stopped.status_code, stopped.json()["error"]["limit"]) == (500, "time")
        assert "changes it had already committed were kept" in stopped.json()["error"]["message"]
        assert guest_db.rows("SELECT shipping_address FROM orders") == [("from a hostile guest",)]
    finally:
        svc.stop()


@pytest.mark.parametrize("engine", ENGINES)
def test_sigterm_stops_the_service_while_a_guest_loops(engine: str, guest_db: Db, tmp_path: Path) -> None:
    svc = service_with(wat_guest(LOOP_ON_L), engine, guest_db, tmp_path, GUEST_TIME_LIMIT_MS="3000")

    def loop_in_the_guest() -> None:
        with httpx.Client(base_url=svc.base, timeout=30) as client, contextlib.suppress(httpx.HTTPError):
            client.post("/echo", content=b"L")

    try:
        threading.Thread(target=loop_in_the_guest, daemon=True).start()
        time.sleep(0.5)
        started = time.monotonic()
        svc.process.terminate()
        svc.process.wait(20)
        assert time.monotonic() - started < 10
    finally:
        svc.stop()


# Code the meter charges far less than it costs: every load a cache miss over 32 MiB, and
# instructions the engine runs as calls into itself. On wasmer the meter must still look at the
# clock often enough; on wasmtime the epoch deadline stops them anyway.
CHASE = f"""
    (drop (memory.grow (i32.const 520)))
    (local.set $i (i32.const 0))
    (loop $fill
      (local.set $n (i32.and (i32.add (i32.mul (local.get $i) (i32.const 1664525)) (i32.const 1013904223)) (i32.const 0x7FFFF)))
      (i32.store (i32.add (i32.const 0x40000) (i32.shl (local.get $i) (i32.const 6)))
                 (i32.add (i32.const 0x40000) (i32.shl (local.get $n) (i32.const 6))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 0x80000))))
    (local.set $p (i32.const 0x40000))
    (loop $chase
      {"(local.set $p (i32.load (local.get $p)))" * 64}
      (br $chase))
    {RESPOND}"""
ENGINE_CALLS = f"""
    (loop $again
      {"(data.drop $segment) (drop (memory.size))" * 32}
      (br $again))
    {RESPOND}"""


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "body, extra", [(CHASE, ""), (ENGINE_CALLS, '(data $segment "x")')], ids=["cache misses", "engine calls"]
)
def test_code_that_costs_more_than_it_is_charged_is_stopped_in_time(
    engine: str, body: str, extra: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path
) -> None:
    wat = with_locals(wat_guest(body), "(local $i i32) (local $n i32) (local $p i32)")
    if extra:
        wat = wat.replace("(data (i32.const 1024)", f"{extra}\n  (data (i32.const 1024)")
    guest = guest_with(engine, wat, tmp_path, time_seconds=0.3)

    async def work(database: Database) -> float:
        started = time.monotonic()
        with pytest.raises(LimitExceeded) as stopped:
            await invoke(guest, database)
        assert stopped.value.limit == "time"
        return time.monotonic() - started

    assert run(hostile_db, work) < 1.5


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "statement, call",
    [
        ({"sql": "SELECT order_id FROM orders", "params": []}, "$db_execute"),
        ({"sql": "DELETE FROM orders WHERE order_id > ?", "params": [0]}, "$db_query"),
    ],
    ids=["a read through db_execute", "a write through db_query"],
)
def test_each_import_runs_its_own_kind_of_statement(
    engine: str, statement: dict[str, Any], call: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path
) -> None:
    """db_execute reads no rows (so a SELECT there would escape the result limits), and
    db_query changes nothing (so the limit answer can say truly what was kept)."""
    admin, _ = hostile_db
    seed(admin, 3)
    guest = guest_with(engine, statement_guest(statement, call=call), tmp_path)

    async def work(database: Database) -> None:
        with pytest.raises(GuestFault, match="goes through db_"):
            await invoke(guest, database)

    run(hostile_db, work)
    assert admin.rows("SELECT COUNT(*) FROM orders") == [(3,)]


@pytest.mark.parametrize("engine", ENGINES)
def test_truncate_inside_a_transaction_is_refused(engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path) -> None:
    """TRUNCATE runs as the administrator, on another connection, where it would wait for the
    guest's own transaction: it is answered as an error instead."""
    admin, _ = hostile_db
    seed(admin, 3)
    before = "(drop (call $db_begin))"
    guest = guest_with(
        engine, statement_guest({"sql": "TRUNCATE TABLE orders", "params": []}, call="$db_execute", before=before), tmp_path
    )
    resets = Capability.from_schema_file(ROOT / "sql" / "schema.sql", truncate=True)

    async def work(database: Database) -> Any:
        host = HostSession(database, resets, max_result_bytes=1 << 20)
        try:
            return await guest.invoke(b'{"op":"x"}\n', host.call, host.log)
        finally:
            await host.close()

    started = time.monotonic()
    answer = result_of(run(hostile_db, work))
    assert time.monotonic() - started < 3
    assert answer["error"] == {"kind": "invalid", "code": 0, "message": "TRUNCATE TABLE cannot run inside a transaction"}
    assert admin.rows("SELECT COUNT(*) FROM orders") == [(3,)]


BIG_STATEMENT = json.dumps({"sql": "SELECT 1", "params": [], "pad": [0.125] * 140_000})


@pytest.mark.parametrize("engine", ENGINES)
def test_the_hosts_work_on_a_guests_statements_counts_against_its_time(
    engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path
) -> None:
    """200 statements of 900 KB each: decoding them is host work the guest asked for, and it is
    stopped at the guest's time limit, not at REQUEST_TIMEOUT."""
    assert len(BIG_STATEMENT) < 1024 * 1024
    body = f"""
    (local.set $n (i32.const 0))
    (loop $more
      (drop (call $db_query (i32.const 65536) (i32.const {len(BIG_STATEMENT)})))
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $n) (i32.const 190))))
    {RESPOND}"""
    wat = with_data(with_locals(wat_guest(body), "(local $n i32)"), 65536, BIG_STATEMENT).replace(
        '(memory (export "memory") 4)', '(memory (export "memory") 32)'
    )
    wat = wat.replace("(global $heap (mut i32) (i32.const 65536))", "(global $heap (mut i32) (i32.const 1966080))")
    guest = guest_with(engine, wat, tmp_path, time_seconds=0.5, request_seconds=60)

    async def work(database: Database) -> None:
        with pytest.raises(LimitExceeded, match="time limit|statements") as stopped:
            await invoke(guest, database)
        assert stopped.value.limit == "time"

    started = time.monotonic()
    run(hostile_db, work)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("engine", ENGINES)
def test_setting_up_an_instance_for_a_request_counts_against_its_time(engine: str, tmp_path: Path) -> None:
    guest = guest_with(engine, wat_guest(RESPOND), tmp_path)
    invocation = Invocation(_no_database, lambda level, message: None, guest.limits)
    instance = GuestInstance(guest, invocation)
    try:
        assert invocation.guest_seconds > 0
    finally:
        instance.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_waiting_for_a_busy_guest_counts_against_the_request_time(
    engine: str, hostile_db: tuple[Db, DatabaseURL], tmp_path: Path
) -> None:
    """One instance, three requests each running past REQUEST_TIMEOUT: the ones queued behind
    the first answer at their own limit, not after the time of everyone before them."""
    admin, _ = hostile_db
    seed(admin, 30_000)
    wat = statement_guest({"sql": SLOW_QUERY, "params": [0, 5]})
    guest = Guest(load_engine(engine), build(wat, tmp_path), limits=Limits(request_seconds=1.0), pool_max=1)

    async def work(database: Database) -> list[float]:
        started = time.monotonic()

        async def one() -> float:
            try:
                response = await invoke(guest, database)
            except LimitExceeded as stopped:
                assert stopped.limit == "request_time"
                return time.monotonic() - started
            raise AssertionError(f"answered after {time.monotonic() - started:.3f} s instead of stopping: {response.body!r}")

        return list(await asyncio.gather(one(), one(), one()))

    ended = run(hostile_db, work, statement_timeout=60.0)
    assert max(ended) < 1.8, f"requests ended after {ended} s; each may take 1 s"
