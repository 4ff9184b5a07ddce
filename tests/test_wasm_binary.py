"""The guest's binary, decoded and rewritten: `inspect`, the memory and table caps written into
the module, and the fuel meter that stops a guest on every engine (wasmer has no other way): a
counter that calls the host's clock, which raises or refuels, at the end of every slice.

Small modules are WAT; each one that runs is run on every installed engine. No database.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import functools
import random
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime

from service import GuestFault, GuestLoadError, available_engines, load_engine
from service._abi import REQUIRED_EXPORTS
from service._engine import Engine, HostFunction, Instance, InstanceLimits
from service._guest_module import DEFAULT_MODULE
from service._metering import CHECK_FUEL, CLOCK_IMPORT, FUEL_EXPORT, fuel_spent_trap, meter
from service._wasm_caps import START_EXPORT, cap_memory, cap_tables, defer_start
from service._wasm_format import PAGE, Reader, leb, read_leb
from service._wasm_inspect import inspect
from service._wasm_module import FuncType

ENGINES = available_engines()
REAL_GUEST = DEFAULT_MODULE.read_bytes()
BUDGET = 10_000_000
# Enough for a few 64 MiB fills, or some 20 ms of the tightest loop on wasmer.
RUNAWAY_BUDGET = 100_000_000
# Generous store limits: what is under test here is what the module itself declares.
STORE_LIMITS = InstanceLimits(deadline_seconds=30.0, memory_bytes=256 * 1024 * 1024, table_elements=4_000_000)
# A stopped guest stops within milliseconds; this leaves room for a slow machine.
STOPPED_WITHIN_SECONDS = 5.0


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    # A guest the meter fails to stop never returns on wasmer, and takes no signal meanwhile:
    # rather than hang the run, dump every thread's stack and exit.
    faulthandler.dump_traceback_later(120, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@functools.cache
def engine(name: str) -> Engine:
    return load_engine(name)


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def module(body: str) -> bytes:
    """A module exporting one page of memory (an Instance needs one) besides `body`."""
    return wat(f'(module (memory (export "memory") 1) {body})')


class OutOfTime(Exception):
    """What the tests' clock raises to stop a guest: it must reach the caller as it was raised."""


class Clock:
    """The host's clock, `host.__orders_clock`, for a metered module: counts its calls and notes
    the counter and the time at each. The first `refuels` calls (or, with `seconds`, those in the
    first `seconds` after its first call) set the counter to `slice` and return; the next one
    raises OutOfTime, kept as `raised`. With `refuel=False` it returns without refuelling."""

    def __init__(self, refuels: int = 0, slice: int = BUDGET, seconds: float | None = None, refuel: bool = True) -> None:
        self.refuels = refuels
        self.slice = slice
        self.seconds = seconds
        self.refuel = refuel
        self.instance: Instance | None = None  # set once instantiated: a start function runs before
        self.calls = 0
        self.counters: list[int] = []  # the counter as each call found it
        self.times: list[float] = []
        self.raised: OutOfTime | None = None

    def __call__(self) -> None:
        self.calls += 1
        self.times.append(time.monotonic())
        if self.instance is not None:
            self.counters.append(self.instance.get_global(FUEL_EXPORT))
        if self.seconds is not None:
            more = self.times[-1] - self.times[0] < self.seconds
        else:
            more = self.calls <= self.refuels
        if not more or self.instance is None:
            self.raised = OutOfTime(f"stopped at clock call {self.calls}")
            raise self.raised
        if self.refuel:
            self.instance.set_global(FUEL_EXPORT, self.slice)

    def host(self) -> dict[str, HostFunction]:
        return {CLOCK_IMPORT: HostFunction((), (), self)}

    def longest_gap(self) -> float:
        """The longest time between two calls, in seconds."""
        return max((b - a for a, b in zip(self.times, self.times[1:], strict=False)), default=0.0)


def instantiate(
    engine_name: str, wasm: bytes, clock: Clock | None = None, host: dict[str, HostFunction] | None = None
) -> Instance:
    """An instance of `wasm` given `host` and the clock (by default one that raises at once)."""
    clock = clock or Clock()
    instance = engine(engine_name).compile(wasm).instantiate({**(host or {}), **clock.host()}, STORE_LIMITS)
    clock.instance = instance
    return instance


def call_with_budget(instance: Instance, export: str, *args: int, budget: int = BUDGET) -> tuple[object, int, float]:
    """(what the call returned, or the GuestFault or OutOfTime it raised; the fuel left; seconds
    it took)."""
    instance.set_global(FUEL_EXPORT, budget)
    function = instance.export(export)
    started = time.monotonic()
    try:
        outcome: object = function(*args)
    except (GuestFault, OutOfTime) as fault:
        outcome = fault
    return outcome, instance.get_global(FUEL_EXPORT), time.monotonic() - started


# --- inspect ----------------------------------------------------------------------------------


def wasmtime_outline(wasm: bytes) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """Imports and exports as wasmtime itself reads them, for comparison."""

    def kind(ty: object) -> str:
        if isinstance(ty, wasmtime.FuncType):
            return f"({', '.join(map(str, ty.params))}) -> ({', '.join(map(str, ty.results))})"
        return {wasmtime.MemoryType: "memory", wasmtime.TableType: "table", wasmtime.GlobalType: "global"}[type(ty)]

    compiled = wasmtime.Module(wasmtime.Engine(), wasm)
    return [(i.module, i.name or "", kind(i.type)) for i in compiled.imports], [(e.name, kind(e.type)) for e in compiled.exports]


def test_inspect_reads_the_real_guest_as_wasmtime_does() -> None:
    info = inspect(REAL_GUEST)

    def kind(func: FuncType | None, name: str) -> str:
        return str(func) if func is not None else name

    imports, exports = wasmtime_outline(REAL_GUEST)
    assert [(i.module, i.name, kind(i.type, i.kind)) for i in info.imports] == imports
    assert [(e.name, kind(e.type, e.kind)) for e in info.exports] == exports
    assert {e.name for e in info.exports} >= set(REQUIRED_EXPORTS)
    abi_version, memory = info.export("abi_version"), info.export("memory")
    assert abi_version is not None and abi_version.type == FuncType((), ("i32",))
    assert memory is not None and memory.kind == "memory" and memory.type is None
    assert info.export("nothing") is None
    assert [(m.is64, m.shared, m.imported) for m in info.memories] == [(False, False, False)]
    assert all(t.element == "funcref" for t in info.tables)
    assert all(i.module == "host" and i.kind == "func" for i in info.imports)
    assert not info.has_start


DECLARATIONS = """
(module
  (import "host" "f" (func (param i64 f32 f64) (result i32 i64)))
  (import "host" "t" (table 2 funcref))
  (import "host" "g" (global (mut i32)))
  (memory 3 7)
  (table 1 externref)
  (table 4 funcref)
  (global i64 (i64.const 1))
  (global $g (mut f32) (f32.const 1))
  (func $start)
  (func (export "pick") (param externref funcref v128) (result externref) (local.get 0))
  (export "t" (table 1))
  (export "g" (global $g))
  (export "m" (memory 0))
  (start $start)
)"""


