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

import pytest

from service import Guest, load_engine
from service._abi import encode_request
from service._guest import DEFAULT_MODULE
from service._wasmtime_engine import epoch_ticker_threads
from service._wasmtime_fast import TESTED_VERSIONS, fallbacks

from .conftest import ENGINES

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


GROWING = """(module
  (memory (export "memory") 0 65536)
  (func (export "grow") (param $pages i32) (result i32) (memory.grow (local.get $pages)))
  (func (export "poke") (param $at i32) (param $value i32) (i32.store8 (local.get $at) (local.get $value))))"""


def test_a_guest_memory_never_moves_as_it_grows_so_its_address_is_read_once() -> None:
    import wasmtime

    from service._engine import InstanceLimits

    compiled = load_engine("wasmtime").compile(wasmtime.wat2wasm(GROWING))
    instance = compiled.instantiate({}, InstanceLimits(5.0, 4 << 30, 10))
    first = instance._address  # type: ignore[attr-defined]
    grow, poke = instance.export("grow"), instance.export("poke")
    for pages in (1, 1, 14, 48, 192, 1792, 14336):  # up to 1 GiB, one step at a time
        assert grow(pages) != -1
        # Before anything is read through it (were it stale, that read could crash the process).
        assert ctypes.addressof(instance._memory.data_ptr(instance._store).contents) == first  # type: ignore[attr-defined]
        # What the guest writes at its memory's end is what the host reads there, through the
        # address it read when the memory had no page at all.
        end = instance.memory_size() - 1
        poke(end, pages % 251)
        assert instance.read(end, 1) == bytes([pages % 251])
        instance.write(end, b"\x07")
        assert instance.read(end, 1) == b"\x07"
    instance.close()
    for use in (lambda: instance.read(0, 1), lambda: instance.write(0, b"x")):
        try:
            use()
        except ValueError:
            continue
        raise AssertionError("a closed instance's memory was used")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_view_that_failed_to_follow_a_growth_is_made_again_at_the_next_access(engine: str) -> None:
    """A memory's kept view that could not be made again when the memory grew (MemoryError,
    an interrupt) must not leave reads inside the new size cut short, or writes refused."""
    import wasmtime

    from service._engine import InstanceLimits

    instance = load_engine(engine).compile(bytes(wasmtime.wat2wasm(GROWING))).instantiate({}, InstanceLimits(5.0, 1 << 30, 10))
    grow, poke = instance.export("grow"), instance.export("poke")
    assert grow(1) != -1
    assert instance.read(0, 1) == b"\0"  # a view made at one page
    assert grow(1) != -1
    poke(65536 + 99, 5)
    made = type(instance)._sized

    def failing(self: object, size: int) -> None:
        raise MemoryError("made to fail")

    type(instance)._sized = failing  # type: ignore[method-assign]
    try:
        with pytest.raises(MemoryError):
            instance.read(65536, 100)
    finally:
        type(instance)._sized = made  # type: ignore[method-assign]
    assert instance.read(65536, 100) == bytes(99) + b"\x05"
    instance.write(65536, b"x" * 10)
    assert instance.read(65536, 11) == b"x" * 10 + b"\0"
    instance.close()


TRAPPING = """(module
  (import "host" "odd_raises" (func $odd_raises (param i32)))
  (memory (export "memory") 1)
  (func (export "halve_or_trap") (param $x i32) (result i32)
    (if (i32.and (local.get $x) (i32.const 1)) (then unreachable))
    (i32.shr_u (local.get $x) (i32.const 1)))
  (func (export "through_the_host") (param $x i32) (result i32)
    (call $odd_raises (local.get $x))
    (local.get $x)))"""


def test_an_export_called_again_after_a_trap_answers_for_its_own_call() -> None:
    # One argument array and one trap slot serve every call of an export: neither what a call
    # was given nor the trap it left (its own, or a host function's exception) may reach the next.
    import wasmtime

    from service._engine import HostFunction, InstanceLimits
    from service._errors import GuestFault

    class Odd(Exception):
        pass

    def odd_raises(x: int) -> None:
        if x % 2:
            raise Odd(x)

    host = {"odd_raises": HostFunction(("i32",), (), odd_raises)}
    instance = load_engine("wasmtime").compile(wasmtime.wat2wasm(TRAPPING)).instantiate(host, InstanceLimits(5.0, 1 << 20, 10))
    halve, through = instance.export("halve_or_trap"), instance.export("through_the_host")
    assert halve.__qualname__.startswith("unchecked_export.")
    for x in (8, 3, 10, 5, 7, 0, 4096, 9, 12):
        if x % 2:
            with pytest.raises(GuestFault, match="unreachable"):
                halve(x)
            with pytest.raises(Odd):
                through(x)
        else:
            assert halve(x) == x // 2
            assert through(x) == x
    instance.close()
