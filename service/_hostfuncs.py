"""What the guest's database imports do: one session per invocation, results as JSON bytes.

`HostSession.call` is handed each suspended import (guest/ABI.md) by `Guest.invoke`. Every
statement is checked and rendered by `_sql` before it is sent; rows are read from the server as
they come and stopped at the result limits. The session takes a connection at the first
database call and gives it back in `close`, rolling back whatever transaction the guest left
open; a connection whose state is unknown (a timeout, a cancelled request, a result cut short)
is dropped and its server session killed.
"""

from __future__ import annotations

import datetime
import decimal
import json
import logging
import time
from typing import Any, Protocol

from ._database import Connection, Database
from ._errors import DatabaseError, GuestFault, LimitExceeded
from ._limits import Limits
from ._printable import printable
from ._sql import Capability, Statement, StatementRefused

guest_log = logging.getLogger("service.guest.log")

_OK = b'{"ok":true}'
_decode = json.JSONDecoder().decode
_OPERATIONS = frozenset({"query", "execute", "begin", "commit", "rollback"})
_WRITES = frozenset({"insert", "update", "delete", "truncate"})


class HostCallMetrics(Protocol):
    """Where a session counts the guest's host calls: the HTTP side's `Metrics` (this layer
    imports nothing of HTTP, so it names only what it needs)."""

    def host_call(self, function: str, seconds: float | None = None) -> None: ...


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"cannot send {type(value).__name__} to the guest")


def _error(kind: str, code: int, message: str) -> bytes:
    return json.dumps({"error": {"kind": kind, "code": code, "message": message}}).encode()


