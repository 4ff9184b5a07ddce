"""Sending the guest's answer: the headers the host adds, and large answers in pieces."""

from __future__ import annotations

import asyncio
import logging

from starlette.types import Send

from ._abi import GuestResponse
from ._deadline import deadline
from ._http import Overloaded
from ._lifespan import Runtime
from ._logs import answer_given_up

log = logging.getLogger("service")

# Answers larger than this are sent in pieces this large, as the client takes them.
SMALL_ANSWER_BYTES = 64 * 1024


async def send_answer(runtime: Runtime, send: Send, answer: GuestResponse, engine: str) -> None:
    """Sends the guest's answer with the headers the host adds (guest/ABI.md)."""
    headers = [(name.encode(), value.encode()) for name, value in answer.headers]
    if answer.content_type:
        headers.append((b"content-type", answer.content_type.encode()))
    if answer.status == 503 and not any(name == b"retry-after" for name, _ in headers):
        headers.append((b"retry-after", b"1"))
    timing = (
        f'wasm;dur={answer.guest_seconds * 1000:.3f};desc="guest on {engine}", '
        f'db;dur={answer.db_seconds * 1000:.3f};desc="database"'
    )
    headers += [(b"x-wasm-engine", engine.encode()), (b"server-timing", timing.encode())]
    if len(answer.body) <= SMALL_ANSWER_BYTES:
        await send_whole(send, answer.status, headers, answer.body)
    else:
        await _send_large(runtime, send, answer.status, headers, answer.body)


async def send_whole(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Sends an answer in one piece."""
    if status >= 200 and status not in (204, 304):
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_large(runtime: Runtime, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Sends a large answer in pieces, as the client takes them, within CLIENT_TIMEOUT; answers
    held for clients that do not read are bounded in all (MAX_UNSENT_MB)."""
    settings = runtime.settings
    if runtime.unsent_bytes + len(body) > settings.max_unsent_bytes:
        raise Overloaded(f"{runtime.unsent_bytes} bytes of answers are waiting for their clients (MAX_UNSENT_MB)")
    runtime.unsent_bytes += len(body)
    try:
        headers.append((b"content-length", str(len(body)).encode()))
        with deadline(settings.client_timeout):
            await send({"type": "http.response.start", "status": status, "headers": headers})
            view = memoryview(body)
            for start in range(0, len(body), SMALL_ANSWER_BYTES):
                piece = view[start : start + SMALL_ANSWER_BYTES]
                await send({"type": "http.response.body", "body": bytes(piece), "more_body": start + len(piece) < len(body)})
    except asyncio.TimeoutError:
        # Returning with the answer unfinished makes the server close the connection (and say
        # so at ERROR, which _logs keeps out of the log for an answer given up here).
        answer_given_up.set(True)
        log.warning(
            "the client took less than its %d-byte answer within %g s (CLIENT_TIMEOUT); closing",
            len(body),
            settings.client_timeout,
        )
    finally:
        runtime.unsent_bytes -= len(body)
