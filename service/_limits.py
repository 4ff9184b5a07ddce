"""Every limit's default, once: those of one guest invocation (`Limits`), of the process, of
the database and of HTTP clients.

`Settings` reads the environment variable named beside each; the modules that take a limit as
an argument (`Database`, `Pool`, `HostSession`, `Guest`) default to the value written here.
"""

from __future__ import annotations

from dataclasses import dataclass

#: GUEST_POOL_MAX: instances of the guest at once, so requests in the guest at once
GUEST_POOL_MAX = 64
#: GUEST_MEMORY_TOTAL_MB: guest memory of all instances of a process together
GUEST_MEMORY_TOTAL_BYTES = 512 * 1024 * 1024
#: GUEST_COMPILE_TIMEOUT: seconds compiling a module loaded by SIGHUP may take
GUEST_COMPILE_TIMEOUT = 60.0

#: DB_POOL_MIN: database connections opened at start and kept open, per process
DB_POOL_MIN = 0
#: DB_POOL_MAX: database connections in use at once, per process
DB_POOL_MAX = 10
#: DB_CONNECT_TIMEOUT: seconds to connect to the database
DB_CONNECT_TIMEOUT = 5.0
#: DB_ACQUIRE_TIMEOUT: seconds a request waits for a free connection
DB_ACQUIRE_TIMEOUT = 10.0
#: DB_STATEMENT_TIMEOUT: seconds one guest statement may run (MariaDB's max_statement_time)
DB_STATEMENT_TIMEOUT = 5.0
#: DB_LOCK_TIMEOUT: whole seconds a guest statement waits for a row or table lock
DB_LOCK_TIMEOUT = 3

#: MAX_BODY_BYTES: a request body; larger ones get 413
MAX_BODY_BYTES = 1024 * 1024
#: CLIENT_TIMEOUT: seconds a client may take to send its body, and to take its answer
CLIENT_TIMEOUT = 30.0
#: MAX_UNSENT_MB: bytes of large answers waiting for their clients, in all; past it 503
MAX_UNSENT_BYTES = 256 * 1024 * 1024
#: MAX_CONNECTIONS: connections and requests at once (uvicorn's limit_concurrency); past it 503
MAX_CONNECTIONS = 512


@dataclass(frozen=True)
class Limits:
    """What one invocation may use; going over stops it (LimitExceeded)."""

    #: GUEST_TIME_LIMIT_MS: time running in the guest, not counting database waits; stopped by
    #: epoch interruption on wasmtime and by the injected instruction meter on wasmer
    time_seconds: float = 1.0
    #: REQUEST_TIMEOUT: the whole invocation, database waits included
    request_seconds: float = 10.0
    #: GUEST_MEMORY_LIMIT_MB: the guest's linear memory, written into the module as its maximum
    memory_bytes: int = 64 * 1024 * 1024
    #: GUEST_TABLE_LIMIT: elements of each table, written into the module as its maximum
    table_elements: int = 10_000
    #: GUEST_MAX_HOST_CALLS: calls to host functions (database statements and log lines)
    host_calls: int = 200
    #: MAX_STATEMENT_BYTES: the size of one statement (SQL text and values) the guest hands the host
    #: (the guest's largest, an INSERT of 100 orders, is some 30 KB)
    statement_bytes: int = 1024 * 1024
    #: MAX_RESULT_ROWS: rows one query may return into the guest
    result_rows: int = 100_000
    #: MAX_RESULT_BYTES: bytes one query may return into the guest
    result_bytes: int = 32 * 1024 * 1024
    #: MAX_RESPONSE_BYTES: the size of the guest's response
    response_bytes: int = 32 * 1024 * 1024
    #: GUEST_LOG_BYTES: what the guest may log, in all, per invocation (the rest is dropped)
    log_bytes: int = 16 * 1024
