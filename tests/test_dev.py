"""scripts/dev: an edit saved in the guest's sources is live in the running service once it has
built, and a broken edit prints the compiler's error while the guest before it keeps serving.
On a copy of the guest (GUEST_SRC), with the build's dependencies copied from guest/target when
there is one, so that each edit rebuilds only the guest itself."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service import EmbeddedMariaDB
from service._embedded import free_port

from .conftest import ROOT, Db, make_database, url_of

MESSAGE = "must be a whole number written without sign, spaces or leading zeros"
BUILD_SECONDS = 300  # a release build of the guest with LTO: about 30 s here, more on a busy machine

pytestmark = pytest.mark.skipif(shutil.which("wasm-opt") is None, reason="needs the guest toolchain (binaryen)")


def copy_guest(tmp_path: Path) -> Path:
    guest = tmp_path / "guest"
    shutil.copytree(ROOT / "guest", guest, ignore=shutil.ignore_patterns("target"))
    for part in ("release", "wasm32-unknown-unknown/release"):
        for folder in ("build", "deps", ".fingerprint"):
            built = ROOT / "guest" / "target" / part / folder
            if built.is_dir():
                shutil.copytree(built, guest / "target" / part / folder, symlinks=True)
    shutil.copytree(ROOT / "service" / "guest", tmp_path / "service" / "guest")  # built from these sources
    return guest


def wait_for(what: str, check: Callable[[], bool], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds:g} s; scripts/dev said:\n{log.read_text()}")
        time.sleep(0.3)


def message_of(client: httpx.Client) -> str:
    try:
        answer = client.get("/delete_order", params={"id": "abc"})
    except httpx.TransportError:
        return ""
    return str(answer.json()["error"]["message"]) if answer.status_code == 400 else ""


@contextlib.contextmanager
def running_dev(guest: Path, db: Db, tmp_path: Path) -> Iterator[tuple[httpx.Client, Path, subprocess.Popen[bytes]]]:
    """scripts/dev on the guest folder `guest` against `db`: (a client of it, its log, it)."""
    port = free_port()
    log = tmp_path / "dev.log"
    env = {**os.environ, "GUEST_SRC": str(guest), "DATABASE_URL": url_of(db), "PYTHON": sys.executable}
    with open(log, "wb") as out:
        command = [str(ROOT / "scripts" / "dev"), "--port", str(port)]
        dev = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    try:
        yield client, log, dev
    finally:
        client.close()
        dev.terminate()
        try:
            dev.wait(30)
        except subprocess.TimeoutExpired:
            dev.kill()
            dev.wait()


def test_an_edit_is_live_within_a_build_and_a_broken_one_keeps_the_guest(mariadb: EmbeddedMariaDB, tmp_path: Path) -> None:
    guest = copy_guest(tmp_path)
    rule = guest / "src" / "legacy.rs"
    assert MESSAGE in rule.read_text()
    db = make_database(mariadb, "orders_dev_loop")
    with running_dev(guest, db, tmp_path) as (client, log, dev):
        wait_for("serving the copied guest", lambda: message_of(client).endswith(MESSAGE), log, 60)
        assert "building" not in log.read_text()  # the copied module was current: no build at start

        saved = time.monotonic()
        rule.write_text(rule.read_text().replace(MESSAGE, "must be plain digits, edited in scripts/dev"))
        wait_for("the edited rule answering", lambda: message_of(client).endswith("edited in scripts/dev"), log, BUILD_SECONDS)
        took = time.monotonic() - saved
        assert (tmp_path / "service" / "guest" / "orders.wasm.names").read_text().count("\n") > 100
        assert "SIGHUP: guest module reloaded" in log.read_text()

        text = rule.read_text()
        rule.write_text(text.replace("pub fn delete_order", 'fn broken() -> u32 { "not a number" }\n\npub fn delete_order', 1))
        wait_for("the compiler's error", lambda: "the build failed" in log.read_text(), log, BUILD_SECONDS)
        said = log.read_text()
        assert "error[E0308]: mismatched types" in said and "legacy.rs" in said
        assert message_of(client).endswith("edited in scripts/dev")  # the last good guest keeps serving
        assert dev.poll() is None
        print(f"an edit was live {took:.1f} s after it was saved")


def copy_assemblyscript_guest(tmp_path: Path) -> Path:
    """guest-as/ copied beside the Rust guest's scripts its build uses, the compiler the
    repository's own (node_modules/, linked, as `npm ci` installs it from the lock)."""
    guest = tmp_path / "guest-as"
    shutil.copytree(ROOT / "guest-as", guest, ignore=shutil.ignore_patterns("node_modules", "build"))
    if (ROOT / "guest-as" / "node_modules").is_dir():
        (guest / "node_modules").symlink_to(ROOT / "guest-as" / "node_modules")
    (tmp_path / "guest").mkdir()
    for script in ("source_hash.py", "wasm_names.py"):
        shutil.copy(ROOT / "guest" / script, tmp_path / "guest" / script)
    shutil.copytree(ROOT / "service" / "guest", tmp_path / "service" / "guest")
    return guest


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js for the AssemblyScript compiler")
def test_an_edit_of_the_assemblyscript_guest_is_live_within_a_build(mariadb: EmbeddedMariaDB, tmp_path: Path) -> None:
    guest = copy_assemblyscript_guest(tmp_path)
    rule = guest / "assembly" / "legacy.ts"
    assert MESSAGE in rule.read_text()
    db = make_database(mariadb, "orders_dev_loop_as")
    with running_dev(guest, db, tmp_path) as (client, log, dev):
        wait_for("serving the copied guest", lambda: message_of(client).endswith(MESSAGE), log, 60)
        said = log.read_text()
        assert "building" not in said and "orders-as.wasm" in said  # current at start: no build

        saved = time.monotonic()
        rule.write_text(rule.read_text().replace(MESSAGE, "must be plain digits, edited in AssemblyScript"))
        wait_for("the edited rule answering", lambda: message_of(client).endswith("edited in AssemblyScript"), log, 120)
        took = time.monotonic() - saved
        assert "SIGHUP: guest module reloaded" in log.read_text()

        rule.write_text(rule.read_text().replace("export function", "export function broken( {\nexport function", 1))
        wait_for("the compiler's error", lambda: "the build failed" in log.read_text(), log, 120)
        assert "legacy.ts" in log.read_text()
        assert message_of(client).endswith("edited in AssemblyScript")  # the last good guest keeps serving
        print(f"an edit of the AssemblyScript guest was live {took:.1f} s after it was saved")
