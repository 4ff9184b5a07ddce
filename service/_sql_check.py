"""Checking a guest's statement against the allow-list (`_sql_grammar`), and generating the
text that is sent from the checked tree: parsed and checked again, token by token too, so what is
checked is exactly what is sent."""

from __future__ import annotations

from collections.abc import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokenizer_core import TokenType

from ._sql_grammar import (
    ALLOWED_ARGS,
    CONDITIONS,
    DIALECT,
    FUNCTIONS,
    KINDS,
    MAX_NESTING,
    MAX_PARAMETERS,
    MAX_SQL_TEXT_BYTES,
    NAME,
    NON_EMPTY,
    NUMBER,
    OPERATORS,
    SAFE_TEXT,
    TOKENS,
    WORDS,
    StatementRefused,
)


def check(sql: str, tables: Mapping[str, frozenset[str]], *, truncate: bool) -> tuple[str, str]:
    """(kind, the text to send) of `sql`; raises StatementRefused saying why not."""
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


def _checked(sql: str, tables: Mapping[str, frozenset[str]], *, truncate: bool) -> tuple[str, str]:
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
    if not SAFE_TEXT.fullmatch(text) or "--" in text:
        raise StatementRefused("the statement has characters a checked statement cannot have")
    for token in sqlglot.Dialect.get_or_raise(DIALECT).tokenize(text):
        if token.token_type not in TOKENS and not (token.token_type == TokenType.VAR and token.text.upper() in WORDS):
            raise StatementRefused(f"{token.text!r} is not allowed in a guest's statement")
        if token.token_type == TokenType.NUMBER and not NUMBER.fullmatch(token.text):
            raise StatementRefused("literals in the SQL text may only be plain numbers")
    placeholders = sum(1 for _ in again.find_all(exp.Placeholder))
    if text.count("?") != placeholders or placeholders > MAX_PARAMETERS:
        raise StatementRefused(f"the statement has {placeholders} placeholders; at most {MAX_PARAMETERS}")
    return kind, text


def _parenthesize(tree: exp.Expr) -> None:
    """Puts every condition that is the operand of an operator in parentheses, so that MariaDB
    reads the text as the tree says."""
    for node in [n for n in tree.walk() if isinstance(n, CONDITIONS) and isinstance(n.parent, OPERATORS)]:
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
    kind = KINDS.get(type(tree))
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
    allowed = ALLOWED_ARGS.get(type(node))
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
        if not NAME.fullmatch(node.name):
            raise StatementRefused(f"alias {node.name!r} is not a plain name")
    elif isinstance(node, exp.Identifier):
        if not NAME.fullmatch(node.name):
            raise StatementRefused(f"identifier {node.name!r} is not a plain name")
    elif isinstance(node, exp.Literal):
        if node.is_string or not NUMBER.fullmatch(node.this):
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
        if isinstance(node, NON_EMPTY) and not node.expressions and not (isinstance(node, exp.In) and node.args.get("query")):
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
