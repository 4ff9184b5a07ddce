"""What SQL a guest may run, and the exact text the host sends for it.

A guest hands the host a statement template with `?` placeholders and a list of values. The
host parses the template with sqlglot's MySQL dialect and checks the tree against an
allow-list: one SELECT, INSERT ... VALUES, UPDATE or DELETE (TRUNCATE TABLE only where resets
are on), on the service's own tables and their columns, with a few pure functions, numeric
literals and nothing else: no other table or schema, no joins or unions, no derived tables, no
variables, no comments, no string literals (values are parameters), no INTO, no locking read
but FOR UPDATE. The text the host sends is generated from the checked tree (every identifier
quoted), parsed again and checked again, token by token too, so what is checked is exactly what
is sent; the values are then rendered by the host into literals that are one token each
(numbers, NULL, TRUE/FALSE, and strings as `_utf8mb4 X'<hex>'`, which no sql_mode or character
can change), in the places the placeholders held. The driver never formats the text.

Where sqlglot reads a statement that MariaDB would read otherwise (or refuse), the statement is
refused: tests/test_sql.py runs what the checker accepts against the real server to find them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from ._sql_check import check
from ._sql_grammar import DIALECT, StatementRefused
from ._sql_grammar import MAX_SQL_TEXT_BYTES as MAX_SQL_TEXT_BYTES

__all__ = ["MAX_SQL_TEXT_BYTES", "Capability", "Statement", "StatementRefused", "literal"]


class Statement:
    """A checked statement: its kind, and the text to send once values fill its placeholders."""

    __slots__ = ("kind", "text", "placeholders", "_parts")

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind
        self.text = text
        #: the text around the placeholders
        self._parts = tuple(text.split("?"))
        self.placeholders = len(self._parts) - 1

    def bind(self, params: Sequence[Any]) -> str:
        """The text to send, each placeholder replaced by its value as a single-token literal.

        Raises StatementRefused for the wrong number of values or a value that is not a number,
        string, boolean or null.
        """
        if len(params) != self.placeholders:
            raise StatementRefused(f"the statement has {self.placeholders} placeholders and {len(params)} values")
        if not params:
            return self.text
        parts = self._parts
        out = [parts[0]]
        for value, part in zip(params, parts[1:], strict=True):
            out.append(literal(value))
            out.append(part)
        return "".join(out)


def literal(value: Any) -> str:
    """One value as an SQL literal that is a single token whatever it holds; raises StatementRefused."""
    if value is None:
        return "NULL"
    if value is True:
        return "TRUE"
    if value is False:
        return "FALSE"
    if type(value) is int:
        if abs(value) >= 10**65:
            raise StatementRefused("a number value has more than 65 digits")
        return str(value) if value >= 0 else f"({value})"
    if type(value) is float:
        if not math.isfinite(value):
            raise StatementRefused("a number value is not finite")
        # -0.0 too goes in parentheses: a minus before it would otherwise make `--`.
        return repr(value) if math.copysign(1.0, value) > 0 else f"({value!r})"
    if type(value) is str:
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError:
            raise StatementRefused("a text value is not valid Unicode (it holds a lone surrogate)") from None
        return f"_utf8mb4 X'{raw.hex()}'"
    raise StatementRefused(f"values must be numbers, strings, booleans or null, not {type(value).__name__}")


class Capability:
    """The tables (and their columns) a guest may use, and whether it may empty them."""

    def __init__(self, tables: Mapping[str, frozenset[str]], *, truncate: bool = False) -> None:
        self.tables = {name: frozenset(c.lower() for c in columns) for name, columns in tables.items()}
        self.truncate = truncate
        self._key = (tuple(sorted((t, tuple(sorted(c))) for t, c in self.tables.items())), truncate)

    @classmethod
    def from_schema(cls, ddl: str, *, truncate: bool = False) -> Capability:
        """The tables that the CREATE TABLE statements in `ddl` define; raises ValueError if it has none."""
        tables: dict[str, frozenset[str]] = {}
        for statement in sqlglot.parse(ddl, read=DIALECT):
            if isinstance(statement, exp.Create) and isinstance(statement.this, exp.Schema):
                table = statement.this.this
                columns = [c.name for c in statement.this.expressions if isinstance(c, exp.ColumnDef)]
                tables[table.name] = frozenset(columns)
        if not tables:
            raise ValueError("the schema defines no table")
        return cls(tables, truncate=truncate)

    @classmethod
    def from_schema_file(cls, path: Path, *, truncate: bool = False) -> Capability:
        return cls.from_schema(path.read_text(encoding="utf-8"), truncate=truncate)

    def check(self, sql: str) -> Statement:
        """The statement `sql` as the host will send it; raises StatementRefused saying why not."""
        outcome = _prepare(sql, self._key)
        if isinstance(outcome, str):
            raise StatementRefused(outcome)
        return outcome


@functools.lru_cache(maxsize=256)
def _prepare(sql: str, key: tuple[tuple[tuple[str, tuple[str, ...]], ...], bool]) -> Statement | str:
    """The checked statement, or why it is refused; cached, since a guest sends the same few texts
    again and again (its values are parameters)."""
    tables = {name: frozenset(columns) for name, columns in key[0]}
    try:
        kind, text = check(sql, tables, truncate=key[1])
    except StatementRefused as e:
        return str(e)
    return Statement(kind, text)
