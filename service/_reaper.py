"""Dropping connections whose state is unknown, and stopping what their sessions still run."""

from __future__ import annotations

import asyncio
import logging

import pymysql

from ._deadline import deadline
from ._driver import NO_SUCH_THREAD, Connection, connect_args, open_raw
from ._settings import DatabaseURL

log = logging.getLogger("service.database")


class Reaper:
    """Closes connections, and kills on the server the sessions of those that were running a
    statement; the kills run in the background, and `close` waits for them.

    Each session is killed by a new connection of the user that opened it: MariaDB lets a user
    kill its own sessions, and only an administrator with CONNECTION ADMIN (or SUPER) anyone
    else's, which neither of the service's users has (sql/grants.sql). When that user cannot
    connect (its connections at their limit, its password changed), the administrative user
    tries, which succeeds where it may kill others' sessions (root, under `python -m service`)."""

    def __init__(self, connect_timeout: float, admin_url: DatabaseURL | None = None) -> None:
        self._connect_timeout = connect_timeout
        self._admin_url = admin_url
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
        failure = await self._kill_as(url, thread_id)
        if failure is not None and self._admin_url is not None and self._admin_url != url:
            failure = await self._kill_as(self._admin_url, thread_id)
        if failure is not None:
            log.warning("could not kill database session %d: %s", thread_id, failure)

    async def _kill_as(self, url: DatabaseURL, thread_id: int) -> str | None:
        """Kills the session as `url`'s user; None when it is gone, else why it is not."""
        try:
            with deadline(self._connect_timeout + 2):
                killer = await open_raw(**connect_args(url, self._connect_timeout))
                try:
                    async with killer.cursor() as cur:
                        await cur.execute(f"KILL CONNECTION {int(thread_id)}")
                finally:
                    killer.close()
        except pymysql.err.MySQLError as e:
            if e.args and e.args[0] == NO_SUCH_THREAD:
                return None  # it had already ended
            return f"{e} (as {url.user})"
        except (OSError, asyncio.TimeoutError) as e:
            return f"{type(e).__name__} (as {url.user})"
        return None

    async def close(self) -> None:
        """Waits for the kills under way (each is bounded by its own deadline)."""
        if self._background:
            await asyncio.wait(self._background, timeout=self._connect_timeout + 1)
