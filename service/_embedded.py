"""A private MariaDB server for `python -m service` without DATABASE_URL, and for the tests.

It runs from Debian's (or any) MariaDB binaries with its own data directory, port and socket,
as a child process that stops with its owner.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymysql

from ._errors import EmbeddedDatabaseError
from ._settings import DatabaseURL

_SBIN = ["/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"]

HOW_TO_GET_A_DATABASE = """\
No DATABASE_URL is set and no MariaDB server is installed to start a private one. Either:
  - install MariaDB (Debian/Ubuntu: sudo apt-get install mariadb-server) and run this again;
  - point the service at a database: DATABASE_URL=mysql://user:password@host:3306/orders;
  - or run everything in containers: docker compose up"""


def find_binaries() -> tuple[str, str] | None:
    """(server, install-db) paths, or None when MariaDB is not installed.

    Looked for in MARIADB_BIN_PATH when set, else in PATH and the usual sbin directories.
    """
    path = os.environ.get("MARIADB_BIN_PATH") or os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    server = shutil.which("mariadbd", path=path) or shutil.which("mysqld", path=path)
    install = shutil.which("mariadb-install-db", path=path) or shutil.which("mysql_install_db", path=path)
    return (server, install) if server and install else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: ask Linux to send SIGTERM when the service dies, even by SIGKILL.

    Linux ties this to the thread that started the server: start it from a thread that lives
    as long as the server should (the main thread, in the service).
    """
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedMariaDB:
    """A MariaDB server in `datadir`, listening on 127.0.0.1 only, root without a password."""

    def __init__(self, datadir: Path, *, database: str = "orders", port: int | None = None) -> None:
        self.datadir = datadir.resolve()
        self.database = database
        self.port = port or free_port()
        self._rundir = Path(tempfile.mkdtemp(prefix="orders-mariadb-"))  # short: socket paths are limited
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> DatabaseURL:
        return DatabaseURL(host="127.0.0.1", port=self.port, user="root", password="", database=self.database)

    def start(self, timeout: float = 60.0) -> DatabaseURL:
        """Initialises the data directory if new, starts the server, creates the database.

        Raises EmbeddedDatabaseError when MariaDB is not installed or does not come up.
        """
        binaries = find_binaries()
        if binaries is None:
            raise EmbeddedDatabaseError(HOW_TO_GET_A_DATABASE)
        server, install = binaries
        as_root = ["--user=root"] if os.geteuid() == 0 else []
        log_file = self.datadir.parent / f"{self.datadir.name}.log"
        if not (self.datadir / "mysql").is_dir():
            self.datadir.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                [
                    install,
                    "--no-defaults",
                    f"--datadir={self.datadir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    # A private tmpdir: servers set up at once must not share temporary tables.
                    f"--tmpdir={self._rundir}",
                    *as_root,
                ],
                capture_output=True,
            )
            if done.returncode != 0:
                shutil.rmtree(self.datadir / "mysql", ignore_errors=True)
                raise EmbeddedDatabaseError(f"mariadb-install-db failed:\n{done.stderr.decode(errors='replace')[-2000:]}")
        (self._rundir / "no-files").mkdir(mode=0o700, exist_ok=True)
        self._process = subprocess.Popen(
            [
                server,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self._rundir / 'mysqld.sock'}",
                f"--pid-file={self._rundir / 'mysqld.pid'}",
                f"--tmpdir={self._rundir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--log-error={log_file}",
                "--skip-name-resolve",
                # No file reads or writes through SQL (LOAD_FILE, INTO OUTFILE, LOAD DATA) for
                # anyone, should a user ever get the FILE privilege: the server runs as this user.
                f"--secure-file-priv={self._rundir / 'no-files'}",
                "--local-infile=0",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=500",
                *as_root,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
                raise EmbeddedDatabaseError(f"MariaDB exited with code {self._process.returncode} while starting:\n{tail}")
            try:
                conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="", connect_timeout=2)
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedDatabaseError(
                        f"MariaDB did not accept connections within {timeout:.0f} s; see {log_file}"
                    ) from None
                time.sleep(0.1)
                continue
            with conn, conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
                # mariadb-install-db makes anonymous users, which anyone could log in as.
                cur.execute("SELECT User, Host FROM mysql.user WHERE User = ''")
                for user, host in cur.fetchall():
                    cur.execute("DROP USER %s@%s", (user, host))
            return self.url

    def kill(self) -> None:
        """Stops the server abruptly, as a crash would (for fault tests)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """Shuts the server down cleanly (SIGTERM), killing it if it does not stop in time."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        shutil.rmtree(self._rundir, ignore_errors=True)
        self._rundir.mkdir(parents=True, exist_ok=True)
