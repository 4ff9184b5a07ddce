"""Small hand-written guests (WAT, asyncified with binaryen as the real guest is) and helpers
to run them against the suite's MariaDB."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import wasmtime

from service import Guest, load_engine
from service._database import Database
from service._hostfuncs import HostSession
from service._settings import DatabaseURL
from service._sql import Capability

from .conftest import ROOT, Db

CAPABILITY = Capability.from_schema_file(ROOT / "sql" / "schema.sql")

T = TypeVar("T")
OK_RESPONSE = '{"status":200,"content_type":"application/json","headers":[]}\n{"status":true}'


def _routes_of_the_orders_guest() -> str:
    """What a test guest says of itself from `describe` (guest/ABI.md, "Description"): the
    orders guest's routes and operations, without their schemas, so the service routes the
    same requests to it."""
    real = json.loads((ROOT / "guest" / "abi" / "describe.json").read_text())
    operations = {name: {"api": spec["api"], "changes": spec["changes"]} for name, spec in real["operations"].items()}
    return json.dumps({"abi_version": 4, "routes": real["routes"], "operations": operations}, separators=(",", ":"))


DESCRIPTION = _routes_of_the_orders_guest()
DESCRIPTION_AT = 57344  # up to the heap, at 65536
INSERT = json.dumps(
    {
        "sql": "INSERT INTO orders (product_id, quantity, amount, shipping, tax, shipping_address) VALUES (?, 1, 1, 1, 1, ?)",
        "params": [42, "from a hostile guest"],
    }
)
# A request header line with every key of ABI version 4 (guest/ABI.md, "Request and response").
REQUEST = b'{"op":"orders","query":{},"path":{},"content_type":"","allow_reset":false}\n'
UNWIND_DATA = 16384  # asyncify's (current, end) header, then 4 KiB for the saved stack
INBOX = 20480
INBOX_BYTES = 8192


def wat_string(text: str) -> str:
    """A WAT string literal: every byte as a hex escape."""
    return '"' + "".join(f"\\{b:02x}" for b in text.encode()) + '"'


def wat_guest(
    handle_body: str, *, abi: int = 4, extra: str = "", data: str = OK_RESPONSE, description: str = DESCRIPTION
) -> str:
    """A minimal guest of ABI version 4 (guest/ABI.md): bump allocator, a response at 1024, a
    statement at 4096. `handle_body` is the body of `$serve (param $ptr i32) (param $len i32)
    (result i64)`; it makes database calls with `$db_query` / `$db_execute` (ptr, len) and
    `$db_begin` / `$db_commit` / `$db_rollback`, which suspend and return the host's result
    packed as `ptr << 32 | len`, as the v1 imports did."""
    return f"""
