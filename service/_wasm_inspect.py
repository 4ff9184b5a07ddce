"""A module's outline (imports and exports with their types, memories, tables), so that the
host can check a module before it calls into it (`_guest_module`)."""

from __future__ import annotations

from ._wasm_module import ModuleInfo
from ._wasm_parse import parse_module


def inspect(wasm: bytes) -> ModuleInfo:
    """The outline of a module; raises GuestLoadError, in one line, when it is malformed."""
    m = parse_module(wasm)
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
