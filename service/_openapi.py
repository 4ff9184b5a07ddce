"""The OpenAPI 3.1 document served at /openapi.json: the guest's routes, operations and schemas
as its description gives them (guest/ABI.md, "Description"), the errors the host answers itself,
and the host's own routes. Built once per loaded guest."""

from __future__ import annotations

import re
from typing import Any

from ._description import Description

JSON = "application/json"
PROBLEM = "application/problem+json"
TAGS = {"legacy": "legacy", "rest": "orders"}
Schema = dict[str, Any]

# The shapes of the errors the host makes itself (service/_http.py, error_response).
HOST_SCHEMAS: dict[str, Schema] = {
    "HostLegacyError": {
        "type": "object",
        "required": ["status", "error"],
        "properties": {
            "status": {"const": False},
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "limit": {"type": "string"},
                    "error_id": {"type": "string"},
                },
            },
        },
    },
    "HostProblem": {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "limit": {"type": "string"},
            "error_id": {"type": "string"},
        },
    },
}
HOST_ERROR_SHAPES = {"legacy": (JSON, "HostLegacyError"), "rest": (PROBLEM, "HostProblem")}
# What the host answers itself on a guest route: (status, why, for operations with a body only).
HOST_ERRORS = [
    (408, "The body did not arrive in time (CLIENT_TIMEOUT)", True),
    (413, "The body is over the size limit (MAX_BODY_BYTES)", True),
    (500, "The guest failed or went over a limit; the error id is in the service log", False),
    (503, "The service is overloaded or the request ran too long; retry after Retry-After seconds", False),
]
RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}

_PATH_PARAM = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_cache: list[tuple[Description, dict[str, Any]]] = []


def openapi_document(description: Description) -> dict[str, Any]:
    """The document for the guest that gave `description` (made once per guest)."""
    if _cache and _cache[0][0] is description:
        return _cache[0][1]
    document = _document(description)
    _cache[:] = [(description, document)]
    return document


def _document(description: Description) -> dict[str, Any]:
    guest = description.document
    paths: dict[str, Any] = {}
    for route in description.routes:
        paths[route.path] = {method.lower(): _operation(guest, op, route.path) for method, op in route.methods.items()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Order service (business logic in a WebAssembly guest)",
            "version": "1.0.0",
            "description": "The routes, rules and schemas are the guest's own (its `describe` export); the "
            "host adds its errors and its own routes. Every answer carries X-Wasm-Engine and Server-Timing "
            "(time in the guest and in the database).",
        },
        "paths": {**paths, **_host_paths()},
        "components": {"schemas": {**guest.get("schemas", {}), **HOST_SCHEMAS}},
    }


def _operation(guest: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    spec = guest["operations"][name]
    api = spec["api"]
    out: dict[str, Any] = {"operationId": name, "summary": spec.get("summary", name), "tags": [TAGS[api]]}
    parameters = list(spec.get("parameters", []))
    declared = {p.get("name") for p in parameters if isinstance(p, dict) and p.get("in") == "path"}
    for param in _PATH_PARAM.findall(path):  # the host passes every one, as a string
        if param not in declared:
            parameters.append({"in": "path", "name": param, "required": True, "schema": {"type": "string"}})
    if parameters:
        out["parameters"] = parameters
    if "requestBody" in spec:
        out["requestBody"] = spec["requestBody"]
    out["responses"] = {**spec.get("responses", {}), **_errors(guest, spec, api)}
    return out


def _errors(guest: dict[str, Any], spec: dict[str, Any], api: str) -> dict[str, Any]:
    """The error answers of an operation, by status: the guest's codes in its error shape, and
    the host's own in the host's; either schema where both answer a status."""
    codes = guest.get("errors", {})
    shape = guest.get("error_shapes", {}).get(api)
    answers: dict[int, tuple[list[str], dict[str, list[Schema]], list[bool]]] = {}

    def add(status: int, why: str, media: str, schema: Schema, retry: bool) -> None:
        whys, content, retries = answers.setdefault(status, ([], {}, []))
        whys.append(why)
        if schema not in content.setdefault(media, []):
            content[media].append(schema)
        retries.append(retry)

    for code in spec.get("errors", []):
        known = codes.get(code)
        if known is not None and shape is not None:
            add(
                known["status"],
                f"{code}: {known.get('title', code)}",
                shape["content_type"],
                shape["schema"],
                "retry_after" in known,
            )
    media, host_schema = HOST_ERROR_SHAPES[api]
    for status, why, body_only in HOST_ERRORS:
        if not body_only or "requestBody" in spec:
            add(status, why, media, {"$ref": f"#/components/schemas/{host_schema}"}, status == 503)
    out: dict[str, Any] = {}
    for status in sorted(answers):
        whys, content, retries = answers[status]
        response: dict[str, Any] = {
            "description": "; ".join(whys),
            "content": {m: {"schema": s[0] if len(s) == 1 else {"anyOf": s}} for m, s in content.items()},
        }
        if any(retries):
            response["headers"] = RETRY_AFTER
        out[str(status)] = response
    return out


def _host_paths() -> dict[str, Any]:
    problem = {"$ref": "#/components/schemas/HostProblem"}

    def op(summary: str, responses: dict[str, Any], tag: str = "operations") -> dict[str, Any]:
        return {"get": {"summary": summary, "tags": [tag], "responses": responses}}

    def ok(description: str, media: str, schema: Schema | None = None) -> dict[str, Any]:
        return {"200": {"description": description, "content": {media: {"schema": schema} if schema else {}}}}

    ready = {"type": "object", "required": ["status", "engine", "database"], "properties": {"status": {"const": "ready"}}}
    not_ready = {"description": "Not ready; retry after Retry-After seconds", "headers": RETRY_AFTER}
    not_ready["content"] = {PROBLEM: {"schema": problem}}
    page = {"text/plain": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}}}
    return {
        "/": {
            "get": {
                "summary": "The valid endpoints (text), or the demo page for browsers",
                "tags": ["legacy"],
                "responses": {"200": {"description": "The text, or the page", "content": page}},
            }
        },
        "/healthz": op("The process is up", ok("Serving", JSON, {"type": "object", "properties": {"status": {"const": "ok"}}})),
        "/readyz": op("The guest is loaded and the database answers", {**ok("Ready", JSON, ready), "503": not_ready}),
        "/metrics": op("Prometheus metrics of this process", ok("Prometheus text format", "text/plain", {"type": "string"})),
        "/openapi.json": op("This document", ok("OpenAPI 3.1", JSON)),
    }
