"""SIGHUP swaps in a new guest module without dropping requests; a bad module is refused."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import httpx

from service._guest import DEFAULT_MODULE

from .conftest import Db, Service, url_of
from .wat_guests import RESPOND, build, wat_guest


def wait_until(check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sighup_reloads_the_guest_without_dropping_requests(guest_db: Db, engine: str, tmp_path: Path) -> None:
    module = tmp_path / "guest.wasm"
    shutil.copy(DEFAULT_MODULE, module)
    svc = Service(
        {"GUEST_MODULE": str(module), "WASM_ENGINE": engine, "DATABASE_URL": url_of(guest_db)}, tmp_path / "service.log"
    )
    answers: list[tuple[int, bytes]] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with httpx.Client(base_url=svc.base, timeout=30) as client:
            while not stop.is_set():
                response = client.post("/echo", content=b"ping", headers={"content-type": "text/plain"})
                answers.append((response.status_code, response.content))

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        wait_until(lambda: len(answers) > 20)
        # The replacement answers every request with {"status":true}, so the switch is visible.
        module.write_bytes(build(wat_guest(RESPOND), tmp_path))
        svc.process.send_signal(signal.SIGHUP)
        wait_until(lambda: answers[-1][1] == b'{"status":true}')
        assert "guest module reloaded" in svc.log()

        before = len(answers)
        module.write_bytes(b"\0asm broken")
        svc.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "new guest module was refused" in svc.log())
        wait_until(lambda: len(answers) > before + 20)
        assert answers[-1] == (200, b'{"status":true}')  # the loaded module keeps serving
    finally:
        stop.set()
        asker.join(30)
        svc.stop()
    assert {status for status, _ in answers} == {200}, "a request failed during a reload"
    assert {body for _, body in answers} == {b"ping", b'{"status":true}'}


def test_a_module_of_another_abi_is_refused_on_reload(guest_db: Db, engine: str, tmp_path: Path) -> None:
    module = tmp_path / "guest.wasm"
    shutil.copy(DEFAULT_MODULE, module)
    svc = Service(
        {"GUEST_MODULE": str(module), "WASM_ENGINE": engine, "DATABASE_URL": url_of(guest_db)}, tmp_path / "service.log"
    )
    try:
        module.write_bytes(build(wat_guest(RESPOND, abi=7), tmp_path))
        svc.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "speaks guest ABI version 7" in svc.log())
        assert svc.client.post("/echo", content=b"still the old one").content == b"still the old one"
    finally:
        svc.stop()
