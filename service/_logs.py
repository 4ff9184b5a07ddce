"""Logging: one access line per request, the format of every line (text or JSON), and escaping
what a client or the guest wrote so that it cannot end or forge a line."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.types import Scope

from ._exchange import Exchange
from ._request_ids import request_id_var

access_log = logging.getLogger("service.access")

# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators.
_UNPRINTABLE = {c: f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}


def printable(text: str) -> str:
    """`text` with every character that could end or forge a log line escaped (\\n as \\x0a)."""
    return text.translate(_UNPRINTABLE) if not text.isprintable() else text


class AccessLog:
    """Writes one line per request (an observer of `Exchanges`), as JSON with `json_lines`."""

    def __init__(self, json_lines: bool) -> None:
        self.json_lines = json_lines

    def __call__(self, scope: Scope, exchange: Exchange) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        guest_ms = None if exchange.guest_seconds is None else round(exchange.guest_seconds * 1000, 3)
        db_ms = None if exchange.db_seconds is None else round(exchange.db_seconds * 1000, 3)
        if self.json_lines:
            record: dict[str, Any] = {
                "event": "request",
                "request_id": exchange.request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": exchange.status,
                "duration_ms": round(exchange.seconds * 1000, 3),
                "guest_ms": guest_ms,
                "db_ms": db_ms,
            }
            access_log.info(json.dumps(record))
        else:
            access_log.info(
                "%s %s %d %.3fms guest=%sms db=%sms request_id=%s",
                scope["method"],
                printable(scope["path"]),
                exchange.status,
                exchange.seconds * 1000,
                "-" if guest_ms is None else guest_ms,
                "-" if db_ms is None else db_ms,
                exchange.request_id,
            )


class JsonFormatter(logging.Formatter):
    """LOG_FORMAT=json: one JSON object per line; request lines carry their own fields."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "service.access" and message.startswith("{"):
            out: dict[str, Any] = json.loads(message)
        else:
            out = {"event": "log", "message": message}
            request_id = request_id_var.get()
            if request_id != "-":
                out["request_id"] = request_id
        out.update(time=self.formatTime(record), level=record.levelname, logger=record.name)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(level: str, json_lines: bool) -> None:
    handler = logging.StreamHandler()
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
