"""Configuration, read once from the environment into a frozen dataclass."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from . import _limits
from ._errors import ConfigError
from ._limits import Limits

ENGINES = ("auto", "wasmer", "wasmtime")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class DatabaseURL:
    """`mysql://user:password@host:port/database`, as the original service takes it."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def parse(cls, url: str, name: str = "DATABASE_URL") -> DatabaseURL:
        """Parses a DATABASE_URL; raises ConfigError saying what is wrong with it."""
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ConfigError(f"{name} must start with mysql:// (got {parts.scheme or 'no'} scheme)")
        try:
            port = parts.port or 3306
        except ValueError:
            raise ConfigError(f"{name} has a port that is not a number") from None
        database = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not database or "/" in database:
            raise ConfigError(f"{name} must look like mysql://user:password@host:port/database")
        if parts.query or parts.fragment:
            raise ConfigError(f"{name} takes no query string or fragment")
        return cls(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=database,
        )

    def connect_args(self) -> dict[str, Any]:
        """Where and as whom to connect, as aiomysql's `connect` and `create_pool` take it."""
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password, "db": self.database}

    def redacted(self) -> str:
        return f"mysql://{self.user}:***@{self.host}:{self.port}/{self.database}"

    def unredacted(self) -> str:
        """The URL itself, password included (for a child process's environment only)."""
        user, password, database = (quote(part, safe="") for part in (self.user, self.password, self.database))
        return f"mysql://{user}:{password}@{self.host}:{self.port}/{database}"


