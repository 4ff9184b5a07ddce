"""What is read out of a module: its outline for the host (`ModuleInfo`), and the parsed
module the rewriters work on (`ParsedModule`, with offsets into the original bytes)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._wasm_format import Reader, malformed


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
class Section:
    id: int
    start: int  # the offset of its id byte
    body: int  # the offset of its contents
    end: int  # the offset just past them


@dataclass
class ParsedModule:
    """What the rewriters need of a parsed module; offsets are into the original bytes."""

    sections: list[Section] = field(default_factory=list)
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

    def section(self, id: int) -> Section | None:
        return next((s for s in self.sections if s.id == id), None)


# --- the types a module declares, as read ---------------------------------------------------------


def read_limits(r: Reader, memory: bool) -> tuple[int, int | None, bool, bool]:
    """(initial, maximum, 64-bit, shared) of a table's or memory's limits."""
    start = r.pos
    flags = r.byte()
    if flags > (7 if memory else 1):
        raise malformed(f"unknown limits flags 0x{flags:02x}", start)
    is64, shared = bool(flags & 4), bool(flags & 2)
    bits = 64 if is64 else 32
    initial = r.unsigned(bits)
    maximum = r.unsigned(bits) if flags & 1 else None
    if maximum is not None and maximum < initial:
        raise malformed(f"a maximum size of {maximum} under the initial {initial}", start)
    return initial, maximum, is64, shared


def read_table(r: Reader, imported: bool) -> TableInfo:
    element = r.reference_type()
    initial, maximum, _, _ = read_limits(r, memory=False)
    return TableInfo(element, initial, maximum, imported)


def read_memory(r: Reader, imported: bool) -> MemoryInfo:
    initial, maximum, is64, shared = read_limits(r, memory=True)
    return MemoryInfo(initial, maximum, is64, shared, imported)


def read_global_type(r: Reader) -> None:
    r.value_type()
    start = r.pos
    if r.byte() > 1:
        raise malformed("a global that is neither mutable nor immutable", start)
