"""The guest's Wasm binary, decoded and rewritten here, so that its limits live in the module itself.

wasmer-python has no store limits; a memory or table whose declared maximum is N cannot grow
past N on any engine. `cap_memory` and `cap_tables` rewrite the declared limits before
compiling. `inspect` decodes a module's outline (imports and exports with their types,
memories, tables), so the host can check a module before it calls into it. `_metering` rewrites
the code with the same parser, and adds the import of the host's clock with
`_with_function_import`, which renumbers every function the module defines.

Decoding is strict: whatever this parser does not know (a section, a type, a feature) is
refused with GuestLoadError rather than passed on for an engine to read in its own way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._errors import GuestLoadError

PAGE = 65536
_MAGIC = b"\0asm\x01\0\0\0"
_TYPE, _IMPORT, _FUNCTION, _TABLE, _MEMORY, _GLOBAL, _EXPORT, _START, _ELEMENT, _CODE, _DATA, _DATA_COUNT = range(1, 13)
_TAG = 13
_SECTION_NAMES = {
    0: "custom",
    _TYPE: "type",
    _IMPORT: "import",
    _FUNCTION: "function",
    _TABLE: "table",
    _MEMORY: "memory",
    _GLOBAL: "global",
    _EXPORT: "export",
    _START: "start",
    _ELEMENT: "element",
    _CODE: "code",
    _DATA: "data",
    _DATA_COUNT: "data count",
}
# Where each known section must stand: the data count section comes before the code section.
_SECTION_RANK = {
    _TYPE: 1,
    _IMPORT: 2,
    _FUNCTION: 3,
    _TABLE: 4,
    _MEMORY: 5,
    _GLOBAL: 6,
    _EXPORT: 7,
    _START: 8,
    _ELEMENT: 9,
    _DATA_COUNT: 10,
    _CODE: 11,
    _DATA: 12,
}
VALUE_TYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128", 0x70: "funcref", 0x6F: "externref"}
REFERENCE_TYPES = {0x70: "funcref", 0x6F: "externref"}
_REFERENCE_BYTES = {name: byte for byte, name in REFERENCE_TYPES.items()}
EXTERNAL_KINDS = ("func", "table", "memory", "global")
# wasmparser's limit on a function's locals (parameters included): no engine here compiles more.
MAX_LOCALS = 50_000


@dataclass(frozen=True)
class FuncType:
    """A function's parameter and result types, as "i32", "i64", "f32", "f64", "v128", "funcref", "externref"."""

    params: tuple[str, ...]
    results: tuple[str, ...]

    def __str__(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})"


@dataclass(frozen=True)
class ImportInfo:
    module: str
    name: str
    kind: str  # "func", "table", "memory" or "global"
    type: FuncType | None = None  # for a function


@dataclass(frozen=True)
class ExportInfo:
    name: str
    kind: str  # "func", "table", "memory" or "global"
    index: int
    type: FuncType | None = None  # for a function


@dataclass(frozen=True)
class MemoryInfo:
    initial: int  # pages
    maximum: int | None  # pages
    is64: bool
    shared: bool
    imported: bool = False


@dataclass(frozen=True)
class TableInfo:
    element: str  # "funcref" or "externref"
    initial: int
    maximum: int | None
    imported: bool = False


@dataclass(frozen=True)
class ModuleInfo:
    """The outline of a module: what it imports and exports, with which types, and what it declares."""

    imports: tuple[ImportInfo, ...]
    exports: tuple[ExportInfo, ...]
    memories: tuple[MemoryInfo, ...]  # imported ones first, as they are numbered
    tables: tuple[TableInfo, ...]  # imported ones first
    globals: int  # imported and defined
    functions: int  # imported and defined
    has_start: bool
    custom_sections: tuple[str, ...]

    def export(self, name: str) -> ExportInfo | None:
        """The export called `name`, or None."""
        return next((e for e in self.exports if e.name == name), None)


@dataclass
class _Section:
    id: int
    start: int  # the offset of its id byte
    body: int  # the offset of its contents
    end: int  # the offset just past them


