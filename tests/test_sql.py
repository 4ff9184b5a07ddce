"""What SQL a guest may run: the service's own statements pass; every way out is refused; values
are bound by the host into literals that cannot become SQL; and what the checker accepts,
MariaDB reads the same way (checked against the real server, as a user that may touch only the
orders table, with statements built to find a gap)."""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator

import pymysql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service._database import prepare_guest_user
from service._sql import MAX_SQL_TEXT_BYTES, Capability, StatementRefused, literal

from .conftest import ROOT, Db, EmbeddedMariaDB, make_database

CAPABILITY = Capability.from_schema_file(ROOT / "sql" / "schema.sql")
RESETS = Capability.from_schema_file(ROOT / "sql" / "schema.sql", truncate=True)
ROW_JSON = "JSON_ARRAY(order_id, product_id, quantity, amount, shipping, tax, shipping_address)"
COLUMNS = "order_id, product_id, quantity, amount, shipping, tax, shipping_address"

# Every statement shape the guest sends (guest/src/store.rs), and a few more it may.
ALLOWED = [
    f"INSERT INTO orders ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
    f"INSERT INTO orders ({COLUMNS}) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * 100),
    "UPDATE orders SET product_id = ?, quantity = ?, amount = ?, shipping = ?, tax = ?, shipping_address = ? WHERE order_id = ?",
    "DELETE FROM orders WHERE order_id = ?",
    f"SELECT {ROW_JSON} FROM orders WHERE order_id = ?",
    f"SELECT {ROW_JSON} FROM orders WHERE order_id = ? FOR UPDATE",
    f"SELECT {ROW_JSON} FROM orders WHERE order_id > ? ORDER BY order_id LIMIT ?",
    f"SELECT {ROW_JSON} FROM orders ORDER BY order_id LIMIT ? OFFSET ?",
    "SELECT COUNT(*) FROM orders",
    "SELECT COUNT(*) FROM orders WHERE order_id = ?",
    "SELECT a.order_id + 1 FROM orders AS a WHERE a.order_id < ? AND NOT EXISTS "
    "(SELECT 1 FROM orders AS b WHERE b.order_id = a.order_id + 1) ORDER BY a.order_id LIMIT 1",
    "SELECT * FROM `orders`",
    "select order_id from orders where order_id in (select order_id from orders where quantity > ?)",
    "SELECT MAX(order_id), MIN(amount), SUM(tax), AVG(quantity), COALESCE(MAX(order_id), 0) FROM orders",
    "SELECT order_id FROM orders WHERE order_id BETWEEN ? AND ? AND shipping_address IS NOT NULL ORDER BY order_id DESC",
    "SELECT ?",
]

