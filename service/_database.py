"""MariaDB for the guest's statements and for the service's own schema work.

Two kinds of connection: a pool for the guest's statements, as the user of DATABASE_URL (which
should reach only the service's table), and short-lived administrative connections, as the
user of DATABASE_ADMIN_URL, for the schema and for emptying the table on /init. Every guest
connection starts with its session bounded: a server-side statement time limit and short lock
waits. Every call has a client-side deadline too; a call that misses it, or is cancelled, has
its connection dropped and killed on the server, so no statement outlives its request.

Nothing here knows about orders: it runs the statements it is given and applies sql/.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import aiomysql
import pymysql
from pymysql.constants import CLIENT, ER, FIELD_TYPE
from pymysql.converters import conversions

from ._errors import DatabaseError, DatabaseUnavailable, ServiceError
from ._resources import project_dir
from ._settings import DatabaseURL

log = logging.getLogger("service.database")

SCHEMA_DIR = project_dir("sql")
SCHEMA_FILES = ("schema.sql",)

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
_NO_SUCH_THREAD = 1094
# A pooled connection idle this long is closed rather than reused (the server may have dropped it).
_IDLE_SECONDS = 600.0


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


class deadline:  # noqa: N801 (used like asyncio.timeout, which Python 3.10 lacks)
    """`async with deadline(s):` cancels the block after `s` seconds and raises TimeoutError."""

    __slots__ = ("_seconds", "_task", "_handle", "expired")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self.expired = False

    async def __aenter__(self) -> deadline:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._handle.cancel()
        if self.expired and kind is asyncio.CancelledError:
            uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
            if uncancel is None or uncancel() == 0:
                raise asyncio.TimeoutError() from error


class Connection:
    """One connection for guest statements, and what the pool knows about it."""

    __slots__ = ("raw", "thread_id", "last_used", "busy")

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.thread_id: int = raw.thread_id()
        self.last_used = time.monotonic()
        #: a statement was sent and its answer not read to the end
        self.busy = False

    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.get_transaction_status())


class Database:
    """Guest connections (a lazily connecting pool: the service starts, and keeps running, while
    MariaDB is down) and administrative connections for the schema and resets."""

    def __init__(
        self,
        url: DatabaseURL,
        *,
        admin_url: DatabaseURL | None = None,
        pool_min: int = 0,
        pool_max: int = 10,
        connect_timeout: float = 5.0,
        acquire_timeout: float = 10.0,
        statement_timeout: float = 5.0,
        lock_timeout: int = 3,
        guest_tables: frozenset[str] = frozenset(),
    ) -> None:
        self.url = url
        self._guest_tables = guest_tables
        self.admin_url = admin_url or url
        self._pool_max = pool_max
        self._connect_timeout = connect_timeout
        self._acquire_timeout = acquire_timeout
        self._statement_timeout = statement_timeout
        # The client waits a little longer than the server's own limit, which answers first.
        self._read_timeout = statement_timeout + 2.0
        # Bounds each guest session: max_statement_time stops a statement on the server, the lock
        # waits keep a request from queueing behind another's row lock for long.
        self._init_command = (
            f"SET SESSION max_statement_time = {statement_timeout:.3f}, "
            f"innodb_lock_wait_timeout = {lock_timeout}, lock_wait_timeout = {lock_timeout}"
        )
        self._free: list[Connection] = []
        self._slots: asyncio.Semaphore | None = None
        self._in_use = 0
        self._running = False
        self._schema_ready = False
        self._schema_lock: asyncio.Lock | None = None
        self._background: set[asyncio.Task[None]] = set()

    def _connect_args(self, url: DatabaseURL) -> dict[str, Any]:
        return {
            **url.connect_args(),
            "charset": "utf8mb4",
            "autocommit": True,
            "conv": _DECODERS,
            "client_flag": CLIENT.FOUND_ROWS,
            "connect_timeout": self._connect_timeout,
        }

    async def start(self) -> None:
        """Applies the schema and checks the guest user's privileges if MariaDB answers; logs and
        goes on if not."""
        self._slots = asyncio.Semaphore(self._pool_max)
        self._schema_lock = asyncio.Lock()
        self._running = True
        try:
            await self.ensure_schema()
            await self._warn_if_privileged()
        except DatabaseUnavailable as e:
            log.warning("database %s is not reachable yet (%s); will retry on demand", self.url.redacted(), e)
        except DatabaseError as e:
            # Serving on (503s, /readyz says why) lets it heal when the database is fixed.
            log.error("database %s refused the service (%s %s); will retry on demand", self.url.redacted(), e.code, e)

    def pool_sizes(self) -> tuple[int, int]:
        """(connections in use, connections free)."""
        return self._in_use, len(self._free)

    async def close(self) -> None:
        self._running = False
        for conn in self._free:
            conn.raw.close()
        self._free.clear()
        if self._background:
            await asyncio.wait(self._background, timeout=self._connect_timeout + 1)

    # --- guest connections --------------------------------------------------------------------

    async def acquire(self) -> Connection:
        """A connection from the pool; raises DatabaseUnavailable when none can be had in time."""
        if not self._running or self._slots is None:
            raise DatabaseUnavailable("the database pool is not running")
        slots = self._slots
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), self._acquire_timeout)
            except asyncio.TimeoutError:
                raise DatabaseUnavailable(
                    f"no database connection was free within {self._acquire_timeout:g} s (DB_POOL_MAX is {self._pool_max})"
                ) from None
        else:
            await slots.acquire()
        try:
            conn = await self._take()
            if not self._schema_ready:
                await self._apply_schema()
        except BaseException:
            slots.release()
            raise
        self._in_use += 1
        return conn

    async def _take(self) -> Connection:
        now = time.monotonic()
        while self._free:
            conn = self._free.pop()
            if now - conn.last_used < _IDLE_SECONDS and not conn.raw.closed:
                return conn
            conn.raw.close()
        try:
            async with deadline(self._connect_timeout + 1):
                raw = await aiomysql.connect(**self._connect_args(self.url), init_command=self._init_command)
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                raise
            raise convert_error(e) from None
        return Connection(raw)

    def release(self, conn: Connection, *, broken: bool = False) -> None:
        """Gives a connection back; one that is broken, or still in a transaction, is closed and
        killed on the server (closing rolls its transaction back)."""
        assert self._slots is not None
        self._in_use -= 1
        self._slots.release()
        if broken or conn.raw.closed or conn.in_transaction or not self._running:
            self._drop(conn)
        else:
            conn.last_used = time.monotonic()
            self._free.append(conn)

    def _drop(self, conn: Connection) -> None:
        """Closes a connection whose state is unknown; if it was running a statement, kills its
        session on the server, in the background, so the statement stops now rather than when it
        ends (the server notices a closed connection only when it next writes to it). An idle
        session, in a transaction or not, ends as soon as its connection closes."""
        conn.raw.close()
        if conn.busy:
            conn.busy = False
            task = asyncio.get_running_loop().create_task(self._kill(conn.thread_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _kill(self, thread_id: int) -> None:
        try:
            async with deadline(self._connect_timeout + 2):
                admin = await aiomysql.connect(**self._connect_args(self.admin_url))
                try:
                    async with admin.cursor() as cur:
                        await cur.execute(f"KILL CONNECTION {int(thread_id)}")
                finally:
                    admin.close()
        except pymysql.err.MySQLError as e:
            if e.args and e.args[0] == _NO_SUCH_THREAD:
                return  # it had already ended
            log.warning("could not kill database session %d: %s", thread_id, e)
        except (OSError, asyncio.TimeoutError) as e:
            log.warning("could not kill database session %d: %s", thread_id, type(e).__name__)

    async def _call(self, conn: Connection, work: Callable[[], Any]) -> Any:
        """Runs `work()` on `conn` under the client deadline. A call that fails to finish (timeout,
        cancellation, lost connection, a result cut short) leaves the connection dropped, and the
        statement it was running killed."""
        conn.busy = True
        try:
            async with deadline(self._read_timeout):
                result = await work()
        except ServiceError:
            raise  # ours (a result over a limit): the connection was dropped where it was raised
        except asyncio.CancelledError:
            self._drop(conn)
            raise
        except BaseException as e:
            error = convert_error(e)
            if error.kind in ("timeout", "unavailable") or error.code == 0:
                self._drop(conn)
            else:
                conn.busy = False  # the server answered: the statement is over
            if isinstance(e, asyncio.TimeoutError):
                error = DatabaseError(
                    "timeout", 0, f"the database did not answer within {self._read_timeout:g} s; the statement was killed"
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
                    self._drop(conn)
                    raise
            await cur.close()

        await self._call(conn, work)

    async def execute(self, conn: Connection, sql: str) -> tuple[int, int]:
        """Runs a statement as it is; returns (rows matched, last insert id)."""

        async def work() -> tuple[int, int]:
            async with conn.raw.cursor() as cur:
                await cur.execute(sql)
                return max(cur.rowcount, 0), cur.lastrowid or 0

        result: tuple[int, int] = await self._call(conn, work)
        return result

    async def begin(self, conn: Connection) -> None:
        await self._call(conn, conn.raw.begin)

    async def commit(self, conn: Connection) -> None:
        await self._call(conn, conn.raw.commit)

    async def rollback(self, conn: Connection) -> None:
        await self._call(conn, conn.raw.rollback)

    async def ping(self) -> None:
        """Raises DatabaseUnavailable (or DatabaseError) unless a guest connection answers."""
        conn = await self.acquire()
        broken = True
        try:
            await self._call(conn, lambda: conn.raw.ping(reconnect=False))
            broken = False
        finally:
            self.release(conn, broken=broken)

    # --- administrative connections -------------------------------------------------------------

    async def _admin(self, statements: Sequence[str]) -> None:
        """Runs trusted statements (the schema, a reset) as the administrative user, bounded as
        the guest's are; one that does not finish in time, or whose request is cancelled, is
        killed."""
        conn = None
        try:
            async with deadline(self._connect_timeout + 1):
                raw = await aiomysql.connect(**self._connect_args(self.admin_url), init_command=self._init_command)
            conn = Connection(raw)
            await self._call(conn, lambda: self._run_all(raw, statements))
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                raise
            raise convert_error(e) from None
        finally:
            if conn is not None:
                self._drop(conn)

    @staticmethod
    async def _run_all(raw: Any, statements: Sequence[str]) -> None:
        with warnings.catch_warnings():
            # "Table ... already exists" is the expected note of idempotent DDL.
            warnings.simplefilter("ignore", pymysql.Warning)
            async with raw.cursor() as cur:
                for statement in statements:
                    await cur.execute(statement)

    async def ensure_schema(self) -> None:
        """Applies the schema files (idempotent DDL); raises DatabaseError if they fail."""
        self._schema_ready = False
        await self._apply_schema()

    async def _apply_schema(self) -> None:
        assert self._schema_lock is not None
        async with self._schema_lock:
            if self._schema_ready:
                return
            await self._admin(schema_statements())
            self._schema_ready = True
            log.info("schema applied to %s", self.admin_url.redacted())

    async def reset(self, sql: str) -> None:
        """Runs a checked TRUNCATE TABLE as the administrative user; raises DatabaseError."""
        await self._admin([sql])

    async def _warn_if_privileged(self) -> None:
        """Logs a warning when the guest's user can do more than its statements need."""
        conn = await self.acquire()
        broken = True
        try:

            async def grants() -> list[tuple[Any, ...]]:
                async with conn.raw.cursor() as cur:
                    # GRANTEE reads 'user'@'host' where CURRENT_USER() reads user@host; an
                    # administrator sees every user's rows, so keep the current user's only.
                    me = "CONCAT(CHAR(39), REPLACE(CURRENT_USER(), '@', CONCAT(CHAR(39), '@', CHAR(39))), CHAR(39))"
                    await cur.execute(
                        "SELECT 'global', '', PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES "
                        f"WHERE PRIVILEGE_TYPE <> 'USAGE' AND GRANTEE = {me} "
                        "UNION ALL SELECT 'schema', TABLE_SCHEMA, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES "
                        f"WHERE GRANTEE = {me} "
                        "UNION ALL SELECT TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES "
                        f"WHERE GRANTEE = {me}"
                    )
                    return list(await cur.fetchall())

            rows = await self._call(conn, grants)
            broken = False
        finally:
            self.release(conn, broken=broken)
        needed = {"SELECT", "INSERT", "UPDATE", "DELETE"}
        own = {(self.url.database, table) for table in self._guest_tables}
        extra = sorted(
            f"{privilege} on {'*.*' if scope == 'global' else f'{name}.*' if scope == 'schema' else f'{scope}.{name}'}"
            for scope, name, privilege in rows
            if (scope, name) not in own or privilege not in needed
        )
        if extra:
            shown = ", ".join(extra[:8]) + (f" and {len(extra) - 8} more" if len(extra) > 8 else "")
            log.warning(
                "the database user %s can do more than the guest's statements need (%s): if the statement check "
                "ever failed, the guest could use that. Give the service a user limited to the orders table "
                "(sql/grants.sql) in DATABASE_URL and the administrator in DATABASE_ADMIN_URL",
                self.url.user,
                shown,
            )


