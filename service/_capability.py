"""What SQL a guest may run: one statement on the service's own tables, values as parameters.

The SQL text a guest sends is a template: its values travel as `%s` parameters, so the text
needs no string literals, and none are allowed. It must be one SELECT, INSERT, UPDATE, DELETE
or TRUNCATE TABLE on an allowed table, unqualified (no other schema), with no comments, no
`;`, no `INTO OUTFILE`/`DUMPFILE`/variables, no `LOAD DATA` and no server functions that read
files, sleep or lock. Schema changes happen only at startup, from sql/, never from a guest.
"""

from __future__ import annotations

import functools
import re

ALLOWED_TABLES = frozenset({"orders"})

_VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE")
_FORBIDDEN = re.compile(
    r"\b(LOAD_FILE|LOAD\s+DATA|LOAD\s+XML|OUTFILE|DUMPFILE|SLEEP|BENCHMARK|GET_LOCK|RELEASE_LOCK|IS_FREE_LOCK"
    r"|MASTER_POS_WAIT|LOCK\s+TABLES|HANDLER|PROCEDURE|EXECUTE|PREPARE|CALL|GRANT|REVOKE|CREATE|ALTER|DROP|RENAME)\b",
    re.I,
)
_QUALIFIED = re.compile(r"[A-Za-z_`][\w`$]*\s*\.\s*[A-Za-z_`*]")
_TABLE_AFTER = re.compile(r"\b(?:JOIN|INTO|UPDATE|TABLE)\s+`?([\w$]+)`?", re.I)
_FROM = re.compile(r"\bFROM\s+", re.I)
_FROM_END = re.compile(
    r"\b(WHERE|GROUP|ORDER|LIMIT|FOR|HAVING|UNION|JOIN|LEFT|RIGHT|INNER|CROSS|NATURAL|STRAIGHT_JOIN|WINDOW|SELECT)\b|[()]", re.I
)


class StatementRefused(Exception):
    """The statement is outside what a guest may run; the message says why."""


def check_statement(sql: str, tables: frozenset[str] = ALLOWED_TABLES) -> None:
    """Raises StatementRefused unless `sql` is one allowed statement on `tables`."""
    reason = _refusal(sql, tables)
    if reason is not None:
        raise StatementRefused(reason)


@functools.lru_cache(maxsize=1024)
def _refusal(sql: str, tables: frozenset[str]) -> str | None:
    """Why `sql` is refused, or None; cached, since a guest sends the same few texts again and
    again (its values are parameters)."""
    try:
        _check(sql, tables)
    except StatementRefused as e:
        return str(e)
    return None


def _check(sql: str, tables: frozenset[str]) -> None:
    text = sql.strip()
    if text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise StatementRefused("the statement is empty")
    if ";" in text:
        raise StatementRefused("one statement per call: the SQL text may not contain ';'")
    if "--" in text or "/*" in text or "#" in text:
        raise StatementRefused("the SQL text may not contain comments")
    if "'" in text or '"' in text or "\\" in text:
        raise StatementRefused("values go in parameters (%s), not in the SQL text: it may not contain quotes")
    verb = text.split(None, 1)[0].upper()
    if verb not in _VERBS:
        raise StatementRefused(f"{verb} is not allowed; only {', '.join(_VERBS)}")
    if verb == "TRUNCATE" and not re.fullmatch(r"TRUNCATE\s+TABLE\s+`?\w+`?", text, re.I):
        raise StatementRefused("TRUNCATE must be TRUNCATE TABLE <table>")
    if verb == "SELECT" and re.search(r"\bINTO\b", text, re.I):
        raise StatementRefused("SELECT ... INTO is not allowed")
    if "@" in text:
        raise StatementRefused("server variables are not allowed")
    forbidden = _FORBIDDEN.search(text)
    if forbidden:
        raise StatementRefused(f"{forbidden.group(1).upper()} is not allowed")
    if _QUALIFIED.search(text):
        raise StatementRefused("tables may not be qualified with a schema: only this service's tables")
    named = [m.group(1) for m in _TABLE_AFTER.finditer(text)]
    for start in _FROM.finditer(text):
        # Every FROM, nested ones too: the table list runs to the next clause or parenthesis.
        rest = text[start.end() :]
        end = _FROM_END.search(rest)
        for item in rest[: end.start() if end else len(rest)].split(","):
            words = item.strip().split()
            if words:
                named.append(words[0].strip("`"))
    if not named and verb != "SELECT":
        raise StatementRefused("the statement names no table")
    for table in named:
        if table.lower() not in tables:
            raise StatementRefused(f"table {table!r} is not one the guest may use")
