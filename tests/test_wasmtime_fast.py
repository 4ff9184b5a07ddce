"""The fast paths into wasmtime-py's internals hold on the installed wasmtime, which is one the
project tested them on; a release that changes those internals fails here, not silently."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import importlib.metadata
import re
import threading
from pathlib import Path

from service import Guest, load_engine
from service._abi import encode_request
from service._guest import DEFAULT_MODULE
from service._wasmtime_engine import epoch_ticker_threads
from service._wasmtime_fast import TESTED_VERSIONS, fallbacks

ROOT = Path(__file__).resolve().parent.parent


def test_the_installed_wasmtime_is_a_tested_version_and_pyproject_allows_only_those() -> None:
    major = int(importlib.metadata.version("wasmtime").split(".")[0])
    assert major in TESTED_VERSIONS
    pin = re.search(r'"wasmtime>=(\d+)(?:\.\d+)*,<(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert pin is not None, "pyproject.toml must bound wasmtime to the tested versions"
    assert range(int(pin[1]), int(pin[2])) == TESTED_VERSIONS


async def _no_database(operation: str, payload: bytes) -> bytes:
    raise AssertionError("echo does not reach the database")


def test_calls_into_and_out_of_the_guest_take_the_fast_paths() -> None:
    guest = Guest.load(load_engine("wasmtime"), DEFAULT_MODULE, pool_max=1)
    lines: list[str] = []
    request = encode_request("echo", {}, {}, "text/plain; charset=utf-8", False) + b"ping"
    answer = asyncio.run(guest.invoke(request, _no_database, lambda level, message: lines.append(message)))
    assert (answer.status, answer.body) == (200, b"ping")
    instance = guest.idle_instances()[0]
    for name in ("handle", "resume", "alloc", "dealloc", "abi_version", "inbox"):
        assert instance.raw.export(name).__qualname__.startswith("unchecked_export."), name
    assert instance.raw.memory_size.__qualname__ == "unchecked_memory.<locals>.size"
    # The same answers as wasmtime-py's public accessors.
    raw = instance.raw
    assert raw.memory_size() == raw._memory.data_len(raw._store) > 0
    assert raw._base() == ctypes.addressof(raw._memory.data_ptr(raw._store).contents)
    assert raw._set_epoch_deadline.__qualname__ == "unchecked_epoch_deadline.<locals>.set_epoch_deadline"
    assert fallbacks == {}, f"a fast path fell back to wasmtime-py's public path: {fallbacks}"
    guest.retire()


def test_engines_share_one_epoch_thread_for_the_life_of_the_process() -> None:
    load_engine("wasmtime")
    gc.collect()
    threads = threading.active_count()
    for _ in range(10):
        engine = load_engine("wasmtime")
        engine.compile(b"\0asm\x01\0\0\0")
        del engine
        gc.collect()
    assert threading.active_count() == threads
    assert len(epoch_ticker_threads()) == 1
    closed = load_engine("wasmtime")
    closed.close()
    assert len(epoch_ticker_threads()) == 1 and threading.active_count() == threads
