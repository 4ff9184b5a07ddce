"""Settings come from the environment once, with defaults, and fail loudly on a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import ConfigError, DatabaseURL, Settings


def test_defaults() -> None:
    s = Settings.from_environ({})
    assert (s.database_url, s.wasm_engine, s.allow_reset, s.max_body_bytes) == (None, "auto", False, 1024 * 1024)


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
