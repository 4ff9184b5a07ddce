"""A private MariaDB server for `python -m service` without DATABASE_URL, and for the tests.

It runs from Debian's (or any) MariaDB binaries with its own data directory, port and socket,
as a child process that stops with its owner.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymysql

from ._errors import EmbeddedDatabaseError
from ._rundir import RunDir
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
        self._run: RunDir | None = None  # made by start(), removed by kill() and stop()
        self._lock: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the benchmark reads its CPU time)."""
        return None if self._process is None else self._process.pid

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
        self._hold_datadir()
        self._remove_rundir()  # a failed start's
        self._run = RunDir()
        rundir = self._run.path
        log_start = log_file.stat().st_size if log_file.exists() else 0
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
                    f"--tmpdir={rundir}",
                    *as_root,
                ],
                capture_output=True,
            )
            if done.returncode != 0:
                shutil.rmtree(self.datadir / "mysql", ignore_errors=True)
                self.stop()
                raise EmbeddedDatabaseError(f"mariadb-install-db failed:\n{done.stderr.decode(errors='replace')[-2000:]}")
        (rundir / "no-files").mkdir(mode=0o700, exist_ok=True)
        self._process = subprocess.Popen(
            [
                server,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={rundir / 'mysqld.sock'}",
                f"--pid-file={rundir / 'mysqld.pid'}",
                f"--tmpdir={rundir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--log-error={log_file}",
                "--skip-name-resolve",
                # No file reads or writes through SQL (LOAD_FILE, INTO OUTFILE, LOAD DATA) for
                # anyone, should a user ever get the FILE privilege: the server runs as this user.
                f"--secure-file-priv={rundir / 'no-files'}",
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
            # The server holds the data directory's lock and its run directory's too, until it
            # has stopped: neither is taken from it while it shuts down after its owner died.
            pass_fds=(self._run.lock,) if self._lock is None else (self._lock, self._run.lock),
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                said = _written_since(log_file, log_start)
                self.stop()
                raise EmbeddedDatabaseError(f"MariaDB exited with code {code} while starting; it said, in {log_file}:\n{said}")
            try:
                conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="", connect_timeout=2)
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    said = _written_since(log_file, log_start)
                    raise EmbeddedDatabaseError(
                        f"MariaDB did not accept connections within {timeout:.0f} s; it said, in {log_file}:\n{said}"
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
        """Stops the server abruptly, as a crash would (for fault tests); its stale socket and
        pid file go with its run directory (start() makes a new one)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._remove_rundir()

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
        self._remove_rundir()
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _remove_rundir(self) -> None:
        if self._run is not None and (self._process is None or self._process.poll() is not None):
            self._run.remove()
            self._run = None

    def _hold_datadir(self) -> None:
        """Takes the data directory's lock (a file beside it), or says at once which running
        process holds it, rather than letting a second server fight over its files."""
        if self._lock is not None:
            return
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        path = self.datadir.parent / f"{self.datadir.name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "a process that did not say which"
            os.close(fd)
            raise EmbeddedDatabaseError(
                f"the data directory {self.datadir} is in use by another running service: {holder}.\n"
                "Stop that one, or give this one its own directory: ORDERS_DATA_DIR=/some/other/dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({_command_line(os.getpid())})\n".encode())
        self._lock = fd


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:300]


def _written_since(log_file: Path, offset: int, lines: int = 40) -> str:
    """What MariaDB wrote to its log during this start, whole lines, at most the last `lines`."""
    try:
        with log_file.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(nothing)"
