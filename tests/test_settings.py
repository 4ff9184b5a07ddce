"""Settings come from the environment once, with defaults, and fail loudly on a bad value."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from service import ConfigError, DatabaseURL, Settings, _limits
from service._database import Database
from service._pool import Pool


def test_defaults() -> None:
    s = Settings.from_environ({})
    assert (s.database_url, s.wasm_engine, s.allow_reset, s.max_body_bytes) == (None, "auto", False, 1024 * 1024)


#: each setting with its default in service/_limits.py, and the arguments of Database and Pool
#: that take it
_ONCE = {
    "db_pool_min": ("DB_POOL_MIN", "pool_min"),
    "db_pool_max": ("DB_POOL_MAX", "pool_max"),
    "db_connect_timeout": ("DB_CONNECT_TIMEOUT", "connect_timeout"),
    "db_acquire_timeout": ("DB_ACQUIRE_TIMEOUT", "acquire_timeout"),
    "db_statement_timeout": ("DB_STATEMENT_TIMEOUT", "statement_timeout"),
    "db_lock_timeout": ("DB_LOCK_TIMEOUT", "lock_timeout"),
    "guest_pool_max": ("GUEST_POOL_MAX", None),
    "guest_memory_total": ("GUEST_MEMORY_TOTAL_BYTES", None),
    "guest_compile_timeout": ("GUEST_COMPILE_TIMEOUT", None),
    "max_body_bytes": ("MAX_BODY_BYTES", None),
    "client_timeout": ("CLIENT_TIMEOUT", None),
    "max_unsent_bytes": ("MAX_UNSENT_BYTES", None),
    "max_connections": ("MAX_CONNECTIONS", None),
}


def test_every_limit_default_is_the_one_in_limits() -> None:
    """Settings (read from an empty environment too), Database and Pool default to the values
    service/_limits.py defines."""
    read = Settings.from_environ({})
    for field, (constant, argument) in _ONCE.items():
        value = getattr(_limits, constant)
        assert getattr(Settings(), field) == getattr(read, field) == value, field
        for cls in (Database, Pool):
            parameters = inspect.signature(cls.__init__).parameters
            if argument in parameters:
                assert parameters[argument].default == value, f"{cls.__name__}({argument})"
    assert Settings().limits == read.limits == _limits.Limits()


def test_no_limit_default_is_written_outside_limits() -> None:
    """No parameter or field of another module that takes a limit has a number written as its
    default: a second copy of a default could drift from the first."""
    names = {name for pair in _ONCE.values() for name in pair if name} | set(_ONCE) | {"max_result_rows", "max_result_bytes"}
    service = Path(_limits.__file__).parent
    found = []
    for path in sorted(service.glob("*.py")):
        if path.name == "_limits.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            pairs: list[tuple[str, ast.expr | None]] = []
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = [*node.args.posonlyargs, *node.args.args]
                pairs += zip([a.arg for a in args[len(args) - len(node.args.defaults) :]], node.args.defaults, strict=True)
                pairs += [(a.arg, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                pairs.append((node.target.id, node.value))
            for name, default in pairs:
                if name in names and default is not None and any(isinstance(n, ast.Constant) for n in ast.walk(default)):
                    found.append(f"{path.name}:{default.lineno} {name}")
    assert found == []


def test_the_original_url_form() -> None:
    url = DatabaseURL.parse("mysql://app:p%40ss@db.example:3307/orders")
    assert url == DatabaseURL("db.example", 3307, "app", "p@ss", "orders")
    assert "p@ss" not in url.redacted()
    assert DatabaseURL.parse("mysql://root@localhost/orders").port == 3306
    assert url.connect_args() == {"host": "db.example", "port": 3307, "user": "app", "password": "p@ss", "db": "orders"}


@pytest.mark.parametrize(
    "url, message",
    [
        ("postgres://u@h/db", "must start with mysql://"),
        ("mysql://u@h:port/db", "port that is not a number"),
        ("mysql://u@h:3306/", "must look like"),
        ("mysql:///db", "must look like"),
        ("mysql://u@h/db?ssl=1", "no query string"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_environ({"DATABASE_URL": url})


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WASM_ENGINE": "v8"}, "WASM_ENGINE must be one of"),
        ({"ORDERS_ALLOW_RESET": "maybe"}, "ORDERS_ALLOW_RESET must be"),
        ({"DB_POOL_MAX": "ten"}, "DB_POOL_MAX must be a whole number"),
        ({"DB_POOL_MAX": "0"}, "DB_POOL_MAX must be at least 1"),
        ({"DB_POOL_MIN": "5", "DB_POOL_MAX": "2"}, "DB_POOL_MIN must not be larger"),
        ({"MAX_BODY_BYTES": "-1"}, "MAX_BODY_BYTES must be at least 1"),
        ({"DB_CONNECT_TIMEOUT": "soon"}, "DB_CONNECT_TIMEOUT must be a number"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_environ(env)


@pytest.mark.parametrize("raw, value", [("1", True), ("on", True), ("TRUE", True), ("0", False), ("no", False), ("", False)])
def test_booleans(raw: str, value: bool) -> None:
    assert Settings.from_environ({"ORDERS_ALLOW_RESET": raw}).allow_reset is value


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().allow_reset = True  # type: ignore[misc]


def test_the_compiled_module_cache() -> None:
    assert Settings.from_environ({}).cache_dir == Path(".data/compiled")
    assert Settings.from_environ({"ORDERS_DATA_DIR": "/srv/orders"}).cache_dir == Path("/srv/orders/compiled")
    assert Settings.from_environ({"GUEST_CACHE_DIR": "/var/cache/orders"}).cache_dir == Path("/var/cache/orders")
    assert Settings.from_environ({"GUEST_CACHE_DIR": "off"}).cache_dir is None
