"""Reading a Wasm module: every section decoded down to the function bodies (left undecoded
for the meter, `_meter_decode`), checked as it is read."""

from __future__ import annotations

from ._errors import GuestLoadError
from ._wasm_format import (
    EXTERNAL_KINDS,
    MAGIC,
    SECTION_CODE,
    SECTION_DATA,
    SECTION_DATA_COUNT,
    SECTION_ELEMENT,
    SECTION_EXPORT,
    SECTION_FUNCTION,
    SECTION_GLOBAL,
    SECTION_IMPORT,
    SECTION_MEMORY,
    SECTION_NAMES,
    SECTION_RANK,
    SECTION_START,
    SECTION_TABLE,
    SECTION_TAG,
    SECTION_TYPE,
    Reader,
    malformed,
)
from ._wasm_module import ExportInfo, FuncType, ImportInfo, ParsedModule, Section, read_global_type, read_memory, read_table

# Extended constant expressions: i32/i64 add, sub and mul.
_CONSTANT_ARITHMETIC = frozenset({0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E})


def _constant(r: Reader, m: ParsedModule, globals_visible: int) -> None:
    """Skips a constant expression, checking every global and function it names."""
    while True:
        start = r.pos
        op = r.byte()
        if op == 0x0B:
            return
        if op == 0x41:
            r.signed(32)
        elif op == 0x42:
            r.signed(64)
        elif op == 0x43:
            r.skip(4)
        elif op == 0x44:
            r.skip(8)
        elif op == 0x23:
            r.index(globals_visible, "global")
        elif op == 0xD0:
            r.reference_type()
        elif op == 0xD2:
            _function_index(r, m)
        elif op not in _CONSTANT_ARITHMETIC:
            raise malformed(f"instruction 0x{op:02x} in a constant expression", start)


def _element_segment(r: Reader, m: ParsedModule) -> None:
    start = r.pos
    flags = r.unsigned()
    if flags > 7:
        raise malformed(f"unknown element segment flags {flags}", start)
    if flags & 1 == 0:  # active: a table and an offset
        if flags & 2:
            r.index(len(m.tables), "table")
        _constant(r, m, m.globals)
    if flags & 4:  # initialised by expressions
        if flags & 3:
            r.reference_type()
        for _ in range(r.count()):
            _constant(r, m, m.globals)
    else:  # by function indices
        if flags & 3:
            kind = r.byte()
            if kind != 0:
                raise malformed(f"unknown element kind 0x{kind:02x}", r.pos - 1)
        for _ in range(r.count()):
            _function_index(r, m)


def _function_index(r: Reader, m: ParsedModule, what: str = "function") -> int:
    """A function index, noted in `m.function_refs`."""
    start = r.pos
    value = r.index(len(m.function_types), what)
    m.function_refs.append((start, r.pos, value))
    return value


def _data_segment(r: Reader, m: ParsedModule) -> None:
    start = r.pos
    flags = r.unsigned()
    if flags > 2:
        raise malformed(f"unknown data segment flags {flags}", start)
    if flags == 2:
        r.index(len(m.memories), "memory")
    if flags != 1:
        _constant(r, m, m.globals)
    r.skip(r.count())


