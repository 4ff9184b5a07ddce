"""The pool of connections for the guest's statements.

It connects lazily, so the service starts, and keeps running, while MariaDB is down. With a
minimum (DB_POOL_MIN) it opens that many connections at start, and a keeper task pings the idle
ones and opens new ones whenever fewer are open, so that many stay ready.
"""

from __future__ import annotations

import asyncio
import logging
import time

from . import _limits
from ._deadline import deadline
from ._driver import Connection, connect
from ._errors import DatabaseError, DatabaseUnavailable
from ._reaper import Reaper
from ._settings import DatabaseURL

log = logging.getLogger("service.database")

# A pooled connection idle this long is closed rather than reused (the server may have dropped it).
IDLE_SECONDS = 600.0
# How often the keeper pings idle connections and tops the pool up to its minimum.
KEEP_INTERVAL = 30.0


class Pool:
    """At most `pool_max` connections in use at once, at least `pool_min` open while it runs."""

    def __init__(
        self,
        url: DatabaseURL,
        reaper: Reaper,
        *,
        init_command: str,
        pool_min: int = _limits.DB_POOL_MIN,
        pool_max: int = _limits.DB_POOL_MAX,
        connect_timeout: float = _limits.DB_CONNECT_TIMEOUT,
        acquire_timeout: float = _limits.DB_ACQUIRE_TIMEOUT,
        keep_interval: float = KEEP_INTERVAL,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self._url = url
        self._reaper = reaper
        self._init_command = init_command
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._connect_timeout = connect_timeout
        self._acquire_timeout = acquire_timeout
        self._keep_interval = keep_interval
        self._idle_seconds = idle_seconds
        self._free: list[Connection] = []
        self._slots: asyncio.Semaphore | None = None
        self._in_use = 0
        self._opening = 0
        self._tending = 0  # free connections taken out for a ping by the keeper
        self._running = False
        self._keeper: asyncio.Task[None] | None = None
        self._filling: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Makes the pool usable (on the running loop); the minimum is opened by `fill`."""
        self._slots = asyncio.Semaphore(self._pool_max)
        self._running = True
        if self._pool_min:
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    def sizes(self) -> tuple[int, int]:
        """(connections in use, connections open and idle, counting those the keeper is pinging)."""
        return self._in_use, len(self._free) + self._tending

    async def close(self) -> None:
        """Closes the free connections and stops the keeper; connections in use are closed as
        they come back."""
        self._running = False
        for task in (self._keeper, self._filling):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for conn in self._free:
            conn.raw.close()
        self._free.clear()

    async def acquire(self) -> Connection:
        """A connection from the pool; raises DatabaseUnavailable when none can be had in time."""
        if not self._running or self._slots is None:
            raise DatabaseUnavailable("the database pool is not running")
        slots = self._slots
        if slots.locked():
            try:
                # A deadline on this task, not wait_for's task per waiting request.
                with deadline(self._acquire_timeout):
                    await slots.acquire()
            except asyncio.TimeoutError:
                raise DatabaseUnavailable(
                    f"no database connection was free within {self._acquire_timeout:g} s (DB_POOL_MAX is {self._pool_max})"
                ) from None
        else:
            await slots.acquire()
        try:
            conn = await self._take()
        except BaseException:
            slots.release()
            raise
        self._in_use += 1
        return conn

    async def _take(self) -> Connection:
        now = time.monotonic()
        while self._free:
            conn = self._free.pop()
            if now - conn.last_used < self._idle_seconds and not conn.raw.closed:
                return conn
            conn.raw.close()
        return await connect(self._url, self._connect_timeout, self._init_command)

    def release(self, conn: Connection, *, broken: bool = False) -> None:
        """Gives a connection back; one that is broken, or still in a transaction, is closed and
        killed on the server (closing rolls its transaction back)."""
        assert self._slots is not None
        self._in_use -= 1
        self._slots.release()
        if broken or conn.raw.closed or conn.in_transaction or not self._running:
            self._reaper.drop(conn)
            self._fill_soon()
        else:
            conn.last_used = time.monotonic()
            self._free.append(conn)

    def _open(self) -> int:
        return self._in_use + len(self._free) + self._opening + self._tending

    async def fill(self) -> None:
        """Opens connections until `pool_min` are open; raises DatabaseError if one cannot be."""
        while self._running and self._open() < self._pool_min:
            self._opening += 1
            try:
                conn = await connect(self._url, self._connect_timeout, self._init_command)
            finally:
                self._opening -= 1
            if self._running:
                self._free.append(conn)
            else:
                conn.raw.close()

    def _fill_soon(self) -> None:
        if self._running and self._open() < self._pool_min and (self._filling is None or self._filling.done()):
            self._filling = asyncio.get_running_loop().create_task(self._fill_quietly())

    async def _fill_quietly(self) -> None:
        try:
            await self.fill()
        except DatabaseError as e:
            log.warning("could not open database connections up to DB_POOL_MIN (%d): %s", self._pool_min, e)

    async def _keep(self) -> None:
        """Every `keep_interval`: checks the idle connections and opens any missing."""
        while self._running:
            await asyncio.sleep(self._keep_interval)
            await self._tend()
            await self._fill_quietly()

    async def _tend(self) -> None:
        """Pings each free connection that has been idle for a while, and closes those that do not
        answer, and those idle past `idle_seconds` that the minimum does not need."""
        now = time.monotonic()
        for conn in [c for c in self._free if now - c.last_used >= self._keep_interval]:
            self._free.remove(conn)
            needed = self._open() < self._pool_min
            if conn.raw.closed or (not needed and now - conn.last_used >= self._idle_seconds):
                conn.raw.close()
                continue
            # Counted as open while it is pinged, or a broken connection given back meanwhile
            # would open a replacement for it as well and leave one too many.
            self._tending += 1
            try:
                with deadline(self._connect_timeout):
                    await conn.raw.ping(reconnect=False)
            except BaseException as e:  # gone: the fill that follows opens another
                conn.raw.close()
                if isinstance(e, asyncio.CancelledError):
                    raise
                continue
            finally:
                self._tending -= 1
            if not self._running:
                conn.raw.close()
                return
            conn.last_used = time.monotonic()
            self._free.append(conn)