def test_inspect_reports_every_kind_of_declaration() -> None:
    wasm = wat(DECLARATIONS)
    wasm += b"\x00" + leb(len(b"\x04note") + 3) + b"\x04note" + b"abc"  # a custom section
    info = inspect(wasm)
    assert [(i.module, i.name, i.kind) for i in info.imports] == [
        ("host", "f", "func"),
        ("host", "t", "table"),
        ("host", "g", "global"),
    ]
    assert info.imports[0].type == FuncType(("i64", "f32", "f64"), ("i32", "i64"))
    assert [(e.name, e.kind, e.index) for e in info.exports] == [
        ("pick", "func", 2),
        ("t", "table", 1),
        ("g", "global", 2),
        ("m", "memory", 0),
    ]
    assert info.exports[0].type == FuncType(("externref", "funcref", "v128"), ("externref",))
    assert str(info.exports[0].type) == "(externref, funcref, v128) -> (externref)"
    assert [(m.initial, m.maximum, m.is64, m.shared, m.imported) for m in info.memories] == [(3, 7, False, False, False)]
    assert [(t.element, t.initial, t.maximum, t.imported) for t in info.tables] == [
        ("funcref", 2, None, True),
        ("externref", 1, None, False),
        ("funcref", 4, None, False),
    ]
    assert (info.globals, info.functions, info.has_start) == (3, 3, True)
    assert info.custom_sections == ("name", "note")  # wat2wasm writes a name section
    for text, memory in [
        ("(memory i64 2 5)", (2, 5, True, False)),
        ("(memory 1 2 shared)", (1, 2, False, True)),
    ]:
        found = inspect(wat(f"(module {text})")).memories[0]
        assert (found.initial, found.maximum, found.is64, found.shared) == memory


# Every way a module refers to a function it defines, through imports before it: what the meter
# renumbers.
RENUMBERED = """
(module
  (import "host" "double" (func $double (param i32) (result i32)))
  (import "host" "log" (func $log (param i32)))
  (type $unary (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 8 funcref)
  (table $u 4 funcref)
  (global $triple_ref funcref (ref.func $triple))
  (global $started (mut i32) (i32.const 0))
  (elem (i32.const 0) $inc $triple $square)
  (elem (i32.const 3) funcref (ref.func $square) (ref.func $double) (ref.null func) (ref.func $inc))
  (elem (table $u) (i32.const 0) func $triple $inc)
  (elem (table $u) (i32.const 2) funcref (ref.func $neg))
  (elem $passive funcref (ref.func $square) (ref.func $triple))
  (elem $passive_indices func $neg $inc)
  (elem declare func $neg)
  (func $inc (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func $triple (param i32) (result i32) (i32.mul (local.get 0) (i32.const 3)))
  (func $square (param $x i32) (result i32) (local $unused i64) (i32.mul (local.get $x) (local.get $x)))
  (func $neg (param i32) (result i32) (call $log (local.get 0)) (i32.sub (i32.const 0) (local.get 0)))
  (func $start (global.set $started (call $inc (i32.const 41))))
  (start $start)
  (func (export "direct") (param i32) (result i32) (call $square (call $double (call $inc (local.get 0)))))
  (func (export "indirect") (param i32 i32) (result i32) (call_indirect $t (type $unary) (local.get 1) (local.get 0)))
  (func (export "indirect_u") (param i32 i32) (result i32) (call_indirect $u (type $unary) (local.get 1) (local.get 0)))
  (func (export "via_global") (param i32) (result i32)
    (table.set $t (i32.const 7) (global.get $triple_ref)) (call_indirect $t (type $unary) (local.get 0) (i32.const 7)))
  (func (export "via_ref_func") (param i32) (result i32)
    (table.set $t (i32.const 7) (ref.func $neg)) (call_indirect $t (type $unary) (local.get 0) (i32.const 7)))
  (func (export "via_passive") (param i32 i32) (result i32)
    (table.init $t $passive (i32.const 6) (i32.const 0) (i32.const 2))
    (table.init $u $passive_indices (i32.const 0) (i32.const 0) (i32.const 2))
    (i32.add (call_indirect $t (type $unary) (local.get 0) (i32.add (i32.const 6) (local.get 1)))
             (call_indirect $u (type $unary) (local.get 0) (local.get 1))))
  (func (export "started") (result i32) (global.get $started))
  (func $boom (export "boom") (param i32) (result i32) (if (local.get 0) (then unreachable)) (local.get 0))
  (func $outer (export "outer") (param i32) (result i32) (call $boom (local.get 0)))
  (export "square" (func $square))
  (export "by_reference" (global $triple_ref))
)"""
HEADER = b"\0asm\x01\0\0\0"
EMPTY_TYPE = b"\x01\x04\x01\x60\x00\x00"  # one type, () -> ()


MALFORMED = [
    (b"\0asm\x02\0\0\0", "does not compile: it does not start with the header of Wasm version 1"),
    (HEADER + b"\x01\x10\x01\x60", "past the end of the module"),
    (HEADER + b"\x01", "unexpected end"),
    (HEADER + b"\x01\x80\x80\x80\x80\x80\x01", "LEB128 number longer than 32 bits"),
    (HEADER + b"\x01\x80\x80\x80\x80\x10", "LEB128 number over 32 bits"),
    (HEADER + b"\x01\x05\x01\x60\x00\x00\x00", "1 stray bytes at the end of the type section"),
    (HEADER + b"\x01\x03\x09\x60\x00", "a count of 9 that the section cannot hold"),
    (HEADER + b"\x01\x04\x01\x5f\x00\x00", "a type that is not a function type"),
    (HEADER + b"\x01\x05\x01\x60\x01\x6e\x00", "unknown value type 0x6e"),
    (HEADER + EMPTY_TYPE + EMPTY_TYPE, "type section out of order or repeated"),
    (HEADER + b"\x07\x01\x00" + EMPTY_TYPE, "type section out of order"),
    (HEADER + b"\x0e\x00", "unknown section id 14"),
    (HEADER + b"\x0d\x03\x01\x00\x00", "exception handling"),
    (HEADER + EMPTY_TYPE + b"\x03\x02\x01\x05", "type 5 out of range (there are 1)"),
    (HEADER + EMPTY_TYPE + b"\x03\x02\x01\x00", "1 functions but no code section"),
    (HEADER + b"\x07\x05\x01\x01x\x00\x00", "func 0 out of range (there are 0)"),
    (HEADER + b"\x05\x04\x01\x01\x05\x02", "a maximum size of 2 under the initial 5"),
    (HEADER + b"\x06\x06\x01\x7f\x00\x23\x00\x0b", "global 0 out of range (there are 0)"),
    (HEADER + b"\x06\x06\x01\x7f\x00\xfd\x0c\x0b", "instruction 0xfd in a constant expression"),
    (HEADER + b"\x00\x03\x02\xff\xfe", "a name that is not UTF-8"),
]


