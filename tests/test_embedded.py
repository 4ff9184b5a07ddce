"""`python -m service` without DATABASE_URL: its own MariaDB, kept between runs, stopped with it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymysql
import pytest

from service import EmbeddedMariaDB
from service._rundir import RunDir, remove_abandoned

from .conftest import ROOT, Service

ORDER = {"order_id": 5, "product_id": 1, "quantity": 1, "amount": 19.99, "shipping": 0, "tax": 0, "shipping_address": "kept"}


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def run_embedded(data_dir: Path, log: Path) -> tuple[list[int], list[dict[str, object]]]:
    env = {"DATABASE_URL": "", "ORDERS_DATA_DIR": str(data_dir), "WASM_ENGINE": "auto"}
    svc = Service(env, log)
    try:
        servers = children(svc.process.pid)
        assert servers, "no MariaDB child process"
        if svc.client.get("/orders").json() == []:
            assert svc.client.post("/create_order", json=ORDER).json() == {"status": True}
        listed = svc.client.get("/orders").json()
        assert guest_sessions(svc) == {"orders_app"}
        assert "can do more than the guest's statements need" not in svc.log()
    finally:
        svc.stop()
    return servers, listed


def guest_sessions(svc: Service) -> set[str]:
    """The users of the service's own sessions on its private server: the pool's connections
    (the guest's statements) stay open between requests."""
    line = next(line for line in svc.log().splitlines() if "private MariaDB server ready on 127.0.0.1:" in line)
    port = int(line.split("127.0.0.1:")[1].split()[0])
    assert re.search(r" in \d+\.\d s; ", line), line  # how long the start took
    with pymysql.connect(host="127.0.0.1", port=port, user="root", password="") as conn, conn.cursor() as cur:
        cur.execute("SELECT USER FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND COMMAND <> 'Daemon'")
        return {row[0] for row in cur.fetchall()} - {"system user", "event_scheduler"}


def test_the_service_runs_its_own_mariadb(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    servers, listed = run_embedded(data_dir, tmp_path / "first.log")
    assert listed == [ORDER | {"shipping": 0.0, "tax": 0.0}]
    assert (data_dir / "mariadb" / "mysql").is_dir()
    assert not any(alive(pid) for pid in servers), "MariaDB outlived the service"

    servers, listed = run_embedded(data_dir, tmp_path / "second.log")  # the data is kept
    assert [o["shipping_address"] for o in listed] == ["kept"]
    assert not any(alive(pid) for pid in servers)


def test_a_second_service_on_the_same_data_says_so_at_once(tmp_path: Path) -> None:
    """A second start on a data directory a running service holds stops at once, naming the
    other process and ORDERS_DATA_DIR, with no MariaDB log; the first keeps serving. Neither
    start nor stop leaves a temporary directory behind."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {"DATABASE_URL": "", "ORDERS_DATA_DIR": str(tmp_path / "data"), "TMPDIR": str(tmp)}
    first = Service(env, tmp_path / "first.log")
    try:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "service", "--port", "0"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert time.monotonic() - started < 10
        assert done.returncode == 1
        assert "in use by another running service" in done.stderr
        assert f"pid {first.process.pid} (" in done.stderr and "-m service" in done.stderr
        assert "ORDERS_DATA_DIR" in done.stderr
        assert "[ERROR]" not in done.stderr and "[Note]" not in done.stderr and "aria control file" not in done.stderr.lower()
        assert first.client.get("/api/orders/1").status_code == 404  # the first one is unharmed
    finally:
        first.stop()
    assert list(tmp.iterdir()) == []


def test_when_mariadb_itself_fails_its_own_words_are_shown(tmp_path: Path) -> None:
    """A data directory MariaDB cannot use: the message is what MariaDB wrote during this start,
    in whole lines, and nothing of earlier starts."""
    data = tmp_path / "data" / "mariadb"
    (data / "mysql").mkdir(parents=True)  # looks set up, but has no system tables
    (data / "ibdata1").write_bytes(b"not a tablespace" * 4096)
    log = tmp_path / "data" / "mariadb.log"
    log.write_text("an earlier start's line\n")
    env = {**os.environ, "DATABASE_URL": "", "ORDERS_DATA_DIR": str(tmp_path / "data"), "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 1
    assert "MariaDB exited with code" in done.stderr and str(log) in done.stderr
    said = done.stderr.split("it said, in", 1)[1].split("\n", 1)[1]
    assert "an earlier start's line" not in said
    assert "[ERROR]" in said
    for line in said.strip().splitlines():
        assert line[:4].isdigit() or line.startswith((" ", "\t")) or "mariadbd" in line or line == "", line


def test_without_mariadb_it_says_what_to_do(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {**os.environ, "DATABASE_URL": "", "MARIADB_BIN_PATH": str(empty), "ORDERS_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    for way_out in ("apt-get install mariadb-server", "DATABASE_URL=mysql://", "docker compose up"):
        assert way_out in done.stderr


@pytest.mark.parametrize(
    "env, message", [({"WASM_ENGINE": "v8"}, "WASM_ENGINE must be one of"), ({"DATABASE_URL": "pg://x"}, "mysql://")]
)
def test_bad_configuration_stops_the_start(env: dict[str, str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service"], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert message in done.stderr


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty temporary directory, this process's and its children's."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_no_start_kill_or_stop_leaves_a_run_directory(tmp_path: Path, own_tmp: Path) -> None:
    """kill() then start(), as the load test does to MariaDB, used to orphan the first run
    directory (its stale socket and pid file)."""
    server = EmbeddedMariaDB(tmp_path / "db")
    try:
        server.start()
        assert len(list(own_tmp.iterdir())) == 1
        server.kill()
        assert list(own_tmp.iterdir()) == []
        server.start()
        assert len(list(own_tmp.iterdir())) == 1
        server.kill()
        server.stop()
        assert list(own_tmp.iterdir()) == []
        server.start()
    finally:
        server.stop()
    assert list(own_tmp.iterdir()) == []


HOLD_A_RUN_DIRECTORY = "from service._rundir import RunDir; d = RunDir(); print(d.path, flush=True); input()"


def test_a_run_directory_is_removed_once_its_owner_is_gone_and_not_before(own_tmp: Path) -> None:
    command = [sys.executable, "-c", HOLD_A_RUN_DIRECTORY]
    owner = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert owner.stdout is not None
        held = Path(owner.stdout.readline().decode().strip())
        assert held.parent == own_tmp and held.is_dir()
        mine = RunDir()  # looks for abandoned ones first
        assert held.is_dir() and remove_abandoned() == []
        unlocked = own_tmp / "orders-mariadb-older"  # an earlier version's: no lock, not ours to judge
        unlocked.mkdir()
    finally:
        owner.kill()
        owner.wait()
    assert remove_abandoned() == [held]
    assert sorted(own_tmp.iterdir()) == sorted([mine.path, unlocked])
    mine.remove()
    assert list(own_tmp.iterdir()) == [unlocked]


def test_a_killed_service_s_run_directory_is_removed_by_the_next_start(tmp_path: Path, own_tmp: Path) -> None:
    """A service killed by SIGKILL removes nothing; its MariaDB stops (SIGTERM from Linux) and
    the next start, on the same data, finds the directory's lock free and removes it."""
    crash = (
        "import os, signal; from pathlib import Path; from service import EmbeddedMariaDB\n"
        f"s = EmbeddedMariaDB(Path({str(tmp_path / 'db')!r})); s.start(); print(s.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    done = subprocess.run([sys.executable, "-c", crash], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    server_pid = int(done.stdout)
    deadline = time.monotonic() + 60
    while alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(server_pid)
    left = list(own_tmp.iterdir())
    assert len(left) == 1
    server = EmbeddedMariaDB(tmp_path / "db")
    try:
        server.start()
        assert left[0] not in own_tmp.iterdir() and len(list(own_tmp.iterdir())) == 1
    finally:
        server.stop()
    assert list(own_tmp.iterdir()) == []
