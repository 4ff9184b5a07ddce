"""The OpenAPI 3.1 description of every route, REST and legacy (served at /openapi.json)."""

from __future__ import annotations

import functools
from typing import Any

JSON = "application/json"
PROBLEM = "application/problem+json"
MAX_INT = 2_147_483_647
MAX_MONEY = 9_999_999_999.99

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _order_schema(required: list[str], id_nullable: bool = False) -> Schema:
    int_field = {"type": "integer", "minimum": 1, "maximum": MAX_INT}
    money = {"type": "number", "minimum": 0, "maximum": MAX_MONEY, "description": "at most two decimal places"}
    order_id: Schema = {**int_field, "type": ["integer", "null"]} if id_nullable else int_field
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": {
            "order_id": order_id,
            "product_id": int_field,
            "quantity": int_field,
            "amount": money,
            "shipping": money,
            "tax": money,
            "shipping_address": {
                "type": "string",
                "minLength": 1,
                "maxLength": 256,
                "description": "not blank, no control characters; stored without surrounding spaces",
                "pattern": r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
            },
        },
    }


FIELDS = ["order_id", "product_id", "quantity", "amount", "shipping", "tax", "shipping_address"]

SCHEMAS: dict[str, Schema] = {
    "Order": _order_schema(FIELDS),
    "NewOrder": {
        **_order_schema(FIELDS[1:], id_nullable=True),
        "description": "order_id may be left out: the database picks one",
    },
    "OrderPatch": _order_schema([]),
    "OrderPage": {
        "type": "object",
        "required": ["items", "total", "limit", "offset"],
        "properties": {
            "items": {"type": "array", "items": _ref("Order")},
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 1, "maximum": 500},
            "offset": {"type": "integer", "minimum": 0},
        },
    },
    "FieldError": {
        "type": "object",
        "required": ["field", "message"],
        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `errors` lists every bad field",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "errors": {"type": "array", "items": _ref("FieldError")},
            "error_id": {"type": "string"},
        },
    },
    "LegacyStatus": {"type": "object", "required": ["status"], "properties": {"status": {"const": True}}},
    "LegacyError": {
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
                    "field": {"type": "string"},
                    "errors": {"type": "array", "items": _ref("FieldError")},
                    "error_id": {"type": "string"},
                },
            },
        },
    },
}

_WHY = {
    400: "Malformed JSON, or a bad query parameter",
    404: "No such order",
    409: "The order_id is already used",
    413: "The body is over the size limit",
    415: "The body is not application/json",
    422: "Invalid fields, every one listed",
    500: "The guest failed; the error id is in the service log",
    503: "The database is unavailable; retry after the Retry-After seconds",
}


