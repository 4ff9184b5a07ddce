"""CORS: the headers every answer carries, errors included, as the original's do (added by
`_exchange.HostLayer`)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from starlette.types import Scope

from ._description import HOST_PATHS, HOST_PREFIXES, GuestRoute
from ._http import is_rest

# The original answers every response with these, so a page from another origin works.
CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"api,Keep-Alive,User-Agent,Content-Type"),
    # No answer is ever sniffed into something else (an echoed body into a page, say).
    (b"x-content-type-options", b"nosniff"),
]
# The REST API has more methods, and headers a page from another origin may want to read.
REST_CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"api,Keep-Alive,User-Agent,Content-Type"),
    (b"access-control-expose-headers", b"Location, Server-Timing, X-Wasm-Engine, X-Request-ID, Retry-After"),
    (b"x-content-type-options", b"nosniff"),
]

HeadersFor = Callable[[Scope], list[tuple[bytes, bytes]]]

#: What the host's own pages take (`/openapi.json`, `/healthz`, `/readyz`, `/metrics`, the page's
#: files under `/static/`): OPTIONS, a CORS preflight, answers 204; another method 405.
HOST_PAGE_METHODS = "GET, HEAD, OPTIONS"
_HOST_PAGES = frozenset(HOST_PATHS) - {"/"}  # `/` is the original's, with its headers


def cors_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """The CORS headers every response to this request carries, errors included: the original's
    on its routes; on a REST route of the guest, the methods the guest's description gives it."""
    route = scope.get("route")
    if isinstance(route, GuestRoute):
        return CORS_HEADERS if route.api == "legacy" else _rest_headers(route.preflight_methods)
    path = scope["path"]
    if path in _HOST_PAGES or path.startswith(HOST_PREFIXES):
        return _rest_headers(HOST_PAGE_METHODS)
    return REST_CORS_HEADERS if is_rest(path) else CORS_HEADERS


@functools.lru_cache(maxsize=256)
def _rest_headers(methods: str) -> list[tuple[bytes, bytes]]:
    method_header = b"access-control-allow-methods"
    return [(name, methods.encode() if name == method_header else value) for name, value in REST_CORS_HEADERS]
