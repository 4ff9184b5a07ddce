"""What the guest's database imports do: one session per invocation, results as JSON bytes.

`HostSession.call` is handed each suspended import (guest/ABI.md) by `Guest.invoke`. It takes a
connection at the first database call and gives it back in `close`, rolling back whatever
transaction the guest left open.
"""

from __future__ import annotations

import datetime
import decimal
import json
import logging
import time
from typing import Any

from ._capability import StatementRefused, check_statement
from ._database import Database
from ._errors import DatabaseError, GuestFault, LimitExceeded
from ._observability import Metrics

guest_log = logging.getLogger("service.guest.log")

_OK = b'{"ok":true}'
_OPERATIONS = frozenset({"query", "execute", "begin", "commit", "rollback"})


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

    __slots__ = ("_db", "_conn", "_broken", "_max_result_bytes", "_max_result_rows", "_request_id", "_metrics")

    def __init__(
        self,
        db: Database,
        *,
        max_result_bytes: int,
        max_result_rows: int = 100_000,
        request_id: str = "-",
        metrics: Metrics | None = None,
    ) -> None:
        self._db = db
        self._conn: Any = None
        self._broken = False
        self._max_result_bytes = max_result_bytes
        self._max_result_rows = max_result_rows
        self._request_id = request_id
        self._metrics = metrics

    async def call(self, operation: str, payload: bytes) -> bytes:
        """Runs one suspended import. A database failure becomes an error result for the guest;
        a statement outside the guest's capability raises GuestFault, a result over a limit
        LimitExceeded: both stop the invocation."""
        if self._metrics is None:
            return await self._call(operation, payload)
        started = time.perf_counter()
        try:
            return await self._call(operation, payload)
        finally:
            metrics = self._metrics
            function = f"db_{operation}" if operation in _OPERATIONS else "db_unknown"
            metrics.labelled(metrics.host_calls, function).inc()
            metrics.labelled(metrics.host_call_seconds, function).observe(time.perf_counter() - started)

    async def _call(self, operation: str, payload: bytes) -> bytes:
        try:
            if operation in ("query", "execute"):
                sql, params, json_rows = self._statement(payload)
                conn = await self._connection()
                if operation == "query":
                    rows = await Database.query(conn, sql, params)
                    if len(rows) > self._max_result_rows:
                        message = f"a query returned {len(rows)} rows, over the limit of {self._max_result_rows}"
                        raise LimitExceeded("result_rows", message)
                    result = _json_rows(rows) if json_rows else _rows(rows)
                    if len(result) > self._max_result_bytes:
                        message = f"a query returned {len(result)} bytes, over the limit of {self._max_result_bytes}"
                        raise LimitExceeded("result_bytes", message)
                    return result
                matched, last_id = await Database.execute(conn, sql, params)
                return b'{"rows_affected":%d,"last_insert_id":%d}' % (matched, last_id)
            conn = await self._connection()
            if operation == "begin":
                await Database.begin(conn)
            elif operation == "commit":
                await Database.commit(conn)
            elif operation == "rollback":
                await Database.rollback(conn)
            else:
                return _error("invalid", 0, f"unknown operation {operation!r}")
            return _OK
        except _InvalidStatement as e:
            return _error("invalid", 0, str(e))
        except DatabaseError as e:
            if e.kind == "unavailable":
                self._broken = True
            return _error(e.kind, e.code, e.message)

    def _statement(self, payload: bytes) -> tuple[str, list[Any], bool]:
        try:
            statement = json.loads(payload)
            sql, params = statement["sql"], statement["params"]
            json_rows = statement.get("json_rows", False)
        except (ValueError, TypeError, KeyError, AttributeError):
            raise _InvalidStatement('a statement must be JSON {"sql": ..., "params": [...]}') from None
        if not isinstance(sql, str) or not isinstance(params, list) or not isinstance(json_rows, bool):
            raise _InvalidStatement("sql must be a string, params an array and json_rows true or false")
        if any(isinstance(p, (dict, list)) for p in params):
            raise _InvalidStatement("parameters must be numbers, strings, booleans or null")
        try:
            check_statement(sql)
        except StatementRefused as e:
            raise GuestFault(f"the guest sent a statement it may not run ({e}): {sql[:200]!r}") from None
        return sql, params, json_rows

    async def _connection(self) -> Any:
        if self._conn is None:
            self._conn = await self._db.acquire()
        return self._conn

    def log(self, level: int, message: str) -> None:
        if self._metrics is not None:
            self._metrics.labelled(self._metrics.host_calls, "log").inc()
        guest_log.log(level if level in (10, 20, 30, 40, 50) else logging.INFO, "[%s] %s", self._request_id, message)

    async def close(self) -> None:
        """Gives the connection back; an open transaction is rolled back first."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._db.release(conn, broken=self._broken)


class _InvalidStatement(Exception):
    pass


def _rows(rows: list[tuple[Any, ...]]) -> bytes:
    return json.dumps({"rows": rows}, default=_json_default, ensure_ascii=False, separators=(",", ":")).encode()


def _json_rows(rows: list[tuple[Any, ...]]) -> bytes:
    """Rows that MariaDB already made JSON (one column each, from JSON_ARRAY or JSON_OBJECT),
    spliced in as they are: the host touches no value, and the guest parses them."""
    parts = []
    for row in rows:
        if len(row) != 1:
            raise _InvalidStatement(f"json_rows needs one column per row, and a row has {len(row)}")
        cell = row[0]
        if isinstance(cell, str):
            parts.append(cell.encode())
        elif isinstance(cell, (bytes, bytearray)):
            parts.append(bytes(cell))
        elif cell is None:
            parts.append(b"null")
        else:
            raise _InvalidStatement(f"json_rows needs JSON text in each row, and a row holds {type(cell).__name__}")
    return b'{"rows":[' + b",".join(parts) + b"]}"
