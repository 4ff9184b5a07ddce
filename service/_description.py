"""What the guest says of itself through `describe` (guest/ABI.md, "Description"): its routes,
operations, error codes and schemas. The host's route table, CORS answers, error shapes and
/openapi.json come from it, so a guest with other rules is served and described truthfully.

A description comes from a guest the host does not trust: it is read with bounds and checked
here, and a guest whose description is not valid is refused as a module of the wrong ABI is.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import compile_path

from ._errors import GuestLoadError

#: The most a description may be, in bytes; the orders guest's is about 20 KB.
MAX_DESCRIPTION_BYTES = 256 * 1024
MAX_ROUTES = 64
MAX_DEPTH = 32
APIS = ("legacy", "rest")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Paths the host answers itself: a guest route may not take them.
HOST_PATHS = ("/", "/openapi.json", "/healthz", "/readyz", "/metrics")
HOST_PREFIXES = ("/static/",)
# A route's path: segments of URL-safe characters, or a whole segment `{name}`.
_PATH = re.compile(r"(/([A-Za-z0-9._~-]+|\{[a-z_][a-z0-9_]{0,31}\}))+")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class GuestRoute:
    """One route of the guest: its template, which API it belongs to, and method -> operation."""

    path: str
    api: str
    methods: dict[str, str]
    #: operations that change data: HEAD must not run them
    changing: frozenset[str]
    regex: re.Pattern[str] = field(compare=False, repr=False)
    #: the methods a preflight may ask for, written once (`GET, POST, OPTIONS`)
    preflight_methods: str = ""

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.match(path)
        return None if found is None else found.groupdict()


@dataclass(frozen=True)
class Description:
    """A checked description: its routes, and the whole `document` (decimals as floats, which
    print back as the same text); `raw` is what the guest returned."""

    routes: tuple[GuestRoute, ...]
    document: dict[str, Any]
    raw: bytes = field(repr=False, default=b"")

    def route_for(self, path: str) -> tuple[GuestRoute, dict[str, str]] | None:
        """The first route whose template matches `path`, with its path parameters."""
        for route in self.routes:
            params = route.match(path)
            if params is not None:
                return route, params
        return None


def read_description(raw: bytes, name: str) -> Description:
    """Parses and checks what `describe` returned; raises GuestLoadError saying what is wrong."""

    def refuse(why: str) -> GuestLoadError:
        return GuestLoadError(f"{name} describes itself wrongly (guest/ABI.md, 'Description'): {why}")

    if len(raw) > MAX_DESCRIPTION_BYTES:
        raise refuse(f"{len(raw)} bytes, more than {MAX_DESCRIPTION_BYTES}")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise refuse(f"not JSON ({e})") from None
    if not isinstance(document, dict):
        raise refuse("not a JSON object")
    if _depth(document) > MAX_DEPTH:
        raise refuse(f"nested deeper than {MAX_DEPTH}")
    for key in ("operations", "errors", "error_shapes", "schemas"):
        if not isinstance(document.get(key, {}), dict):
            raise refuse(f"`{key}` is not an object")
    operations = document.get("operations", {})
    for op, spec in operations.items():
        if not _NAME.fullmatch(op) or not isinstance(spec, dict):
            raise refuse(f"operation {op!r} is not a name with an object")
        if spec.get("api") not in APIS or not isinstance(spec.get("changes"), bool):
            raise refuse(f"operation {op!r} needs `api` ({' or '.join(APIS)}) and `changes` (true or false)")
    routes = document.get("routes")
    if not isinstance(routes, list) or len(routes) > MAX_ROUTES:
        raise refuse(f"`routes` is not a list of at most {MAX_ROUTES}")
    checked: list[GuestRoute] = []
    for route in routes:
        checked.append(_route(route, operations, [r.path for r in checked], refuse))
    return Description(tuple(checked), document, raw)


def _route(route: Any, operations: dict[str, Any], taken: list[str], refuse: Any) -> GuestRoute:
    if not isinstance(route, dict) or set(route) != {"path", "api", "methods"}:
        raise refuse(f"a route must have exactly `path`, `api` and `methods`: {str(route)[:100]}")
    path, api, methods = route["path"], route["api"], route["methods"]
    if not isinstance(path, str) or len(path) > 256 or not _PATH.fullmatch(path):
        raise refuse(f"route path {str(path)[:100]!r} is not a path of plain segments and {{name}}s")
    if path in HOST_PATHS or path.startswith(HOST_PREFIXES) or path in taken:
        raise refuse(f"route path {path!r} is the host's own, or listed twice")
    if api not in APIS:
        raise refuse(f"route {path!r}: `api` must be {' or '.join(APIS)}")
    if not isinstance(methods, dict) or not methods or not set(methods) <= set(METHODS):
        raise refuse(f"route {path!r}: `methods` must map some of {', '.join(METHODS)} to operations")
    for method, op in methods.items():
        if op not in operations or operations[op]["api"] != api:
            raise refuse(f"route {path!r}: {method} names {str(op)[:64]!r}, not an operation of the {api} API")
    regex, _, _ = compile_path(path)
    changing = frozenset(op for op in methods.values() if operations[op]["changes"])
    return GuestRoute(path, api, dict(methods), changing, regex, ", ".join([*methods, "OPTIONS"]))


def _depth(value: Any) -> int:
    """How deeply `value` nests, without recursing (a hostile document could be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack += [(v, level + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, level + 1) for v in item]
    return deepest