@pytest.mark.parametrize("wasm, message", MALFORMED, ids=[message for _, message in MALFORMED])
def test_malformed_modules_are_refused_in_one_line(wasm: bytes, message: str) -> None:
    with pytest.raises(GuestLoadError, match=re.escape(message)) as refused:
        inspect(wasm)
    assert "\n" not in str(refused.value)


FUZZED = [
    ("real guest", REAL_GUEST, 400, 40),
    ("declarations", wat(DECLARATIONS), 400, 400),
    ("renumbered", wat(RENUMBERED), 0, 400),
    (
        "metered features",
        module(
            """(table 3 funcref) (elem (i32.const 0) $a $b) (elem $passive func $a) (data $d "hello")
            (global $n (mut i64) (i64.const 0))
            (func $a (param i32) (result i32) (local i64 f32)
              (block $out (result i32) (loop $l (br_if $out (i32.eqz (local.get 0)) (local.get 0))
                (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br $l))))
            (func $b (param i32) (result i32)
              (memory.fill (i32.const 0) (i32.const 1) (local.get 0)) (memory.init $d (i32.const 0) (i32.const 0) (i32.const 2))
              (table.fill 0 (i32.const 0) (ref.null func) (i32.const 1)) (drop (table.grow 0 (ref.null func) (i32.const 1)))
              (br_table 0 0 (local.get 0)) (i32.trunc_sat_f64_s (f64.const 1.5)))"""
        ),
        400,
        400,
    ),
]


def valid(wasm: bytes) -> bool:
    try:
        wasmtime.Module.validate(wasmtime.Engine(), wasm)
    except wasmtime.WasmtimeError:
        return False
    return True


@pytest.mark.parametrize("name, original, inspected, metered", FUZZED, ids=[f[0] for f in FUZZED])
def test_damaged_modules_are_refused_or_read_never_crash(name: str, original: bytes, inspected: int, metered: int) -> None:
    rng = random.Random(f"fuzz {name}")  # the same cases on every run

    def damaged() -> bytes:
        if rng.random() < 0.3:
            return original[: rng.randrange(len(original))]
        data = bytearray(original)
        for _ in range(rng.choice((1, 1, 2, 4))):
            position = rng.randrange(8, len(data))
            data[position] = rng.randrange(256) if rng.random() < 0.5 else data[position] ^ 1 << rng.randrange(8)
        return bytes(data)

    rewriters: list[Callable[[bytes], object]] = [inspect, lambda w: cap_memory(w, PAGE * 64), lambda w: cap_tables(w, 100)]
    outcomes = {"read": 0, "refused": 0}
    for case in range(max(inspected, metered)):
        wasm = damaged()
        for rewrite in rewriters if case < inspected else []:
            try:
                rewrite(wasm)
            except GuestLoadError:
                pass
        if case < metered:
            try:
                rewritten = meter(wasm, initial_fuel=BUDGET)
            except GuestLoadError:
                outcomes["refused"] += 1
            else:
                inspect(rewritten)  # what the meter writes, it reads back
                outcomes["read"] += 1
                if len(wasm) < 10_000 and valid(wasm):  # and the engine takes it as it took the original
                    assert valid(rewritten), case
    assert outcomes["read"] and outcomes["refused"]  # both paths were taken


# --- cap_tables -----------------------------------------------------------------------------

GROWING_TABLE = """
  (table $t {table} funcref)
  (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0)))
  (func (export "size") (result i32) (table.size $t))"""


@pytest.mark.parametrize("engine_name", ENGINES)
def test_table_grow_stops_at_the_cap(engine_name: str) -> None:
    capped = cap_tables(module(GROWING_TABLE.format(table="1")), 10)
    assert [(t.initial, t.maximum) for t in inspect(capped).tables] == [(1, 10)]
    instance = instantiate(engine_name, capped)
    grow = instance.export("grow")
    assert grow(9) == 1
    assert grow(1) == -1
    assert grow(1_000_000) == -1
    assert instance.export("size")() == 10


def test_cap_tables_keeps_a_lower_maximum_and_refuses_a_table_over_the_cap() -> None:
    capped = cap_tables(module(GROWING_TABLE.format(table="2 5")), 10)
    assert [(t.initial, t.maximum) for t in inspect(capped).tables] == [(2, 5)]
    assert cap_tables(capped, 10) == capped  # idempotent
    with pytest.raises(GuestLoadError, match="a table of 100 elements, over the limit of 10 elements"):
        cap_tables(module(GROWING_TABLE.format(table="100")), 10)
    no_table = module("(func)")
    assert cap_tables(no_table, 10) == no_table
    imported = wat('(module (import "host" "t" (table 1000 funcref)))')
    assert cap_tables(imported, 10) == imported  # the host provides no tables: instantiating it fails


def test_cap_memory_refuses_memories_the_host_does_not_run() -> None:
    with pytest.raises(GuestLoadError, match="shared or 64-bit"):
        cap_memory(wat("(module (memory i64 1))"), 64 * PAGE)
    with pytest.raises(GuestLoadError, match="malformed"):
        cap_memory(HEADER + b"\x05\x10", 64 * PAGE)
    # Not Wasm at all: for the engine to refuse, in its words.
    assert cap_memory(b"\0asm garbage", PAGE) == cap_tables(b"\0asm garbage", 10) == b"\0asm garbage"


# --- metering: every guest stops ------------------------------------------------------------

RUNAWAYS = {
    "empty loop": '(func (export "run") (loop $l (br $l)))',
    "loop with work": """(func (export "run") (local i64)
        (loop $l (local.set 0 (i64.add (local.get 0) (i64.const 1))) (i64.store (i32.const 8) (local.get 0)) (br $l)))""",
    "finite loop in an endless one": """(func (export "run") (local i32)
        (loop $outer (local.set 0 (i32.const 1000))
          (loop $inner (br_if $inner (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))
          (br $outer)))""",
    "loop through br_table": '(func (export "run") (loop $l (block $b (br_table $b $l (i32.const 1)))))',
    "loop of indirect calls": """(type $t (func)) (table 1 funcref) (elem (i32.const 0) $leaf) (func $leaf)
        (func (export "run") (loop $l (call_indirect (type $t) (i32.const 0)) (br $l)))""",
    "exponential recursion": """(func $fork (export "run") (param i32)
        (if (local.get 0) (then
          (call $fork (i32.sub (local.get 0) (i32.const 1)))
          (call $fork (i32.sub (local.get 0) (i32.const 1))))))""",
    "64 MiB memory.fill in a loop": """(memory $big 1024 1024)
        (func (export "run") (loop $l (memory.fill (i32.const 0) (i32.const 7) (i32.const 0x4000000)) (br $l)))""",
    "32 MiB memory.copy in a loop": """(memory $big 1024 1024)
        (func (export "run") (loop $l (memory.copy (i32.const 0) (i32.const 0x2000000) (i32.const 0x2000000)) (br $l)))""",
    "memory.init in a loop": """(data $d "0123456789abcdef0123456789abcdef")
        (func (export "run") (loop $l (memory.init $d (i32.const 0) (i32.const 0) (i32.const 32)) (br $l)))""",
    "table.fill of a million in a loop": """(table 1000000 funcref)
        (func (export "run") (loop $l (table.fill 0 (i32.const 0) (ref.null func) (i32.const 1000000)) (br $l)))""",
    "table.copy in a loop": """(table 1000000 funcref)
        (func (export "run") (loop $l (table.copy (i32.const 0) (i32.const 500000) (i32.const 500000)) (br $l)))""",
    "memory.grow in a loop": '(func (export "run") (loop $l (drop (memory.grow (i32.const 0))) (br $l)))',
}


