"""SIGHUP swaps in a new guest module without dropping requests; a bad module is refused."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from service import _lifespan
from service._guest import DEFAULT_MODULE

from .conftest import Db, Service, least_privilege, url_of, wait_until
from .wat_guests import RESPOND, build, wat_guest


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


LOOP = "(loop $forever (br $forever))"


def refused_on_reload(svc: Service, module: Path, wasm: bytes, reason: str) -> str:
    """Writes `wasm` as the module, sends SIGHUP, and returns the one log line refusing it."""
    module.write_bytes(wasm)
    svc.process.send_signal(signal.SIGHUP)
    wait_until(lambda: "the new guest module was refused" in svc.log())
    line = next(line for line in svc.log().splitlines() if "the new guest module was refused" in line)
    assert reason in line, line
    return line


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda wat: wat.replace("(memory (export", f"(func $start {LOOP})\n  (start $start)\n  (memory (export"), "time limit"),
        (
            lambda wat: wat.replace(
                '(func (export "abi_version") (result i32)', f'(func (export "abi_version") (result i32) {LOOP}'
            ),
            "time limit",
        ),
        (
            lambda wat: wat.replace('(func (export "inbox") (result i64)', f'(func (export "inbox") (result i64) {LOOP}'),
            "time limit",
        ),
        (
            lambda wat: wat.replace(
                '(func (export "abi_version") (result i32) (i32.const 4))',
                '(func (export "abi_version") (result i64) (i64.const 4))',
            ),
            "exports abi_version as a func of type () -> (i64)",
        ),
        (lambda wat: wat.replace('(export "resume")', '(export "resum")'), "does not export resume"),
    ],
    ids=["start function loops", "abi_version loops", "inbox loops", "abi_version of the wrong type", "no resume"],
)
def test_a_module_that_cannot_start_is_refused_and_the_running_one_serves(
    guest_db: Db, engine: str, tmp_path: Path, change: Any, reason: str
) -> None:
    module = tmp_path / "guest.wasm"
    shutil.copy(DEFAULT_MODULE, module)
    env = {"GUEST_MODULE": str(module), "WASM_ENGINE": engine, **least_privilege(guest_db), "GUEST_TIME_LIMIT_MS": "300"}
    svc = Service(env, tmp_path / "service.log")
    try:
        wasm = build(change(wat_guest(RESPOND)), tmp_path)
        started = time.monotonic()
        refused_on_reload(svc, module, wasm, reason)
        assert time.monotonic() - started < 10
        assert svc.client.post("/echo", content=b"still the old one").content == b"still the old one"
        assert svc.client.get("/healthz").status_code == 200
    finally:
        svc.stop()


def slow_to_compile(tmp_path: Path) -> bytes:
    """A valid guest with 2,000 large functions: a second or more of compiling."""
    body = "(local.get 0)" + "(i32.add (i32.const 7)) (i32.mul (i32.const 3)) (i32.xor (local.get 0))" * 200
    functions = "\n".join(f"(func $f{i} (param i32) (result i32) {body})" for i in range(2000))
    return build(wat_guest(RESPOND, extra=functions), tmp_path)


def test_compiling_a_new_module_blocks_no_request(guest_db: Db, engine: str, tmp_path: Path) -> None:
    module = tmp_path / "guest.wasm"
    shutil.copy(DEFAULT_MODULE, module)
    env = {"GUEST_MODULE": str(module), "WASM_ENGINE": engine, **least_privilege(guest_db), "GUEST_CACHE_DIR": "off"}
    svc = Service(env, tmp_path / "service.log")
    latencies: list[float] = []
    stop = threading.Event()

    def keep_asking() -> None:
        with httpx.Client(base_url=svc.base, timeout=30) as client:
            while not stop.is_set():
                started = time.monotonic()
                client.post("/echo", content=b"ping")
                latencies.append(time.monotonic() - started)
                time.sleep(0.01)

    asker = threading.Thread(target=keep_asking)
    try:
        slow = slow_to_compile(tmp_path)
        asker.start()
        wait_until(lambda: len(latencies) > 10)
        module.write_bytes(slow)
        started = time.monotonic()
        svc.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "guest module reloaded" in svc.log(), timeout=120)
        reload_seconds = time.monotonic() - started
        stop.set()
        asker.join(30)
        assert reload_seconds > 0.5  # it did take a while ...
        assert max(latencies) < 0.5, f"a request waited {max(latencies):.2f} s during a {reload_seconds:.1f} s reload"
        assert svc.client.post("/echo", content=b"x").json() == {"status": True}  # ... and the new one serves
    finally:
        stop.set()
        svc.stop()


def test_a_sighup_during_a_reload_loads_the_module_again_after_it(guest_db: Db, engine: str, tmp_path: Path) -> None:
    """A module saved again while the last one compiles (scripts/dev's rebuild on a second save)
    is the one that serves in the end: the SIGHUPs that came meanwhile make one more load."""
    module = tmp_path / "guest.wasm"
    shutil.copy(DEFAULT_MODULE, module)
    env = {"GUEST_MODULE": str(module), "WASM_ENGINE": engine, **least_privilege(guest_db), "GUEST_CACHE_DIR": "off"}
    svc = Service(env, tmp_path / "service.log")
    try:
        slow = slow_to_compile(tmp_path)  # answers {"status":true} to everything
        module.write_bytes(slow)
        svc.process.send_signal(signal.SIGHUP)
        time.sleep(0.1)  # it compiles for a second or more
        shutil.copy(DEFAULT_MODULE, module)  # the echo guest again
        svc.process.send_signal(signal.SIGHUP)
        svc.process.send_signal(signal.SIGHUP)
        wait_until(lambda: svc.log().count("guest module reloaded") == 2, timeout=120)
        assert svc.client.post("/echo", content=b"latest").content == b"latest"
        time.sleep(0.5)
        log = svc.log()
        assert log.count("will be loaded again") == 1 and log.count("guest module reloaded") == 2, log
    finally:
        svc.stop()


def descendants(pid: int) -> list[str]:
    """The command lines of a process's children and theirs (not of other services on the machine)."""
    out: list[str] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out  # gone meanwhile
    for child in children:
        try:
            out.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
        except OSError:
            continue  # gone meanwhile
        out += descendants(int(child))
    return out


def test_a_compile_past_its_time_is_stopped_and_refused(guest_db: Db, engine: str, tmp_path: Path) -> None:
    module = tmp_path / "guest.wasm"
    shutil.copy(DEFAULT_MODULE, module)
    env = {
        "GUEST_MODULE": str(module),
        "WASM_ENGINE": engine,
        **least_privilege(guest_db),
        "GUEST_CACHE_DIR": "off",
        "GUEST_COMPILE_TIMEOUT": "0.2",
    }
    svc = Service(env, tmp_path / "service.log")
    try:
        refused_on_reload(svc, module, slow_to_compile(tmp_path), "took more than 0.2 s (GUEST_COMPILE_TIMEOUT)")
        assert svc.client.post("/echo", content=b"old").content == b"old"
        time.sleep(0.5)
        assert descendants(svc.process.pid) == [], "the compiler was not stopped"  # none of this service's
    finally:
        svc.stop()


# Python 3.10 does not give a thread's name to the OS, so every thread's /proc/<pid>/task/*/comm
# reads "python". Started with this sitecustomize, the service's Python threads carry their names
# there (the first 15 bytes), so the test can tell them apart.
_NAME_THREADS = """
import ctypes, threading
_prctl = ctypes.CDLL(None).prctl
_bootstrap_inner = threading.Thread._bootstrap_inner
def _named(self):
    _prctl(15, self.name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    _bootstrap_inner(self)
threading.Thread._bootstrap_inner = _named
"""
# The event loop's default executor (uvloop's, or asyncio's): it grows by a worker when two jobs
# are in it at once, whatever a reload does, so its workers are not counted.
_EXECUTOR_WORKER = re.compile(r"(uvloop|asyncio)_\d+")


def thread_names(pid: int) -> list[str]:
    """The OS names of a process's threads, less the event loop's default-executor workers."""
    names = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return sorted(name for name in names if not _EXECUTOR_WORKER.fullmatch(name))


def test_reloads_start_no_threads_that_stay(guest_db: Db, engine: str, tmp_path: Path) -> None:
    module = tmp_path / "guest.wasm"
    shutil.copy(DEFAULT_MODULE, module)
    (tmp_path / "sitecustomize.py").write_text(_NAME_THREADS)
    python_path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {"GUEST_MODULE": str(module), "WASM_ENGINE": engine, **least_privilege(guest_db), "GUEST_CACHE_DIR": "off"}
    svc = Service({**env, "PYTHONPATH": python_path}, tmp_path / "service.log")
    modules = [build(wat_guest(RESPOND), tmp_path), DEFAULT_MODULE.read_bytes()]

    def reload(n: int) -> None:
        module.write_bytes(modules[n % 2])  # a module other than the running one: compiled afresh
        svc.process.send_signal(signal.SIGHUP)
        wait_until(lambda: svc.log().count("guest module reloaded") == n)
        assert svc.client.post("/echo", content=b"ping").status_code == 200

    try:
        reload(1)  # the first reload may start the threads every later one reuses
        before = thread_names(svc.process.pid)
        if engine == "wasmtime":  # the names are seen: the one epoch thread is there by its name
            assert before.count("wasmtime-epoch") == 1, before
        for n in range(2, 8):
            reload(n)
        after = thread_names(svc.process.pid)
        more = sorted((Counter(after) - Counter(before)).elements())
        assert more == [], f"{len(more)} threads more after 6 reloads: {more}"
    finally:
        svc.stop()


def test_a_reload_cancelled_with_a_sighup_pending_starts_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service stopping cancels a reload under way; a SIGHUP that came during it must not
    start another (it would outlive the loop, or fail loudly on the closed executor)."""
    loads: list[int] = []

    async def load_isolated(*args: Any, **kwargs: Any) -> Any:
        loads.append(1)
        await asyncio.sleep(3600)  # compiling, slowly

    monkeypatch.setattr(_lifespan.Guest, "load_isolated", load_isolated)
    settings = SimpleNamespace(
        guest_module=None, guest_compile_timeout=1, guest_pool_max=1, limits=None, cache_dir=None, guest_memory_total=1
    )
    runtime: Any = SimpleNamespace(settings=settings, guest=SimpleNamespace(engine=None), reloading=False, reload_again=False)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        _lifespan.watch_for_reload(runtime)
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.sleep(0.1)
            assert loads == [1] and runtime.reloading
            os.kill(os.getpid(), signal.SIGHUP)  # a second save while the first compiles
            await asyncio.sleep(0.1)
            assert runtime.reload_again
            # The service stops: the reload under way is cancelled.
            running = list(_lifespan._background)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            await asyncio.sleep(0.1)
            left = list(_lifespan._background)
            for task in left:  # not to leak into other tests
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
            assert loads == [1], "a reload was started by the cancelled one"
            assert left == []
        finally:
            loop.remove_signal_handler(signal.SIGHUP)

    asyncio.run(main())
