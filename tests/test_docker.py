"""docker-compose.yml and the Dockerfile, proved as far as a machine without a Docker engine can.

`docker-compose config` (Debian's docker-compose) validates the compose file; the image's own
command and healthcheck run here against an installed wheel, the way the container runs them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from service import DatabaseURL
from service._embedded import free_port

from .conftest import ROOT, Db, EmbeddedMariaDB, make_database, url_of

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    done = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return dict(yaml.safe_load(done.stdout))


def test_compose_file_is_valid_and_has_the_demo_shape() -> None:
    config = compose()
    db, server = config["services"]["db"], config["services"]["server"]
    assert db["image"].startswith("mariadb:")
    assert db["healthcheck"]["test"][:2] == ["CMD", "healthcheck.sh"]
    volume = db["volumes"][0].split(":")
    assert volume[0] in config["volumes"] and volume[1] == "/var/lib/mysql"
    assert server["build"]["context"] == str(ROOT)
    assert server["build"]["args"] == {"PYTHON_VERSION": "3.10"}
    assert compose({"PYTHON_VERSION": "3.12"})["services"]["server"]["build"]["args"] == {"PYTHON_VERSION": "3.12"}
    assert server["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert {"published": 8080, "target": 8080} in server["ports"]
    assert server["environment"]["ORDERS_ALLOW_RESET"] == "1"
    assert server["restart"] == db["restart"] == "unless-stopped"
    env = db["environment"]
    admin = DatabaseURL.parse(server["environment"]["DATABASE_ADMIN_URL"])
    assert (admin.host, admin.port, admin.user, admin.password, admin.database) == (
        "db",
        3306,
        env["MARIADB_USER"],
        env["MARIADB_PASSWORD"],
        env["MARIADB_DATABASE"],
    )
    # The guest's statements run as the least-privileged user that sql/grants.sql creates, which
    # the image's entrypoint runs after the schema when the database is first created.
    guest = DatabaseURL.parse(server["environment"]["DATABASE_URL"])
    grants = (ROOT / "sql" / "grants.sql").read_text()
    assert (guest.host, guest.database) == ("db", env["MARIADB_DATABASE"])
    assert f"CREATE USER IF NOT EXISTS '{guest.user}'@'%' IDENTIFIED BY '{guest.password}'" in grants
    init = sorted(v.split(":")[1] for v in db["volumes"][1:])
    assert init == ["/docker-entrypoint-initdb.d/01-schema.sql", "/docker-entrypoint-initdb.d/02-grants.sql"]
    assert [v.split(":")[0] for v in sorted(db["volumes"][1:], key=lambda v: v.split(":")[1])] == [
        str(ROOT / "sql" / "schema.sql"),
        str(ROOT / "sql" / "grants.sql"),
    ]


def test_dockerfile_builds_the_guest_and_runs_as_a_user() -> None:
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert stages[0].startswith("rust:") and stages[-1] == "python:${PYTHON_VERSION}-slim-bookworm"
    # The default image keeps wasmer (3.10); PYTHON_VERSION=3.12 gives a supported Python.
    assert re.findall(r"^ARG PYTHON_VERSION=(\S+)", DOCKERFILE, re.M) == ["3.10"]
    assert "pip install -c requirements.lock ." in DOCKERFILE and "requirements.lock" in DOCKERFILE.split("COPY", 2)[2]
    assert "rustup target add wasm32-unknown-unknown" in DOCKERFILE
    assert "scripts/setup-system --guest" in DOCKERFILE and "RUN guest/build.sh" in DOCKERFILE
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M)
    assert "HEALTHCHECK" in DOCKERFILE and "/healthz" in DOCKERFILE
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".data" in ignored and ".venv*" in ignored


def exec_form(instruction: str) -> list[str]:
    """The JSON argument list of the last CMD (or HEALTHCHECK ... CMD) in the Dockerfile."""
    joined = DOCKERFILE.replace("\\\n", " ")
    lines = [line for line in joined.splitlines() if line.startswith(instruction)]
    return list(json.loads(lines[-1][lines[-1].index("[") :]))


def test_the_image_command_serves_from_an_installed_wheel(mariadb: EmbeddedMariaDB, tmp_path: Path) -> None:
    """What the image does after `pip install .`: no checkout, only the installed package."""
    wheel_dir, site = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheel_dir), str(ROOT)], check=True)
    wheel = next(wheel_dir.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True)
    db: Db = make_database(mariadb, "orders_image")
    port = free_port()
    command = exec_form("CMD")
    assert command[:3] == ["python", "-m", "service"]
    command = [sys.executable, *command[1:]]
    command[command.index("--port") + 1] = str(port)
    env = {**os.environ, "PYTHONPATH": str(site), "DATABASE_URL": url_of(db), "ORDERS_ALLOW_RESET": "1"}
    log = open(tmp_path / "image.log", "wb")
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/healthz")
                break
            except httpx.TransportError:
                assert process.poll() is None, (tmp_path / "image.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        imported = subprocess.run(
            [sys.executable, "-c", "import service; print(service.__file__)"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert imported.stdout.startswith(str(site)), "the test must run the installed package, not the checkout"
        check = [sys.executable, *exec_form("HEALTHCHECK")[1:]]
        check[-1] = check[-1].replace("8080", str(port))
        assert subprocess.run(check, timeout=10).returncode == 0
        page = httpx.get(base + "/", headers={"accept": "text/html"})
        assert "<title>Orders" in page.text
        assert httpx.get(base + "/static/app.js").status_code == 200
        created = httpx.post(
            base + "/api/orders",
            json={"product_id": 1, "quantity": 1, "amount": 19.99, "shipping": 0, "tax": 0, "shipping_address": "from the image"},
        )
        assert created.status_code == 201
        assert db.rows("SELECT amount, shipping_address FROM orders")[0][1] == "from the image"
    finally:
        process.terminate()
        process.wait(30)
        log.close()
    assert shlex.join(command)  # keeps the command in the report if an assertion above fails