@dataclass
class _Module:
    """What the rewriters need of a parsed module; offsets are into the original bytes."""

    sections: list[_Section] = field(default_factory=list)
    types: list[FuncType] = field(default_factory=list)
    imports: list[ImportInfo] = field(default_factory=list)
    function_types: list[int] = field(default_factory=list)  # a type index per function, imported ones first
    imported_functions: int = 0
    tables: list[TableInfo] = field(default_factory=list)
    memories: list[MemoryInfo] = field(default_factory=list)
    globals: int = 0  # imported and defined
    exports: list[ExportInfo] = field(default_factory=list)
    start: int | None = None
    data_count: int | None = None
    bodies: list[tuple[int, int]] = field(default_factory=list)  # (start, end) of each defined function's body
    custom: list[str] = field(default_factory=list)
    # (start, end, index) of every function index outside the code section: in exports, the
    # start section, element segments and ref.func in constant expressions
    function_refs: list[tuple[int, int, int]] = field(default_factory=list)

    def section(self, id: int) -> _Section | None:
        return next((s for s in self.sections if s.id == id), None)


def _malformed(what: str, pos: int) -> GuestLoadError:
    return GuestLoadError(f"the guest module is malformed: {what} (at byte {pos})")


class _Reader:
    """Reads values of the binary format from `data[pos:end]`; raises GuestLoadError past `end`."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise _malformed("unexpected end of a section or function", self.pos)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def skip(self, count: int) -> bytes:
        if self.pos + count > self.end:
            raise _malformed("unexpected end of a section or function", self.end)
        self.pos += count
        return self.data[self.pos - count : self.pos]

    def unsigned(self, bits: int = 32) -> int:
        start = self.pos
        try:
            value, self.pos = leb_unsigned(self.data, self.pos, bits, self.end)
        except ValueError as e:
            raise _malformed(str(e), start) from None
        return value

    def signed(self, bits: int) -> int:
        start = self.pos
        try:
            value, self.pos = leb_signed(self.data, self.pos, bits, self.end)
        except ValueError as e:
            raise _malformed(str(e), start) from None
        return value

    def count(self) -> int:
        """A vector's length or a size, which cannot be more than the bytes left (each item takes
        one at least)."""
        start = self.pos
        value = self.unsigned()
        if value > self.end - self.pos:
            raise _malformed(f"a count of {value} that the section cannot hold", start)
        return value

    def name(self) -> str:
        start = self.pos
        raw = self.skip(self.count())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("a name that is not UTF-8", start) from None

    def value_type(self) -> str:
        byte = self.byte()
        if byte not in VALUE_TYPES:
            raise _malformed(f"unknown value type 0x{byte:02x}", self.pos - 1)
        return VALUE_TYPES[byte]

    def reference_type(self) -> str:
        byte = self.byte()
        if byte not in REFERENCE_TYPES:
            raise _malformed(f"unknown reference type 0x{byte:02x}", self.pos - 1)
        return REFERENCE_TYPES[byte]

    def index(self, limit: int, what: str) -> int:
        start = self.pos
        value = self.unsigned()
        if value >= limit:
            raise _malformed(f"{what} {value} out of range (there are {limit})", start)
        return value

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise _malformed(f"{self.end - self.pos} stray bytes at the end of the {what}", self.pos)


def leb_unsigned(data: bytes, pos: int, bits: int = 32, end: int | None = None) -> tuple[int, int]:
    """The unsigned LEB128 number at `pos`, and the offset after it. Raises ValueError when it is
    longer or larger than `bits` allow, or runs past `end` (IndexError past the data itself)."""
    value, pos, _ = _leb_groups(data, pos, bits, end)
    if value >> bits:
        raise ValueError(f"a LEB128 number over {bits} bits")
    return value, pos


def leb_signed(data: bytes, pos: int, bits: int, end: int | None = None) -> tuple[int, int]:
    """The signed LEB128 number at `pos`, and the offset after it; raises as `leb_unsigned`."""
    value, pos, shift = _leb_groups(data, pos, bits, end)
    if data[pos - 1] & 0x40:
        value -= 1 << shift
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise ValueError(f"a signed LEB128 number over {bits} bits")
    return value, pos


def _leb_groups(data: bytes, pos: int, bits: int, end: int | None) -> tuple[int, int, int]:
    """The 7-bit groups of a LEB128 number as an unsigned value, the offset after them, and the
    number of bits they hold."""
    end = len(data) if end is None else end
    value = shift = 0
    while True:
        if pos >= end:
            raise ValueError("unexpected end of a section or function")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos, shift
        if shift >= bits:
            raise ValueError(f"a LEB128 number longer than {bits} bits")


def _read_leb(data: bytes, pos: int) -> tuple[int, int]:
    """A u32 at `pos` and the offset after it; raises GuestLoadError when it is malformed."""
    reader = _Reader(data, pos, len(data))
    return reader.unsigned(), reader.pos


def _leb(value: int) -> bytes:
    """An unsigned LEB128 number."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _sleb(value: int) -> bytes:
    """A signed LEB128 number."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _limits(r: _Reader, memory: bool) -> tuple[int, int | None, bool, bool]:
    """(initial, maximum, 64-bit, shared) of a table's or memory's limits."""
    start = r.pos
    flags = r.byte()
    if flags > (7 if memory else 1):
        raise _malformed(f"unknown limits flags 0x{flags:02x}", start)
    is64, shared = bool(flags & 4), bool(flags & 2)
    bits = 64 if is64 else 32
    initial = r.unsigned(bits)
    maximum = r.unsigned(bits) if flags & 1 else None
    if maximum is not None and maximum < initial:
        raise _malformed(f"a maximum size of {maximum} under the initial {initial}", start)
    return initial, maximum, is64, shared


def _table(r: _Reader, imported: bool) -> TableInfo:
    element = r.reference_type()
    initial, maximum, _, _ = _limits(r, memory=False)
    return TableInfo(element, initial, maximum, imported)


def _memory(r: _Reader, imported: bool) -> MemoryInfo:
    initial, maximum, is64, shared = _limits(r, memory=True)
    return MemoryInfo(initial, maximum, is64, shared, imported)


def _global_type(r: _Reader) -> None:
    r.value_type()
    start = r.pos
    if r.byte() > 1:
        raise _malformed("a global that is neither mutable nor immutable", start)


# Extended constant expressions: i32/i64 add, sub and mul.
_CONSTANT_ARITHMETIC = frozenset({0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E})


def _constant(r: _Reader, m: _Module, globals_visible: int) -> None:
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
            raise _malformed(f"instruction 0x{op:02x} in a constant expression", start)


def _element_segment(r: _Reader, m: _Module) -> None:
    start = r.pos
    flags = r.unsigned()
    if flags > 7:
        raise _malformed(f"unknown element segment flags {flags}", start)
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
                raise _malformed(f"unknown element kind 0x{kind:02x}", r.pos - 1)
        for _ in range(r.count()):
            _function_index(r, m)


def _function_index(r: _Reader, m: _Module, what: str = "function") -> int:
    """A function index, noted in `m.function_refs`."""
    start = r.pos
    value = r.index(len(m.function_types), what)
    m.function_refs.append((start, r.pos, value))
    return value


def _data_segment(r: _Reader, m: _Module) -> None:
    start = r.pos
    flags = r.unsigned()
    if flags > 2:
        raise _malformed(f"unknown data segment flags {flags}", start)
    if flags == 2:
        r.index(len(m.memories), "memory")
    if flags != 1:
        _constant(r, m, m.globals)
    r.skip(r.count())


def _parse_section(r: _Reader, id: int, m: _Module) -> None:
    if id == _TYPE:
        for _ in range(r.count()):
            start = r.pos
            if r.byte() != 0x60:
                raise _malformed("a type that is not a function type", start)
            params = tuple(r.value_type() for _ in range(r.count()))
            results = tuple(r.value_type() for _ in range(r.count()))
            m.types.append(FuncType(params, results))
    elif id == _IMPORT:
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
                m.tables.append(_table(r, imported=True))
            elif kind == 2:
                m.memories.append(_memory(r, imported=True))
            elif kind == 3:
                _global_type(r)
                m.globals += 1
            else:
                raise _malformed(f"an import of unknown kind 0x{kind:02x}", start)
            m.imports.append(ImportInfo(module, name, EXTERNAL_KINDS[kind]))
    elif id == _FUNCTION:
        for _ in range(r.count()):
            m.function_types.append(r.index(len(m.types), "type"))
    elif id == _TABLE:
        for _ in range(r.count()):
            m.tables.append(_table(r, imported=False))
    elif id == _MEMORY:
        for _ in range(r.count()):
            m.memories.append(_memory(r, imported=False))
    elif id == _GLOBAL:
        for _ in range(r.count()):
            _global_type(r)
            _constant(r, m, m.globals)
            m.globals += 1
    elif id == _EXPORT:
        seen = set()
        for _ in range(r.count()):
            start = r.pos
            name = r.name()
            if name in seen:
                raise _malformed(f"two exports named {name!r}", start)
            seen.add(name)
            kind = r.byte()
            if kind > 3:
                raise _malformed(f"an export of unknown kind 0x{kind:02x}", r.pos - 1)
            if kind == 0:
                index = _function_index(r, m, EXTERNAL_KINDS[kind])
            else:
                index = r.index((len(m.tables), len(m.memories), m.globals)[kind - 1], EXTERNAL_KINDS[kind])
            func_type = m.types[m.function_types[index]] if kind == 0 else None
            m.exports.append(ExportInfo(name, EXTERNAL_KINDS[kind], index, func_type))
    elif id == _START:
        m.start = _function_index(r, m)
    elif id == _ELEMENT:
        for _ in range(r.count()):
            _element_segment(r, m)
    elif id == _DATA_COUNT:
        m.data_count = r.unsigned()
    elif id == _CODE:
        count = r.count()
        if count != len(m.function_types) - m.imported_functions:
            raise _malformed(f"{count} function bodies for {len(m.function_types) - m.imported_functions} functions", r.pos)
        for _ in range(count):
            size = r.count()
            m.bodies.append((r.pos, r.pos + size))
            r.skip(size)
    elif id == _DATA:
        count = r.count()
        if m.data_count is not None and count != m.data_count:
            raise _malformed(f"{count} data segments, but the data count section says {m.data_count}", r.pos)
        for _ in range(count):
            _data_segment(r, m)
    r.done(f"{_SECTION_NAMES[id]} section")


def _parse(wasm: bytes) -> _Module:
    """Every section of a module, decoded down to the function bodies (left undecoded).

    Raises GuestLoadError when the bytes are not a module this parser reads in full.
    """
    if not wasm.startswith(_MAGIC):
        raise GuestLoadError("the guest module does not compile: it does not start with the header of Wasm version 1")
    m = _Module()
    r = _Reader(wasm, len(_MAGIC), len(wasm))
    rank = 0
    while r.pos < len(wasm):
        start = r.pos
        id = r.byte()
        size = r.unsigned()
        if size > len(wasm) - r.pos:
            raise _malformed(f"a section of {size} bytes past the end of the module", start)
        section = _Section(id, start, r.pos, r.pos + size)
        body = _Reader(wasm, section.body, section.end)
        if id == 0:
            m.custom.append(body.name())
        elif id == _TAG:
            raise GuestLoadError("the guest module uses exception handling (a tag section), which the host does not run")
        elif id not in _SECTION_RANK:
            raise _malformed(f"unknown section id {id}", start)
        elif _SECTION_RANK[id] <= rank:
            raise _malformed(f"the {_SECTION_NAMES[id]} section out of order or repeated", start)
        else:
            rank = _SECTION_RANK[id]
            _parse_section(body, id, m)
        m.sections.append(section)
        r.pos = section.end
    defined = len(m.function_types) - m.imported_functions
    if defined and not m.bodies:
        raise _malformed(f"{defined} functions but no code section", len(wasm))
    if m.data_count is not None and m.section(_DATA) is None and m.data_count:
        raise _malformed(f"no data section, but the data count section says {m.data_count}", len(wasm))
    return m


def inspect(wasm: bytes) -> ModuleInfo:
    """The outline of a module; raises GuestLoadError, in one line, when it is malformed."""
    m = _parse(wasm)
    return ModuleInfo(
        imports=tuple(m.imports),
        exports=tuple(m.exports),
        memories=tuple(m.memories),
        tables=tuple(m.tables),
        globals=m.globals,
        functions=len(m.function_types),
        has_start=m.start is not None,
        custom_sections=tuple(m.custom),
    )


def _rebuild(wasm: bytes, m: _Module, bodies: dict[int, bytes], custom: dict[int, bytes | None] | None = None) -> bytes:
    """The module with the contents of the sections in `bodies` replaced; a section the module
    lacks is inserted where it belongs. `custom`: the custom sections replaced (by the offset
    where each starts: its new contents, its name included) or dropped (None). Every other
    section, custom ones included, is kept as it was, in its place."""
    custom = custom or {}
    out = bytearray(_MAGIC)
    missing = {id: body for id, body in bodies.items() if m.section(id) is None}

    def insert_before(rank: int) -> None:
        for id in sorted(missing, key=_SECTION_RANK.__getitem__):
            if _SECTION_RANK[id] < rank:
                out.extend(bytes([id]) + _leb(len(missing[id])) + missing.pop(id))

    for section in m.sections:
        if section.id in _SECTION_RANK:
            insert_before(_SECTION_RANK[section.id])
        if section.id in bodies and section.id not in missing:
            body = bodies[section.id]
            out += bytes([section.id]) + _leb(len(body)) + body
        elif section.id == 0 and section.start in custom:
            replaced = custom[section.start]
            if replaced is not None:
                out += b"\x00" + _leb(len(replaced)) + replaced
        else:
            out += wasm[section.start : section.end]
    insert_before(len(_SECTION_RANK) + 1)
    return bytes(out)


def _limits_bytes(initial: int, maximum: int) -> bytes:
    return b"\x01" + _leb(initial) + _leb(maximum)


def cap_memory(wasm: bytes, max_bytes: int) -> bytes:
    """The module with every memory's maximum lowered to `max_bytes` (whole pages).

    Bytes without the Wasm header come back unchanged, for the engine to refuse. Raises
    GuestLoadError for a malformed module, a shared or 64-bit memory, or one that starts over
    the cap.
    """
    if not wasm.startswith(_MAGIC):
        return wasm
    max_pages = max(1, max_bytes // PAGE)
    m = _parse(wasm)
    defined = [memory for memory in m.memories if not memory.imported]
    if not defined:
        return wasm
    body = bytearray(_leb(len(defined)))
    for memory in defined:
        if memory.is64 or memory.shared:
            raise GuestLoadError("the guest declares a shared or 64-bit memory, which the host does not run")
        maximum = max_pages if memory.maximum is None else min(memory.maximum, max_pages)
        if memory.initial > maximum:
            raise GuestLoadError(
                f"the guest starts with {memory.initial * PAGE} bytes of memory, over the limit of {max_pages * PAGE}"
            )
        body += _limits_bytes(memory.initial, maximum)
    return _rebuild(wasm, m, {_MEMORY: bytes(body)})


def cap_tables(wasm: bytes, max_elements: int) -> bytes:
    """The module with every table it defines limited to `max_elements` elements, so that
    table.grow past it fails (returns -1) on every engine.

    Bytes without the Wasm header come back unchanged, for the engine to refuse. Raises
    GuestLoadError for a malformed module or a table that starts with more elements than the
    cap, ValueError for a cap that is not a u32.
    """
    if not 0 <= max_elements < 1 << 32:
        raise ValueError(f"a table cap of {max_elements} elements is not a u32")
    if not wasm.startswith(_MAGIC):
        return wasm
    m = _parse(wasm)
    defined = [table for table in m.tables if not table.imported]
    if not defined:
        return wasm
    body = bytearray(_leb(len(defined)))
    for table in defined:
        if table.initial > max_elements:
            raise GuestLoadError(
                f"the guest declares a table of {table.initial} elements, over the limit of {max_elements} elements"
            )
        maximum = max_elements if table.maximum is None else min(table.maximum, max_elements)
        body += bytes([_REFERENCE_BYTES[table.element]]) + _limits_bytes(table.initial, maximum)
    return _rebuild(wasm, m, {_TABLE: bytes(body)})


#: the name the start function is exported under once `defer_start` has taken it out of the start section
START_EXPORT = "__orders_start"


def defer_start(wasm: bytes) -> bytes:
    """The module without a start section, its start function exported as START_EXPORT instead,
    for the host to call right after instantiating it, as it calls any export: under the
    deadline, with the meter's budget set and readable afterwards (an engine runs a start
    function inside instantiation, where neither is possible everywhere). Raises GuestLoadError."""
    m = _parse(wasm)
    if m.start is None:
        return wasm
    if any(e.name == START_EXPORT for e in m.exports):
        raise GuestLoadError(f"the guest module exports {START_EXPORT}, a name the host keeps for itself")
    name = START_EXPORT.encode()
    item = _leb(len(name)) + name + b"\x00" + _leb(m.start)
    section = m.section(_EXPORT)
    if section is None:
        exports = b"\x01" + item
    else:
        count, pos = _read_leb(wasm, section.body)
        exports = _leb(count + 1) + wasm[pos : section.end] + item
    without_start = _Module(sections=[s for s in m.sections if s.id != _START])
    return _rebuild(wasm, without_start, {_EXPORT: exports})


# --- a function import added, and the functions renumbered ---------------------------------------

# The subsections of the name section that map function indices: function names (a name map),
# local names and label names (an indirect name map: a name map per function).
_NAME_FUNCTIONS, _NAME_LOCALS, _NAME_LABELS = 1, 2, 3


def _with_function_import(wasm: bytes, m: _Module, module: str, name: str) -> tuple[dict[int, bytes], dict[int, bytes | None]]:
    """What changes outside the code section when a function import `module`.`name` of type
    () -> () is added after the module's function imports, at index `m.imported_functions`:
    the contents of the sections to replace and the custom sections to replace or drop, for
    `_rebuild`. The type () -> () is appended to the type section (no type moves), and every
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
        _TYPE: _vector_appended(_contents(wasm, m, _TYPE), b"\x60\x00\x00"),
        _IMPORT: _vector_appended(_contents(wasm, m, _IMPORT), _name(module) + _name(name) + b"\x00" + _leb(len(m.types))),
    }
    for section in m.sections:
        if section.id not in (_GLOBAL, _EXPORT, _START, _ELEMENT, _DATA):
            continue
        refs = [
            (start, end, index) for start, end, index in m.function_refs if section.body <= start < section.end and index >= at
        ]
        if refs or section.id in (_GLOBAL, _EXPORT):
            out = bytearray()
            last = section.body
            for start, end, index in refs:
                out += wasm[last:start] + _leb(index + 1)
                last = end
            out += wasm[last : section.end]
            bodies[section.id] = bytes(out)
    custom: dict[int, bytes | None] = {}
    for section in m.sections:
        if section.id == 0 and _Reader(wasm, section.body, section.end).name() == "name":
            custom[section.start] = _names_renumbered(wasm, section, at, name)
    return bodies, custom


