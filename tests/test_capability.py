"""What SQL a guest may run: the service's own statements pass, everything else is refused."""

from __future__ import annotations

import pytest

from service._capability import StatementRefused, check_statement

ALLOWED = [
    "SELECT order_id, product_id, quantity, amount, shipping, tax, shipping_address FROM orders ORDER BY order_id",
    "SELECT order_id FROM orders WHERE order_id = %s FOR UPDATE",
    "SELECT order_id FROM orders ORDER BY order_id LIMIT %s OFFSET %s",
    "SELECT COUNT(*) FROM orders",
    "INSERT INTO orders (order_id, product_id) VALUES (%s, %s), (%s, %s)",
    "UPDATE orders SET quantity = %s WHERE order_id = %s",
    "DELETE FROM orders WHERE order_id = %s",
    "TRUNCATE TABLE orders",
    "select 1",
    "SELECT * FROM `orders`;",
]

REFUSED = [
    ("", "empty"),
    ("DROP TABLE orders", "DROP is not allowed"),
    ("CREATE TABLE x (a INT)", "CREATE is not allowed"),
    ("ALTER TABLE orders ADD c INT", "ALTER is not allowed"),
    ("SELECT 1; DROP TABLE orders", "one statement per call"),
    ("SELECT * FROM orders -- comment", "comments"),
    ("SELECT * FROM orders /*! UNION SELECT 1 */", "comments"),
    ("SELECT * FROM orders WHERE shipping_address = 'x'", "quotes"),
    ('SELECT * FROM orders WHERE shipping_address = "x"', "quotes"),
    ("SELECT * FROM mysql.user", "qualified"),
    ("SELECT * FROM orders_test . orders", "qualified"),
    ("SELECT * FROM users", "table 'users'"),
    ("SELECT * FROM orders, users", "table 'users'"),
    ("SELECT * FROM orders JOIN secrets ON 1 = 1", "table 'secrets'"),
    ("SELECT * FROM (SELECT * FROM secrets) AS s", "table 'secrets'"),
    ("SELECT * FROM orders INTO OUTFILE %s", "INTO is not allowed"),
    ("SELECT * FROM orders INTO @x", "INTO is not allowed"),
    ("SELECT LOAD_FILE(%s)", "LOAD_FILE"),
    ("LOAD DATA INFILE %s INTO TABLE orders", "LOAD is not allowed"),
    ("SELECT SLEEP(100)", "SLEEP"),
    ("SELECT BENCHMARK(100000000, MD5(%s))", "BENCHMARK"),
    ("SELECT GET_LOCK(%s, 10)", "GET_LOCK"),
    ("SET @@global.max_connections = 1", "SET is not allowed"),
    ("GRANT ALL ON *.* TO %s", "GRANT is not allowed"),
    ("CALL proc()", "CALL is not allowed"),
    ("SHOW DATABASES", "SHOW is not allowed"),
    ("TRUNCATE TABLE secrets", "table 'secrets'"),
    ("TRUNCATE orders", "TRUNCATE must be TRUNCATE TABLE"),
    ("UPDATE secrets SET a = 1", "table 'secrets'"),
    ("INSERT INTO secrets VALUES (%s)", "table 'secrets'"),
    ("SELECT @@version", "server variables"),
    ("SELECT * FROM orders WHERE a = %s \\G", "quotes"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_the_service_statements_pass(sql: str) -> None:
    check_statement(sql)


@pytest.mark.parametrize("sql, reason", REFUSED, ids=[r[0] or "empty" for r in REFUSED])
def test_everything_else_is_refused(sql: str, reason: str) -> None:
    with pytest.raises(StatementRefused, match=reason.replace("(", r"\(")):
        check_statement(sql)