def _errors(codes: list[int], legacy: bool) -> dict[str, Any]:
    media, schema = (JSON, _ref("LegacyError")) if legacy else (PROBLEM, _ref("Problem"))
    out: dict[str, Any] = {}
    for code in [*codes, 500, 503]:
        out[str(code)] = {"description": _WHY[code], "content": {media: {"schema": schema}}}
    out["503"]["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return out


def _ok(description: str, schema: Schema | None, status: int = 200, media: str = JSON) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = {media: {"schema": schema}}
    return {str(status): response}


def _body(schema: Schema, *media: str) -> dict[str, Any]:
    return {"required": True, "content": {m: {"schema": schema} for m in (media or (JSON,))}}


ID_PARAM = {"name": "order_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_INT}}
STATUS = _ref("LegacyStatus")


def _legacy_paths() -> dict[str, Any]:
    def op(summary: str, responses: dict[str, Any], errors: list[int], **extra: Any) -> dict[str, Any]:
        return {"summary": summary, "tags": ["legacy"], "responses": {**responses, **_errors(errors, legacy=True)}, **extra}

    text = {"text/plain": {"schema": {"type": "string"}}, "text/html": {"schema": {"type": "string"}}}
    any_body: dict[str, Any] = {"application/json": {}, "text/plain": {}, "application/octet-stream": {}}
    return {
        "/": {
            "get": {
                "summary": "The valid endpoints (text), or the demo page for browsers",
                "tags": ["legacy"],
                "responses": {"200": {"description": "The text, or the page", "content": text}},
            }
        },
        "/init": {"get": op("Ensure the schema; empty the table when ORDERS_ALLOW_RESET is on", _ok("Done", STATUS), [])},
        "/create_order": {
            "post": op("Create one order", _ok("Created", STATUS), [400, 409, 413, 422], requestBody=_body(_ref("NewOrder")))
        },
        "/create_orders": {
            "post": op(
                "Create orders, all or none, in one transaction",
                _ok("All created", STATUS),
                [400, 409, 413, 422],
                requestBody=_body({"type": "array", "items": _ref("NewOrder")}),
            )
        },
        "/orders": {"get": op("Every order, by order_id", _ok("The orders", {"type": "array", "items": _ref("Order")}), [])},
        "/update_order": {
            "post": op(
                "Replace the order with this order_id",
                _ok("Updated", STATUS),
                [400, 404, 413, 422],
                requestBody=_body(_ref("Order")),
            )
        },
        "/delete_order": {
            "get": op(
                "Delete an order",
                _ok("Deleted", STATUS),
                [400, 404],
                parameters=[{"name": "id", "in": "query", "required": True, "schema": ID_PARAM["schema"]}],
            )
        },
        "/echo": {
            "post": {
                "summary": "The body back, with its Content-Type",
                "tags": ["legacy"],
                "requestBody": {"required": True, "content": any_body},
                "responses": {"200": {"description": "The same bytes", "content": any_body}, **_errors([413], legacy=True)},
            }
        },
    }


def _rest_paths() -> dict[str, Any]:
    def op(summary: str, responses: dict[str, Any], errors: list[int], **extra: Any) -> dict[str, Any]:
        return {"summary": summary, "tags": ["orders"], "responses": {**responses, **_errors(errors, legacy=False)}, **extra}

    page_params = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 10**12, "default": 0}},
    ]
    created = _ok("Created; Location names it", _ref("Order"), 201)
    created["201"]["headers"] = {"Location": {"schema": {"type": "string"}, "description": "/api/orders/{order_id}"}}
    return {
        "/api/orders": {
            "get": op("A page of orders, by order_id", _ok("The page", _ref("OrderPage")), [400], parameters=page_params),
            "post": op("Create an order", created, [400, 409, 413, 415, 422], requestBody=_body(_ref("NewOrder"))),
        },
        "/api/orders/{order_id}": {
            "parameters": [ID_PARAM],
            "get": op("One order", _ok("The order", _ref("Order")), [404]),
            "put": op(
                "Replace an order (every field)",
                _ok("The stored order", _ref("Order")),
                [400, 404, 413, 415, 422],
                requestBody=_body(_ref("NewOrder")),
            ),
            "patch": op(
                "Change some fields of an order",
                _ok("The stored order", _ref("Order")),
                [400, 404, 413, 415, 422],
                requestBody=_body(_ref("OrderPatch"), JSON, "application/merge-patch+json"),
            ),
            "delete": op("Delete an order", {"204": {"description": "Deleted"}}, [404]),
        },
    }


def _operations_paths() -> dict[str, Any]:
    def op(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
        return {"get": {"summary": summary, "tags": ["operations"], "responses": responses}}

    not_ready = {
        "description": "Not ready; retry after Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
        "content": {PROBLEM: {"schema": _ref("Problem")}},
    }
    ready = {"type": "object", "required": ["status", "engine", "database"], "properties": {"status": {"const": "ready"}}}
    return {
        "/healthz": op("The process is up", _ok("Serving", {"type": "object", "properties": {"status": {"const": "ok"}}})),
        "/readyz": op("The guest is loaded and the database answers", {**_ok("Ready", ready), "503": not_ready}),
        "/metrics": op(
            "Prometheus metrics of this process", _ok("Prometheus text format", {"type": "string"}, media="text/plain")
        ),
        "/openapi.json": op("This document", {"200": {"description": "OpenAPI 3.1", "content": {JSON: {}}}}),
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document; built once."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Order service (business logic in a WebAssembly guest)",
            "version": "1.0.0",
            "description": "The REST API under /api, and the original demo's routes, kept for compatibility. "
            "Every answer carries X-Wasm-Engine and Server-Timing (time in the guest and in the database).",
        },
        "paths": {
            **_rest_paths(),
            **_legacy_paths(),
            **_operations_paths(),
        },
        "components": {"schemas": SCHEMAS},
    }