_LIMITS = Limits()
_MB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told; see the README's configuration table."""

    #: the guest's statements run as this user, which should reach only the service's table
    database_url: DatabaseURL | None = None
    #: schema work and /init's reset run as this user (default: database_url)
    database_admin_url: DatabaseURL | None = None
    wasm_engine: str = "auto"
    allow_reset: bool = False
    db_pool_min: int = _limits.DB_POOL_MIN
    db_pool_max: int = _limits.DB_POOL_MAX
    db_connect_timeout: float = _limits.DB_CONNECT_TIMEOUT
    db_acquire_timeout: float = _limits.DB_ACQUIRE_TIMEOUT
    #: MariaDB's max_statement_time for every guest statement, in seconds
    db_statement_timeout: float = _limits.DB_STATEMENT_TIMEOUT
    #: how long a guest statement waits for a row or table lock, in whole seconds
    db_lock_timeout: int = _limits.DB_LOCK_TIMEOUT
    guest_pool_max: int = _limits.GUEST_POOL_MAX
    #: guest memory of all instances of a process together (idle instances are dropped first)
    guest_memory_total: int = _limits.GUEST_MEMORY_TOTAL_BYTES
    guest_module: Path | None = None
    #: how long compiling a module loaded by SIGHUP may take
    guest_compile_timeout: float = _limits.GUEST_COMPILE_TIMEOUT
    max_body_bytes: int = _limits.MAX_BODY_BYTES
    #: seconds a client may take to send its body, and to take its answer
    client_timeout: float = _limits.CLIENT_TIMEOUT
    #: bytes of large answers waiting for their clients to take them, in all; past it 503
    max_unsent_bytes: int = _limits.MAX_UNSENT_BYTES
    #: connections and requests at once (uvicorn's limit_concurrency); past it 503
    max_connections: int = _limits.MAX_CONNECTIONS
    limits: Limits = _LIMITS
    data_dir: Path = Path(".data")
    #: where compiled guest code is kept between starts; None: no cache
    cache_dir: Path | None = None
    log_level: str = "INFO"
    log_format: str = "text"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Reads the settings; raises ConfigError naming the variable that is malformed."""
        env = os.environ if environ is None else environ
        url = env.get("DATABASE_URL", "").strip()
        admin_url = env.get("DATABASE_ADMIN_URL", "").strip()
        engine = env.get("WASM_ENGINE", "auto").strip().lower()
        if engine not in ENGINES:
            raise ConfigError(f"WASM_ENGINE must be one of {', '.join(ENGINES)} (got {engine!r})")
        module = env.get("GUEST_MODULE", "").strip()
        log_level = env.get("LOG_LEVEL", "INFO").strip().upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR (got {log_level!r})")
        log_format = env.get("LOG_FORMAT", "text").strip().lower() or "text"
        if log_format not in ("text", "json"):
            raise ConfigError(f"LOG_FORMAT must be text or json (got {log_format!r})")
        d = _LIMITS
        limits = Limits(
            time_seconds=_int(env, "GUEST_TIME_LIMIT_MS", round(d.time_seconds * 1000), minimum=1) / 1000,
            request_seconds=_float(env, "REQUEST_TIMEOUT", d.request_seconds),
            memory_bytes=_int(env, "GUEST_MEMORY_LIMIT_MB", d.memory_bytes // _MB, minimum=2) * _MB,
            table_elements=_int(env, "GUEST_TABLE_LIMIT", d.table_elements, minimum=1),
            host_calls=_int(env, "GUEST_MAX_HOST_CALLS", d.host_calls, minimum=1),
            statement_bytes=_int(env, "MAX_STATEMENT_BYTES", d.statement_bytes, minimum=1024),
            result_rows=_int(env, "MAX_RESULT_ROWS", d.result_rows, minimum=1),
            result_bytes=_int(env, "MAX_RESULT_BYTES", d.result_bytes, minimum=1024),
            response_bytes=_int(env, "MAX_RESPONSE_BYTES", d.response_bytes, minimum=1024),
            log_bytes=_int(env, "GUEST_LOG_BYTES", d.log_bytes, minimum=0),
        )
        settings = cls(
            database_url=DatabaseURL.parse(url) if url else None,
            database_admin_url=DatabaseURL.parse(admin_url, "DATABASE_ADMIN_URL") if admin_url else None,
            wasm_engine=engine,
            allow_reset=_bool(env, "ORDERS_ALLOW_RESET", False),
            db_pool_min=_int(env, "DB_POOL_MIN", cls.db_pool_min, minimum=0),
            db_pool_max=_int(env, "DB_POOL_MAX", cls.db_pool_max, minimum=1),
            db_connect_timeout=_float(env, "DB_CONNECT_TIMEOUT", cls.db_connect_timeout),
            db_acquire_timeout=_float(env, "DB_ACQUIRE_TIMEOUT", cls.db_acquire_timeout),
            db_statement_timeout=_float(env, "DB_STATEMENT_TIMEOUT", cls.db_statement_timeout),
            db_lock_timeout=_int(env, "DB_LOCK_TIMEOUT", cls.db_lock_timeout, minimum=1),
            guest_pool_max=_int(env, "GUEST_POOL_MAX", cls.guest_pool_max, minimum=1),
            guest_memory_total=_int(env, "GUEST_MEMORY_TOTAL_MB", cls.guest_memory_total // _MB, minimum=2) * _MB,
            guest_module=Path(module) if module else None,
            guest_compile_timeout=_float(env, "GUEST_COMPILE_TIMEOUT", cls.guest_compile_timeout),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", cls.max_body_bytes, minimum=1),
            client_timeout=_float(env, "CLIENT_TIMEOUT", cls.client_timeout),
            max_unsent_bytes=_int(env, "MAX_UNSENT_MB", cls.max_unsent_bytes // _MB, minimum=1) * _MB,
            max_connections=_int(env, "MAX_CONNECTIONS", cls.max_connections, minimum=1),
            limits=limits,
            data_dir=Path(env.get("ORDERS_DATA_DIR", "").strip() or ".data"),
            cache_dir=_cache_dir(env),
            log_level=log_level,
            log_format=log_format,
        )
        if settings.db_pool_min > settings.db_pool_max:
            raise ConfigError("DB_POOL_MIN must not be larger than DB_POOL_MAX")
        if settings.guest_memory_total < limits.memory_bytes:
            raise ConfigError("GUEST_MEMORY_TOTAL_MB must not be smaller than GUEST_MEMORY_LIMIT_MB")
        return settings


def _cache_dir(env: Mapping[str, str]) -> Path | None:
    raw = env.get("GUEST_CACHE_DIR", "").strip()
    if raw.lower() == "off":
        return None
    return Path(raw) if raw else Path(env.get("ORDERS_DATA_DIR", "").strip() or ".data") / "compiled"


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be 1/0, true/false, yes/no or on/off (got {raw!r})")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum} (got {value})")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds (got {raw!r})") from None
    if not value > 0:
        raise ConfigError(f"{name} must be more than 0 (got {raw!r})")
    return value
