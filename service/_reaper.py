"""Dropping connections whose state is unknown, and stopping what their sessions still run."""

from __future__ import annotations

import asyncio
import logging

import aiomysql
import pymysql

from ._deadline import deadline
from ._driver import NO_SUCH_THREAD, Connection, connect_args
from ._settings import DatabaseURL

log = logging.getLogger("service.database")


class Reaper:
    """Closes connections, and kills on the server the sessions of those that were running a
    statement; the kills run in the background, and `close` waits for them.

    Each session is killed by a new connection of the user that opened it: MariaDB lets a user
    kill its own sessions, and only an administrator with CONNECTION ADMIN (or SUPER) anyone
    else's, which neither of the service's users has (sql/grants.sql)."""

    def __init__(self, connect_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._background: set[asyncio.Task[None]] = set()

    def drop(self, conn: Connection) -> None:
        """Closes a connection whose state is unknown; if it was running a statement, kills its
        session on the server, in the background, so the statement stops now rather than when it
        ends (the server notices a closed connection only when it next writes to it). An idle
        session, in a transaction or not, ends as soon as its connection closes."""
        conn.raw.close()
        if conn.busy:
            conn.busy = False
            task = asyncio.get_running_loop().create_task(self._kill(conn.url, conn.thread_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _kill(self, url: DatabaseURL, thread_id: int) -> None:
        try:
            async with deadline(self._connect_timeout + 2):
                killer = await aiomysql.connect(**connect_args(url, self._connect_timeout))
                try:
                    async with killer.cursor() as cur:
                        await cur.execute(f"KILL CONNECTION {int(thread_id)}")
                finally:
                    killer.close()
        except pymysql.err.MySQLError as e:
            if e.args and e.args[0] == NO_SUCH_THREAD:
                return  # it had already ended
            log.warning("could not kill database session %d: %s", thread_id, e)
        except (OSError, asyncio.TimeoutError) as e:
            log.warning("could not kill database session %d: %s", thread_id, type(e).__name__)

    async def close(self) -> None:
        """Waits for the kills under way (each is bounded by its own deadline)."""
        if self._background:
            await asyncio.wait(self._background, timeout=self._connect_timeout + 1)
