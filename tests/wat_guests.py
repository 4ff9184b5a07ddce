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

from .conftest import Db

T = TypeVar("T")
ASYNC_IMPORTS = "host.db_query,host.db_execute,host.db_begin,host.db_commit,host.db_rollback"
OK_RESPONSE = '{"status":200,"content_type":"application/json"}\n{"status":true}'
INSERT = json.dumps(
    {
        "sql": "INSERT INTO orders (product_id, quantity, amount, shipping, tax, shipping_address) VALUES (%s, 1, 1, 1, 1, %s)",
        "params": [42, "from a hostile guest"],
    }
)


def wat_string(text: str) -> str:
    """A WAT string literal: every byte as a hex escape."""
    return '"' + "".join(f"\\{b:02x}" for b in text.encode()) + '"'


def wat_guest(handle_body: str, *, abi: int = 1, extra: str = "", data: str = OK_RESPONSE) -> str:
    """A minimal guest: bump allocator, a response at 1024, a statement at 4096."""
    return f"""
(module
  (import "host" "db_query" (func $db_query (param i32 i32) (result i64)))
  (import "host" "db_execute" (func $db_execute (param i32 i32) (result i64)))
  (import "host" "db_begin" (func $db_begin (result i64)))
  (import "host" "db_commit" (func $db_commit (result i64)))
  (import "host" "db_rollback" (func $db_rollback (result i64)))
  (import "host" "log" (func $log (param i32 i32 i32)))
  {extra}
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const 65536))
  (data (i32.const 1024) {wat_string(data)})
  (data (i32.const 4096) {wat_string(INSERT)})
  (func (export "abi_version") (result i32) (i32.const {abi}))
  (func (export "alloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (block $enough
      (br_if $enough (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1)))))
    (local.get $p))
  (func (export "dealloc") (param i32 i32))
  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    {handle_body})
)"""


RESPOND = f"(i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {len(OK_RESPONSE)}))"
INSERT_LEN = len(INSERT)


def build(wat: str, tmp_path: Path, *, asyncify: bool = True) -> bytes:
    raw = tmp_path / "guest.wasm"
    raw.write_bytes(wasmtime.wat2wasm(wat))
    if not asyncify:
        return raw.read_bytes()
    out = tmp_path / "guest.async.wasm"
    subprocess.run(
        ["wasm-opt", "--asyncify", f"--pass-arg=asyncify-imports@{ASYNC_IMPORTS}", str(raw), "-o", str(out)], check=True
    )
    return out.read_bytes()


def run(db: Db, work: Callable[[Database], Awaitable[T]]) -> T:
    async def main() -> T:
        database = Database(db.url, pool_max=3)
        await database.start()
        try:
            return await work(database)
        finally:
            await database.close()

    return asyncio.run(main())


async def invoke(guest: Guest, database: Database, request: bytes = b'{"op":"orders"}\n') -> Any:
    session = HostSession(database, max_result_bytes=1 << 20)
    try:
        return await guest.invoke(request, session.call, session.log)
    finally:
        await session.close()


def load(engine_name: str, wasm: bytes) -> Guest:
    return Guest(load_engine(engine_name), wasm)
