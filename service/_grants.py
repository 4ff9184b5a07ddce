"""The guest's database user: making one that can do only what the guest's statements need, and
warning when the service is given one that can do more."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import pymysql

from ._driver import convert_error
from ._schema import schema_statements
from ._settings import DatabaseURL

log = logging.getLogger("service.database")

GUEST_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")

# GRANTEE reads 'user'@'host' where CURRENT_USER() reads user@host; an administrator sees every
# user's rows, so keep the current user's only.
_ME = "CONCAT(CHAR(39), REPLACE(CURRENT_USER(), '@', CONCAT(CHAR(39), '@', CHAR(39))), CHAR(39))"
#: The current user's privileges: (scope, name, privilege) where scope is 'global', 'schema' or
#: a schema's name (the row is then a table's).
OWN_PRIVILEGES = (
    "SELECT 'global', '', PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES "
    f"WHERE PRIVILEGE_TYPE <> 'USAGE' AND GRANTEE = {_ME} "
    "UNION ALL SELECT 'schema', TABLE_SCHEMA, PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES "
    f"WHERE GRANTEE = {_ME} "
    "UNION ALL SELECT TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES "
    f"WHERE GRANTEE = {_ME}"
)


def warn_if_privileged(url: DatabaseURL, tables: Iterable[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Logs a warning when `rows` (OWN_PRIVILEGES, as `url`'s user) grant more than the guest's
    statements need on `tables`."""
    needed = set(GUEST_PRIVILEGES)
    own = {(url.database, table) for table in tables}
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
            url.user,
            shown,
        )


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
