"""Request ids: X-Request-ID taken from the client (when short and printable) or made, returned
on every answer (`_exchange.HostLayer`), and known to every log line written while the request
runs (`request_id_var`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextvars import ContextVar

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

#: The longest id a client may give; a longer one, or one with a character that is not
#: printable, is replaced by one the service makes.
MAX_GIVEN_ID_CHARS = 128


def request_id_of(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request's id: its X-Request-ID when not empty, short and printable, else 16 random
    hex digits."""
    for name, value in headers:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if given and len(given) <= MAX_GIVEN_ID_CHARS and given.isprintable():
                return given
            break
    return os.urandom(8).hex()