def schema_statements() -> list[str]:
    """The statements of the schema files, split at semicolons that end a line."""
    statements = []
    for name in SCHEMA_FILES:
        text = (SCHEMA_DIR / name).read_text(encoding="utf-8")
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
        for chunk in "\n".join(lines).split(";\n"):
            if chunk.strip().rstrip(";").strip():
                statements.append(chunk.strip().rstrip(";"))
    return statements


GUEST_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


def prepare_guest_user(admin: DatabaseURL, user: str, host: str, password: str, tables: Sequence[str]) -> DatabaseURL:
    """As the administrator: applies the schema, then makes `user`@`host` able to run the
    guest's statements on `tables` and nothing else (a fresh password each time). Returns the
    user's URL. Raises DatabaseError."""
    database = admin.database.replace("`", "``")
    try:
        conn = pymysql.connect(
            host=admin.host,
            port=admin.port,
            user=admin.user,
            password=admin.password,
            database=admin.database,
            connect_timeout=10,
            autocommit=True,
        )
        with conn, conn.cursor() as cur, warnings.catch_warnings():
            warnings.simplefilter("ignore", pymysql.Warning)
            for statement in schema_statements():
                cur.execute(statement)
            cur.execute("CREATE USER IF NOT EXISTS %s@%s", (user, host))
            cur.execute("ALTER USER %s@%s IDENTIFIED BY %s", (user, host, password))
            cur.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (user, host))
            for table in tables:
                name = table.replace("`", "``")
                cur.execute(f"GRANT {', '.join(GUEST_PRIVILEGES)} ON `{database}`.`{name}` TO %s@%s", (user, host))
    except pymysql.err.MySQLError as e:
        raise convert_error(e) from None
    return DatabaseURL(admin.host, admin.port, user, password, admin.database)