(module
  (import "host" "db_query" (func $submit_query (param i32 i32)))
  (import "host" "db_execute" (func $submit_execute (param i32 i32)))
  (import "host" "db_begin" (func $submit_begin))
  (import "host" "db_commit" (func $submit_commit))
  (import "host" "db_rollback" (func $submit_rollback))
  (import "host" "db_result" (func $db_result (param i32 i32)))
  (import "host" "log" (func $log (param i32 i32 i32)))
  (import "asyncify" "start_unwind" (func $start_unwind (param i32)))
  (import "asyncify" "stop_unwind" (func $stop_unwind))
  (import "asyncify" "start_rewind" (func $start_rewind (param i32)))
  (import "asyncify" "stop_rewind" (func $stop_rewind))
  {extra}
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const 65536))
  (global $resuming (mut i32) (i32.const 0))
  (global $result_len (mut i32) (i32.const 0))
  (global $request_ptr (mut i32) (i32.const 0))
  (global $request_len (mut i32) (i32.const 0))
  (data (i32.const 1024) {wat_string(data)})
  (data (i32.const 4096) {wat_string(INSERT)})
  (data (i32.const {DESCRIPTION_AT}) {wat_string(description)})
  (func (export "abi_version") (result i32) (i32.const {abi}))
  (func $alloc (export "alloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (block $enough
      (br_if $enough (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1)))))
    (local.get $p))
  (func (export "dealloc") (param i32 i32))
  (func (export "inbox") (result i64)
    (i64.const {(INBOX << 32) | INBOX_BYTES}))
  (func (export "describe") (result i64)
    (i64.const {(DESCRIPTION_AT << 32) | len(description.encode())}))
  (func $handle (export "handle") (param $ptr i32) (param $len i32) (result i64)
    (global.set $request_ptr (local.get $ptr))
    (global.set $request_len (local.get $len))
    (call $serve (local.get $ptr) (local.get $len)))
  (func $resume (export "resume") (param $n i32) (result i64)
    (call $stop_unwind)
    (global.set $result_len (local.get $n))
    (global.set $resuming (i32.const 1))
    (call $start_rewind (i32.const {UNWIND_DATA}))
    (call $serve (global.get $request_ptr) (global.get $request_len)))
  ;; Entered twice per call: to submit and unwind, then, rewinding, to return the result.
  (func $suspend (param $call i32) (param $ptr i32) (param $len i32) (result i64) (local $p i32)
    (if (global.get $resuming)
      (then
        (global.set $resuming (i32.const 0))
        (call $stop_rewind)
        (if (i32.le_u (global.get $result_len) (i32.const {INBOX_BYTES}))
          (then (return (i64.or (i64.const {INBOX << 32}) (i64.extend_i32_u (global.get $result_len))))))
        (local.set $p (call $alloc (global.get $result_len)))
        (call $db_result (local.get $p) (global.get $result_len))
        (return (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32)) (i64.extend_i32_u (global.get $result_len))))))
    (block $submitted
      (if (i32.eq (local.get $call) (i32.const 0)) (then (call $submit_query (local.get $ptr) (local.get $len)) (br $submitted)))
      (if (i32.eq (local.get $call) (i32.const 1)) (then
        (call $submit_execute (local.get $ptr) (local.get $len)) (br $submitted)))
      (if (i32.eq (local.get $call) (i32.const 2)) (then (call $submit_begin) (br $submitted)))
      (if (i32.eq (local.get $call) (i32.const 3)) (then (call $submit_commit) (br $submitted)))
      (call $submit_rollback))
    (i32.store (i32.const {UNWIND_DATA}) (i32.const {UNWIND_DATA + 8}))
    (i32.store (i32.const {UNWIND_DATA + 4}) (i32.const {INBOX}))
    (call $start_unwind (i32.const {UNWIND_DATA}))
    (i64.const 0))
  (func $db_query (param i32 i32) (result i64) (call $suspend (i32.const 0) (local.get 0) (local.get 1)))
  (func $db_execute (param i32 i32) (result i64) (call $suspend (i32.const 1) (local.get 0) (local.get 1)))
  (func $db_begin (result i64) (call $suspend (i32.const 2) (i32.const 0) (i32.const 0)))
  (func $db_commit (result i64) (call $suspend (i32.const 3) (i32.const 0) (i32.const 0)))
  (func $db_rollback (result i64) (call $suspend (i32.const 4) (i32.const 0) (i32.const 0)))
  (func $serve (param $ptr i32) (param $len i32) (result i64)
    {handle_body})
)"""


RESPOND = f"(i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {len(OK_RESPONSE)}))"
INSERT_LEN = len(INSERT)
STATEMENT_AT = 8192
ANSWER_AT = 32768
ANSWER_HEAD = '{"status":200,"content_type":"application/json","headers":[]}\n'


def statement_guest(statement: dict[str, Any], *, call: str = "$db_query", before: str = "", after: str = "") -> str:
    """A guest that hands the host `statement` (by `call`) and answers with the host's result as
    its body; `before` and `after` are WAT run around the call."""
    text = json.dumps(statement)
    body = f"""
    {before}
    (local.set $result (call {call} (i32.const {STATEMENT_AT}) (i32.const {len(text.encode())})))
    {after}
    (call $copy (i32.const {ANSWER_AT + len(ANSWER_HEAD)})
      (i32.wrap_i64 (i64.shr_u (local.get $result) (i64.const 32))) (i32.wrap_i64 (local.get $result)))
    (i64.or (i64.shl (i64.const {ANSWER_AT}) (i64.const 32))
      (i64.add (i64.const {len(ANSWER_HEAD)}) (i64.and (local.get $result) (i64.const 0xFFFFFFFF))))"""
    wat = with_locals(wat_guest(body, extra=COPY), "(local $result i64)")
    return with_data(with_data(wat, STATEMENT_AT, text), ANSWER_AT, ANSWER_HEAD)


SERVE = "(func $serve (param $ptr i32) (param $len i32) (result i64)"


def with_locals(wat: str, locals_: str) -> str:
    """`wat` (from wat_guest) with `locals_` declared in `$serve`."""
    return wat.replace(SERVE, f"{SERVE} {locals_}")


def with_data(wat: str, address: int, text: str) -> str:
    """`wat` (from wat_guest) with `text` at `address` of its memory."""
    return wat.replace("(data (i32.const 4096)", f"(data (i32.const {address}) {wat_string(text)})\n  (data (i32.const 4096)")


COPY = """
  (func $copy (param $dst i32) (param $src i32) (param $n i32)
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (i32.store8 (local.get $dst) (i32.load8_u (local.get $src)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 1)))
      (local.set $src (i32.add (local.get $src) (i32.const 1)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next))))"""


def build(wat: str, tmp_path: Path, *, asyncify: bool = True) -> bytes:
    """The module, post-processed as guest/build.sh does the real guest."""
    raw = tmp_path / "guest.wasm"
    raw.write_bytes(wasmtime.wat2wasm(wat))
    if not asyncify:
        return raw.read_bytes()
    out = tmp_path / "guest.async.wasm"
    done = subprocess.run(
        ["wasm-opt", "--enable-reference-types", "--enable-bulk-memory", "--asyncify", "--pass-arg=asyncify-imports@"]
        + ["--pass-arg=asyncify-removelist@handle,resume"]
        + [str(raw), "-o", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "non-existing function" not in done.stderr, done.stderr  # that would break suspension
    return out.read_bytes()


def run(db: Db, work: Callable[[Database], Awaitable[T]], guest_url: DatabaseURL | None = None, **options: Any) -> T:
    """`work(database)` against `db`, its guest statements as `guest_url` (default: the
    administrator of `db`); `options` go to Database."""

    async def main() -> T:
        database = Database(
            guest_url or db.url, admin_url=db.url, pool_max=3, guest_tables=frozenset(CAPABILITY.tables), **options
        )
        await database.start()
        try:
            return await work(database)
        finally:
            await database.close()

    return asyncio.run(main())


async def invoke(guest: Guest, database: Database, request: bytes = REQUEST) -> Any:
    session = HostSession(database, CAPABILITY, max_result_bytes=1 << 20)
    clean = False
    try:
        response = await guest.invoke(request, session.call, session.log, session.charged)
        clean = True
        return response
    finally:
        await session.close(broken=not clean)


def load(engine_name: str, wasm: bytes) -> Guest:
    return Guest(load_engine(engine_name), wasm)
