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
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

DIALECT = "mysql"
#: The SQL text of one statement, without its values; the parse is cached per distinct text.
MAX_SQL_TEXT_BYTES = 8 * 1024
#: Values in one statement (the guest's largest, an INSERT of 100 orders, has 700).
MAX_PARAMETERS = 1024
#: Parentheses inside parentheses (subqueries, expressions).
MAX_NESTING = 32
#: Functions a guest may call: pure, and none reads files, the session, the server or the clock.
FUNCTIONS = frozenset({"COUNT", "MIN", "MAX", "SUM", "AVG", "COALESCE", "JSON_ARRAY"})

# Each node type a statement may contain, and the arguments it may carry (every other argument
# must be empty). A node type or argument sqlglot adds later is refused until it is listed here.
_EXPRESSION_ARGS: dict[type[exp.Expr], frozenset[str]] = {
    exp.Column: frozenset({"this", "table"}),
    exp.Identifier: frozenset({"this", "quoted"}),
    exp.Star: frozenset(),
    exp.Placeholder: frozenset(),
    exp.Literal: frozenset({"this"}),
    exp.Null: frozenset(),
    exp.Boolean: frozenset({"this"}),
    exp.Paren: frozenset({"this"}),
    exp.Neg: frozenset({"this"}),
    exp.Not: frozenset({"this"}),
    exp.And: frozenset({"this", "expression"}),
    exp.Or: frozenset({"this", "expression"}),
    exp.EQ: frozenset({"this", "expression"}),
    exp.NEQ: frozenset({"this", "expression"}),
    exp.GT: frozenset({"this", "expression"}),
    exp.GTE: frozenset({"this", "expression"}),
    exp.LT: frozenset({"this", "expression"}),
    exp.LTE: frozenset({"this", "expression"}),
    exp.Add: frozenset({"this", "expression"}),
    exp.Sub: frozenset({"this", "expression"}),
    exp.Mul: frozenset({"this", "expression"}),
    exp.Is: frozenset({"this", "expression"}),
    exp.In: frozenset({"this", "expressions", "query"}),
    exp.Between: frozenset({"this", "low", "high"}),
    exp.Exists: frozenset({"this"}),
    exp.Subquery: frozenset({"this", "alias"}),
    exp.Tuple: frozenset({"expressions"}),
    # functions (see FUNCTIONS); COUNT(*) carries MySQL's BIGINT result flag
    exp.Count: frozenset({"this", "big_int"}),
    exp.Min: frozenset({"this"}),
    exp.Max: frozenset({"this"}),
    exp.Sum: frozenset({"this"}),
    exp.Avg: frozenset({"this"}),
    exp.Coalesce: frozenset({"this", "expressions"}),
    exp.Anonymous: frozenset({"this", "expressions"}),
}
_CLAUSE_ARGS: dict[type[exp.Expr], frozenset[str]] = {
    exp.Select: frozenset({"expressions", "from_", "where", "order", "limit", "offset", "locks"}),
    exp.From: frozenset({"this"}),
    exp.Table: frozenset({"this", "alias"}),
    exp.TableAlias: frozenset({"this"}),
    exp.Where: frozenset({"this"}),
    exp.Order: frozenset({"expressions"}),
    exp.Ordered: frozenset({"this", "desc", "nulls_first"}),
    exp.Limit: frozenset({"expression"}),
    exp.Offset: frozenset({"expression"}),
    exp.Lock: frozenset({"update"}),
    exp.Insert: frozenset({"this", "expression"}),
    exp.Schema: frozenset({"this", "expressions"}),
    exp.Values: frozenset({"expressions"}),
    exp.Update: frozenset({"this", "expressions", "where"}),
    exp.Delete: frozenset({"this", "where"}),
    exp.TruncateTable: frozenset({"expressions"}),
}
_ALLOWED_ARGS = {**_EXPRESSION_ARGS, **_CLAUSE_ARGS}
_NON_EMPTY = (exp.Select, exp.In, exp.Tuple, exp.Values, exp.Order, exp.Update, exp.Coalesce, exp.Schema, exp.TruncateTable)
_KINDS: dict[type[exp.Expr], str] = {
    exp.Select: "select",
    exp.Insert: "insert",
    exp.Update: "update",
    exp.Delete: "delete",
    exp.TruncateTable: "truncate",
}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]{1,65}(\.[0-9]{1,30})?")
# Every character the generated text may hold: a quote, comment, variable or escape cannot appear.
_SAFE_TEXT = re.compile(r"[A-Za-z0-9_ `(),.*=<>!?+\-]*")
# The tokens the generated text may hold (a second wall behind the tree's allow-list): keywords
# of the allowed clauses, operators, quoted identifiers, plain numbers and placeholders. A bare
# word is a function name from FUNCTIONS.
_TOKENS = frozenset(
    getattr(TokenType, name)
    for name in (
        "SELECT FROM WHERE AND OR NOT IN IS NULL BETWEEN EXISTS ORDER_BY ASC DESC LIMIT OFFSET FOR UPDATE "
        "INSERT INTO VALUES SET DELETE TRUNCATE TABLE ALIAS TRUE FALSE COMMA L_PAREN R_PAREN DOT STAR PLUS "
        "DASH EQ NEQ GT GTE LT LTE NUMBER PLACEHOLDER IDENTIFIER"
    ).split()
)
_WORDS = FUNCTIONS


