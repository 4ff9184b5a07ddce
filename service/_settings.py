"""Configuration, read once from the environment into a frozen dataclass."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

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
    def parse(cls, url: str) -> DatabaseURL:
        """Parses a DATABASE_URL; raises ConfigError saying what is wrong with it."""
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb"):
            raise ConfigError(f"DATABASE_URL must start with mysql:// (got {parts.scheme or 'no'} scheme)")
        try:
            port = parts.port or 3306
        except ValueError:
            raise ConfigError("DATABASE_URL has a port that is not a number") from None
        database = unquote(parts.path.lstrip("/"))
        if not parts.hostname or not database or "/" in database:
            raise ConfigError("DATABASE_URL must look like mysql://user:password@host:port/database")
        if parts.query or parts.fragment:
            raise ConfigError("DATABASE_URL takes no query string or fragment")
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


@dataclass(frozen=True)
class Settings:
    """Everything the service can be told; see the README's configuration table."""

    database_url: DatabaseURL | None = None
    wasm_engine: str = "auto"
    allow_reset: bool = False
    db_pool_min: int = 0
    db_pool_max: int = 10
    db_connect_timeout: float = 5.0
    db_acquire_timeout: float = 10.0
    guest_pool_max: int = 64
    guest_module: Path | None = None
    max_body_bytes: int = 1024 * 1024
    max_statement_bytes: int = 8 * 1024 * 1024
    max_result_bytes: int = 32 * 1024 * 1024
    max_result_rows: int = 100_000
    max_response_bytes: int = 32 * 1024 * 1024
    guest_time_limit: float = 1.0
    guest_memory_limit: int = 64 * 1024 * 1024
    guest_max_host_calls: int = 200
    data_dir: Path = Path(".data")
    #: where compiled guest code is kept between starts; None: no cache
    cache_dir: Path | None = None
    log_level: str = "INFO"
    log_format: str = "text"

    def guest_limits(self) -> Limits:
        return Limits(
            time_seconds=self.guest_time_limit,
            memory_bytes=self.guest_memory_limit,
            host_calls=self.guest_max_host_calls,
            statement_bytes=self.max_statement_bytes,
            response_bytes=self.max_response_bytes,
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Reads the settings; raises ConfigError naming the variable that is malformed."""
        env = os.environ if environ is None else environ
        url = env.get("DATABASE_URL", "").strip()
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
        settings = cls(
            database_url=DatabaseURL.parse(url) if url else None,
            wasm_engine=engine,
            allow_reset=_bool(env, "ORDERS_ALLOW_RESET", False),
            db_pool_min=_int(env, "DB_POOL_MIN", 0, minimum=0),
            db_pool_max=_int(env, "DB_POOL_MAX", 10, minimum=1),
            db_connect_timeout=_float(env, "DB_CONNECT_TIMEOUT", 5.0),
            db_acquire_timeout=_float(env, "DB_ACQUIRE_TIMEOUT", 10.0),
            guest_pool_max=_int(env, "GUEST_POOL_MAX", 64, minimum=1),
            guest_module=Path(module) if module else None,
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1024 * 1024, minimum=1),
            max_result_bytes=_int(env, "MAX_RESULT_BYTES", 32 * 1024 * 1024, minimum=1024),
            max_result_rows=_int(env, "MAX_RESULT_ROWS", 100_000, minimum=1),
            max_response_bytes=_int(env, "MAX_RESPONSE_BYTES", 32 * 1024 * 1024, minimum=1024),
            guest_time_limit=_int(env, "GUEST_TIME_LIMIT_MS", 1000, minimum=1) / 1000,
            guest_memory_limit=_int(env, "GUEST_MEMORY_LIMIT_MB", 64, minimum=2) * 1024 * 1024,
            guest_max_host_calls=_int(env, "GUEST_MAX_HOST_CALLS", 200, minimum=1),
            data_dir=Path(env.get("ORDERS_DATA_DIR", "").strip() or ".data"),
            cache_dir=_cache_dir(env),
            log_level=log_level,
            log_format=log_format,
        )
        if settings.db_pool_min > settings.db_pool_max:
            raise ConfigError("DB_POOL_MIN must not be larger than DB_POOL_MAX")
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
