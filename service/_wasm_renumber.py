"""A function import added to a module, and every function the module defines renumbered to
make room for it (the meter's clock, `_metering`)."""

from __future__ import annotations

from ._errors import GuestLoadError
from ._wasm_format import (
    SECTION_DATA,
    SECTION_ELEMENT,
    SECTION_EXPORT,
    SECTION_GLOBAL,
    SECTION_IMPORT,
    SECTION_START,
    SECTION_TYPE,
    Reader,
    leb,
)
from ._wasm_module import ParsedModule, Section
from ._wasm_write import name_bytes, section_contents, vector_appended

# The subsections of the name section that map function indices: function names (a name map),
# local names and label names (an indirect name map: a name map per function).
_NAME_FUNCTIONS, _NAME_LOCALS, _NAME_LABELS = 1, 2, 3


def with_function_import(
    wasm: bytes, m: ParsedModule, module: str, name: str
) -> tuple[dict[int, bytes], dict[int, bytes | None]]:
    """What changes outside the code section when a function import `module`.`name` of type
    () -> () is added after the module's function imports, at index `m.imported_functions`:
    the contents of the sections to replace and the custom sections to replace or drop, for
    `rebuild`. The type () -> () is appended to the type section (no type moves), and every
    function the module defines moves up by one: in exports, the start section, element
    segments and ref.func in constant expressions, and in the name section, whose function,
    local and label names are renumbered (and the new function named `name`). A name section
    this cannot read is dropped: it is only for debugging. The function bodies' own calls and
    ref.func are the caller's to renumber.

    The contents of the global and export sections are always given when the module has them,
    for the caller to append to.
    """
    at = m.imported_functions
    bodies = {
        SECTION_TYPE: vector_appended(section_contents(wasm, m, SECTION_TYPE), b"\x60\x00\x00"),
        SECTION_IMPORT: vector_appended(
            section_contents(wasm, m, SECTION_IMPORT), name_bytes(module) + name_bytes(name) + b"\x00" + leb(len(m.types))
        ),
    }
    for section in m.sections:
        if section.id not in (SECTION_GLOBAL, SECTION_EXPORT, SECTION_START, SECTION_ELEMENT, SECTION_DATA):
            continue
        refs = [
            (start, end, index) for start, end, index in m.function_refs if section.body <= start < section.end and index >= at
        ]
        if refs or section.id in (SECTION_GLOBAL, SECTION_EXPORT):
            out = bytearray()
            last = section.body
            for start, end, index in refs:
                out += wasm[last:start] + leb(index + 1)
                last = end
            out += wasm[last : section.end]
            bodies[section.id] = bytes(out)
    custom: dict[int, bytes | None] = {}
    for section in m.sections:
        if section.id == 0 and Reader(wasm, section.body, section.end).name() == "name":
            custom[section.start] = _names_renumbered(wasm, section, at, name)
    return bodies, custom


def _names_renumbered(wasm: bytes, section: Section, at: int, name: str) -> bytes | None:
    """The name section with every function index from `at` on moved up by one, and function
    `at` named `name`; None when it cannot be read."""
    r = Reader(wasm, section.body, section.end)
    try:
        r.name()
        out = bytearray(wasm[section.body : r.pos])
        while r.pos < r.end:
            id = r.byte()
            size = r.count()
            sub = Reader(wasm, r.pos, r.pos + size)
            r.skip(size)
            if id == _NAME_FUNCTIONS:
                body = _name_map_renumbered(sub, at, leb(at) + name_bytes(name))
            elif id in (_NAME_LOCALS, _NAME_LABELS):
                body = _name_map_renumbered(sub, at, None, indirect=True)
            else:
                body = wasm[sub.pos : sub.end]
            out += bytes([id]) + leb(len(body)) + body
        return bytes(out)
    except GuestLoadError:
        return None


def _name_map_renumbered(r: Reader, at: int, insert: bytes | None, indirect: bool = False) -> bytes:
    """A name map (function index, name), or an indirect one (function index, name map), with
    indices from `at` on moved up by one and `insert` put in at `at`. Raises GuestLoadError
    when it cannot be read."""
    count = r.count()
    out = bytearray(leb(count + (insert is not None)))
    for _ in range(count):
        index = r.unsigned()
        start = r.pos
        if indirect:
            for _ in range(r.count()):
                r.unsigned()
                r.skip(r.count())
        else:
            r.skip(r.count())
        if index >= at:
            if insert is not None:
                out += insert
                insert = None
            index += 1
        out += leb(index) + r.data[start : r.pos]
    if insert is not None:
        out += insert
    r.done("name map")
    return bytes(out)