# (statement, what the refusal says): each a way out that some check once let through.
REFUSED = [
    ("", "does not parse|one statement"),
    ("DROP TABLE orders", "DROP statements are not allowed"),
    ("CREATE TABLE x (a INT)", "CREATE statements"),
    ("ALTER TABLE orders ADD c INT", "ALTER statements|not allowed"),
    ("SELECT 1; DROP TABLE orders", "one statement per call"),
    ("SELECT ?;", "';'"),
    ("SELECT * FROM orders -- comment", "comments"),
    ("SELECT * FROM orders # comment", "comments"),
    ("SELECT 1 /*! , LOAD_FILE(?) */", "comments"),
    ("SELECT * FROM orders WHERE shipping_address = 'x'", "LITERAL|parameters"),
    ('SELECT * FROM orders WHERE shipping_address = "x"', "not a column|LITERAL|parameters"),
    ("SELECT 0x2f6574632f706173737764", "HEXSTRING"),
    ("SELECT _utf8mb4 X'41'", "not allowed"),
    # the driver's own formatting: placeholders are ? only, and % means nothing
    ("SELECT order_id FROM orders WHERE order_id = %s", "does not parse"),
    ("SELECT order_id FROM orders WHERE order_id = %.100s", "does not parse"),
    ("SELECT order_id FROM orders WHERE order_id = %c", "does not parse"),
    ("SELECT order_id FROM orders WHERE order_id = %r", "does not parse"),
    ("SELECT order_id FROM orders WHERE order_id = %(x)s", "does not parse"),
    ("SELECT order_id FROM orders WHERE order_id = :x", "placeholders are \\? only|PLACEHOLDER"),
    # other tables and schemas
    ("SELECT * FROM mysql.user", "TABLE with DB"),
    ("SELECT * FROM information_schema.tables", "TABLE with DB"),
    ("SELECT * FROM orders_test.orders", "TABLE with DB"),
    ("SELECT * FROM `mysql`.`user`", "TABLE with DB"),
    ("SELECT * FROM users", "table 'users'"),
    ("SELECT * FROM ORDERS", "table 'ORDERS'"),
    ("SELECT * FROM orders, secret", "JOINS"),
    ("SELECT * FROM `orders`JOIN`secret`", "JOINS"),
    ("SELECT * FROM orders JOIN secret ON 1 = 1", "JOINS"),
    ("SELECT * FROM orders STRAIGHT_JOIN secret", "JOINS"),
    ("SELECT * FROM orders USE INDEX (PRIMARY) JOIN secret ON 1", "JOINS|HINTS"),
    ("SELECT * FROM orders FORCE INDEX (PRIMARY)", "HINTS"),
    ("SELECT * FROM (orders)", "parenthesised"),
    ("SELECT * FROM (SELECT * FROM orders) AS s", "derived table"),
    ("SELECT * FROM (secret)", "parenthesised|table 'secret'"),
    ("SELECT * FROM (SELECT * FROM secret) AS s", "table 'secret'"),
    ("SELECT * FROM orders WHERE order_id IN (SELECT order_id FROM secret)", "table 'secret'"),
    ("SELECT (SELECT a FROM secret) FROM orders", "table 'secret'|column"),
    ("SELECT 1 UNION SELECT 2", "UNION"),
    ("SELECT order_id FROM orders UNION SELECT a FROM secret", "UNION"),
    ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH"),
    ("UPDATE orders, secret SET orders.amount = secret.b", "JOINS"),
    ("UPDATE orders JOIN secret SET orders.amount = 1", "JOINS"),
    ("UPDATE secret SET a = 1", "table 'secret'"),
    ("DELETE orders, secret FROM orders JOIN secret", "TABLES|JOINS"),
    ("DELETE FROM orders USING orders JOIN secret", "USING|JOINS"),
    ("DELETE FROM secret", "table 'secret'"),
    ("INSERT INTO orders SELECT * FROM secret", "table 'secret'|VALUES only"),
    ("INSERT INTO orders SELECT * FROM orders", "VALUES only|subquery"),
    ("INSERT INTO secret VALUES (?)", "table 'secret'"),
    ("INSERT INTO orders (order_id) VALUES (?) ON DUPLICATE KEY UPDATE order_id = ?", "CONFLICT"),
    ("REPLACE INTO orders (order_id) VALUES (?)", "COMMAND|not allowed"),
    ("INSERT INTO orders (nonsense) VALUES (?)", "column 'nonsense'"),
    ("TRUNCATE TABLE orders", "only when resets are on"),
    # server state, identity, time, files, locks, sleeps: no function outside the list
    ("SELECT @a", "PARAMETER"),
    ("SELECT @@version", "SESSIONPARAMETER"),
    ("SELECT @@global.max_connections", "SESSIONPARAMETER|not allowed"),
    ("SET @a = 1", "SET statements"),
    ("SELECT USER()", "function USER"),
    ("SELECT CURRENT_USER", "CURRENT_USER"),
    ("SELECT CURRENT_USER()", "CURRENT_USER"),
    ("SELECT SESSION_USER()", "SESSION_USER"),
    ("SELECT SYSTEM_USER()", "SYSTEM_USER"),
    ("SELECT VERSION()", "VERSION"),
    ("SELECT DATABASE()", "not allowed"),
    ("SELECT CONNECTION_ID()", "CONNECTION_ID"),
    ("SELECT NOW()", "NOW"),
    ("SELECT SLEEP(?)", "SLEEP"),
    ("SELECT BENCHMARK(100000000, MD5(?))", "BENCHMARK"),
    ("SELECT MASTER_GTID_WAIT(?, ?)", "MASTER_GTID_WAIT"),
    ("SELECT MASTER_POS_WAIT(?, ?)", "MASTER_POS_WAIT"),
    ("SELECT GET_LOCK(?, 10)", "GET_LOCK"),
    ("SELECT RELEASE_LOCK(?)", "RELEASE_LOCK"),
    ("SELECT IS_USED_LOCK(?)", "IS_USED_LOCK"),
    ("SELECT LOAD_FILE(?)", "LOAD_FILE"),
    ("SELECT * FROM orders INTO OUTFILE ?", "does not parse|INTO"),
    ("SELECT * FROM orders INTO DUMPFILE ?", "does not parse|INTO"),
    ("SELECT order_id INTO @x FROM orders", "INTO|does not parse"),
    ("LOAD DATA INFILE ? INTO TABLE orders", "does not parse|not allowed"),
    ("SELECT CAST(? AS CHAR)", "CAST"),
    ("SELECT CONVERT(? USING latin1)", "not allowed"),
    ("SELECT order_id FROM orders WHERE shipping_address LIKE ?", "LIKE"),
    ("SELECT order_id FROM orders WHERE order_id = ? COLLATE utf8mb4_bin", "COLLATE"),
    ("SELECT JSON_EXTRACT(?, ?)", "JSON_EXTRACT|not allowed"),
    ("SELECT COUNT(DISTINCT order_id) FROM orders", "DISTINCT"),
    ("SELECT order_id FROM orders WHERE order_id = ? FOR UPDATE SKIP LOCKED", "SKIP|not allowed"),
    ("SELECT order_id FROM orders FOR UPDATE NOWAIT", "WAIT|not allowed"),
    ("SELECT order_id FROM orders LOCK IN SHARE MODE", "only locking read"),
    ("SELECT HIGH_PRIORITY * FROM orders", "OPERATION_MODIFIERS"),
    ("SELECT SQL_CALC_FOUND_ROWS * FROM orders", "OPERATION_MODIFIERS"),
    ("SELECT order_id AS x FROM orders", "ALIAS"),
    ("SELECT order_id FROM orders PROCEDURE ANALYSE()", "does not parse"),
    ("SELECT `user` FROM orders", "column 'user'"),
    ("SELECT order_id FROM orders WHERE order_id = ? --x", "column 'x'"),
    ("SELECT 1e5", "plain numbers|LITERAL"),
    ("SHOW TABLES", "SHOW statements"),
    ("DO SLEEP(1)", "does not parse|not allowed"),
    ("CALL p()", "COMMAND|not allowed"),
    ("HANDLER orders OPEN", "does not parse|not allowed"),
    ("GRANT ALL ON *.* TO ?", "not allowed"),
    ("KILL 1", "not allowed|does not parse"),
    ("BEGIN", "not allowed"),
    ("SELECT * FROM orders WHERE a = ? \\G", "not allowed|does not parse"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_the_guest_statements_pass(sql: str) -> None:
    statement = CAPABILITY.check(sql)
    assert statement.placeholders == sql.count("?")
    assert ("`orders`" in statement.text) == ("orders" in sql)


@pytest.mark.parametrize("sql, reason", REFUSED, ids=[r[0][:60] or "empty" for r in REFUSED])
def test_everything_else_is_refused(sql: str, reason: str) -> None:
    with pytest.raises(StatementRefused, match=reason):
        CAPABILITY.check(sql)


def test_truncate_only_where_resets_are_on() -> None:
    assert RESETS.check("TRUNCATE TABLE orders").kind == "truncate"
    with pytest.raises(StatementRefused, match="table 'secret'"):
        RESETS.check("TRUNCATE TABLE secret")


def test_the_text_sent_is_generated_from_the_checked_tree() -> None:
    statement = CAPABILITY.check("select   order_id from orders where order_id=? for update")
    assert statement.text == "SELECT `order_id` FROM `orders` WHERE `order_id` = ? FOR UPDATE"
    assert statement.bind([7]) == "SELECT `order_id` FROM `orders` WHERE `order_id` = 7 FOR UPDATE"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + "(" * 3000 + "1" + ")" * 3000,
        "SELECT order_id FROM orders WHERE " + "NOT " * 2000 + "order_id = ?",
        "SELECT order_id FROM orders WHERE order_id = " + "- " * 3000 + "1",
        "SELECT COUNT(*) FROM orders WHERE order_id IN "
        + "(SELECT order_id FROM orders WHERE order_id IN " * 40
        + "(1)"
        + ")" * 40,
    ],
    ids=["parentheses", "NOT", "minus", "subqueries"],
)
def test_a_statement_nested_too_deep_to_check_is_refused(sql: str) -> None:
    with pytest.raises(StatementRefused, match="deep|nest|NOT may only"):
        CAPABILITY.check(sql)