def runaway(name: str) -> bytes:
    body = RUNAWAYS[name]
    # A module declares one memory: those that need a big one bring their own.
    text = (
        f'(module {body} (export "memory" (memory 0)))'
        if "(memory $big" in body
        else f'(module (memory (export "memory") 1) {body})'
    )
    return meter(wat(text), initial_fuel=BUDGET)


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("name", RUNAWAYS)
def test_a_guest_that_never_returns_calls_the_clock_and_stops_when_it_raises(engine_name: str, name: str) -> None:
    clock = Clock(refuels=3, slice=RUNAWAY_BUDGET)
    instance = instantiate(engine_name, runaway(name), clock)
    outcome, left, seconds = call_with_budget(instance, "run", *([64] if "recursion" in name else []), budget=RUNAWAY_BUDGET)
    assert outcome is clock.raised is not None  # the clock's own exception, as it raised it
    assert clock.calls == 4  # three slices more, then stopped
    assert all(counter < 0 for counter in clock.counters)  # called only when a check went below zero
    assert fuel_spent_trap(left)
    assert seconds < STOPPED_WITHIN_SECONDS


# What an attacker ran for 50-88 s against a 1 s limit when the counter alone decided: work that
# costs far more than the instructions it is charged for (calls into the engine, cache misses).
SLOW_PER_UNIT = {
    "data.drop": '(data $d "x") (func (export "run") (loop $l (data.drop $d) (br $l)))',
    "table.set": '(table 1 funcref) (func (export "run") (loop $l (table.set 0 (i32.const 0) (ref.null func)) (br $l)))',
    "table.get": '(table 1 funcref) (func (export "run") (loop $l (drop (table.get 0 (i32.const 0))) (br $l)))',
    "memory.size": '(func (export "run") (loop $l (drop (memory.size)) (br $l)))',
    "pointer chase over 64 MiB": """(memory $big 1024 1024) (func (export "run") (local i32)
        (memory.fill (i32.const 0) (i32.const 0x5a) (i32.const 0x4000000))
        (loop $l (local.set 0 (i32.and (i32.xor (i32.load (local.get 0)) (i32.mul (local.get 0) (i32.const 0x9e3779b1)))
          (i32.const 0x3fffffc))) (br $l)))""",
}
# The slice the host gives (about 4 million units) and what this test allows between two clock
# calls: the worst of these takes some 0.1 s a slice on an idle machine (the pointer chase's
# first, with its 64 MiB fill, 0.3 s with three busy loops on two cores, 0.7 s with six); the
# rest is room for a slow, busy machine. Code that only the counter stops runs for many seconds.
HOST_SLICE = 4_000_000
CLOCK_INTERVAL_SECONDS = 0.75


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("name", SLOW_PER_UNIT)
def test_work_slow_per_unit_still_sees_the_clock_often(engine_name: str, name: str) -> None:
    body = SLOW_PER_UNIT[name]
    text = (
        f'(module {body} (export "memory" (memory 0)))'
        if "(memory $big" in body
        else f'(module (memory (export "memory") 1) {body})'
    )
    # The clock gives slices for as long as a gap may be, so that a slow machine still shows
    # two gaps or more (with 0.3 s, one 0.3 s slice ended it after one).
    clock = Clock(slice=HOST_SLICE, seconds=CLOCK_INTERVAL_SECONDS)
    instance = instantiate(engine_name, meter(wat(text), initial_fuel=0), clock)
    outcome, _, seconds = call_with_budget(instance, "run", budget=HOST_SLICE)
    assert outcome is clock.raised is not None
    assert clock.longest_gap() < CLOCK_INTERVAL_SECONDS, clock.longest_gap()
    assert clock.calls >= 3
    assert seconds < 2 * CLOCK_INTERVAL_SECONDS


@pytest.mark.parametrize("engine_name", ENGINES)
def test_endless_recursion_is_stopped(engine_name: str) -> None:
    # By the clock or by the engine's stack limit, whichever comes first.
    instance = instantiate(engine_name, meter(module('(func $f (export "run") (call $f))'), initial_fuel=BUDGET))
    outcome, _, seconds = call_with_budget(instance, "run")
    assert isinstance(outcome, (GuestFault, OutOfTime))
    assert seconds < STOPPED_WITHIN_SECONDS


COUNTING = """(func (export "count") (local i64)
  (loop $l (local.set 0 (i64.add (local.get 0) (i64.const 1))) (i64.store (i32.const 0) (local.get 0)) (br $l)))"""


@pytest.mark.parametrize("engine_name", ENGINES)
def test_more_fuel_runs_longer(engine_name: str) -> None:
    instance = instantiate(engine_name, meter(module(COUNTING), initial_fuel=0))

    def laps(budget: int) -> int:
        outcome, left, _ = call_with_budget(instance, "count", budget=budget)
        assert isinstance(outcome, OutOfTime) and fuel_spent_trap(left)
        return int.from_bytes(instance.read(0, 8), "little")

    small, large = laps(100_000), laps(1_000_000)
    assert small > 1000
    assert 9.9 < large / small < 10.1


@pytest.mark.parametrize("engine_name", ENGINES)
def test_the_fuel_rule(engine_name: str) -> None:
    # The clock is called only by the check that takes the counter below zero, with the counter
    # as that check left it: a call that spends exactly its budget returns with 0 left, and the
    # guest's own trap leaves the counter at 0 or more.
    clock = Clock()
    wasm = meter(module('(func (export "work") nop) (func (export "fail") unreachable)'), initial_fuel=0)
    instance = instantiate(engine_name, wasm, clock)
    outcome, left, _ = call_with_budget(instance, "work", budget=1000)
    assert outcome is None
    cost = 1000 - left
    assert cost > 0
    assert call_with_budget(instance, "work", budget=cost)[:2] == (None, 0)
    assert clock.calls == 0
    outcome, left, _ = call_with_budget(instance, "work", budget=cost - 1)
    assert outcome is clock.raised is not None and left == -1 and fuel_spent_trap(left)
    assert clock.counters == [-1]
    outcome, left, _ = call_with_budget(instance, "fail", budget=1000)
    assert isinstance(outcome, GuestFault) and not fuel_spent_trap(left)
    cost = 1000 - left
    outcome, left, _ = call_with_budget(instance, "fail", budget=cost)
    assert isinstance(outcome, GuestFault) and left == 0 and not fuel_spent_trap(left)
    assert clock.calls == 1
    outcome, left, _ = call_with_budget(instance, "fail", budget=cost - 1)
    assert outcome is clock.raised and clock.calls == 2


