"""MariaDB for the guest's statements and for the service's own schema work.

Two kinds of connection: a pool for the guest's statements, as the user of DATABASE_URL (which
should reach only the service's table), and short-lived administrative connections, as the
user of DATABASE_ADMIN_URL, for the schema and for emptying the table on /init. Every guest
connection starts with its session bounded: a server-side statement time limit and short lock
waits. Every call has a client-side deadline too; a call that misses it, or is cancelled, has
its connection dropped and killed on the server, so no statement outlives its request.

Nothing here knows about orders: it runs the statements it is given and applies sql/. The parts:
`_driver` (connecting, errors), `_pool`, `_statements` (deadlines), `_reaper` (kills),
`_schema`, `_grants` (the guest's user).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from . import _limits
from ._deadline import deadline as deadline
from ._driver import Connection as Connection
from ._driver import convert_error as convert_error
from ._errors import DatabaseError, DatabaseUnavailable
from ._grants import OWN_PRIVILEGES, warn_if_privileged
from ._grants import prepare_guest_user as prepare_guest_user
from ._pool import KEEP_INTERVAL, Pool
from ._reaper import Reaper
from ._schema import SCHEMA_DIR as SCHEMA_DIR
from ._schema import Schema
from ._schema import schema_statements as schema_statements
from ._settings import DatabaseURL
from ._statements import Statements

log = logging.getLogger("service.database")


class Database:
    """Guest connections (a lazily connecting pool: the service starts, and keeps running, while
    MariaDB is down) and administrative connections for the schema and resets."""

    def __init__(
        self,
        url: DatabaseURL,
        *,
        admin_url: DatabaseURL | None = None,
        pool_min: int = _limits.DB_POOL_MIN,
        pool_max: int = _limits.DB_POOL_MAX,
        connect_timeout: float = _limits.DB_CONNECT_TIMEOUT,
        acquire_timeout: float = _limits.DB_ACQUIRE_TIMEOUT,
        statement_timeout: float = _limits.DB_STATEMENT_TIMEOUT,
        lock_timeout: int = _limits.DB_LOCK_TIMEOUT,
        guest_tables: frozenset[str] = frozenset(),
        keep_interval: float = KEEP_INTERVAL,
    ) -> None:
        self.url = url
        self._guest_tables = guest_tables
        self.admin_url = admin_url or url
        self._connect_timeout = connect_timeout
        # Bounds each guest session: max_statement_time stops a statement on the server, the lock
        # waits keep a request from queueing behind another's row lock for long.
        init_command = (
            f"SET SESSION max_statement_time = {statement_timeout:.3f}, "
            f"innodb_lock_wait_timeout = {lock_timeout}, lock_wait_timeout = {lock_timeout}"
        )
        self._reaper = Reaper(connect_timeout, self.admin_url)
        # The client waits a little longer than the server's own limit, which answers first.
        self._statements = Statements(self._reaper, statement_timeout + 2.0)
        self._pool = Pool(
            url,
            self._reaper,
            init_command=init_command,
            pool_min=pool_min,
            pool_max=pool_max,
            connect_timeout=connect_timeout,
            acquire_timeout=acquire_timeout,
            keep_interval=keep_interval,
        )
        self._schema: Schema | None = None
        self._init_command = init_command

    async def start(self) -> None:
        """Applies the schema, checks the guest user's privileges and opens DB_POOL_MIN
        connections if MariaDB answers; logs and goes on if not."""
        self._schema = Schema(
            self.admin_url, self._statements, connect_timeout=self._connect_timeout, init_command=self._init_command
        )
        self._pool.start()
        try:
            await self.ensure_schema()
            await self._warn_if_privileged()
            await self._pool.fill()
        except DatabaseUnavailable as e:
            log.warning("database %s is not reachable yet (%s); will retry on demand", self.url.redacted(), e)
        except DatabaseError as e:
            # Serving on (503s, /readyz says why) lets it heal when the database is fixed.
            log.error("database %s refused the service (%s %s); will retry on demand", self.url.redacted(), e.code, e)

    def pool_sizes(self) -> tuple[int, int]:
        """(connections in use, connections free)."""
        return self._pool.sizes()

    async def close(self) -> None:
        """Closes the pool's free connections and waits for the kills under way."""
        await self._pool.close()
        await self._reaper.close()

    # --- guest connections --------------------------------------------------------------------

    async def acquire(self) -> Connection:
        """A connection from the pool, the schema applied; raises DatabaseUnavailable when none
        can be had in time, DatabaseError when the schema cannot be applied."""
        conn = await self._pool.acquire()
        schema = self._schema
        if schema is not None and not schema.ready:
            try:
                await schema.apply()
            except BaseException:
                self._pool.release(conn)
                raise
        return conn

    def release(self, conn: Connection, *, broken: bool = False) -> None:
        """Gives a connection back; one that is broken, or still in a transaction, is closed and
        killed on the server (closing rolls its transaction back)."""
        self._pool.release(conn, broken=broken)

    async def query(self, conn: Connection, sql: str, on_row: Callable[[tuple[Any, ...]], None]) -> None:
        """Runs a query, handing its rows to `on_row` as they arrive (`Statements.query`)."""
        await self._statements.query(conn, sql, on_row)

    async def execute(self, conn: Connection, sql: str) -> tuple[int, int]:
        """Runs a statement as it is; returns (rows matched, last insert id)."""
        return await self._statements.execute(conn, sql)

    async def begin(self, conn: Connection) -> None:
        await self._statements.call(conn, conn.raw.begin)

    async def commit(self, conn: Connection) -> None:
        await self._statements.call(conn, conn.raw.commit)

    async def rollback(self, conn: Connection) -> None:
        await self._statements.call(conn, conn.raw.rollback)

    async def ping(self) -> None:
        """Raises DatabaseUnavailable (or DatabaseError) unless a guest connection answers."""
        conn = await self.acquire()
        broken = True
        try:
            await self._statements.call(conn, lambda: conn.raw.ping(reconnect=False))
            broken = False
        finally:
            self.release(conn, broken=broken)

    # --- administrative connections -------------------------------------------------------------

    async def ensure_schema(self) -> None:
        """Applies the schema files (idempotent DDL); raises DatabaseError if they fail."""
        assert self._schema is not None, "start() first"
        await self._schema.ensure()

    async def reset(self, sql: str) -> None:
        """Runs a checked TRUNCATE TABLE as the administrative user; raises DatabaseError."""
        assert self._schema is not None, "start() first"
        await self._schema.run([sql])

    async def _warn_if_privileged(self) -> None:
        """Logs a warning when the guest's user can do more than its statements need."""
        conn = await self.acquire()
        broken = True
        try:
            rows = await self._statements.fetch_all(conn, OWN_PRIVILEGES)
            broken = False
        finally:
            self.release(conn, broken=broken)
        warn_if_privileged(self.url, self._guest_tables, rows)