def test_a_long_flat_statement_is_checked_without_trouble() -> None:
    assert CAPABILITY.check("SELECT 1 " + "+ 1 " * 1900).placeholders == 0


def test_a_statement_too_long_to_check_is_refused() -> None:
    sql = f"INSERT INTO orders ({COLUMNS}) VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * 1000)
    assert len(sql) > MAX_SQL_TEXT_BYTES
    with pytest.raises(StatementRefused, match="over"):
        CAPABILITY.check(sql)


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, text",
    [
        (None, "NULL"),
        (True, "TRUE"),
        (False, "FALSE"),
        (42, "42"),
        (-5, "(-5)"),
        (19.5, "19.5"),
        (-0.25, "(-0.25)"),
        (-0.0, "(-0.0)"),
        ("x' OR '1'='1", "_utf8mb4 X'7827204f52202731273d2731'"),
        ("", "_utf8mb4 X''"),
    ],
)
def test_values_are_single_token_literals(value: object, text: str) -> None:
    assert literal(value) == text


@pytest.mark.parametrize(
    "value, reason",
    [
        (math.inf, "not finite"),
        (math.nan, "not finite"),
        ("\ud800", "lone surrogate"),
        ([1], "not list"),
        ({"a": 1}, "not dict"),
        (b"bytes", "not bytes"),
        (10**70, "65 digits"),
    ],
)
def test_values_that_are_not_plain_are_refused(value: object, reason: str) -> None:
    with pytest.raises(StatementRefused, match=reason):
        literal(value)