class StatementRefused(Exception):
    """The statement, or one of its values, is outside what a guest may run; the message says why."""


class Statement:
    """A checked statement: its kind, and the text to send once values fill its placeholders."""

    __slots__ = ("kind", "text", "placeholders")

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind
        self.text = text
        self.placeholders = text.count("?")

    def bind(self, params: Sequence[Any]) -> str:
        """The text to send, each placeholder replaced by its value as a single-token literal.

        Raises StatementRefused for the wrong number of values or a value that is not a number,
        string, boolean or null.
        """
        if len(params) != self.placeholders:
            raise StatementRefused(f"the statement has {self.placeholders} placeholders and {len(params)} values")
        if not params:
            return self.text
        # Split on use rather than kept split: the cache then holds one string per statement.
        parts = self.text.split("?")
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
        return _check(sql, tables, truncate=key[1])
    except StatementRefused as e:
        return str(e)


def _check(sql: str, tables: Mapping[str, frozenset[str]], *, truncate: bool) -> Statement:
    if len(sql.encode("utf-8", "surrogatepass")) > MAX_SQL_TEXT_BYTES:
        raise StatementRefused(f"the SQL text is over {MAX_SQL_TEXT_BYTES} bytes")
    depth = deepest = 0
    for char in sql:  # the parser and generator recurse: bound the nesting before they see it
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    if deepest > MAX_NESTING:
        raise StatementRefused(f"the statement nests parentheses {deepest} deep; at most {MAX_NESTING}")
    try:
        return _checked(sql, tables, truncate=truncate)
    except RecursionError:
        raise StatementRefused("the statement is nested too deeply to check") from None


def _checked(sql: str, tables: Mapping[str, frozenset[str]], *, truncate: bool) -> Statement:
    tree = _parse(sql)
    kind = _check_tree(tree, tables, truncate=truncate)
    _parenthesize(tree)
    # The text is generated from the tree, then parsed and checked again: that second tree is
    # the one of exactly the text that is sent.
    text = tree.sql(dialect=DIALECT, identify=True, comments=False)
    again = _parse(text)
    _check_tree(again, tables, truncate=truncate)
    if again.sql(dialect=DIALECT, identify=True, comments=False) != text:
        raise StatementRefused("the statement does not read back as itself")
    if not _SAFE_TEXT.fullmatch(text) or "--" in text:
        raise StatementRefused("the statement has characters a checked statement cannot have")
    for token in sqlglot.Dialect.get_or_raise(DIALECT).tokenize(text):
        if token.token_type not in _TOKENS and not (token.token_type == TokenType.VAR and token.text.upper() in _WORDS):
            raise StatementRefused(f"{token.text!r} is not allowed in a guest's statement")
        if token.token_type == TokenType.NUMBER and not _NUMBER.fullmatch(token.text):
            raise StatementRefused("literals in the SQL text may only be plain numbers")
    placeholders = sum(1 for _ in again.find_all(exp.Placeholder))
    if text.count("?") != placeholders or placeholders > MAX_PARAMETERS:
        raise StatementRefused(f"the statement has {placeholders} placeholders; at most {MAX_PARAMETERS}")
    return Statement(kind, text)


