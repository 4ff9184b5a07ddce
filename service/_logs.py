"""Logging: one access line per request, and the format of every line (text or JSON). What a
client wrote is escaped by `_printable` so that it cannot end or forge a line."""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from typing import Any

from starlette.types import Scope

from ._exchange import Exchange
from ._printable import printable
from ._request_ids import request_id_var

access_log = logging.getLogger("service.access")

#: Set in a request whose answer the service gave up sending (its client did not take it within
#: CLIENT_TIMEOUT): the service has said so in a warning, and the connection is closed on purpose.
answer_given_up: ContextVar[bool] = ContextVar("answer_given_up", default=False)
_INCOMPLETE = "ASGI callable returned without completing response"


class _GivenUpAnswers(logging.Filter):
    """Drops the server's error for an unfinished answer when the service gave that answer up
    itself (uvicorn logs it in the request's own task, so the request's context is at hand); an
    unfinished answer for any other reason is still an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (answer_given_up.get() and isinstance(record.msg, str) and record.msg.startswith(_INCOMPLETE))


class AccessLog:
    """Writes one line per request (an observer of `Exchanges`), as JSON with `json_lines`.

    The line is written straight to the handler `configure_logging` installed, in the format
    its formatter would give it, while that handler is the only one on the line's way: a
    LogRecord made and dispatched per request cost about 20 us, most of a line's cost. Logging
    configured any other way gets the line through `logging` as any other.
    """

    def __init__(self, json_lines: bool) -> None:
        self.json_lines = json_lines

    def __call__(self, scope: Scope, exchange: Exchange) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        message = self.message(scope, exchange)
        handler = _direct_handler()
        if handler is None:
            access_log.info("%s", message)
            return
        now = time.time()
        as_json = isinstance(handler.formatter, JsonFormatter)
        if as_json != self.json_lines:  # a line of the other format: logging turns it into this one
            access_log.info("%s", message)
            return
        line = direct_line(message, now, int((now - int(now)) * 1000), as_json)
        try:
            with handler.lock:  # type: ignore[union-attr]  # StreamHandler always has one
                handler.stream.write(line + handler.terminator)
                handler.stream.flush()
        except Exception:  # as logging does: a broken stream is reported, not raised
            access_log.info("%s", message)

    def message(self, scope: Scope, exchange: Exchange) -> str:
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
            return json.dumps(record)
        return "%s %s %d %.3fms guest=%sms db=%sms request_id=%s" % (  # noqa: UP031 (the access line's format)
            scope["method"],
            printable(scope["path"]),
            exchange.status,
            exchange.seconds * 1000,
            "-" if guest_ms is None else guest_ms,
            "-" if db_ms is None else db_ms,
            exchange.request_id,
        )


#: The handler configure_logging installed, and the formatter it gave it.
_installed: logging.StreamHandler[Any] | None = None
_installed_formatter: logging.Formatter | None = None
_TIME = logging.Formatter()
_second: tuple[int, Any] = (-1, None)
_second_text = ""


def _direct_handler() -> logging.StreamHandler[Any] | None:
    """configure_logging's handler, with its own formatter, when an access line would reach it
    and nothing else: no logger from `service.access` up to the root has a handler or a filter
    of its own, all propagate, and the root has that one handler alone."""
    handler = _installed
    if handler is None or handler.formatter is not _installed_formatter or handler.filters or handler.level > logging.INFO:
        return None
    logger: logging.Logger | None = access_log
    root = logging.root
    while logger is not None and logger is not root:
        if logger.handlers or logger.filters or logger.disabled or not logger.propagate:
            return None
        logger = logger.parent
    if root.handlers != [handler] or root.filters:
        return None
    return handler


def direct_line(message: str, created: float, msecs: int, json_lines: bool) -> str:
    """An access line as configure_logging's formatter gives it for a record made at `created`."""
    global _second, _second_text
    second = (int(created), _TIME.converter)  # Formatter.converter may be set meanwhile
    if second != _second:
        _second_text = time.strftime(_TIME.default_time_format, _TIME.converter(created))
        _second = second
    stamp = _TIME.default_msec_format % (_second_text, msecs)  # type: ignore[operator]
    if json_lines:
        return message[:-1] + f', "time": "{stamp}", "level": "INFO", "logger": "service.access"}}'
    return f"{stamp} INFO service.access: {message}"


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
    global _installed, _installed_formatter
    handler: logging.StreamHandler[Any] = logging.StreamHandler()
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _installed, _installed_formatter = handler, handler.formatter


def quiet_given_up_answers() -> None:
    """Puts `_GivenUpAnswers` on uvicorn's error logger, once. create_app does, so every way the
    service runs gets it, an app embedded with logging of its own too."""
    server = logging.getLogger("uvicorn.error")
    server.filters[:] = [f for f in server.filters if not isinstance(f, _GivenUpAnswers)] + [_GivenUpAnswers()]