def _contents(wasm: bytes, m: _Module, id: int) -> bytes | None:
    section = m.section(id)
    return None if section is None else wasm[section.body : section.end]


def _vector_appended(contents: bytes | None, item: bytes) -> bytes:
    """The contents of a section that is a vector (None: the module lacks it) with `item` appended."""
    if contents is None:
        return b"\x01" + item
    count, pos = _read_leb(contents, 0)
    return _leb(count + 1) + contents[pos:] + item


def _name(text: str) -> bytes:
    raw = text.encode()
    return _leb(len(raw)) + raw


def _names_renumbered(wasm: bytes, section: _Section, at: int, name: str) -> bytes | None:
    """The name section with every function index from `at` on moved up by one, and function
    `at` named `name`; None when it cannot be read."""
    r = _Reader(wasm, section.body, section.end)
    try:
        r.name()
        out = bytearray(wasm[section.body : r.pos])
        while r.pos < r.end:
            id = r.byte()
            size = r.count()
            sub = _Reader(wasm, r.pos, r.pos + size)
            r.skip(size)
            if id == _NAME_FUNCTIONS:
                body = _name_map_renumbered(sub, at, _leb(at) + _name(name))
            elif id in (_NAME_LOCALS, _NAME_LABELS):
                body = _name_map_renumbered(sub, at, None, indirect=True)
            else:
                body = wasm[sub.pos : sub.end]
            out += bytes([id]) + _leb(len(body)) + body
        return bytes(out)
    except GuestLoadError:
        return None


def _name_map_renumbered(r: _Reader, at: int, insert: bytes | None, indirect: bool = False) -> bytes:
    """A name map (function index, name), or an indirect one (function index, name map), with
    indices from `at` on moved up by one and `insert` put in at `at`. Raises GuestLoadError
    when it cannot be read."""
    count = r.count()
    out = bytearray(_leb(count + (insert is not None)))
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
        out += _leb(index) + r.data[start : r.pos]
    if insert is not None:
        out += insert
    r.done("name map")
    return bytes(out)