def test_the_number_of_values_must_match() -> None:
    statement = CAPABILITY.check("DELETE FROM orders WHERE order_id = ?")
    with pytest.raises(StatementRefused, match="1 placeholders and 2 values"):
        statement.bind([1, 2])
    with pytest.raises(StatementRefused, match="1 placeholders and 0 values"):
        statement.bind([])


# --- against the real server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def guest_conn(mariadb: EmbeddedMariaDB) -> Iterator[pymysql.connections.Connection]:
    """A connection as a user that may use only the orders table of a database that also holds
    a `secret` table, with one row in each."""
    db: Db = make_database(mariadb, "orders_sql")
    guest = prepare_guest_user(db.url, "app_sql", "127.0.0.1", secrets.token_urlsafe(16), ["orders"])
    db.run("CREATE TABLE secret (a INT, b VARCHAR(20))")
    db.run("INSERT INTO secret VALUES (1, 'top secret')")
    db.run("INSERT INTO orders VALUES (1, 2, 3, 4.50, 0, 0, 'somewhere')")
    conn = pymysql.connect(
        host=guest.host, port=guest.port, user=guest.user, password=guest.password, database=guest.database, autocommit=True
    )
    yield conn
    conn.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_any_text_value_comes_back_unchanged(guest_conn: pymysql.connections.Connection, value: str) -> None:
    """A value can hold quotes, backslashes, %s, NUL, newlines, any character: it stays a value."""
    try:
        sql = CAPABILITY.check("SELECT ?").bind([value])
    except StatementRefused:
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in value)  # a lone surrogate is no text
        return
    with guest_conn.cursor() as cur:
        cur.execute(sql)  # no args: the driver formats nothing
        assert cur.fetchall() == ((value,),)


