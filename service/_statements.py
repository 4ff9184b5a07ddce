"""Running statements on a connection, each under a client-side deadline.

A call that fails to finish (timeout, cancellation, lost connection, a result cut short) leaves
its connection dropped and the statement it was running killed (`_reaper`), so no statement
outlives its request. The statements are sent as they are given: checking them is `_sql`'s job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiomysql

from ._deadline import deadline
from ._driver import Connection, convert_error
from ._errors import DatabaseError, ServiceError
from ._reaper import Reaper


class Statements:
    """Runs statements on connections; `read_timeout` is the client's deadline for each call."""

    def __init__(self, reaper: Reaper, read_timeout: float) -> None:
        self._reaper = reaper
        self.read_timeout = read_timeout

    def drop(self, conn: Connection) -> None:
        """Closes a connection, killing the statement it may still be running."""
        self._reaper.drop(conn)

    async def call(self, conn: Connection, work: Callable[[], Any]) -> Any:
        """Runs `work()` on `conn` under the client deadline. A call that fails to finish (timeout,
        cancellation, lost connection, a result cut short) leaves the connection dropped, and the
        statement it was running killed."""
        conn.busy = True
        try:
            with deadline(self.read_timeout):
                result = await work()
        except ServiceError:
            raise  # ours (a result over a limit): the connection was dropped where it was raised
        except asyncio.CancelledError:
            self._reaper.drop(conn)
            raise
        except BaseException as e:
            error = convert_error(e)
            if error.kind in ("timeout", "unavailable") or error.code == 0:
                self._reaper.drop(conn)
            else:
                conn.busy = False  # the server answered: the statement is over
            if isinstance(e, asyncio.TimeoutError):
                error = DatabaseError(
                    "timeout", 0, f"the database did not answer within {self.read_timeout:g} s; the statement was killed"
                )
            raise error from None
        conn.busy = False
        return result

    async def query(self, conn: Connection, sql: str, on_row: Callable[[tuple[Any, ...]], None]) -> None:
        """Runs a query and hands its rows to `on_row` one by one as they arrive (so no more than
        one row beyond what `on_row` keeps is ever held). If `on_row` raises (a result over a
        limit), reading stops, the connection is dropped and the query killed, and the exception
        propagates. `sql` is sent as it is."""

        async def work() -> None:
            cur = await conn.raw.cursor(aiomysql.SSCursor)
            await cur.execute(sql)
            while True:
                row = await cur.fetchone()
                if row is None:
                    break
                try:
                    on_row(row)
                except BaseException:
                    self._reaper.drop(conn)
                    raise
            await cur.close()

        await self.call(conn, work)

    async def execute(self, conn: Connection, sql: str) -> tuple[int, int]:
        """Runs a statement as it is; returns (rows matched, last insert id)."""

        async def work() -> tuple[int, int]:
            async with conn.raw.cursor() as cur:
                await cur.execute(sql)
                return max(cur.rowcount, 0), cur.lastrowid or 0

        result: tuple[int, int] = await self.call(conn, work)
        return result

    async def fetch_all(self, conn: Connection, sql: str) -> list[tuple[Any, ...]]:
        """Every row of a trusted query of the service's own (not the guest's)."""

        async def work() -> list[tuple[Any, ...]]:
            async with conn.raw.cursor() as cur:
                await cur.execute(sql)
                return list(await cur.fetchall())

        rows: list[tuple[Any, ...]] = await self.call(conn, work)
        return rows
