"""The service's own schema work, as the administrative user: applying sql/, and resets.

Administrative connections are short-lived: each is opened for one batch of trusted statements,
bounded as the guest's are, and closed (killed, if cut short) when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import pymysql

from ._driver import connect, convert_error
from ._resources import project_dir
from ._settings import DatabaseURL
from ._statements import Statements

log = logging.getLogger("service.database")

SCHEMA_DIR = project_dir("sql")
SCHEMA_FILES = ("schema.sql",)


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


class Schema:
    """Applies the schema once (again after `ensure`), and runs resets, as `admin_url`'s user."""

    def __init__(self, admin_url: DatabaseURL, statements: Statements, *, connect_timeout: float, init_command: str) -> None:
        self.admin_url = admin_url
        self._statements = statements
        self._connect_timeout = connect_timeout
        self._init_command = init_command
        self.ready = False
        self._lock = asyncio.Lock()

    async def ensure(self) -> None:
        """Applies the schema files (idempotent DDL); raises DatabaseError if they fail."""
        self.ready = False
        await self.apply()

    async def apply(self) -> None:
        """Applies the schema files unless they have been; raises DatabaseError if they fail."""
        async with self._lock:
            if self.ready:
                return
            await self.run(schema_statements())
            self.ready = True
            log.info("schema applied to %s", self.admin_url.redacted())

    async def run(self, statements: Sequence[str]) -> None:
        """Runs trusted statements (the schema, a reset) on a connection of their own, bounded as
        the guest's are; one that does not finish in time, or whose request is cancelled, is
        killed. Raises DatabaseError."""
        conn = None
        try:
            conn = await connect(self.admin_url, self._connect_timeout, self._init_command)
            raw = conn.raw
            await self._statements.call(conn, lambda: _run_all(raw, statements))
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                raise
            raise convert_error(e) from None
        finally:
            if conn is not None:
                self._statements.drop(conn)


async def _run_all(raw: Any, statements: Sequence[str]) -> None:
    with warnings.catch_warnings():
        # "Table ... already exists" is the expected note of idempotent DDL.
        warnings.simplefilter("ignore", pymysql.Warning)
        async with raw.cursor() as cur:
            for statement in statements:
                await cur.execute(statement)