@pytest.mark.parametrize("engine_name", ENGINES)
def test_after_the_clock_the_guest_goes_on_with_the_counter_it_set(engine_name: str) -> None:
    # The subtraction's result is not stored again after the clock: the counter is the clock's.
    clock = Clock(refuels=1, slice=5000)
    fill = '(func (export "fill") (param i32) (memory.fill (i32.const 0) (i32.const 7) (local.get 0)))'
    wasm = meter(module(f'(func (export "work") nop) {fill}'), initial_fuel=0)
    instance = instantiate(engine_name, wasm, clock)
    cost = BUDGET - call_with_budget(instance, "work")[1]  # one check, at the entry
    assert call_with_budget(instance, "work", budget=cost - 1)[:2] == (None, 5000)
    assert clock.counters == [-1]
    # A length charge: the length is still on the stack for memory.fill after the clock.
    clock.refuels += 1
    entry = BUDGET - call_with_budget(instance, "fill", 0)[1]  # the entry's check (a length of 0 is charged nothing)
    outcome, left, _ = call_with_budget(instance, "fill", 1000, budget=entry)
    assert outcome is None and left == 5000
    assert clock.counters == [-1, -500]  # 1000 bytes at half a unit each
    assert instance.read(0, 1001) == b"\x07" * 1000 + b"\x00"


@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_clock_that_returns_without_refuelling_traps_the_guest(engine_name: str) -> None:
    clock = Clock(refuels=1, refuel=False)
    instance = instantiate(engine_name, meter(module(COUNTING), initial_fuel=0), clock)
    outcome, left, _ = call_with_budget(instance, "count", budget=1000)
    assert isinstance(outcome, GuestFault) and not isinstance(outcome, OutOfTime)
    assert clock.calls == 1 and fuel_spent_trap(left)


COLLATZ = """(func (export "steps") (param $n i32) (result i64) (local $x i64) (local $total i64)
  (block $done (loop $each
    (br_if $done (i32.eqz (local.get $n)))
    (local.set $x (i64.extend_i32_u (local.get $n)))
    (block $one (loop $step
      (br_if $one (i64.eq (local.get $x) (i64.const 1)))
      (local.set $x (if (result i64) (i64.eqz (i64.and (local.get $x) (i64.const 1)))
        (then (i64.shr_u (local.get $x) (i64.const 1)))
        (else (i64.add (i64.mul (local.get $x) (i64.const 3)) (i64.const 1)))))
      (local.set $total (i64.add (local.get $total) (i64.const 1)))
      (br $step)))
    (local.set $n (i32.sub (local.get $n) (i32.const 1)))
    (br $each)))
  (local.get $total))"""


def collatz_steps(n: int) -> int:
    total = 0
    for x in range(1, n + 1):
        while x != 1:
            x = x // 2 if x % 2 == 0 else 3 * x + 1
            total += 1
    return total


@pytest.mark.parametrize("engine_name", ENGINES)
def test_refuelling_from_the_clock_lets_a_long_computation_finish(engine_name: str) -> None:
    clock = Clock(refuels=1_000_000, slice=20_000)
    instance = instantiate(engine_name, meter(module(COLLATZ), initial_fuel=0), clock)
    outcome, left, _ = call_with_budget(instance, "steps", 3000, budget=20_000)
    assert outcome == collatz_steps(3000)
    assert clock.calls > 100 and 0 <= left <= 20_000
    assert all(counter < 0 for counter in clock.counters)


def charged(wat_body: str, export: str, *args: int) -> int:
    """The fuel a call of `export` is charged, less what its checks charge for themselves (on
    wasmtime: the cost model is the same everywhere)."""
    wasm = meter(module(wat_body), initial_fuel=0)
    instance = instantiate("wasmtime", wasm)
    _, left, _ = call_with_budget(instance, export, *args, budget=BUDGET)
    checks_run = 1 + wat_body.count("(loop")  # each loop of these runs once
    return BUDGET - left - checks_run * CHECK_FUEL


NOPS = " nop" * 20


def test_a_pass_is_charged_its_longest_path() -> None:
    both_arms = charged(f'(func (export "f") (param i32) (if (local.get 0) (then{NOPS}) (else{NOPS})))', "f", 1)
    one_arm = charged(f'(func (export "f") (param i32) (if (local.get 0) (then{NOPS}) (else)))', "f", 1)
    assert both_arms == one_arm < 40  # the longer arm, not both
    skipped = charged(f'(func (export "f") (param i32) (block (br_if 0 (local.get 0)){NOPS}))', "f", 1)
    assert skipped > 20  # what a branch skips is still on the longest path
    # The only way out of this loop is the branch to $out: the path goes on after the block (the
    # second 20), and never through the first 20, which nothing reaches.
    exit_early = f"""(func (export "f") (block $out (loop $l (br_if $out (i32.const 1)) (br $l)){NOPS}){NOPS})"""
    assert 20 < charged(exit_early, "f") < 40
    counting = """(func (export "f") (param i32) (loop $l
        (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1))))))"""
    per_ten = [charged(counting, "f", n + 10) - charged(counting, "f", n) for n in (10, 20)]
    assert per_ten[0] == per_ten[1] == 10 * (6 + CHECK_FUEL)  # every pass: its 6 instructions and its check


class FuelCounted:
    """A module on wasmtime with wasmtime's own fuel on. What a call spends is wasmtime's count
    (about one per instruction run) for a module as built, the meter's charge for a metered one."""

    def __init__(self, wasm: bytes) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        engine = wasmtime.Engine(config)
        self.store = wasmtime.Store(engine)
        self.store.set_fuel(1 << 40)
        self.module = wasmtime.Module(engine, wasm)
        # binaryen's fuzz modules log through imports, which ignore what they are given here;
        # the meter's clock stops the guest (never reached on the fuel given here).
        imports = [
            wasmtime.Func(self.store, i.type, self.clock if i.name == CLOCK_IMPORT else lambda *_: None)
            for i in self.module.imports
            if isinstance(i.type, wasmtime.FuncType)
        ]
        self.exports = wasmtime.Instance(self.store, self.module, imports).exports(self.store)
        counter = self.exports.get(FUEL_EXPORT)
        self.counter = counter if isinstance(counter, wasmtime.Global) else None

    @staticmethod
    def clock() -> None:
        raise OutOfTime("the metered module ran out of its fuel")

    def fuel(self) -> int:
        return int(self.counter.value(self.store)) if self.counter else self.store.get_fuel()

    def call(self, name: str, *args: float) -> tuple[str, int]:
        """(what the export returned, or its trap, shown; the fuel it spent)."""
        function = self.exports[name]
        assert isinstance(function, wasmtime.Func)
        before = self.fuel()
        try:
            outcome = repr(function(self.store, *args))
        except wasmtime.Trap as trap:
            outcome = repr(trap.trap_code)
        return outcome, before - self.fuel()

    def call_every_export(self) -> list[tuple[str, str, int]]:
        """(export, outcome, fuel spent) of each exported function in turn, called with zeros."""
        out = []
        for export in self.module.exports:
            if isinstance(export.type, wasmtime.FuncType):
                zeros = [0.0 if str(p) in ("f32", "f64") else 0 for p in export.type.params]
                out.append((export.name, *self.call(export.name, *zeros)))
        return out


