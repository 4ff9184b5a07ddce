"""The ASGI app: routes, the host's error answers, and the middleware around them.

Reading in one direction: `_routes` and `_endpoint` (HTTP) → `_guest` (the guest runtime) →
`_hostfuncs` (the host functions) → `_database` (MariaDB).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from ._errors import GuestFault, LimitExceeded, ServiceError
from ._exchange import HostLayer, Observer
from ._guest import Guest
from ._http import (
    Overloaded,
    PayloadTooLarge,
    RequestTimeout,
    guest_fault,
    http_error,
    internal_error,
    limit_exceeded,
    overloaded,
    request_timeout,
    too_large,
)
from ._lifespan import lifespan
from ._logs import AccessLog, configure_logging, quiet_given_up_answers
from ._metrics import Metrics
from ._routes import GuestRoutes, build_routes
from ._settings import Settings

#: The host's own error answers, by the class of what a route raised (an `Exception` answers 500).
EXCEPTION_HANDLERS: dict[Any, Any] = {
    Exception: internal_error,
    LimitExceeded: limit_exceeded,
    GuestFault: guest_fault,
    PayloadTooLarge: too_large,
    RequestTimeout: request_timeout,
    Overloaded: overloaded,
    HTTPException: http_error,
}


def create_app(settings: Settings, guest: Guest | None = None) -> Starlette:
    """The ASGI app. The guest is loaded in the lifespan unless one is given (already checked)."""
    if settings.database_url is None:
        raise ServiceError("create_app needs settings.database_url (python -m service starts a database itself)")
    metrics = Metrics()
    quiet_given_up_answers()
    routes = build_routes()
    lane = routes[0]
    assert isinstance(lane, GuestRoutes)
    app = Starlette(
        routes=routes, lifespan=lifespan(settings, settings.database_url, metrics, guest), exception_handlers=EXCEPTION_HANDLERS
    )
    # One layer (_exchange.HostLayer): the request id, the CORS headers, the exchange recorded for
    # the metrics and the access line; the guest's routes (the first route) taken straight there.
    observers: list[Observer] = [metrics.observe_request, AccessLog(settings.log_format == "json")]
    app.add_middleware(HostLayer, observers=observers, lane=lane)
    return app


def app_from_environ() -> Starlette:
    """The app as a uvicorn factory, for worker processes: settings from the environment."""
    settings = Settings.from_environ()
    configure_logging(settings.log_level, settings.log_format == "json")
    return create_app(settings)