# Conditions, and the operators that take values: MariaDB and sqlglot rank some of them
# differently (MariaDB reads `a = b < c` as `(a = b) < c`, sqlglot as `a = (b < c)`; its BETWEEN
# takes a condition as its upper bound), so a condition that is an operand is parenthesised.
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.In, exp.Between)
_CONDITIONS = (*_COMPARISONS, exp.Not, exp.And, exp.Or, exp.Exists)
_OPERATORS = (*_COMPARISONS, exp.Add, exp.Sub, exp.Mul, exp.Neg)


def _parenthesize(tree: exp.Expr) -> None:
    """Puts every condition that is the operand of an operator in parentheses, so that MariaDB
    reads the text as the tree says."""
    for node in [n for n in tree.walk() if isinstance(n, _CONDITIONS) and isinstance(n.parent, _OPERATORS)]:
        paren = exp.Paren()
        node.replace(paren)
        paren.set("this", node)


def _parse(sql: str) -> exp.Expr:
    try:
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None]
    except SqlglotError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StatementRefused(f"the statement does not parse: {first}") from None
    if len(statements) != 1:
        raise StatementRefused(f"one statement per call, not {len(statements)}")
    if ";" in sql:
        raise StatementRefused("one statement per call: the SQL text may not contain ';'")
    return statements[0]


def _check_tree(tree: exp.Expr, tables: Mapping[str, frozenset[str]], *, truncate: bool) -> str:
    kind = _KINDS.get(type(tree))
    if kind is None:
        raise StatementRefused(f"{tree.key.upper()} statements are not allowed; only SELECT, INSERT, UPDATE and DELETE")
    if kind == "truncate" and not truncate:
        raise StatementRefused("TRUNCATE TABLE is allowed only when resets are on (ORDERS_ALLOW_RESET)")
    aliases = {a.name for a in tree.find_all(exp.TableAlias)}
    columns = frozenset().union(*tables.values())
    for node in tree.walk():
        _check_node(node, tables, columns, aliases)
    _check_shape(tree, columns)
    return kind


def _check_node(node: exp.Expr, tables: Mapping[str, frozenset[str]], columns: frozenset[str], aliases: set[str]) -> None:
    allowed = _ALLOWED_ARGS.get(type(node))
    if allowed is None:
        raise StatementRefused(f"{_describe(node)} is not allowed in a guest's statement")
    for name, value in node.args.items():
        if name not in allowed and value not in (None, False, []):
            raise StatementRefused(f"{_describe(node)} with {name.rstrip('_').upper()} is not allowed")
    if node.comments:
        raise StatementRefused("the SQL text may not contain comments")
    if isinstance(node, exp.Table):
        if not isinstance(node.this, exp.Identifier) or node.name not in tables:
            raise StatementRefused(f"table {node.name!r} is not one the guest may use (only {', '.join(sorted(tables))})")
    elif isinstance(node, exp.Column):
        if not isinstance(node.this, exp.Identifier) or node.name.lower() not in columns:
            raise StatementRefused(f"column {node.name!r} is not a column of the guest's tables")
        if node.table and node.table not in tables and node.table not in aliases:
            raise StatementRefused(f"{node.table!r} names no table of the statement")
    elif isinstance(node, exp.TableAlias):
        if not _NAME.fullmatch(node.name):
            raise StatementRefused(f"alias {node.name!r} is not a plain name")
    elif isinstance(node, exp.Identifier):
        if not _NAME.fullmatch(node.name):
            raise StatementRefused(f"identifier {node.name!r} is not a plain name")
    elif isinstance(node, exp.Literal):
        if node.is_string or not _NUMBER.fullmatch(node.this):
            raise StatementRefused("literals in the SQL text may only be plain numbers; values go in parameters (?)")
    elif isinstance(node, exp.Anonymous):
        if node.name.upper() not in FUNCTIONS:
            raise StatementRefused(f"function {node.name.upper()} is not allowed; only {', '.join(sorted(FUNCTIONS))}")
    elif isinstance(node, exp.Star):
        if not isinstance(node.parent, (exp.Select, exp.Count)):
            raise StatementRefused("* may only stand for every column (in a select list, or in COUNT)")
    elif isinstance(node, exp.Is):
        if not isinstance(node.expression, (exp.Null, exp.Boolean)):
            raise StatementRefused("IS takes NULL, TRUE or FALSE")
    elif isinstance(node, exp.Not):
        # MariaDB's NOT binds looser than comparisons: `a = NOT b` does not parse there.
        if not isinstance(node.parent, (exp.Where, exp.And, exp.Or, exp.Not, exp.Paren)):
            raise StatementRefused("NOT may only negate a condition (in WHERE, AND, OR or parentheses)")
    elif isinstance(node, exp.Lock):
        if not node.args.get("update"):
            raise StatementRefused("the only locking read allowed is FOR UPDATE")
    elif isinstance(node, exp.Placeholder):
        if node.this is not None:
            raise StatementRefused("placeholders are ? only")


