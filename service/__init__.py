"""An order service whose business logic runs in a sandboxed WebAssembly guest.

The host (this package) owns HTTP, the Wasm engine, the host functions and the database pool;
the guest (`guest/`, built into `service/guest/orders.wasm`) owns every order rule.
"""

from __future__ import annotations

from ._app import create_app
from ._embedded import EmbeddedMariaDB
from ._engines import available_engines, load_engine
from ._errors import (
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    EmbeddedDatabaseError,
    GuestFault,
    GuestLoadError,
    GuestMemoryError,
    LimitExceeded,
    ServiceError,
)
from ._guest import ABI_VERSION, Guest
from ._limits import Limits
from ._settings import DatabaseURL, Settings

__all__ = [
    "ABI_VERSION",
    "ConfigError",
    "DatabaseError",
    "DatabaseURL",
    "DatabaseUnavailable",
    "EmbeddedDatabaseError",
    "EmbeddedMariaDB",
    "Guest",
    "GuestFault",
    "GuestLoadError",
    "GuestMemoryError",
    "LimitExceeded",
    "Limits",
    "ServiceError",
    "Settings",
    "available_engines",
    "create_app",
    "load_engine",
]
