"""`python -m service` without DATABASE_URL: its own MariaDB, kept between runs, stopped with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest

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
    port = int(line.split("127.0.0.1:")[1].split(";")[0])
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
