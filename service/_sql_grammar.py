"""The allow-list of a guest's SQL: the statement kinds, node types and their arguments,
functions and tokens a checked statement may hold, and the bounds of its text.

Each node type a statement may contain is listed with the arguments it may carry: a node type or
argument that sqlglot adds later is refused until it is listed here.
"""

from __future__ import annotations

import re

from sqlglot import exp
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
EXPRESSION_ARGS: dict[type[exp.Expr], frozenset[str]] = {
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
CLAUSE_ARGS: dict[type[exp.Expr], frozenset[str]] = {
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
ALLOWED_ARGS = {**EXPRESSION_ARGS, **CLAUSE_ARGS}
NON_EMPTY = (exp.Select, exp.In, exp.Tuple, exp.Values, exp.Order, exp.Update, exp.Coalesce, exp.Schema, exp.TruncateTable)
KINDS: dict[type[exp.Expr], str] = {
    exp.Select: "select",
    exp.Insert: "insert",
    exp.Update: "update",
    exp.Delete: "delete",
    exp.TruncateTable: "truncate",
}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NUMBER = re.compile(r"[0-9]{1,65}(\.[0-9]{1,30})?")
# Every character the generated text may hold: a quote, comment, variable or escape cannot appear.
SAFE_TEXT = re.compile(r"[A-Za-z0-9_ `(),.*=<>!?+\-]*")
# The tokens the generated text may hold (a second wall behind the tree's allow-list): keywords
# of the allowed clauses, operators, quoted identifiers, plain numbers and placeholders. A bare
# word is a function name from FUNCTIONS.
TOKENS = frozenset(
    getattr(TokenType, name)
    for name in (
        "SELECT FROM WHERE AND OR NOT IN IS NULL BETWEEN EXISTS ORDER_BY ASC DESC LIMIT OFFSET FOR UPDATE "
        "INSERT INTO VALUES SET DELETE TRUNCATE TABLE ALIAS TRUE FALSE COMMA L_PAREN R_PAREN DOT STAR PLUS "
        "DASH EQ NEQ GT GTE LT LTE NUMBER PLACEHOLDER IDENTIFIER"
    ).split()
)
WORDS = FUNCTIONS


class StatementRefused(Exception):
    """The statement, or one of its values, is outside what a guest may run; the message says why."""


# Conditions, and the operators that take values: MariaDB and sqlglot rank some of them
# differently (MariaDB reads `a = b < c` as `(a = b) < c`, sqlglot as `a = (b < c)`; its BETWEEN
# takes a condition as its upper bound), so a condition that is an operand is parenthesised.
COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Is, exp.In, exp.Between)
CONDITIONS = (*COMPARISONS, exp.Not, exp.And, exp.Or, exp.Exists)
OPERATORS = (*COMPARISONS, exp.Add, exp.Sub, exp.Mul, exp.Neg)