FUZZ_FEATURES = ["--enable-sign-ext", "--enable-nontrapping-float-to-int", "--enable-multivalue"]


@pytest.mark.skipif(shutil.which("wasm-opt") is None, reason="binaryen's wasm-opt makes the random modules")
@pytest.mark.parametrize("bulk_memory", [False, True], ids=["instructions", "bulk memory"])
def test_random_modules_compute_the_same_metered_and_are_charged_no_less_than_they_run(tmp_path: Path, bulk_memory: bool) -> None:
    # wasmtime charges its fuel for bulk memory instructions by the byte, the meter by the time
    # they take: the counts are compared only without them.
    rng = random.Random(f"binaryen fuzz {bulk_memory}")
    features = FUZZ_FEATURES + ["--enable-bulk-memory"] * bulk_memory
    for case in range(20):
        seed = tmp_path / "seed"
        seed.write_bytes(rng.randbytes(rng.choice((500, 2000, 6000))))
        subprocess.run(
            ["wasm-opt", "-ttf", str(seed), *features, "-o", str(tmp_path / "m.wasm")], check=True, capture_output=True
        )
        original = (tmp_path / "m.wasm").read_bytes()
        metered = meter(original, initial_fuel=1 << 50)
        for name in ENGINES:
            engine(name).compile(metered)  # valid for every engine
        runs = zip(FuelCounted(original).call_every_export(), FuelCounted(metered).call_every_export(), strict=True)
        for (export, outcome, ran), (_, metered_outcome, charge) in runs:
            assert metered_outcome == outcome, (case, export)
            assert bulk_memory or charge >= ran, (case, export)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_the_start_function_runs_on_the_initial_fuel(engine_name: str) -> None:
    endless = module("(func $start (loop $l (br $l))) (start $start)")
    started = time.monotonic()
    clock = Clock()
    with pytest.raises(OutOfTime) as stopped:
        instantiate(engine_name, meter(endless, initial_fuel=BUDGET), clock)
    assert stopped.value is clock.raised and clock.calls == 1
    assert time.monotonic() - started < STOPPED_WITHIN_SECONDS
    finite = module(
        """(func $start (local i32) (local.set 0 (i32.const 1000))
          (loop $l (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1))))))
        (start $start)"""
    )
    instance = instantiate(engine_name, meter(finite, initial_fuel=BUDGET))
    assert 0 < instance.get_global(FUEL_EXPORT) < BUDGET - 1000


@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_looping_abi_version_is_stopped(engine_name: str) -> None:
    # The host calls abi_version before it has set any budget: the initial fuel is the limit.
    wasm = meter(module('(func (export "abi_version") (result i32) (loop $l (br $l)) (i32.const 2))'), initial_fuel=BUDGET)
    clock = Clock()
    instance = instantiate(engine_name, wasm, clock)
    started = time.monotonic()
    with pytest.raises(OutOfTime):
        instance.export("abi_version")()
    assert time.monotonic() - started < STOPPED_WITHIN_SECONDS
    assert clock.calls == 1 and fuel_spent_trap(instance.get_global(FUEL_EXPORT))


# --- metering: what is refused ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("(func (drop (global.get 0)))", "function 0 cannot be metered: it uses global 0, but the module has 0 globals"),
        (
            "(global (mut i32) (i32.const 0)) (func (global.set 1 (i64.const 99)))",
            "function 0 cannot be metered: it uses global 1, but the module has 1 globals",
        ),
        ("(func (param i32) (local i64) (drop (local.get 2)))", "it uses local 2, but it has 2 locals"),
        ("(func (local.set 0 (i32.const 0)))", "it uses local 0, but it has 0 locals"),
        ("(func) (func (drop (v128.const i32x4 0 0 0 0)))", r"function 1 cannot be metered: it uses opcode 0xfd 12 \(SIMD\)"),
        ("(func (drop (i32.atomic.load (i32.const 0))))", r"opcode 0xfe 16 \(threads\)"),
        ("(func (return_call 0))", r"opcode 0x12 \(tail calls\)"),
        ("(memory 1) (func (drop (memory.size 1)))", "multiple memories are not supported"),
        ("(memory 1) (func (drop (i32.load 1 (i32.const 0))))", "explicit memory index"),
        ("(tag $e) (func (throw $e))", "exception handling"),
        ('(global (export "__orders_fuel") (mut i64) (i64.const 0))', "already exports '__orders_fuel'"),
    ],
)
def test_code_that_cannot_be_metered_is_refused(text: str, message: str) -> None:
    with pytest.raises(GuestLoadError, match=message):
        meter(module(text), initial_fuel=BUDGET)


@pytest.mark.parametrize(
    "text, message",
    [
        ('(import "host" "__orders_clock" (func))', "already imports host.__orders_clock, the name of the host's clock"),
        ('(import "host" "__orders_clock" (func (param i32)))', "already imports host.__orders_clock"),
        ('(import "env" "__orders_clock" (global i32))', "already imports env.__orders_clock"),
    ],
)
def test_a_module_importing_the_clock_is_refused(text: str, message: str) -> None:
    with pytest.raises(GuestLoadError, match=message) as refused:
        meter(wat(f"(module {text})"), initial_fuel=BUDGET)
    assert "\n" not in str(refused.value)


def with_code(code: bytes) -> bytes:
    """A module of one function, () -> (), whose body is `code` (no locals), byte for byte."""
    body = b"\x00" + code + b"\x0b"
    return HEADER + EMPTY_TYPE + b"\x03\x02\x01\x00" + b"\x0a" + leb(len(body) + 2) + b"\x01" + leb(len(body)) + body


def test_unknown_opcodes_and_64_bit_memories_are_refused() -> None:
    assert meter(with_code(b"\x01"), initial_fuel=0)  # nop
    with pytest.raises(GuestLoadError, match="function 0 cannot be metered: it uses opcode 0xfc 18"):
        meter(with_code(b"\xfc\x12\x00"), initial_fuel=BUDGET)  # memory.discard
    with pytest.raises(GuestLoadError, match="opcode 0xd3 \\(typed function references\\)"):
        meter(with_code(b"\xd3"), initial_fuel=BUDGET)
    with pytest.raises(GuestLoadError, match="function 0 cannot be metered: its body ends inside an instruction"):
        meter(with_code(b"\x41"), initial_fuel=BUDGET)  # i32.const without its number
    with pytest.raises(GuestLoadError, match="an else outside an if"):
        meter(with_code(b"\x02\x40\x05\x0b"), initial_fuel=BUDGET)
    with pytest.raises(GuestLoadError, match="64-bit memory"):
        meter(wat("(module (memory i64 1))"), initial_fuel=BUDGET)
    with pytest.raises(ValueError, match="initial fuel"):
        meter(with_code(b""), initial_fuel=-1)
    with pytest.raises(GuestLoadError, match="already exports"):
        meter(meter(with_code(b""), initial_fuel=1), initial_fuel=1)


# --- metering: what is kept -----------------------------------------------------------------

