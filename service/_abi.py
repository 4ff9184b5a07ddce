"""The guest ABI (guest/ABI.md): its version, the imports and exports it names, and the one codec
of the envelope, the JSON header line in front of every request and response body.

The golden file guest/abi/golden.json is the contract for the header lines (tests/test_abi.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ._errors import GuestFault, LimitExceeded
from ._wasm_module import FuncType

ABI_VERSION = 4

# Imports that hand the host a database call; the guest suspends after each.
DATABASE_IMPORTS = ("db_query", "db_execute", "db_begin", "db_commit", "db_rollback")
HOST_IMPORTS: dict[str, FuncType] = {
    "db_query": FuncType(("i32", "i32"), ()),
    "db_execute": FuncType(("i32", "i32"), ()),
    "db_begin": FuncType((), ()),
    "db_commit": FuncType((), ()),
    "db_rollback": FuncType((), ()),
    "db_result": FuncType(("i32", "i32"), ()),
    "log": FuncType(("i32", "i32", "i32"), ()),
}
REQUIRED_EXPORTS: dict[str, FuncType | None] = {
    "memory": None,
    "abi_version": FuncType((), ("i32",)),
    "alloc": FuncType(("i32",), ("i32",)),
    "dealloc": FuncType(("i32", "i32"), ()),
    "inbox": FuncType((), ("i64",)),
    "handle": FuncType(("i32", "i32"), ("i64",)),
    "resume": FuncType(("i32",), ("i64",)),
    "describe": FuncType((), ("i64",)),
}

# Headers a guest may set on its response (guest/ABI.md, "Request and response"), each once,
# and what their values may be: a path on this service (not `//host`, which a browser would
# follow elsewhere), and whole seconds.
GUEST_HEADERS = {
    "location": re.compile(r"/(?!/)[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,2047}"),
    "retry-after": re.compile(r"[0-9]{1,6}"),
}
# What a guest's answer may be: nothing, JSON, problem details, plain text or bytes. Never HTML
# or script, which a browser would run as this service's own.
GUEST_CONTENT_TYPES = frozenset(
    {"", "application/json", "application/problem+json", "text/plain; charset=utf-8", "application/octet-stream"}
)
# Statuses whose answer has no body.
_NO_BODY = frozenset({204, 205, 304})
_RESPONSE_KEYS = frozenset({"status", "content_type", "headers"})
# A response header line without headers, read without a JSON parser (the common case): each
# key once, in the order the guest writes them, so a line with a repeated key never matches.
_SIMPLE_HEAD = re.compile(rb'\{"status":(\d{3}),"content_type":"([ !#-\[\]-~]*)","headers":\[\]\}')
#: Simple header lines already read and found valid, and what they say: a guest answers with a
#: few of them again and again. Every one there can be is kept: a valid simple line has one of
#: 400 statuses and one of the five content types, so there are at most 2,000, none of them
#: longer than a hundred bytes.
_KNOWN_HEADS: dict[bytes, tuple[int, str]] = {}
# Compact, non-ASCII as UTF-8: the header line exactly as the golden file writes it.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_string = json.encoder.encode_basestring


class GuestResponse:
    """A guest's answer, and how long the request spent in the guest and in the database."""

    __slots__ = ("status", "content_type", "headers", "body", "guest_seconds", "db_seconds")

    def __init__(self, status: int, content_type: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self.headers = headers
        self.body = body
        self.guest_seconds = 0.0
        self.db_seconds = 0.0


def encode_request(op: str, query: dict[str, str], path: dict[str, str], content_type: str, allow_reset: bool) -> bytes:
    """The request's header line, `\\n` included; the body follows it."""
    # Field by field, in the ABI's order: one encoder call for the whole dict was measured slower.
    return (
        f'{{"op":{_string(op)},"query":{_encode(query) if query else "{}"},"path":{_encode(path) if path else "{}"},'
        f'"content_type":{_string(content_type)},"allow_reset":{"true" if allow_reset else "false"}}}\n'
    ).encode()


def decode_response(data: bytes, max_bytes: int) -> GuestResponse:
    """The guest's response: its header line read and checked, the rest its body. Raises
    LimitExceeded when `data` is over `max_bytes`, GuestFault when the header is not valid."""
    if len(data) > max_bytes:
        raise LimitExceeded("response_bytes", f"the guest's response of {len(data)} bytes is over the limit of {max_bytes}")
    head, newline, body = data.partition(b"\n")
    if not newline:
        raise GuestFault("the guest's response has no valid header line")
    known = _KNOWN_HEADS.get(head)
    if known is not None and not (body and known[0] in _NO_BODY):
        return GuestResponse(known[0], known[1], [], body)
    simple = _SIMPLE_HEAD.fullmatch(head)
    if simple is not None:
        status = int(simple[1])
        content_type = simple[2].decode()
        if 200 <= status <= 599 and content_type in GUEST_CONTENT_TYPES:
            _KNOWN_HEADS[head] = (status, content_type)
            if not (body and status in _NO_BODY):
                return GuestResponse(status, content_type, [], body)
    try:
        meta = json.loads(head, object_pairs_hook=_each_key_once)
    except (ValueError, RecursionError):
        raise GuestFault("the guest's response has no valid header line") from None
    headers = _fields(meta)
    if headers is None:
        raise GuestFault(f"the guest's response header is not valid: {head[:200]!r}")
    status, content_type = meta["status"], meta["content_type"]
    if not 200 <= status <= 599 or (body and status in _NO_BODY) or content_type not in GUEST_CONTENT_TYPES:
        raise GuestFault(f"the guest's response header is not valid: {head[:200]!r}")
    return GuestResponse(status, content_type, headers, body)


def _each_key_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of the header line, refused (ValueError) when a key is repeated: the guest
    refuses a repeated key in a request, and the host refuses one in a response."""
    meta = dict(pairs)
    if len(meta) != len(pairs):
        raise ValueError("a key given twice")
    return meta


def _fields(meta: Any) -> list[tuple[str, str]] | None:
    """The headers of a decoded header line, or None when a key is unknown, missing or of the
    wrong type, or a header is not one a guest may send."""
    if type(meta) is not dict:
        return None
    keys = meta.keys()
    if keys != _RESPONSE_KEYS:
        return None
    if type(meta["status"]) is not int or type(meta["content_type"]) is not str:
        return None
    pairs = meta["headers"]
    if type(pairs) is not list:
        return None
    headers = []
    for pair in pairs:
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str or type(pair[1]) is not str:
            return None
        headers.append((pair[0].lower(), pair[1]))
    names = [name for name, _ in headers]
    if len(set(names)) != len(names):
        return None
    for name, value in headers:
        pattern = GUEST_HEADERS.get(name)
        if pattern is None or pattern.fullmatch(value) is None:
            return None
    return headers
