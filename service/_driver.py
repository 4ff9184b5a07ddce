"""What the service needs of the MariaDB driver: how to connect, how values and errors come back.

Driver and network errors are converted here, at their boundary, into DatabaseError.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiomysql
import pymysql
from pymysql.constants import CLIENT, ER, FIELD_TYPE
from pymysql.converters import conversions

from ._deadline import deadline
from ._errors import DatabaseError, DatabaseUnavailable
from ._settings import DatabaseURL

# DECIMAL arrives as its exact text, so money never passes through a float.
_DECODERS = dict(conversions)
_DECODERS[FIELD_TYPE.NEWDECIMAL] = str
_DECODERS[FIELD_TYPE.DECIMAL] = str

# Client-side codes (2xxx) and server codes that mean the connection or server is gone.
_UNAVAILABLE_CODES = {
    2002,
    2003,
    2005,
    2006,
    2013,
    2014,
    2055,
    ER.CON_COUNT_ERROR,
    ER.SERVER_SHUTDOWN,
    ER.TOO_MANY_USER_CONNECTIONS,
    1927,  # ER_CONNECTION_KILLED
}
_DUPLICATE_CODES = {ER.DUP_ENTRY, 1586}  # 1586: ER_DUP_ENTRY_WITH_KEY_NAME
# A value, or the next AUTO_INCREMENT value, does not fit its column.
_OUT_OF_RANGE_CODES = {167, 1264, 1467}
# Gave up waiting for a row lock, or chosen as a deadlock's victim.
_CONFLICT_CODES = {ER.LOCK_WAIT_TIMEOUT, ER.LOCK_DEADLOCK}
# Stopped by max_statement_time (MariaDB), or max_execution_time (MySQL).
_TIMEOUT_CODES = {1969, 3024}
NO_SUCH_THREAD = 1094


def convert_error(error: BaseException) -> DatabaseError:
    """Turns a driver or network error into a DatabaseError (or DatabaseUnavailable)."""
    if isinstance(error, DatabaseError):
        return error
    if isinstance(error, pymysql.err.MySQLError) and error.args and isinstance(error.args[0], int):
        code, message = error.args[0], str(error.args[1]) if len(error.args) > 1 else ""
        if code in _DUPLICATE_CODES:
            return DatabaseError("duplicate", code, message)
        if code in _OUT_OF_RANGE_CODES:
            return DatabaseError("out_of_range", code, message)
        if code in _CONFLICT_CODES:
            return DatabaseError("conflict", code, message)
        if code in _TIMEOUT_CODES:
            return DatabaseError("timeout", code, message)
        if code in _UNAVAILABLE_CODES or isinstance(error, pymysql.err.InterfaceError):
            return DatabaseUnavailable(message, code)
        return DatabaseError("error", code, message)
    if isinstance(error, asyncio.TimeoutError):
        return DatabaseError("timeout", 0, "the database did not answer in time")
    if isinstance(error, (OSError, pymysql.err.InterfaceError, RuntimeError)):
        return DatabaseUnavailable(f"{type(error).__name__}: {error}")
    return DatabaseError("error", 0, f"{type(error).__name__}: {error}")


def connect_args(url: DatabaseURL, connect_timeout: float) -> dict[str, Any]:
    """aiomysql's `connect` arguments for every connection the service makes."""
    return {
        **url.connect_args(),
        "charset": "utf8mb4",
        "autocommit": True,
        "conv": _DECODERS,
        "client_flag": CLIENT.FOUND_ROWS,
        "connect_timeout": connect_timeout,
    }


#: Connections being opened for callers that were cancelled meanwhile (kept until they are done).
_abandoned: set[asyncio.Future[Any]] = set()


async def open_raw(**args: Any) -> Any:
    """`aiomysql.connect(**args)`, with a cancellation of the caller never lost inside it.

    aiomysql opens its socket under `asyncio.wait_for`, which before Python 3.12 returns a result
    that arrives together with a cancellation and drops the cancellation: a request whose deadline
    expired just as its connection was opened went on as if it had not, and its statement ran to
    the database's own limit. So the connection is opened in a task of its own, which the caller
    awaits through `asyncio.shield` (a cancellation of the caller always reaches it there); a
    connection opened after its caller was cancelled is closed when it is done. The opening's own
    cancellation can be dropped the same way (the handshake then goes on, with no deadline of the
    client's), so it is cancelled again after `connect_timeout`."""
    loop = asyncio.get_running_loop()
    again_after = float(args.get("connect_timeout") or 10)
    opening = loop.create_task(aiomysql.connect(**args))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.cancel()
        again = loop.call_later(again_after, opening.cancel)
        _abandoned.add(opening)
        opening.add_done_callback(lambda done: _close_abandoned(done, again))
        raise


def _close_abandoned(opening: asyncio.Future[Any], again: asyncio.TimerHandle) -> None:
    again.cancel()
    _abandoned.discard(opening)
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


async def connect(url: DatabaseURL, connect_timeout: float, init_command: str) -> Connection:
    """A new connection, within the connect timeout; raises DatabaseError (cancellation passes)."""
    try:
        with deadline(connect_timeout + 1):
            raw = await open_raw(**connect_args(url, connect_timeout), init_command=init_command)
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError):
            raise
        raise convert_error(e) from None
    return Connection(raw, url)


class Connection:
    """One connection, and what the service knows about it."""

    __slots__ = ("raw", "url", "thread_id", "last_used", "busy")

    def __init__(self, raw: Any, url: DatabaseURL) -> None:
        self.raw = raw
        #: who opened it: the only user, besides an administrator with CONNECTION ADMIN, that
        #: may kill its session
        self.url = url
        self.thread_id: int = raw.thread_id()
        self.last_used = time.monotonic()
        #: a statement was sent and its answer not read to the end
        self.busy = False

    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.get_transaction_status())
