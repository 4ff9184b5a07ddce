"""MariaDB through an aiomysql pool: connections, statements, and driver errors made ours.

Nothing here knows about orders: it runs the statements it is given and applies the schema
files in `sql/`.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import aiomysql
import pymysql
from pymysql.constants import CLIENT, ER, FIELD_TYPE
from pymysql.converters import conversions

from ._errors import DatabaseError, DatabaseUnavailable
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
        if code in _UNAVAILABLE_CODES or isinstance(error, pymysql.err.InterfaceError):
            return DatabaseUnavailable(message, code)
        return DatabaseError("error", code, message)
    if isinstance(error, (OSError, asyncio.TimeoutError, pymysql.err.InterfaceError, RuntimeError)):
        return DatabaseUnavailable(f"{type(error).__name__}: {error}")
    return DatabaseError("error", 0, f"{type(error).__name__}: {error}")


class Database:
    """A lazily connecting pool: the service starts, and keeps running, while MariaDB is down."""

    def __init__(
        self,
        url: DatabaseURL,
        *,
        pool_min: int = 0,
        pool_max: int = 10,
        connect_timeout: float = 5.0,
        acquire_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._connect_timeout = connect_timeout
        self._acquire_timeout = acquire_timeout
        self._pool: aiomysql.Pool | None = None
        self._schema_ready = False
        self._schema_lock = asyncio.Lock()

    async def start(self) -> None:
        """Creates the pool and applies the schema if MariaDB answers; logs and goes on if not."""
        self._pool = await aiomysql.create_pool(
            minsize=0,
            maxsize=self._pool_max,
            **self.url.connect_args(),
            charset="utf8mb4",
            autocommit=True,
            conv=_DECODERS,
            client_flag=CLIENT.FOUND_ROWS,
            connect_timeout=self._connect_timeout,
            pool_recycle=3600,
        )
        try:
            await self.ensure_schema()
        except DatabaseUnavailable as e:
            log.warning("database %s is not reachable yet (%s); will retry on demand", self.url.redacted(), e)
        except DatabaseError as e:
            # Serving on (503s, /readyz says why) lets it heal when the database is fixed.
            log.error("database %s refused the service (%s %s); will retry on demand", self.url.redacted(), e.code, e)

    def pool_sizes(self) -> tuple[int, int]:
        """(connections in use, connections free)."""
        if self._pool is None:
            return 0, 0
        return self._pool.size - self._pool.freesize, self._pool.freesize

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None

    async def acquire(self) -> Any:
        """A connection from the pool; raises DatabaseUnavailable when none can be had in time."""
        if self._pool is None:
            raise DatabaseUnavailable("the database pool is not running")
        try:
            if self._pool.freesize:  # a free connection is handed over at once: no timer needed
                conn = await self._pool.acquire()
            else:
                conn = await asyncio.wait_for(self._pool.acquire(), self._acquire_timeout)
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                raise
            raise convert_error(e) from None
        if not self._schema_ready:
            try:
                await self._apply_schema(conn)
            except BaseException:
                await self.release(conn, broken=True)
                raise
        return conn

    async def release(self, conn: Any, *, broken: bool = False) -> None:
        """Gives a connection back, rolling back an open transaction; closes it if `broken`."""
        if self._pool is None:
            conn.close()
            return
        if not broken and not conn.closed and conn.get_transaction_status():
            try:
                await conn.rollback()
            except Exception:  # a connection that cannot roll back is not reused
                broken = True
        if broken and not conn.closed:
            conn.close()
        self._pool.release(conn)

    async def ping(self) -> None:
        """Raises DatabaseUnavailable unless a connection answers."""
        conn = await self.acquire()
        broken = False
        try:
            await conn.ping(reconnect=False)
        except Exception as e:
            broken = True
            raise convert_error(e) from None
        finally:
            await self.release(conn, broken=broken)

    async def ensure_schema(self) -> None:
        """Applies the schema files (idempotent DDL); raises DatabaseError if they fail."""
        self._schema_ready = False
        conn = await self.acquire()
        await self.release(conn)

    async def _apply_schema(self, conn: Any) -> None:
        async with self._schema_lock:
            if self._schema_ready:
                return
            try:
                with warnings.catch_warnings():
                    # "Table ... already exists" is the expected note of idempotent DDL.
                    warnings.simplefilter("ignore", pymysql.Warning)
                    async with conn.cursor() as cur:
                        for statement in schema_statements():
                            await cur.execute(statement)
            except Exception as e:
                raise convert_error(e) from None
            self._schema_ready = True
            log.info("schema applied to %s", self.url.redacted())

    @staticmethod
    async def query(conn: Any, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql, params)
                return list(await cur.fetchall())
        except Exception as e:
            raise convert_error(e) from None

    @staticmethod
    async def execute(conn: Any, sql: str, params: Sequence[Any]) -> tuple[int, int]:
        """Runs a statement; returns (rows matched, last insert id)."""
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql, params)
                return max(cur.rowcount, 0), cur.lastrowid or 0
        except Exception as e:
            raise convert_error(e) from None

    @staticmethod
    async def begin(conn: Any) -> None:
        try:
            await conn.begin()
        except Exception as e:
            raise convert_error(e) from None

    @staticmethod
    async def commit(conn: Any) -> None:
        try:
            await conn.commit()
        except Exception as e:
            raise convert_error(e) from None

    @staticmethod
    async def rollback(conn: Any) -> None:
        try:
            await conn.rollback()
        except Exception as e:
            raise convert_error(e) from None


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