class HostSession:
    """The database side of one guest invocation."""

    __slots__ = (
        "_db",
        "_capability",
        "_conn",
        "_broken",
        "_max_result_bytes",
        "_max_result_rows",
        "host_seconds",
        "_request_id",
        "_metrics",
        "_in_transaction",
        "_pending_writes",
        "kept_changes",
    )

    def __init__(
        self,
        db: Database,
        capability: Capability,
        *,
        max_result_bytes: int,
        max_result_rows: int = Limits.result_rows,
        request_id: str = "-",
        metrics: HostCallMetrics | None = None,
    ) -> None:
        self._db = db
        self._capability = capability
        self._conn: Connection | None = None
        self._broken = False
        self._max_result_bytes = max_result_bytes
        self._max_result_rows = max_result_rows
        #: time the host spent decoding and checking the guest's statements: work the guest asked
        #: for, which counts against its time limit (Guest.invoke's `charged`)
        self.host_seconds = 0.0
        self._request_id = request_id
        self._metrics = metrics
        self._in_transaction = False
        self._pending_writes = False
        #: whether a change the guest made was committed (autocommitted, or by its COMMIT)
        self.kept_changes = False

    async def call(self, operation: str, payload: bytes) -> bytes:
        """Runs one suspended import. A database failure becomes an error result for the guest;
        a statement outside the guest's capability raises GuestFault, a result or check over a
        limit LimitExceeded: both stop the invocation."""
        if self._metrics is None:
            return await self._call(operation, payload)
        started = time.perf_counter()
        try:
            return await self._call(operation, payload)
        finally:
            function = f"db_{operation}" if operation in _OPERATIONS else "db_unknown"
            self._metrics.host_call(function, time.perf_counter() - started)

    async def _call(self, operation: str, payload: bytes) -> bytes:
        db = self._db
        try:
            if operation in ("query", "execute"):
                statement, sql, json_rows = self._statement(operation, payload)
                if statement.kind == "truncate":
                    if self._in_transaction:
                        return _error("invalid", 0, "TRUNCATE TABLE cannot run inside a transaction")
                    await db.reset(sql)  # as the administrator: the guest's user may not empty tables
                    self.kept_changes = True
                    return b'{"rows_affected":0,"last_insert_id":0}'
                conn = await self._connection()
                if operation == "query":
                    return await self._query(conn, sql, json_rows)
                matched, last_id = await db.execute(conn, sql)
                if statement.kind in _WRITES and matched:
                    if self._in_transaction:
                        self._pending_writes = True
                    else:
                        self.kept_changes = True
                return b'{"rows_affected":%d,"last_insert_id":%d}' % (matched, last_id)
            if operation not in ("begin", "commit", "rollback"):
                return _error("invalid", 0, f"unknown operation {operation!r}")
            conn = await self._connection()
            if operation == "begin":
                await db.begin(conn)
                self._in_transaction, self._pending_writes = True, False
            elif operation == "commit":
                await db.commit(conn)
                self.kept_changes = self.kept_changes or self._pending_writes
                self._in_transaction = self._pending_writes = False
            else:
                await db.rollback(conn)
                self._in_transaction = self._pending_writes = False
            return _OK
        except _InvalidStatement as e:
            return _error("invalid", 0, str(e))
        except DatabaseError as e:
            if e.kind in ("unavailable", "timeout"):
                self._broken = True
            return _error(e.kind, e.code, e.message)

    def _statement(self, operation: str, payload: bytes) -> tuple[Statement, str, bool]:
        started = time.perf_counter()
        try:
            return self._read_statement(operation, payload)
        finally:
            self.host_seconds += time.perf_counter() - started

    def _read_statement(self, operation: str, payload: bytes) -> tuple[Statement, str, bool]:
        try:
            # UTF-8 and nothing else (guest/ABI.md, "Conventions"): json.loads on bytes would
            # also take UTF-16 and a byte-order mark, and costs more than the decoder on text.
            statement = _decode(payload.decode())
            sql, params = statement["sql"], statement["params"]
            json_rows = statement.get("json_rows", False)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            raise _InvalidStatement('a statement must be JSON {"sql": ..., "params": [...]}') from None
        if not isinstance(sql, str) or not isinstance(params, list) or not isinstance(json_rows, bool):
            raise _InvalidStatement("sql must be a string, params an array and json_rows true or false")
        try:
            checked = self._capability.check(sql)
            text = checked.bind(params)
        except StatementRefused as e:
            raise GuestFault(f"the guest sent a statement it may not run ({e}): {sql[:200]!r}") from None
        # A query returns rows and changes nothing; anything else goes through db_execute, which
        # reads no rows: each import's result, and its limits, are for its own kind.
        if (checked.kind == "select") != (operation == "query"):
            wanted = "db_query" if checked.kind == "select" else "db_execute"
            raise GuestFault(f"the guest sent a {checked.kind.upper()} through db_{operation}; it goes through {wanted}")
        return checked, text, json_rows

    async def _query(self, conn: Connection, sql: str, json_rows: bool) -> bytes:
        parts: list[bytes] = []
        count = size = 0
        max_rows, max_bytes = self._max_result_rows, self._max_result_bytes

        def take(row: tuple[Any, ...]) -> None:
            nonlocal count, size
            count += 1
            if count > max_rows:
                raise LimitExceeded("result_rows", f"a query returned more than {max_rows} rows, the limit (MAX_RESULT_ROWS)")
            cell = _json_row(row) if json_rows else _row(row)
            size += len(cell) + 1
            if size > max_bytes:
                raise LimitExceeded("result_bytes", f"a query returned more than {max_bytes} bytes, the limit (MAX_RESULT_BYTES)")
            parts.append(cell)

        await self._db.query(conn, sql, take)
        return b'{"rows":[' + b",".join(parts) + b"]}"

    def charged(self) -> float:
        """Seconds of host work done for the guest, which count against its time limit."""
        return self.host_seconds

    async def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = await self._db.acquire()
        return self._conn

    def log(self, level: int, message: str) -> None:
        if self._metrics is not None:
            self._metrics.host_call("log")
        guest_log.log(level if level in (10, 20, 30, 40, 50) else logging.INFO, "[%s] %s", self._request_id, printable(message))

    async def close(self, *, broken: bool = False) -> None:
        """Gives the connection back; an open transaction is rolled back (the connection is closed
        and its session killed). `broken`: the invocation did not end cleanly, so drop it."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._db.release(conn, broken=broken or self._broken)


class _InvalidStatement(Exception):
    pass


def _row(row: tuple[Any, ...]) -> bytes:
    try:
        return json.dumps(row, default=_json_default, ensure_ascii=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as e:
        raise _InvalidStatement(f"a row cannot be sent to the guest: {e}") from None


def _json_row(row: tuple[Any, ...]) -> bytes:
    """A row that MariaDB already made JSON (one column, from JSON_ARRAY), spliced in as it is:
    the host touches no value, and the guest parses it."""
    if len(row) != 1:
        raise _InvalidStatement(f"json_rows needs one column per row, and a row has {len(row)}")
    cell = row[0]
    if isinstance(cell, str):
        return cell.encode()
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell)
    if cell is None:
        return b"null"
    raise _InvalidStatement(f"json_rows needs JSON text in each row, and a row holds {type(cell).__name__}")