def _parse_section(r: Reader, id: int, m: ParsedModule) -> None:
    if id == SECTION_TYPE:
        for _ in range(r.count()):
            start = r.pos
            if r.byte() != 0x60:
                raise malformed("a type that is not a function type", start)
            params = tuple(r.value_type() for _ in range(r.count()))
            results = tuple(r.value_type() for _ in range(r.count()))
            m.types.append(FuncType(params, results))
    elif id == SECTION_IMPORT:
        for _ in range(r.count()):
            module, name = r.name(), r.name()
            start = r.pos
            kind = r.byte()
            if kind == 0:
                type_index = r.index(len(m.types), "type")
                m.function_types.append(type_index)
                m.imported_functions += 1
                m.imports.append(ImportInfo(module, name, "func", m.types[type_index]))
                continue
            if kind == 1:
                m.tables.append(read_table(r, imported=True))
            elif kind == 2:
                m.memories.append(read_memory(r, imported=True))
            elif kind == 3:
                read_global_type(r)
                m.globals += 1
            else:
                raise malformed(f"an import of unknown kind 0x{kind:02x}", start)
            m.imports.append(ImportInfo(module, name, EXTERNAL_KINDS[kind]))
    elif id == SECTION_FUNCTION:
        for _ in range(r.count()):
            m.function_types.append(r.index(len(m.types), "type"))
    elif id == SECTION_TABLE:
        for _ in range(r.count()):
            m.tables.append(read_table(r, imported=False))
    elif id == SECTION_MEMORY:
        for _ in range(r.count()):
            m.memories.append(read_memory(r, imported=False))
    elif id == SECTION_GLOBAL:
        for _ in range(r.count()):
            read_global_type(r)
            _constant(r, m, m.globals)
            m.globals += 1
    elif id == SECTION_EXPORT:
        seen = set()
        for _ in range(r.count()):
            start = r.pos
            name = r.name()
            if name in seen:
                raise malformed(f"two exports named {name!r}", start)
            seen.add(name)
            kind = r.byte()
            if kind > 3:
                raise malformed(f"an export of unknown kind 0x{kind:02x}", r.pos - 1)
            if kind == 0:
                index = _function_index(r, m, EXTERNAL_KINDS[kind])
            else:
                index = r.index((len(m.tables), len(m.memories), m.globals)[kind - 1], EXTERNAL_KINDS[kind])
            func_type = m.types[m.function_types[index]] if kind == 0 else None
            m.exports.append(ExportInfo(name, EXTERNAL_KINDS[kind], index, func_type))
    elif id == SECTION_START:
        m.start = _function_index(r, m)
    elif id == SECTION_ELEMENT:
        for _ in range(r.count()):
            _element_segment(r, m)
    elif id == SECTION_DATA_COUNT:
        m.data_count = r.unsigned()
    elif id == SECTION_CODE:
        count = r.count()
        if count != len(m.function_types) - m.imported_functions:
            raise malformed(f"{count} function bodies for {len(m.function_types) - m.imported_functions} functions", r.pos)
        for _ in range(count):
            size = r.count()
            m.bodies.append((r.pos, r.pos + size))
            r.skip(size)
    elif id == SECTION_DATA:
        count = r.count()
        if m.data_count is not None and count != m.data_count:
            raise malformed(f"{count} data segments, but the data count section says {m.data_count}", r.pos)
        for _ in range(count):
            _data_segment(r, m)
    r.done(f"{SECTION_NAMES[id]} section")


def parse_module(wasm: bytes) -> ParsedModule:
    """Every section of a module, decoded down to the function bodies (left undecoded).

    Raises GuestLoadError when the bytes are not a module this parser reads in full.
    """
    if not wasm.startswith(MAGIC):
        raise GuestLoadError("the guest module does not compile: it does not start with the header of Wasm version 1")
    m = ParsedModule()
    r = Reader(wasm, len(MAGIC), len(wasm))
    rank = 0
    while r.pos < len(wasm):
        start = r.pos
        id = r.byte()
        size = r.unsigned()
        if size > len(wasm) - r.pos:
            raise malformed(f"a section of {size} bytes past the end of the module", start)
        section = Section(id, start, r.pos, r.pos + size)
        body = Reader(wasm, section.body, section.end)
        if id == 0:
            m.custom.append(body.name())
        elif id == SECTION_TAG:
            raise GuestLoadError("the guest module uses exception handling (a tag section), which the host does not run")
        elif id not in SECTION_RANK:
            raise malformed(f"unknown section id {id}", start)
        elif SECTION_RANK[id] <= rank:
            raise malformed(f"the {SECTION_NAMES[id]} section out of order or repeated", start)
        else:
            rank = SECTION_RANK[id]
            _parse_section(body, id, m)
        m.sections.append(section)
        r.pos = section.end
    defined = len(m.function_types) - m.imported_functions
    if defined and not m.bodies:
        raise malformed(f"{defined} functions but no code section", len(wasm))
    if m.data_count is not None and m.section(SECTION_DATA) is None and m.data_count:
        raise malformed(f"no data section, but the data count section says {m.data_count}", len(wasm))
    return m
