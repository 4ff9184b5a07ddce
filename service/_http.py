"""HTTP plumbing shared by the routes: bodies with a limit, and the host's own errors.

The host answers a few errors itself (unknown route, wrong method, body too large, guest
fault); they take the shape of the API they concern: problem details under /api, the
original's `{"status":false,...}` elsewhere.
"""

from __future__ import annotations

import json
import logging
import uuid
from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from ._description import HOST_PATHS
from ._errors import LimitExceeded, ServiceError

# Limits that say the service is overloaded rather than that the guest misbehaved.
TRANSIENT_LIMITS = frozenset({"request_time", "memory_total"})

log = logging.getLogger("service")


class PayloadTooLarge(ServiceError):
    pass


class RequestTimeout(ServiceError):
    """The client did not send its body within CLIENT_TIMEOUT."""


class Overloaded(ServiceError):
    """Too many large answers are waiting for their clients (MAX_UNSENT_MB)."""


# The host's own paths besides the original's page, and the REST API's root.
_NEW_PATHS = frozenset({"/api", *HOST_PATHS}) - {"/"}


def is_rest(path: str) -> bool:
    """Paths of the new API surface (problem details, more CORS methods), not the original's."""
    return path.startswith("/api/") or path in _NEW_PATHS


#: Where the matched guest route's API (`legacy` or `rest`, from the guest's description) is
#: noted in the scope: the shape of the host's own errors on that route.
API_KEY = "service.api"


def is_rest_scope(scope: Scope) -> bool:
    """Whether answers to this request take the REST API's shape: as the guest's description
    says for its routes, by path for the rest."""
    api = scope.get(API_KEY)
    return api == "rest" if api is not None else is_rest(scope["path"])


# Compact, as the guest writes its answers: one error shape per API, whoever makes the error.
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def error_response(request: Request, status: int, code: str, message: str, **extra: str) -> Response:
    """An error the host answers itself, in the shape of the API the path belongs to."""
    if is_rest_scope(request.scope):
        problem: dict[str, object] = {
            "type": f"urn:problem-type:orders:{code.replace('_', '-')}",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": message,
            **extra,
        }
        return Response(_compact(problem), status, media_type="application/problem+json")
    legacy = {"status": False, "error": {"code": code, "message": message, **extra}}
    return Response(_compact(legacy), status, media_type="application/json")


async def read_body(receive: Receive, declared: bytes, limit: int) -> bytes:
    """The whole body from the ASGI `receive`; `declared` is the Content-Length header (b"" if
    none). Raises PayloadTooLarge past `limit` bytes without reading further, and
    ClientDisconnect if the client goes away."""
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge()
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def guest_fault(request: Request, exc: Exception) -> Response:
    error_id = uuid.uuid4().hex[:12]
    log.error("guest fault %s on %s %s: %s", error_id, request.method, request.url.path, exc)
    message = f"the order logic failed; error id {error_id} is in the service log"
    return error_response(request, 500, "guest_fault", message, error_id=error_id)


async def limit_exceeded(request: Request, exc: Exception) -> Response:
    """500 when the guest went over one of its own limits; 503 with Retry-After when the service
    is overloaded (the whole request ran too long, or the guests' memory in all is used up)."""
    assert isinstance(exc, LimitExceeded)
    error_id = uuid.uuid4().hex[:12]
    log.warning("limit %s exceeded (%s) on %s %s: %s", exc.limit, error_id, request.method, request.url.path, exc)
    kept = "changes it had already committed were kept, the rest rolled back" if exc.kept_changes else "nothing it did was kept"
    message = f"{exc}; the request was stopped and {kept} (error id {error_id})"
    status = 503 if exc.limit in TRANSIENT_LIMITS else 500
    response = error_response(request, status, "limit_exceeded", message, limit=exc.limit, error_id=error_id)
    if status == 503:
        response.headers["retry-after"] = "1"
    return response


async def internal_error(request: Request, exc: Exception) -> Response:
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    message = f"the service failed; error id {error_id} is in the service log"
    return error_response(request, 500, "internal_error", message, error_id=error_id)


async def too_large(request: Request, exc: Exception) -> Response:
    limit = request.app.state.runtime.settings.max_body_bytes
    return error_response(request, 413, "payload_too_large", f"the request body is over the limit of {limit} bytes")


async def request_timeout(request: Request, exc: Exception) -> Response:
    limit = request.app.state.runtime.settings.client_timeout
    response = error_response(request, 408, "request_timeout", f"the request body did not arrive within {limit:g} s")
    response.headers["connection"] = "close"
    return response


async def overloaded(request: Request, exc: Exception) -> Response:
    response = error_response(request, 503, "busy", f"{exc}; try again shortly")
    response.headers["retry-after"] = "1"
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(request, 404, "not_found", f"there is no route {request.url.path}")
    if exc.status_code == 405:
        response = error_response(request, 405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
        response.headers.update(exc.headers or {})
        return response
    return error_response(request, exc.status_code, "http_error", exc.detail)