KEPT = """
(module
  (import "host" "double" (func $double (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $counter (mut i32) (i32.const 5))
  (data $greeting "hello")
  (func $sum (export "sum") (param $n i32) (result i32) (local $total i32)
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $total (i32.add (local.get $total) (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next)))
    (memory.init $greeting (i32.const 100) (i32.const 0) (i32.const 5))
    (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
    (local.get $total))
  (func (export "count") (result i32) (global.get $counter))
)"""


def sections(wasm: bytes) -> list[tuple[int, bytes]]:
    """(id, contents) of every section."""
    out, pos = [], 8
    while pos < len(wasm):
        size, start = read_leb(wasm, pos + 1)
        out.append((wasm[pos], wasm[start : start + size]))
        pos = start + size
    return out


def names(wasm: bytes) -> tuple[dict[int, str], dict[int, dict[int, str]]]:
    """The function names and the local names of the module's name section."""
    functions: dict[int, str] = {}
    local_names: dict[int, dict[int, str]] = {}
    for id, contents in sections(wasm):
        r = Reader(contents, 0, len(contents))
        if id != 0 or r.name() != "name":
            continue
        while r.pos < r.end:
            sub, size = r.byte(), r.unsigned()
            end = r.pos + size
            if sub == 1:
                functions.update((r.unsigned(), r.name()) for _ in range(r.unsigned()))
            elif sub == 2:
                for _ in range(r.unsigned()):
                    index = r.unsigned()
                    local_names[index] = {r.unsigned(): r.name() for _ in range(r.unsigned())}
            r.pos = end
    return functions, local_names


def test_metering_moves_only_the_functions_and_keeps_sections_in_their_places() -> None:
    original = wat(KEPT) + b"\x00\x06\x05notes"  # a custom section at the end as well
    metered = meter(original, initial_fuel=BUDGET)
    before, after = sections(original), sections(metered)
    assert [s for s, _ in after] == [s for s, _ in before]  # the data count (12) still before the code (10)
    assert 12 in [s for s, _ in after]
    changed = (1, 2, 6, 7, 10)  # types, imports, globals, exports, code
    unchanged = [(s, body) for s, body in before if s not in changed and not body.startswith(b"\x04name")]
    assert [(s, body) for s, body in after if s not in changed and not body.startswith(b"\x04name")] == unchanged
    assert unchanged[-1] == (0, b"\x05notes")
    info, metered_info = inspect(original), inspect(metered)
    # The clock: an import after the other function imports, of a type appended to the others.
    assert metered_info.imports == (*info.imports, inspect(metered).imports[-1])
    clock = metered_info.imports[-1]
    assert (clock.module, clock.name, clock.kind, clock.type) == ("host", CLOCK_IMPORT, "func", FuncType((), ()))
    assert sections(metered)[0][1][1:] == sections(original)[0][1][1:] + b"\x60\x00\x00"
    # Every function the module defines moved up by one; no other index moved.
    moved = [dataclasses.replace(e, index=e.index + 1) if e.kind == "func" else e for e in info.exports]
    assert metered_info.exports[:-1] == tuple(moved)
    assert (metered_info.exports[-1].name, metered_info.exports[-1].kind, metered_info.exports[-1].index) == (
        FUEL_EXPORT,
        "global",
        1,
    )
    assert metered_info.globals == info.globals + 1
    assert metered_info.functions == info.functions + 1
    # The name section (wat2wasm writes one) names the same functions and locals, and the clock.
    functions, local_names = names(original)
    assert functions == {0: "double", 1: "sum"} and local_names[1] == {0: "n", 1: "total"}
    assert names(metered) == ({0: "double", 1: CLOCK_IMPORT, 2: "sum"}, {2: {0: "n", 1: "total"}})


def test_a_name_section_the_meter_cannot_read_is_dropped() -> None:
    broken = b"\x00\x08\x04name\x01\x09\x01"  # a subsection longer than the section
    original = wat(KEPT) + broken + b"\x00\x06\x05notes"
    metered = meter(original, initial_fuel=BUDGET)
    assert [body for id, body in sections(metered) if id == 0] == [
        body for id, body in sections(meter(wat(KEPT), initial_fuel=BUDGET)) if id == 0
    ] + [b"\x05notes"]
    for name in ENGINES:
        engine(name).compile(metered)


def test_a_module_without_types_or_imports_gets_both() -> None:
    metered = meter(wat('(module (memory (export "memory") 1))'), initial_fuel=BUDGET)
    info = inspect(metered)
    assert [(i.module, i.name, i.type) for i in info.imports] == [("host", CLOCK_IMPORT, FuncType((), ()))]
    for name in ENGINES:
        instantiate(name, metered)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_a_metered_module_computes_what_it_did(engine_name: str) -> None:
    wasm = meter(wat(KEPT), initial_fuel=BUDGET)
    instance = instantiate(engine_name, wasm, host={"double": HostFunction(("i32",), ("i32",), lambda n: 2 * n)})
    outcome, left, _ = call_with_budget(instance, "sum", 100)
    assert outcome == 5050 and 0 < left < BUDGET
    assert instance.read(100, 5) == b"hello"
    assert instance.export("count")() == 6


RENUMBERED_CALLS = [
    ("direct", 4),
    *[("indirect", i, 6) for i in range(7)],  # (table index, argument)
    *[("indirect_u", i, 6) for i in range(4)],
    ("via_global", 6),
    ("via_ref_func", 6),
    ("via_passive", 6, 0),
    ("via_passive", 6, 1),
    ("started",),
    ("square", 9),
    ("outer", 0),
    ("boom", 1),
]


def renumbered_outcomes(engine_name: str, wasm: bytes, deferred: bool = False) -> tuple[list[object], list[int]]:
    """(what each call of RENUMBERED_CALLS returned, or the kind of exception it raised; what
    was logged)."""
    logged: list[int] = []
    host = {
        "double": HostFunction(("i32",), ("i32",), lambda n: 2 * n),
        "log": HostFunction(("i32",), (), logged.append),
    }
    instance = instantiate(engine_name, wasm, host=host)
    if deferred:
        instance.export(START_EXPORT)()
    outcomes: list[object] = []
    for export, *args in RENUMBERED_CALLS:
        try:
            outcomes.append(instance.export(export)(*args))
        except GuestFault:
            outcomes.append("trap")
    return outcomes, logged


@pytest.mark.parametrize("engine_name", ENGINES)
def test_every_function_reference_is_renumbered(engine_name: str) -> None:
    original = wat(RENUMBERED)
    expected = renumbered_outcomes(engine_name, original)
    assert expected == (
        [100, 7, 18, 36, 36, 12, "trap", 7, 18, 7, -6, "trap", 18, -6, 36 - 6, 18 + 7, 42, 81, 0, "trap"],
        [6, 6, 6],
    )
    assert renumbered_outcomes(engine_name, meter(original, initial_fuel=BUDGET)) == expected
    assert renumbered_outcomes(engine_name, meter(defer_start(original), initial_fuel=BUDGET), deferred=True) == expected
    functions, _ = names(meter(original, initial_fuel=BUDGET))
    assert functions == {index + (index >= 2): name for index, name in names(original)[0].items()} | {2: CLOCK_IMPORT}
    assert [functions[i] for i in (1, 2, 3, 16)] == ["log", CLOCK_IMPORT, "inc", "outer"]


