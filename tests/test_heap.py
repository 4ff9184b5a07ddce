"""The service's long-lived heap is out of the cycle collector's way (service/_heap.py), and a
reload gives a replaced guest back to the collector: guests are held in reference cycles, so a
frozen old guest would otherwise never be freed."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import weakref
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.testclient import TestClient

from service import _heap, _lifespan, create_app
from service._engines import load_engine
from service._guest import Guest

from .conftest import Db, EmbeddedMariaDB, least_privilege, make_database
from .test_inprocess import settings_for


class Node:
    """An object in a reference cycle, freed only by the collector."""

    def __init__(self) -> None:
        self.me = self


def tracked(obj: object) -> bool:
    """Whether the collector sees `obj` (a frozen object is in none of its generations)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """Each test starts and ends with nothing frozen, whatever it did."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_settle_collects_garbage_first_then_freezes_what_lives() -> None:
    garbage, living = Node(), Node()
    gone = weakref.ref(garbage)
    del garbage
    assert gone() is not None  # a cycle: only the collector frees it
    frozen = _heap.settle()
    assert gone() is None, "settle froze garbage"
    assert frozen == gc.get_freeze_count() > 0
    assert not tracked(living)
    later = Node()
    assert tracked(later), "an object made after settle must be collected as usual"


def test_a_frozen_cycle_is_freed_only_once_loosened_and_the_heap_settles_again() -> None:
    async def main() -> None:
        old = Node()
        _heap.settle()
        gone = weakref.ref(old)
        del old
        gc.collect()
        assert gone() is not None, "frozen objects are never collected: the reason for loosen"
        first = _heap.loosen(60, None)
        pending = _heap.loosen(0.05, first)  # a second reload before the first settled
        assert first.cancelled() and not pending.cancelled()
        assert gc.get_freeze_count() == 0
        gc.collect()
        assert gone() is None
        await asyncio.sleep(0.2)
        assert gc.get_freeze_count() > 0, "the heap was not settled again"

    asyncio.run(main())


def test_a_reloaded_guest_is_freed_and_the_heap_settled_again(engine: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real guest on each engine, reloaded as SIGHUP reloads it (the new module's load is the
    real Guest.load, run in this process): the old guest is freed, and the heap frozen again."""
    loaded = load_engine(engine)
    fresh = Guest.load(loaded)

    async def load_isolated(*args: Any, **kwargs: Any) -> Guest:
        return fresh

    monkeypatch.setattr(_lifespan.Guest, "load_isolated", load_isolated)
    settings = SimpleNamespace(
        guest_module=None,
        guest_compile_timeout=1,
        guest_pool_max=1,
        limits=SimpleNamespace(request_seconds=0),
        cache_dir=None,
        guest_memory_total=1,
    )
    old = Guest.load(loaded)
    gone = weakref.ref(old)
    runtime: Any = SimpleNamespace(settings=settings, guest=old, reloading=False, reload_again=False, settle_timer=None)
    del old

    async def main() -> None:
        loop = asyncio.get_running_loop()
        _lifespan.watch_for_reload(runtime)
        try:
            _heap.settle()  # as the lifespan does once the service is up
            assert not tracked(runtime.guest)
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                await asyncio.sleep(0.02)
                if runtime.guest is fresh and not runtime.reloading:
                    break
            assert runtime.guest is fresh
            gc.collect()
            assert gone() is None, "the replaced guest is still held"
            await asyncio.sleep(1.3)  # REQUEST_TIMEOUT (0 here) + 1 s
            assert not tracked(fresh), "the heap was not settled again after the reload"
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            if runtime.settle_timer is not None:
                runtime.settle_timer.cancel()

    asyncio.run(main())


@pytest.fixture(scope="module")
def db(mariadb: EmbeddedMariaDB) -> Db:
    return make_database(mariadb, "orders_heap")


def test_the_service_settles_its_heap_once_it_is_up(db: Db, engine: str) -> None:
    """The app's lifespan (the real guest, the suite's MariaDB): once it serves, the guest and what
    was built with it are frozen, and requests still work."""
    with TestClient(create_app(settings_for(least_privilege(db), engine)), raise_server_exceptions=False) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert gc.get_freeze_count() > 1000
        assert not tracked(runtime.guest)
        assert not tracked(runtime.capability)
        answer = client.get("/orders")
        assert answer.status_code == 200, answer.text


def test_an_app_that_ends_leaves_nothing_frozen(db: Db, engine: str) -> None:
    """An app run in a process that goes on (tests, an embedding program): its guest is freed
    once it ends, as it was before anything was frozen."""
    with TestClient(create_app(settings_for(least_privilege(db), engine)), raise_server_exceptions=False) as client:
        gone = weakref.ref(client.app.state.runtime.guest)  # type: ignore[attr-defined]
        assert gc.get_freeze_count() > 0
    del client
    gc.collect()
    assert gc.get_freeze_count() == 0
    assert gone() is None, "the ended app's guest is still held"
