"""Hostile guests against the limits: each is stopped with its limit named, nothing it wrote is
kept, and the next request is served. Run on every engine that can enforce the limit."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from service import Guest, GuestFault, LimitExceeded, Limits, load_engine
from service._database import Database
from service._hostfuncs import HostSession
from service._wasm_binary import PAGE, cap_memory

from .conftest import ENGINES, Db, Service, url_of
from .wat_guests import RESPOND, build, run, wat_guest, wat_string

DEADLINE_ENGINES = [e for e in ENGINES if load_engine(e).enforces_deadline]
ROWS_QUERY = json.dumps({"sql": "SELECT order_id FROM orders", "params": []})


def guest_with(engine: str, wat: str, tmp_path: Path, **limits: Any) -> Guest:
    return Guest(load_engine(engine), build(wat, tmp_path), limits=Limits(**limits))


async def invoke(guest: Guest, database: Database, **session: Any) -> Any:
    host = HostSession(
        database, max_result_bytes=session.get("max_result_bytes", 1 << 20), max_result_rows=session.get("rows", 1000)
    )
    try:
        return await guest.invoke(b'{"op":"x"}\n', host.call, host.log)
    finally:
        await host.close()


@pytest.mark.parametrize("engine", DEADLINE_ENGINES)
def test_a_guest_that_never_returns_is_stopped_at_its_deadline(engine: str, guest_db: Db, tmp_path: Path) -> None:
    guest = guest_with(engine, wat_guest("(loop $forever (br $forever)) (i64.const 0)"), tmp_path, time_seconds=0.2)

    async def work(database: Database) -> float:
        started = time.monotonic()
        with pytest.raises(LimitExceeded) as stopped:
            await invoke(guest, database)
        assert stopped.value.limit == "time"
        return time.monotonic() - started

    assert run(guest_db, work) < 2


@pytest.mark.parametrize("engine", ENGINES)
def test_a_guest_that_calls_the_host_forever_is_stopped(engine: str, guest_db: Db, tmp_path: Path) -> None:
    wat = wat_guest("(loop $forever (call $log (i32.const 20) (i32.const 1024) (i32.const 4)) (br $forever)) (i64.const 0)")
    guest = guest_with(engine, wat, tmp_path, host_calls=50)

    async def work(database: Database) -> None:
        with pytest.raises(LimitExceeded, match="more than 50 host calls") as stopped:
            await invoke(guest, database)
        assert stopped.value.limit == "host_calls"

    run(guest_db, work)


GROW_FOREVER = """
    (loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (unreachable)"""


@pytest.mark.parametrize("engine", ENGINES)
def test_a_guest_that_grows_memory_without_end_is_capped(engine: str, guest_db: Db, tmp_path: Path) -> None:
    guest = guest_with(engine, wat_guest(GROW_FOREVER), tmp_path, memory_bytes=8 * 1024 * 1024)

    async def work(database: Database) -> None:
        with pytest.raises(LimitExceeded, match="memory") as stopped:
            await invoke(guest, database)
        assert stopped.value.limit == "memory"

    run(guest_db, work)


def test_the_memory_cap_is_written_into_the_module(tmp_path: Path) -> None:
    wasm = build(wat_guest(RESPOND), tmp_path)
    capped = cap_memory(wasm, 8 * PAGE)
    assert capped != wasm
    assert cap_memory(capped, 8 * PAGE) == capped  # idempotent
    assert cap_memory(b"not wasm", PAGE) == b"not wasm"
    with pytest.raises(Exception, match="starts with"):
        cap_memory(wasm, 2 * PAGE)  # the WAT guests start with 4 pages


@pytest.mark.parametrize("engine", ENGINES)
def test_a_guest_that_asks_for_huge_results_is_stopped(engine: str, guest_db: Db, tmp_path: Path) -> None:
    guest_db.run("DELETE FROM orders")
    for i in range(20):
        guest_db.run("INSERT INTO orders VALUES (%s, 1, 1, 1, 1, 1, 'row')", (i + 1,))
    wat = wat_guest(f"(drop (call $db_query (i32.const 8192) (i32.const {len(ROWS_QUERY)}))) {RESPOND}")
    wat = wat.replace("(data (i32.const 4096)", f"(data (i32.const 8192) {wat_string(ROWS_QUERY)})\n  (data (i32.const 4096)")
    guest = guest_with(engine, wat, tmp_path)

    async def work(database: Database) -> None:
        with pytest.raises(LimitExceeded, match="20 rows, over the limit of 5") as stopped:
            await invoke(guest, database, rows=5)
        assert stopped.value.limit == "result_rows"
        with pytest.raises(LimitExceeded) as stopped:
            await invoke(guest, database, max_result_bytes=16)
        assert stopped.value.limit == "result_bytes"
        assert (await invoke(guest, database, rows=20)).status == 200

    run(guest_db, work)


FORBIDDEN = [
    "DROP TABLE orders",
    "DELETE FROM orders; DROP TABLE orders",
    "SELECT * FROM mysql.user",
    "SELECT * FROM orders INTO OUTFILE %s",
    "UPDATE orders SET shipping_address = 'pwned'",
    "SELECT SLEEP(%s)",
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("sql", FORBIDDEN)
def test_forbidden_sql_stops_the_guest_and_changes_nothing(engine: str, sql: str, guest_db: Db, tmp_path: Path) -> None:
    guest_db.run("DELETE FROM orders")
    guest_db.run("INSERT INTO orders VALUES (1, 1, 1, 1, 1, 1, 'kept')")
    statement = json.dumps({"sql": sql, "params": ["/tmp/x"] if "%s" in sql else []})
    wat = wat_guest(f"(drop (call $db_execute (i32.const 8192) (i32.const {len(statement)}))) {RESPOND}")
    wat = wat.replace("(data (i32.const 4096)", f"(data (i32.const 8192) {wat_string(statement)})\n  (data (i32.const 4096)")
    guest = guest_with(engine, wat, tmp_path)

    async def work(database: Database) -> None:
        with pytest.raises(GuestFault, match="may not run"):
            await invoke(guest, database)

    run(guest_db, work)
    assert guest_db.rows() == [(1, 1, 1, 1, 1, 1, "kept")] or guest_db.rows()[0][-1] == "kept"


def test_garbage_instead_of_a_statement_is_answered_not_run(guest_db: Db) -> None:
    async def work(database: Database) -> list[bytes]:
        session = HostSession(database, max_result_bytes=1 << 20)
        try:
            return [
                await session.call("query", b"\xff not json"),
                await session.call("execute", b'{"sql": 5, "params": []}'),
                await session.call("query", b'{"sql": "SELECT 1", "params": [{"nested": 1}]}'),
            ]
        finally:
            await session.close()

    for answer in run(guest_db, work):
        assert json.loads(answer)["error"]["kind"] == "invalid"


# --- through HTTP: the limit named, the next request served ------------------------------------

LOOP_ON_L = f"""
    (if (i32.eq (i32.load8_u (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 1))) (i32.const 76))
      (then (loop $forever (br $forever))))
    {RESPOND}"""


@pytest.mark.parametrize("engine", DEADLINE_ENGINES)
def test_the_service_names_the_limit_and_keeps_serving(engine: str, guest_db: Db, tmp_path: Path) -> None:
    path = tmp_path / "loop-on-l.wasm"
    path.write_bytes(build(wat_guest(LOOP_ON_L), tmp_path))
    env = {"GUEST_MODULE": str(path), "WASM_ENGINE": engine, "DATABASE_URL": url_of(guest_db), "GUEST_TIME_LIMIT_MS": "300"}
    svc = Service(env, tmp_path / "service.log")
    try:
        for _ in range(2):
            stopped = svc.client.post("/echo", content=b"L")
            assert stopped.status_code == 500
            assert stopped.json()["error"]["code"] == "limit_exceeded"
            assert stopped.json()["error"]["limit"] == "time"
            assert "time limit" in stopped.json()["error"]["message"]
            assert svc.client.post("/echo", content=b"x").json() == {"status": True}
        assert f'guest_invocations_total{{engine="{engine}",outcome="limit"}} 2.0' in svc.client.get("/metrics").text
    finally:
        svc.stop()


@pytest.mark.skipif("wasmer" not in ENGINES, reason="wasmer is not installed for this Python")
def test_wasmer_says_at_startup_what_it_cannot_enforce(guest_db: Db, tmp_path: Path) -> None:
    svc = Service({"WASM_ENGINE": "wasmer", "DATABASE_URL": url_of(guest_db)}, tmp_path / "service.log")
    try:
        assert "the wasmer engine cannot stop a running guest" in svc.log()
    finally:
        svc.stop()