def test_wasmtime_names_the_right_functions_after_metering() -> None:
    # A trap's backtrace names its functions from the name section: renumbered with them.
    for wasm in (wat(RENUMBERED), meter(wat(RENUMBERED), initial_fuel=BUDGET)):
        store = wasmtime.Store()
        module = wasmtime.Module(store.engine, wasm)
        imports = [wasmtime.Func(store, i.type, lambda *args: args[0] if args else None) for i in module.imports]
        exports = wasmtime.Instance(store, module, imports).exports(store)
        with pytest.raises(wasmtime.Trap) as trapped:
            exports["outer"](store, 1)
        frames = [frame.func_name for frame in trapped.value.frames]
        assert frames == ["boom", "outer"]


# --- the real guest -------------------------------------------------------------------------

ORDER_ROW = '[{0},12,2,19.99,15.00,2.00,"{0} Suspension Road"]'


def real_guest_host() -> dict[str, HostFunction]:
    """The real guest's imports, doing nothing."""
    return {i.name: HostFunction(i.type.params, i.type.results, lambda *_: None) for i in inspect(REAL_GUEST).imports if i.type}


@pytest.mark.parametrize("engine_name", ENGINES)
def test_the_metered_real_guest_validates_runs_and_runs_out(engine_name: str) -> None:
    clock = Clock()
    instance = instantiate(engine_name, meter(REAL_GUEST, initial_fuel=BUDGET), clock, real_guest_host())
    pointer, left, _ = call_with_budget(instance, "alloc", 64)
    assert isinstance(pointer, int) and pointer > 0 and 0 < left < BUDGET
    assert clock.calls == 0
    outcome, left, _ = call_with_budget(instance, "alloc", 64, budget=10)
    assert outcome is clock.raised is not None and fuel_spent_trap(left)


class RealGuest:
    """The real guest as the host prepares it (memory and tables capped, its start function
    deferred, metered), run through the ABI by hand: requests whose database calls are answered
    at once, each a suspend and resume round trip."""

    def __init__(self, engine_name: str, clock: Clock, metered: bool = True) -> None:
        prepared = defer_start(cap_tables(cap_memory(REAL_GUEST, 64 * 1024 * 1024), 10_000))
        if metered:
            prepared = meter(prepared, initial_fuel=clock.slice)
        self.metered = metered
        self.clock = clock
        self.pending: list[bytes] = []
        self.queries = 0
        host = real_guest_host()
        host["db_query"] = HostFunction(("i32", "i32"), (), self.db_query)
        self.instance = instantiate(engine_name, prepared, clock, host)
        if START_EXPORT in inspect(prepared).exports:
            self.call(START_EXPORT)
        inbox = self.call("inbox") & 0xFFFFFFFFFFFFFFFF
        self.inbox, self.inbox_capacity = inbox >> 32, inbox & 0xFFFFFFFF
        self.request = self.call("alloc", 4096)

    def db_query(self, ptr: int, length: int) -> None:
        self.pending.append(self.instance.read(ptr, length))

    def call(self, export: str, *args: int) -> int:
        if self.metered:
            self.instance.set_global(FUEL_EXPORT, self.clock.slice)
        return int(self.instance.export(export)(*args) or 0)

    def get(self, order_id: int) -> bytes:
        request = b'{"op":"get","query":{},"path":{"order_id":"%d"},"content_type":"","allow_reset":false}\n' % order_id
        self.instance.write(self.request, request)
        packed = self.call("handle", self.request, len(request))
        while self.pending:
            self.pending.clear()
            self.queries += 1
            result = ('{"rows":[' + ORDER_ROW.format(order_id) + "]}").encode()
            assert len(result) <= self.inbox_capacity
            self.instance.write(self.inbox, result)
            packed = self.call("resume", len(result))
        packed &= 0xFFFFFFFFFFFFFFFF
        return self.instance.read(packed >> 32, packed & 0xFFFFFFFF)


@pytest.mark.parametrize("engine_name", ENGINES)
def test_the_metered_real_guest_suspends_and_resumes(engine_name: str) -> None:
    # asyncify re-enters every function on the way back to where the guest suspended: the
    # rewind is charged again, and must still land where it left, with the clock called
    # (and refuelling) anywhere on the way, the rewind included.
    clock = Clock(refuels=10**9, slice=5_000)
    guest = RealGuest(engine_name, clock)
    for i in range(1, 21):
        response = guest.get(i)
        assert response.startswith(b'{"status":200'), response
        assert b"%d Suspension Road" % i in response
    assert guest.queries == 20
    assert clock.calls > 100


def test_the_real_guest_is_charged_no_less_than_it_runs() -> None:
    original, metered = FuelCounted(REAL_GUEST), FuelCounted(meter(REAL_GUEST, initial_fuel=1 << 50))
    for size in (16, 100, 5000, 70000):  # through the allocator's loops
        pointer, _ = original.call("alloc", size)
        assert metered.call("alloc", size)[0] == pointer
        original.call("dealloc", int(pointer), size)
        metered.call("dealloc", int(pointer), size)
    ran, charged = (1 << 40) - original.fuel(), (1 << 50) - metered.fuel()
    assert ran <= charged < 10 * ran


# --- the start function, taken out of instantiation -------------------------------------------------


@pytest.mark.parametrize("engine_name", ENGINES)
def test_the_start_function_becomes_an_export_the_host_calls(engine_name: str) -> None:
    original = module(
        """(global $g (mut i32) (i32.const 0))
        (func $start (global.set $g (i32.const 42)))
        (start $start)
        (func (export "value") (result i32) (global.get $g))"""
    )
    deferred = defer_start(original)
    assert inspect(deferred).has_start is False
    export = inspect(deferred).export(START_EXPORT)
    assert export is not None and export.kind == "func" and export.type == FuncType((), ())
    assert defer_start(deferred) == deferred
    assert defer_start(module("")) == module("")  # no start function: unchanged
    instance = instantiate(engine_name, meter(deferred, initial_fuel=BUDGET))
    assert instance.export("value")() == 0  # instantiating ran nothing
    outcome, left, _ = call_with_budget(instance, START_EXPORT)
    assert outcome is None and 0 < left < BUDGET
    assert instance.export("value")() == 42
    clock = Clock()
    endless = instantiate(
        engine_name, meter(defer_start(module("(func $s (loop $l (br $l))) (start $s)")), initial_fuel=0), clock
    )
    outcome, left, _ = call_with_budget(endless, START_EXPORT)
    assert outcome is clock.raised is not None and fuel_spent_trap(left)  # stopped by the clock


def test_a_module_may_not_take_the_start_export_name() -> None:
    with pytest.raises(GuestLoadError, match="a name the host keeps"):
        defer_start(module(f'(func $s) (start $s) (export "{START_EXPORT}" (func $s))'))