# Pieces of SQL that an attacker would try, glued in random order and with random spacing: what
# the checker accepts must run on MariaDB as the least privileged user without a syntax error
# (MariaDB reading it differently from the checker) or a privilege error (it reached further).
PIECES = [
    "SELECT", "*", "order_id", "`order_id`", "amount", "FROM", "orders", "`orders`", "AS", "a", "a.order_id",
    "secret", "mysql.user", "(", ")", ",", "?", "1", "0", "JOIN", "STRAIGHT_JOIN", "UNION", "WHERE", "=", "<", "+", "-",
    "AND", "OR", "NOT", "EXISTS", "IN", "IS", "NULL", "LIMIT", "OFFSET", "ORDER BY", "DESC", "FOR UPDATE", "LOCK IN SHARE MODE",
    "INTO", "OUTFILE", "@a", "@@version", "/*!", "*/", "#", "--", "'x'", '"x"', "\\", "%s", ";", "USER()", "SLEEP(1)",
    "COUNT(*)", "JSON_ARRAY(order_id)", "MAX(order_id)", "INSERT INTO", "VALUES", "UPDATE", "SET", "DELETE",
    "BETWEEN", "USE INDEX (PRIMARY)", "HIGH_PRIORITY", "\n", "\t", "`", "x'41'", "_utf8mb4",
]  # fmt: skip
BASES = [
    "SELECT order_id FROM orders WHERE order_id = ?",
    "SELECT COUNT(*) FROM orders",
    "UPDATE orders SET amount = ? WHERE order_id = ?",
    "DELETE FROM orders WHERE order_id = ?",
    "INSERT INTO orders (product_id, quantity, amount, shipping, tax, shipping_address) VALUES (?, ?, ?, ?, ?, ?)",
]


@st.composite
def attacks(draw: st.DrawFn) -> str:
    words = draw(st.sampled_from(BASES)).split(" ")
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(words)))
        if draw(st.booleans()) and len(words) > 2:
            words.pop(min(position, len(words) - 1))
        else:
            words.insert(position, draw(st.sampled_from(PIECES)))
    glue = draw(st.sampled_from([" ", "", "  "]))
    return glue.join(words)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attacks())
def test_what_the_checker_accepts_mariadb_reads_the_same_way(guest_conn: pymysql.connections.Connection, sql: str) -> None:
    try:
        statement = CAPABILITY.check(sql)
    except StatementRefused:
        return
    values = [i + 1 for i in range(statement.placeholders)]
    values[-1:] = ["'; DROP TABLE secret; --"] if values and "shipping_address" in sql else values[-1:]
    guest_conn.begin()
    try:
        with guest_conn.cursor() as cur:
            cur.execute(statement.bind(values))
            cur.fetchall()
    except pymysql.err.MySQLError as e:
        code = e.args[0]
        assert code not in (1064, 1149), f"MariaDB read {statement.text!r} otherwise than the checker: {e}"
        assert code not in (1044, 1045, 1142, 1143, 1227, 1370), f"{statement.text!r} reached past the orders table: {e}"
    finally:
        guest_conn.rollback()
    with guest_conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM orders")
        assert cur.fetchall() == ((1,),)


@pytest.mark.parametrize(
    "sql, values, meant",
    [
        # sqlglot reads `a = b < c` as a = (b < c); MariaDB, left to right, as (a = b) < c
        ("SELECT COUNT(*) FROM orders WHERE order_id = ? < 2", [1], 1),
        ("SELECT 2 = 1 < 3", [], 0),
        # MariaDB's BETWEEN takes a condition as its upper bound; the tree means the first BETWEEN
        ("SELECT 1 BETWEEN 0 AND 5 BETWEEN 1 AND 1", [], 1),
        ("SELECT 1 IS NULL IN (0)", [], 1),
    ],
)
def test_mariadb_reads_what_the_tree_means(
    guest_conn: pymysql.connections.Connection, sql: str, values: list[int], meant: int
) -> None:
    guest_conn.begin()
    try:
        with guest_conn.cursor() as cur:
            cur.execute("INSERT INTO orders VALUES (2, 2, 3, 4.50, 0, 0, 'b'), (3, 2, 3, 4.50, 0, 0, 'c')")
            cur.execute(CAPABILITY.check(sql).bind(values))
            assert cur.fetchall() == ((meant,),)
    finally:
        guest_conn.rollback()
