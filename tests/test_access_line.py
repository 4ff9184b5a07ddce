"""The access line written straight to the service's log handler is, byte for byte, the line
logging would have written for it; logging configured any other way gets it through logging."""

from __future__ import annotations

import contextvars
import io
import json
import logging
from collections.abc import Iterator

import pytest

from service import DatabaseURL, _logs
from service._app import create_app
from service._exchange import Exchange
from service._logs import AccessLog, configure_logging, direct_line
from service._settings import Settings

SCOPE = {"method": "POST", "path": "/api/orders/7\n2026-01-01 INFO forged"}


def exchange() -> Exchange:
    done = Exchange()
    done.request_id = "0123456789abcdef"
    done.status, done.seconds, done.guest_seconds, done.db_seconds = 201, 0.0123456, 0.0000512, None
    return done


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """A buffer for the service's log; the test's own logging is put back after."""
    root, service = logging.getLogger(), logging.getLogger("service")
    handlers, level = root.handlers[:], root.level
    service_handlers, propagate = service.handlers[:], service.propagate
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)
    service.handlers[:], service.propagate = service_handlers, propagate
    monkeypatch.setattr(_logs, "_installed", None)


def configure(stream: io.StringIO, level: str, json_lines: bool) -> logging.Handler:
    """The service's logging, configured as at start, writing to `stream`."""
    configure_logging(level, json_lines)
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)  # type: ignore[attr-defined]
    return handler


@pytest.mark.parametrize("json_lines", [False, True])
def test_the_direct_line_is_the_formatted_record(stream: io.StringIO, json_lines: bool) -> None:
    configure(stream, "INFO", json_lines)
    handler = logging.getLogger().handlers[0]
    message = AccessLog(json_lines).message(SCOPE, exchange())
    for _ in range(3):  # across seconds too: the second's text is kept between lines
        record = logging.getLogger("service.access").makeRecord(
            "service.access", logging.INFO, __file__, 1, "%s", (message,), None
        )
        assert direct_line(message, record.created, int(record.msecs), json_lines) == handler.format(record)
        record.created += 1.0
        assert direct_line(message, record.created, int(record.msecs), json_lines) == handler.format(record)


@pytest.mark.parametrize("json_lines", [False, True])
def test_an_access_line_is_written_whole_and_unforgeable(stream: io.StringIO, json_lines: bool) -> None:
    configure(stream, "INFO", json_lines)
    AccessLog(json_lines)(SCOPE, exchange())
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    if json_lines:
        line = json.loads(lines[0])
        assert (line["path"], line["status"], line["logger"], line["level"]) == (SCOPE["path"], 201, "service.access", "INFO")
    else:
        said = "POST /api/orders/7\\x0a2026-01-01 INFO forged 201 12.346ms guest=0.051ms db=-ms request_id=0123456789abcdef"
        assert lines[0].endswith(" INFO service.access: " + said)


def test_other_logging_gets_the_line_through_logging(stream: io.StringIO) -> None:
    """A handler or filter added by whoever embeds the service sees every access line."""
    configure(stream, "INFO", False)
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger("service.access").addHandler(extra)
    try:
        AccessLog(False)(SCOPE, exchange())
    finally:
        logging.getLogger("service.access").removeHandler(extra)
    assert [r.getMessage() for r in seen] == [AccessLog(False).message(SCOPE, exchange())]
    assert stream.getvalue().count("service.access") == 1  # and the service's own handler once


def test_no_line_below_info(stream: io.StringIO) -> None:
    configure(stream, "WARNING", False)
    AccessLog(False)(SCOPE, exchange())
    assert stream.getvalue() == ""


def test_a_handler_on_a_logger_between_sees_every_line(stream: io.StringIO) -> None:
    """`service`, the parent of `service.access`, given a handler: it gets every line."""
    configure(stream, "INFO", False)
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger("service").addHandler(extra)
    AccessLog(False)(SCOPE, exchange())
    assert [r.getMessage() for r in seen] == [AccessLog(False).message(SCOPE, exchange())]


def test_a_logger_between_that_does_not_propagate_stops_the_line(stream: io.StringIO) -> None:
    configure(stream, "INFO", False)
    logging.getLogger("service").propagate = False
    AccessLog(False)(SCOPE, exchange())
    assert stream.getvalue() == ""


def test_a_formatter_set_on_the_handler_formats_the_line(stream: io.StringIO) -> None:
    handler = configure(stream, "INFO", False)
    handler.setFormatter(logging.Formatter("%(levelname)s|%(name)s|%(message)s"))
    AccessLog(False)(SCOPE, exchange())
    assert stream.getvalue() == "INFO|service.access|" + AccessLog(False).message(SCOPE, exchange()) + "\n"


def test_the_servers_error_for_an_unfinished_answer_is_dropped_only_for_an_answer_given_up(stream: io.StringIO) -> None:
    """uvicorn logs an ERROR when an app returns with its answer unfinished; the service does so
    on purpose when a client does not take its answer within CLIENT_TIMEOUT (and says so itself),
    so that line is dropped then, and only then."""
    configure(stream, "INFO", False)
    _logs.quiet_given_up_answers()  # as create_app does
    server = logging.getLogger("uvicorn.error")
    try:

        def request(given_up: bool) -> None:
            if given_up:
                _logs.answer_given_up.set(True)
            server.error("ASGI callable returned without completing response.")
            server.error("Exception in ASGI application")

        contextvars.copy_context().run(request, False)
        contextvars.copy_context().run(request, True)
        _logs.quiet_given_up_answers()  # put on again: one filter still
        assert len(server.filters) == 1
    finally:
        server.filters.clear()
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "ASGI callable returned without completing response.",
        "Exception in ASGI application",
        "Exception in ASGI application",
    ]


def test_an_app_embedded_with_logging_of_its_own_drops_that_error_too() -> None:
    """`create_app` puts the filter on uvicorn's error logger itself, for an application that
    embeds the service and configures logging its own way."""
    server = logging.getLogger("uvicorn.error")
    kept = server.filters[:]
    server.filters.clear()
    try:
        create_app(Settings(database_url=DatabaseURL.parse("mysql://app@127.0.0.1:1/orders")))
        assert [type(f).__name__ for f in server.filters] == ["_GivenUpAnswers"]
    finally:
        server.filters[:] = kept