def _check_shape(tree: exp.Expr, columns: frozenset[str]) -> None:
    """What the node table alone cannot say: where statements and tables may appear, and which
    lists may not be empty (MariaDB refuses `SELECT FROM t`, `IN ()`, where sqlglot reads them)."""
    for node in tree.walk():
        if isinstance(node, exp.Select) and len(node.args.get("locks") or ()) > 1:
            raise StatementRefused("one FOR UPDATE at most")
        if isinstance(node, exp.Select) and node.args.get("offset") and not node.args.get("limit"):
            raise StatementRefused("OFFSET needs a LIMIT")
        if isinstance(node, (exp.Limit, exp.Offset)) and not isinstance(node.expression, (exp.Literal, exp.Placeholder)):
            raise StatementRefused("LIMIT and OFFSET take a number or a placeholder")
        if isinstance(node, _NON_EMPTY) and not node.expressions and not (isinstance(node, exp.In) and node.args.get("query")):
            raise StatementRefused(f"{node.key.upper()} with nothing in it is not allowed")
        if isinstance(node, exp.Select) and node is not tree:
            if not isinstance(node.parent, (exp.Subquery, exp.Exists, exp.In)):
                raise StatementRefused("a SELECT may appear inside another only as a subquery")
        if isinstance(node, exp.From) and not isinstance(node.this, exp.Table):
            raise StatementRefused("FROM names a table: a parenthesised table reference or derived table is not allowed")
        if isinstance(node, exp.Subquery) and not isinstance(node.this, exp.Select):
            raise StatementRefused("a parenthesised table reference is not allowed")
        if isinstance(node, (exp.Insert, exp.Update, exp.Delete, exp.TruncateTable)) and node is not tree:
            raise StatementRefused(f"{node.key.upper()} may not be nested")
    if isinstance(tree, exp.Insert):
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        if not isinstance(target, exp.Table) or target.alias:
            raise StatementRefused("INSERT names one table, without an alias")
        if not isinstance(tree.expression, exp.Values):
            raise StatementRefused("INSERT takes VALUES only, not a SELECT")
        if isinstance(tree.this, exp.Schema):
            for column in tree.this.expressions:
                # The column list holds Identifiers, not Columns: their names are checked here.
                if not isinstance(column, exp.Identifier) or column.name.lower() not in columns:
                    raise StatementRefused(f"column {column.name!r} is not a column of the guest's tables")
    elif isinstance(tree, (exp.Update, exp.Delete)):
        if not isinstance(tree.this, exp.Table) or tree.this.alias:
            raise StatementRefused(f"{tree.key.upper()} names one table, without an alias")
    elif isinstance(tree, exp.TruncateTable):
        if len(tree.expressions) != 1:
            raise StatementRefused("TRUNCATE TABLE names one table")
    if isinstance(tree, exp.Update):
        for assignment in tree.expressions:
            if not (isinstance(assignment, exp.EQ) and isinstance(assignment.this, exp.Column)):
                raise StatementRefused("UPDATE sets columns to values")


def _describe(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return f"function {node.name.upper()}"
    if isinstance(node, exp.Func):
        return f"function {node.sql_name()}"
    return node.key.upper()
