"""The host against small hand-written guests: bad pointers, traps mid-transaction, wrong ABIs.

Each guest is WAT, post-processed with binaryen's asyncify as the real guest is, and run on
every installed engine against the suite's MariaDB.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from service import Guest, GuestFault, GuestLoadError, GuestMemoryError, LimitExceeded, load_engine
from service._database import Database
from service._guest import DEFAULT_MODULE
from service._wasm_format import leb, read_leb

from .conftest import ENGINES, GUESTS, Db, Service
from .wat_guests import INSERT_LEN, RESPOND, build, invoke, load, run, wat_guest


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- what a guest hands the host is checked ------------------------------------------------


@pytest.mark.parametrize(
    "handle_body",
    [
        "(drop (call $db_query (i32.const -256) (i32.const 100))) (i64.const 0)",
        "(drop (call $db_execute (i32.const 4096) (i32.const 300000))) (i64.const 0)",
        "(drop (call $db_query (i32.const 262100) (i32.const 200))) (i64.const 0)",
        "(call $log (i32.const 20) (i32.const -1) (i32.const 10)) (i64.const 0)",
    ],
    ids=["pointer past the end", "length past the end", "range across the end", "log with a bad pointer"],
)
def test_out_of_range_pointers_trap_the_guest_not_the_host(
    engine_name: str, guest_db: Db, tmp_path: Path, handle_body: str
) -> None:
    guest = load(engine_name, build(wat_guest(handle_body), tmp_path))

    async def work(database: Database) -> None:
        for _ in range(2):  # the same instance is not reused after a fault; a new one works
            with pytest.raises(GuestMemoryError):
                await invoke(guest, database)

    run(guest_db, work)


@pytest.mark.parametrize(
    "packed, error",
    [
        ("(i64.const 0xFFFFFFF000000010)", GuestMemoryError),
        ("(i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 0x7fffffff))", LimitExceeded),
        ("(i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.const 20))", GuestFault),
    ],
    ids=["response outside memory", "response too long", "response without a header"],
)
def test_malformed_responses_are_faults(engine_name: str, guest_db: Db, tmp_path: Path, packed: str, error: type) -> None:
    guest = load(engine_name, build(wat_guest(packed), tmp_path))
    with pytest.raises(error):
        run(guest_db, lambda database: invoke(guest, database))


@pytest.mark.parametrize(
    "head",
    [
        '{"status":99,"content_type":"text/plain; charset=utf-8","headers":[]}',
        '{"status":600,"content_type":"text/plain; charset=utf-8","headers":[]}',
        '{"status":"200","content_type":"text/plain; charset=utf-8","headers":[]}',
        '{"status":200,"content_type":"text/plain\\r\\nX-Injected: 1","headers":[]}',
        '{"status":200,"content_type":"caf\\u00e9","headers":[]}',
        '{"status":200,"content_type":"text/plain; charset=utf-8","headers":[["set-cookie","a=b"]]}',
        '{"status":201,"content_type":"text/plain; charset=utf-8","headers":[["location","/x\\n"]]}',
        '{"status":204,"content_type":"","headers":[]}',
        '{"status":304,"content_type":"text/plain; charset=utf-8","headers":[]}',
        '{"status":409,"content_type":"text/plain; charset=utf-8","headers":[["retry-after","soon"]]}',
        '{"status":200,"content_type":"text/plain; charset=utf-8","headers":' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"status":200,"content_type":"text/html","headers":[]}',
        '{"status":200,"content_type":"text/html; charset=utf-8","headers":[]}',
        '{"status":200,"content_type":"image/svg+xml","headers":[]}',
        '{"status":200,"content_type":" application/json","headers":[]}',
        '{"status":200,"content_type":"application/json","headers":[["location",""]]}',
        '{"status":200,"content_type":"application/json","headers":[["location","/a b"]]}',
        '{"status":200,"content_type":"application/json","headers":[["location","//evil.example/x"]]}',
        '{"status":200,"content_type":"application/json","headers":[["location","https://evil.example/"]]}',
        '{"status":201,"content_type":"application/json","headers":[["location","/a"],["location","/b"]]}',
        '{"status":409,"content_type":"application/json","headers":[["retry-after","1"],["Retry-After","2"]]}',
    ],
    ids=[
        "status 99",
        "status 600",
        "status as text",
        "header injection",
        "not ascii",
        "a header not allowed",
        "bad location",
        "204 with a body",
        "304 with a body",
        "retry-after not seconds",
        "nested without end",
        "html",
        "html with a charset",
        "svg",
        "a leading space",
        "empty location",
        "location with a space",
        "location to another host",
        "location with a scheme",
        "two locations",
        "two retry-afters",
    ],
)
def test_a_bad_response_header_is_a_fault(engine_name: str, guest_db: Db, tmp_path: Path, head: str) -> None:
    data = head + "\nhi"
    wasm = build(wat_guest(f"(i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {len(data)}))", data=data), tmp_path)
    with pytest.raises(GuestFault, match="header"):
        run(guest_db, lambda database: invoke(load(engine_name, wasm), database))


@pytest.mark.parametrize(
    "head, expected",
    [
        ('{"status":202,"content_type":"","headers":[]}', (202, "", [])),
        ('{"status":404,"content_type":"application/problem+json","headers":[]}', (404, "application/problem+json", [])),
        ('{"headers":[],"content_type":"text/plain; charset=utf-8","status":200}', (200, "text/plain; charset=utf-8", [])),
        (
            '{"status":201,"content_type":"application/json","headers":[["Location","/api/orders/7"]]}',
            (201, "application/json", [("location", "/api/orders/7")]),
        ),
        (
            '{"status":409,"content_type":"application/problem+json","headers":[["retry-after","1"]]}',
            (409, "application/problem+json", [("retry-after", "1")]),
        ),
    ],
)
def test_response_headers_are_read_with_or_without_the_fast_path(
    engine_name: str, guest_db: Db, tmp_path: Path, head: str, expected: tuple[object, ...]
) -> None:
    data = head + "\nhi"
    wasm = build(wat_guest(f"(i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {len(data)}))", data=data), tmp_path)
    response = run(guest_db, lambda database: invoke(load(engine_name, wasm), database))
    assert (response.status, response.content_type, response.headers, response.body) == (*expected, b"hi")


def test_a_guest_that_answers_is_answered(engine_name: str, guest_db: Db, tmp_path: Path) -> None:
    guest = load(engine_name, build(wat_guest(RESPOND), tmp_path))
    response = run(guest_db, lambda database: invoke(guest, database))
    assert (response.status, response.content_type, response.body) == (200, "application/json", b'{"status":true}')


# --- transactions end with the invocation ---------------------------------------------------

TRAP_IN_TRANSACTION = f"""
    (drop (call $db_begin))
    (drop (call $db_execute (i32.const 4096) (i32.const {INSERT_LEN})))
    (unreachable)"""

LEAVE_TRANSACTION_OPEN = f"""
    (drop (call $db_begin))
    (drop (call $db_execute (i32.const 4096) (i32.const {INSERT_LEN})))
    {RESPOND}"""

COMMIT = f"""
    (drop (call $db_begin))
    (drop (call $db_execute (i32.const 4096) (i32.const {INSERT_LEN})))
    (drop (call $db_commit))
    {RESPOND}"""


def hostile_rows(db: Db) -> list[tuple[object, ...]]:
    return db.rows("SELECT product_id FROM orders WHERE shipping_address = 'from a hostile guest'")


def test_a_trap_mid_transaction_is_rolled_back(engine_name: str, guest_db: Db, tmp_path: Path) -> None:
    guest_db.run("DELETE FROM orders")
    guest = load(engine_name, build(wat_guest(TRAP_IN_TRANSACTION), tmp_path))

    async def work(database: Database) -> None:
        for _ in range(5):  # more than the pool's 3 connections: each one came back
            with pytest.raises(GuestFault, match="trapped"):
                await invoke(guest, database)
            assert hostile_rows(guest_db) == []

    run(guest_db, work)


def test_an_open_transaction_is_rolled_back_at_the_end(engine_name: str, guest_db: Db, tmp_path: Path) -> None:
    guest_db.run("DELETE FROM orders")
    guest = load(engine_name, build(wat_guest(LEAVE_TRANSACTION_OPEN), tmp_path))

    async def work(database: Database) -> None:
        for _ in range(5):
            assert (await invoke(guest, database)).status == 200
        assert hostile_rows(guest_db) == []

    run(guest_db, work)


def test_a_committed_transaction_stays(engine_name: str, guest_db: Db, tmp_path: Path) -> None:
    guest_db.run("DELETE FROM orders")
    guest = load(engine_name, build(wat_guest(COMMIT), tmp_path))
    assert run(guest_db, lambda database: invoke(guest, database)).status == 200
    assert hostile_rows(guest_db) == [(42,)]


def test_suspended_guests_interleave(engine_name: str, guest_db: Db, tmp_path: Path) -> None:
    """Many requests at once, each suspended at the database, each on its own instance."""
    guest_db.run("DELETE FROM orders")
    guest = load(engine_name, build(wat_guest(COMMIT), tmp_path))

    async def work(database: Database) -> list[int]:
        responses = await asyncio.gather(*(invoke(guest, database) for _ in range(40)))
        return [r.status for r in responses]

    assert run(guest_db, work) == [200] * 40
    assert len(hostile_rows(guest_db)) == 40


# --- a guest the host does not speak is refused at load ---------------------------------------


def test_an_unknown_abi_version_is_refused(engine_name: str, tmp_path: Path) -> None:
    wasm = build(wat_guest(RESPOND, abi=5), tmp_path)
    with pytest.raises(GuestLoadError, match="ABI version 5, but this host speaks version 4"):
        load(engine_name, wasm)


# The shape of a version 1 guest: its database imports returned the result, and the host drove
# asyncify through the guest's exports.
V1_GUEST = """
(module
  (import "host" "db_query" (func (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "dealloc") (param i32 i32))
  (func (export "handle") (param i32 i32) (result i64) (i64.const 0))
  (func (export "asyncify_start_unwind") (param i32))
)"""


def test_a_version_1_guest_is_refused_with_the_reason(engine_name: str, tmp_path: Path) -> None:
    with pytest.raises(GuestLoadError, match="does not export inbox, resume, describe; this host speaks guest ABI version 4"):
        load(engine_name, build(V1_GUEST, tmp_path, asyncify=False))


def test_foreign_imports_are_refused(engine_name: str, tmp_path: Path) -> None:
    extra = '(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
    with pytest.raises(GuestLoadError, match="wasi_snapshot_preview1.fd_write"):
        load(engine_name, build(wat_guest(RESPOND, extra=extra), tmp_path))


def test_a_module_without_asyncify_is_refused(engine_name: str, tmp_path: Path) -> None:
    with pytest.raises(GuestLoadError, match="asyncify"):
        load(engine_name, build(wat_guest(RESPOND), tmp_path, asyncify=False))


def test_bytes_that_are_not_wasm_are_refused(engine_name: str) -> None:
    with pytest.raises(GuestLoadError, match="Wasm header|malformed|does not compile"):
        load(engine_name, b"\0asm garbage")


def test_the_service_refuses_a_wrong_abi_at_startup(tmp_path: Path) -> None:
    path = tmp_path / "v5.wasm"
    path.write_bytes(build(wat_guest(RESPOND, abi=5), tmp_path))
    env = {**os.environ, "GUEST_MODULE": str(path), "DATABASE_URL": "mysql://root@127.0.0.1:1/none"}
    done = subprocess.run([sys.executable, "-m", "service"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "speaks guest ABI version 5, but this host speaks version 4" in done.stderr


# --- the real guest -------------------------------------------------------------------------


def test_the_real_guest_imports_only_host_functions() -> None:
    module = wasmtime.Module(wasmtime.Engine(), DEFAULT_MODULE.read_bytes())
    imports = sorted((i.module, i.name) for i in module.imports)
    names = ("db_query", "db_execute", "db_begin", "db_commit", "db_rollback", "db_result", "log")
    assert imports == sorted(("host", n) for n in names)


TRAP_ON_T = f"""
    (if (i32.eq (i32.load8_u (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 1))) (i32.const 84))
      (then (unreachable)))
    {RESPOND}"""


def test_the_service_answers_a_trap_with_500_and_keeps_serving(
    engine_name: str, guest_db: Db, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path / "trap-on-t.wasm"
    path.write_bytes(build(wat_guest(TRAP_ON_T), tmp_path))
    u = guest_db.url
    env = {"GUEST_MODULE": str(path), "WASM_ENGINE": engine_name, "DATABASE_URL": f"mysql://root@{u.host}:{u.port}/{u.database}"}
    svc = Service(env, tmp_path / "service.log")
    try:
        for _ in range(3):
            trapped = svc.client.post("/echo", content=b"T")
            assert trapped.status_code == 500
            error = trapped.json()["error"]
            assert error["code"] == "guest_fault"
            assert error["error_id"] in svc.log()
            assert trapped.headers["access-control-allow-origin"] == "*"
            fine = svc.client.post("/echo", content=b"x")
            assert (fine.status_code, fine.json()) == (200, {"status": True})
    finally:
        svc.stop()


# --- compiled code is cached between starts ---------------------------------------------------


def test_compiled_code_is_cached_and_checked(engine_name: str, tmp_path: Path) -> None:
    engine = load_engine(engine_name)
    cache = tmp_path / "compiled"
    first = Guest.load(engine, cache_dir=cache)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == f".{engine_name}"
    assert oct(cache.stat().st_mode & 0o777) == "0o700"

    def must_not_compile(wasm: bytes) -> None:
        raise AssertionError("compiled again although the cache holds the module")

    engine.compile = must_not_compile  # type: ignore[method-assign, assignment]
    second = Guest.load(engine, cache_dir=cache)
    assert second.engine is first.engine

    del engine.compile  # back to the class's method
    blob = bytearray(files[0].read_bytes())
    blob[100] ^= 0xFF  # a damaged file is noticed by its hash and replaced, never run
    files[0].write_bytes(bytes(blob))
    Guest.load(engine, cache_dir=cache)
    assert files[0].read_bytes() != bytes(blob)


# --- suspension (ABI v2): the guest unwinds itself, the host resumes it ------------------------

ORDER_ROW = '[{0},12,2,19.99,15.00,2.00,"{0} Suspension Road"]'


def request(op: str, **path: str) -> bytes:
    """A request for the real guest, its header line as the host writes it (ABI version 4)."""
    head = {"op": op, "query": {}, "path": path, "content_type": "", "allow_reset": False}
    return json.dumps(head, separators=(",", ":")).encode() + b"\n"


def real_guest(engine_name: str, module: Path = DEFAULT_MODULE) -> Guest:
    return Guest(load_engine(engine_name), module.read_bytes(), pool_max=1)


@pytest.fixture(params=list(GUESTS))
def guest_module(request: pytest.FixtureRequest) -> Path:
    """Each guest's module: the tests of one instance's life run on both."""
    return GUESTS[str(request.param)]


def with_exported_global(wasm: bytes, index: int, name: str) -> bytes:
    """The module with global `index` exported as `name` (appended to its export section)."""
    out, pos = bytearray(wasm[:8]), 8
    while pos < len(wasm):
        section = wasm[pos]
        size, start = read_leb(wasm, pos + 1)
        body = wasm[start : start + size]
        if section == 7:
            count, rest = read_leb(body, 0)
            body = leb(count + 1) + body[rest:] + leb(len(name)) + name.encode() + b"\x03" + leb(index)
        out += bytes([section]) + leb(len(body)) + body
        pos = start + size
    return bytes(out)


def test_suspending_leaves_the_stack_pointer_where_it_was() -> None:
    # `handle` and `resume` are not instrumented by asyncify (guest/build.sh), so they must keep
    # no frame on the shadow stack: were they to, each suspended request would leave the stack
    # pointer lower, until the stack ran into the guest's data.
    wasm = with_exported_global(DEFAULT_MODULE.read_bytes(), 0, "stack_pointer")
    guest = Guest(load_engine("wasmtime"), wasm, pool_max=1)
    instance = guest.idle_instances()[0]

    def stack_pointer() -> int:
        return instance.raw.get_global("stack_pointer")

    async def host_call(operation: str, payload: bytes) -> bytes:
        assert stack_pointer() < at_rest  # suspended inside the request
        return ('{"rows":[' + ORDER_ROW.format(7) + "]}").encode()

    at_rest = stack_pointer()
    assert at_rest == 1024 * 1024  # the shadow stack's top, where Rust's wasm32 target puts it

    async def main() -> None:
        for _ in range(3):
            response = await guest.invoke(request("get", order_id="7"), host_call, lambda *_: None)
            assert response.status == 200
            assert stack_pointer() == at_rest

    asyncio.run(main())


def test_one_instance_suspends_and_resumes_thousands_of_times(engine_name: str, guest_module: Path) -> None:
    guest = real_guest(engine_name, guest_module)
    instance = guest.idle_instances()[0]
    calls: list[tuple[str, bytes]] = []

    async def host_call(operation: str, payload: bytes) -> bytes:
        calls.append((operation, payload))
        return ('{"rows":[' + ORDER_ROW.format(len(calls)) + "]}").encode()

    async def main() -> None:
        for i in range(1, 3001):
            response = await guest.invoke(request("get", order_id=str(i)), host_call, lambda *_: None)
            assert response.status == 200, response.body
            assert b'"order_id":%d,' % i in response.body and b"%d Suspension Road" % i in response.body

    start_memory = instance.raw.memory_size()
    asyncio.run(main())
    assert guest.idle_instances() == [instance]  # the same instance served every request
    assert instance.raw.memory_size() == start_memory
    assert len(calls) == 3000 and all(op == "query" and b'"json_rows":true' in p for op, p in calls)


def test_a_result_larger_than_the_inbox_is_fetched_by_the_guest(engine_name: str, guest_module: Path) -> None:
    guest = real_guest(engine_name, guest_module)
    pages: list[int] = []

    async def host_call(operation: str, payload: bytes) -> bytes:
        # GET /orders reads in pages: `WHERE order_id > ? ... LIMIT ?`
        after, limit = json.loads(payload)["params"]
        ids = range(after + 1, min(after + limit, 3000) + 1)
        result = ('{"rows":[' + ",".join(ORDER_ROW.format(i) for i in ids) + "]}").encode()
        pages.append(len(result))
        return result

    async def main() -> None:
        for _ in range(3):
            response = await guest.invoke(request("orders"), host_call, lambda *_: None)
            assert response.status == 200
            orders = json.loads(response.body)
            assert [o["order_id"] for o in orders] == list(range(1, 3001))
            assert orders[-1]["shipping_address"] == "3000 Suspension Road"

    asyncio.run(main())
    assert max(pages) > guest.idle_instances()[0].inbox_capacity


@pytest.mark.parametrize(
    "handle_body, message",
    [
        ("(call $submit_begin) (call $submit_commit) (i64.const 0)", "without suspending after its previous database call"),
        ("(call $db_result (i32.const 65536) (i32.const 10)) (i64.const 0)", "db_result with no result waiting"),
    ],
    ids=["two calls without suspending", "db_result with nothing waiting"],
)
def test_a_guest_that_breaks_the_suspension_protocol_is_a_fault(
    engine_name: str, guest_db: Db, tmp_path: Path, handle_body: str, message: str
) -> None:
    guest = load(engine_name, build(wat_guest(handle_body), tmp_path))
    with pytest.raises(GuestFault, match=message):
        run(guest_db, lambda database: invoke(guest, database))


def test_memory_stays_bounded_across_thousands_of_mixed_requests(engine_name: str, guest_module: Path) -> None:
    """Every kind of request, good and bad, thousands of times on one instance: once the host's
    request buffer has grown (for the echo of 70 KB, the first round's last request) and every
    request has run on it (the second round), the instance's memory does not grow again (the
    AssemblyScript guest gives each request's memory back when the next starts; the Rust one
    frees as it goes)."""
    guest = real_guest(engine_name, guest_module)
    instance = guest.idle_instances()[0]
    order = json.dumps({"product_id": 1, "quantity": 2, "amount": 19.99, "shipping": 1, "tax": 0, "shipping_address": "é" * 99})

    async def host_call(operation: str, payload: bytes) -> bytes:
        if operation == "execute":
            return b'{"rows_affected":1,"last_insert_id":7}'
        if operation in ("begin", "commit", "rollback"):
            return b'{"ok":true}'
        sql = json.loads(payload)["sql"]
        if "COUNT" in sql:
            return b'{"rows":[[500]]}'
        rows = 300 if "order_id > ?" in sql else 50 if "OFFSET" in sql else 1
        return ('{"rows":[' + ",".join(ORDER_ROW.format(i) for i in range(1, rows + 1)) + "]}").encode()

    def body(op: str, text: str, **path: str) -> bytes:
        return request(op, **path).replace(b'"content_type":""', b'"content_type":"application/json"') + text.encode()

    requests = [
        request("get", order_id="7"),
        request("orders"),
        request("list"),
        body("create", order),
        body("create_orders", "[" + ",".join([order] * 20) + "]"),
        body("patch", '{"quantity": 3}', order_id="7"),
        body("create", '{"amount": 1.234, "k' + "x" * 5000 + '": [[[[1]]]]}'),
        body("create_order", '{"a": "\\ud800'),
        body("echo", "x" * 70000),
    ]

    async def main() -> int:
        size = 0
        for round in range(300):
            for req in requests:
                response = await guest.invoke(req, host_call, lambda *_: None)
                assert response.status < 500, response.body[:200]
            if round == 1:
                size = instance.raw.memory_size()
            if round >= 1:
                assert instance.raw.memory_size() == size, round
        return size

    asyncio.run(main())
    assert guest.idle_instances() == [instance]
