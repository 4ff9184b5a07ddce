"""The module's limits written into the module itself, so that they hold on every engine.

wasmer-python has no store limits; a memory or table whose declared maximum is N cannot grow
past N on any engine. `cap_memory` and `cap_tables` lower the declared limits before
compiling; `defer_start` turns the start function into an export the host calls under the
deadline."""

from __future__ import annotations

from ._errors import GuestLoadError
from ._wasm_format import (
    MAGIC,
    PAGE,
    REFERENCE_BYTES,
    SECTION_EXPORT,
    SECTION_MEMORY,
    SECTION_START,
    SECTION_TABLE,
    leb,
    read_leb,
)
from ._wasm_module import ParsedModule
from ._wasm_parse import parse_module
from ._wasm_write import rebuild


def _limits_bytes(initial: int, maximum: int) -> bytes:
    return b"\x01" + leb(initial) + leb(maximum)


def cap_memory(wasm: bytes, max_bytes: int) -> bytes:
    """The module with every memory's maximum lowered to `max_bytes` (whole pages).

    Bytes without the Wasm header come back unchanged, for the engine to refuse. Raises
    GuestLoadError for a malformed module, a shared or 64-bit memory, or one that starts over
    the cap.
    """
    if not wasm.startswith(MAGIC):
        return wasm
    max_pages = max(1, max_bytes // PAGE)
    m = parse_module(wasm)
    defined = [memory for memory in m.memories if not memory.imported]
    if not defined:
        return wasm
    body = bytearray(leb(len(defined)))
    for memory in defined:
        if memory.is64 or memory.shared:
            raise GuestLoadError("the guest declares a shared or 64-bit memory, which the host does not run")
        maximum = max_pages if memory.maximum is None else min(memory.maximum, max_pages)
        if memory.initial > maximum:
            raise GuestLoadError(
                f"the guest starts with {memory.initial * PAGE} bytes of memory, over the limit of {max_pages * PAGE}"
            )
        body += _limits_bytes(memory.initial, maximum)
    return rebuild(wasm, m, {SECTION_MEMORY: bytes(body)})


def cap_tables(wasm: bytes, max_elements: int) -> bytes:
    """The module with every table it defines limited to `max_elements` elements, so that
    table.grow past it fails (returns -1) on every engine.

    Bytes without the Wasm header come back unchanged, for the engine to refuse. Raises
    GuestLoadError for a malformed module or a table that starts with more elements than the
    cap, ValueError for a cap that is not a u32.
    """
    if not 0 <= max_elements < 1 << 32:
        raise ValueError(f"a table cap of {max_elements} elements is not a u32")
    if not wasm.startswith(MAGIC):
        return wasm
    m = parse_module(wasm)
    defined = [table for table in m.tables if not table.imported]
    if not defined:
        return wasm
    body = bytearray(leb(len(defined)))
    for table in defined:
        if table.initial > max_elements:
            raise GuestLoadError(
                f"the guest declares a table of {table.initial} elements, over the limit of {max_elements} elements"
            )
        maximum = max_elements if table.maximum is None else min(table.maximum, max_elements)
        body += bytes([REFERENCE_BYTES[table.element]]) + _limits_bytes(table.initial, maximum)
    return rebuild(wasm, m, {SECTION_TABLE: bytes(body)})


#: the name the start function is exported under once `defer_start` has taken it out of the start section
START_EXPORT = "__orders_start"


def defer_start(wasm: bytes) -> bytes:
    """The module without a start section, its start function exported as START_EXPORT instead,
    for the host to call right after instantiating it, as it calls any export: under the
    deadline, with the meter's budget set and readable afterwards (an engine runs a start
    function inside instantiation, where neither is possible everywhere). Raises GuestLoadError."""
    m = parse_module(wasm)
    if m.start is None:
        return wasm
    if any(e.name == START_EXPORT for e in m.exports):
        raise GuestLoadError(f"the guest module exports {START_EXPORT}, a name the host keeps for itself")
    name = START_EXPORT.encode()
    item = leb(len(name)) + name + b"\x00" + leb(m.start)
    section = m.section(SECTION_EXPORT)
    if section is None:
        exports = b"\x01" + item
    else:
        count, pos = read_leb(wasm, section.body)
        exports = leb(count + 1) + wasm[pos : section.end] + item
    without_start = ParsedModule(sections=[s for s in m.sections if s.id != SECTION_START])
    return rebuild(wasm, without_start, {SECTION_EXPORT: exports})
