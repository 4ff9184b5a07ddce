"""A guest trap's log line names the guest functions on its stack, from the symbol map that
guest/build.sh writes beside the stripped module (`orders.wasm.names`), on every engine."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType

import wasmtime

from service import EmbeddedMariaDB
from service._guest import DEFAULT_MODULE
from service._wasm_inspect import inspect

from .conftest import ROOT, Service, make_database, url_of
from .wat_guests import INSERT_LEN, RESPOND, wat_guest


def wasm_names() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wasm_names", ROOT / "guest" / "wasm_names.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exported_functions(wasm: bytes) -> dict[str, int]:
    return {e.name: e.index for e in inspect(wasm).exports if e.kind == "func"}


def test_the_built_guest_has_its_names_beside_it_not_in_it() -> None:
    wasm = DEFAULT_MODULE.read_bytes()
    names_file = DEFAULT_MODULE.with_name("orders.wasm.names")
    names = dict(line.split("\t") for line in names_file.read_text().splitlines())
    stripped, inside = wasm_names().split(wasm)
    assert stripped == wasm and inside == {}  # no name section, no DWARF
    exports = exported_functions(wasm)
    for export in ("handle", "resume", "alloc", "describe"):
        assert names[str(exports[export])] == export
    assert "orders_guest::kit::wasm::suspend" in names.values()  # demangled, without the hash
    assert not [n for n in names.values() if n.startswith("_ZN")]


def test_rust_symbols_are_demangled() -> None:
    demangle = wasm_names().demangle
    assert demangle("_ZN12orders_guest3kit4wasm7suspend17hea5fca7db547b96bE") == "orders_guest::kit::wasm::suspend"
    assert demangle("_ZN5alloc7raw_vec19RawVec$LT$T$C$A$GT$16reserve_for_push17h222557d9bf4c8dc5E.llvm.123") == (
        "alloc::raw_vec::RawVec<T,A>::reserve_for_push"
    )
    assert demangle("handle") == "handle" and demangle("_ZNnot a symbolE") == "_ZNnot a symbolE"


# Traps after a database call, two functions deep: the stack runs through `resume`.
TRAPPING = wat_guest(
    f"(drop (call $db_execute (i32.const 4096) (i32.const {INSERT_LEN}))) (call $check_the_rows) {RESPOND}",
    extra="(func $check_the_rows (call $deep_in_the_logic)) (func $deep_in_the_logic (unreachable))",
)


def build_with_names(wat: str, directory: Path) -> Path:
    """The module as guest/build.sh makes the real one: asyncified with its names, then split
    into a stripped module and its symbol map."""
    raw, named = directory / "raw.wasm", directory / "named.wasm"
    raw.write_bytes(wasmtime.wat2wasm(wat))
    subprocess.run(
        ["wasm-opt", "-g", "--asyncify", "--pass-arg=asyncify-imports@", "--pass-arg=asyncify-removelist@handle,resume"]
        + [str(raw), "-o", str(named)],
        check=True,
    )
    module = directory / "orders.wasm"
    wasm_names().main(str(named), str(module), str(directory / "orders.wasm.names"))
    return module


def test_a_trap_names_the_guest_functions_on_its_stack(mariadb: EmbeddedMariaDB, engine: str, tmp_path: Path) -> None:
    module = build_with_names(TRAPPING, tmp_path)
    names = module.with_name("orders.wasm.names").read_text()
    assert "\tdeep_in_the_logic\n" in names and "deep_in_the_logic" not in str(module.read_bytes())
    db = make_database(mariadb, f"orders_trap_names_{engine}")
    env = {"DATABASE_URL": url_of(db), "WASM_ENGINE": engine, "GUEST_MODULE": str(module)}
    svc = Service(env, tmp_path / "service.log")
    try:
        answer = svc.client.get("/orders")
        assert answer.status_code == 500, answer.text
        error_id = answer.json()["error"]["error_id"]
        assert "deep_in_the_logic" not in answer.text  # names are for the log, not the client
    finally:
        svc.stop()
    line = next(line for line in svc.log().splitlines() if f"guest fault {error_id}" in line)
    assert re.search(r"guest stack: deep_in_the_logic < check_the_rows < serve < resume\b", line), line


AS_MODULE = ROOT / "service" / "guest" / "orders-as.wasm"


def test_the_assemblyscript_guest_has_its_names_beside_it_not_in_it() -> None:
    wasm = AS_MODULE.read_bytes()
    names = dict(line.split("\t") for line in AS_MODULE.with_name("orders-as.wasm.names").read_text().splitlines())
    stripped, inside = wasm_names().split(wasm)
    assert stripped == wasm and inside == {}
    exports = exported_functions(wasm)
    for export in ("handle", "resume", "alloc", "describe"):
        assert names[str(exports[export])] == f"assembly/kit/abi/{export}"
    assert "assembly/kit/db/suspend" in names.values()


def test_an_assemblyscript_trap_names_its_functions(mariadb: EmbeddedMariaDB, engine: str, tmp_path: Path) -> None:
    """The AssemblyScript guest run out of memory (a 2 MiB limit, a body of 900 KB of nulls):
    the log line names the AssemblyScript functions it was in."""
    db = make_database(mariadb, f"orders_trap_names_as_{engine}")
    env = {"DATABASE_URL": url_of(db), "WASM_ENGINE": engine, "GUEST_MODULE": str(AS_MODULE), "GUEST_MEMORY_LIMIT_MB": "2"}
    svc = Service(env, tmp_path / "service.log")
    try:
        answer = svc.client.post("/create_orders", content=b"[" + b"null," * 180_000 + b"null]")
        assert answer.status_code == 500, answer.text
    finally:
        svc.stop()
    line = next(line for line in svc.log().splitlines() if "guest stack:" in line)
    stack = r"assembly/kit/json/Parser#parseAll < assembly/input/parseJson < assembly/kit/abi/serve < assembly/kit/abi/handle$"
    assert re.search(stack, line), line
