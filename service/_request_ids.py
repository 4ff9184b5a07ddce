"""Request ids: X-Request-ID taken from the client (when short and printable) or made, returned
on every answer, and known to every log line written while the request runs."""

from __future__ import annotations

import os
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._exchange import current_exchange

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


class RequestIds:
    """Gives every HTTP request an id and adds it to the answer, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                if len(given) <= 128 and given.isprintable():
                    request_id = given
                break
        request_id = request_id or os.urandom(8).hex()
        current_exchange().request_id = request_id
        token = request_id_var.set(request_id)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
