"""`python -m service [--host H] [--port P] [--workers N]`: serve the order service.

Without DATABASE_URL it starts a private MariaDB server with its data under ORDERS_DATA_DIR
(default ./.data) and stops it on exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import uvicorn

from ._app import create_app
from ._database import prepare_guest_user
from ._embedded import EmbeddedMariaDB
from ._errors import ConfigError, DatabaseError, EmbeddedDatabaseError, GuestLoadError
from ._lifespan import guest_tables, load_guest
from ._logs import configure_logging
from ._settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description="Serve the order service.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (default 1); they share nothing but the database"
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        settings = Settings.from_environ()
    except ConfigError as e:
        print(f"service: configuration error: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format == "json")
    log = logging.getLogger("service")
    try:
        # Loaded before serving so that a wrong guest stops the start with a clear message.
        guest = load_guest(settings)
    except (ConfigError, GuestLoadError) as e:
        print(f"service: cannot start: {e}", file=sys.stderr)
        return 2
    embedded = None
    if settings.database_url is None:
        embedded = EmbeddedMariaDB(settings.data_dir / "mariadb")
        log.info("DATABASE_URL is not set: starting a private MariaDB server in %s", embedded.datadir)
        started = time.monotonic()
        try:
            admin_url = embedded.start()
            # The guest's statements run as a user that can reach only the service's tables; a
            # fresh password each start, which only this process and its workers know.
            guest_url = prepare_guest_user(admin_url, "orders_app", "127.0.0.1", secrets.token_urlsafe(24), guest_tables())
        except (EmbeddedDatabaseError, DatabaseError) as e:
            print(f"service: {e}", file=sys.stderr)
            embedded.stop()
            return 1
        settings = dataclasses.replace(settings, database_url=guest_url, database_admin_url=admin_url)
        log.info(
            "private MariaDB server ready on 127.0.0.1:%d in %.1f s; guest statements run as %s",
            embedded.port,
            time.monotonic() - started,
            guest_url.user,
        )
    # uvicorn re-raises SIGTERM once it has shut down; turning it into SystemExit lets the
    # `finally` below stop the private database rather than the process dying first.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    common = {
        "host": args.host,
        "port": args.port,
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": 30,
        # Past this many connections and requests at once, uvicorn answers 503 at once.
        "limit_concurrency": settings.max_connections,
        # No `server: uvicorn` on every answer: it tells a client nothing it needs, names the
        # software to whoever probes it, and is one more header to write per request.
        "server_header": False,
    }
    shared = None
    try:
        if args.workers == 1:
            uvicorn.run(create_app(settings, guest), **common)
        else:
            if embedded is not None:
                assert settings.database_url is not None and settings.database_admin_url is not None
                os.environ["DATABASE_URL"] = settings.database_url.unredacted()
                os.environ["DATABASE_ADMIN_URL"] = settings.database_admin_url.unredacted()
            shared = _metrics_dir()
            uvicorn.run("service._app:app_from_environ", factory=True, workers=args.workers, **common)
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
        if embedded is not None:
            log.info("stopping the private MariaDB server")
            embedded.stop()
    return 0


def _metrics_dir() -> str | None:
    """Where the workers write their metrics, so that /metrics reports them all: a fresh
    directory of this run's (returned, to remove at exit), or PROMETHEUS_MULTIPROC_DIR emptied."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        for old in Path(given).glob("*.db"):
            old.unlink()
        return None
    made = tempfile.mkdtemp(prefix="orders-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = made
    return made


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
