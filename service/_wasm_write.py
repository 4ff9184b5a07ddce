"""Writing a Wasm module: sections replaced or added in their places, vectors appended to."""

from __future__ import annotations

from ._wasm_format import (
    MAGIC,
    SECTION_RANK,
    leb,
    read_leb,
)
from ._wasm_module import ParsedModule


def rebuild(wasm: bytes, m: ParsedModule, bodies: dict[int, bytes], custom: dict[int, bytes | None] | None = None) -> bytes:
    """The module with the contents of the sections in `bodies` replaced; a section the module
    lacks is inserted where it belongs. `custom`: the custom sections replaced (by the offset
    where each starts: its new contents, its name included) or dropped (None). Every other
    section, custom ones included, is kept as it was, in its place."""
    custom = custom or {}
    out = bytearray(MAGIC)
    missing = {id: body for id, body in bodies.items() if m.section(id) is None}

    def insert_before(rank: int) -> None:
        for id in sorted(missing, key=SECTION_RANK.__getitem__):
            if SECTION_RANK[id] < rank:
                out.extend(bytes([id]) + leb(len(missing[id])) + missing.pop(id))

    for section in m.sections:
        if section.id in SECTION_RANK:
            insert_before(SECTION_RANK[section.id])
        if section.id in bodies and section.id not in missing:
            body = bodies[section.id]
            out += bytes([section.id]) + leb(len(body)) + body
        elif section.id == 0 and section.start in custom:
            replaced = custom[section.start]
            if replaced is not None:
                out += b"\x00" + leb(len(replaced)) + replaced
        else:
            out += wasm[section.start : section.end]
    insert_before(len(SECTION_RANK) + 1)
    return bytes(out)


def section_contents(wasm: bytes, m: ParsedModule, id: int) -> bytes | None:
    section = m.section(id)
    return None if section is None else wasm[section.body : section.end]


def vector_appended(contents: bytes | None, item: bytes) -> bytes:
    """The contents of a section that is a vector (None: the module lacks it) with `item` appended."""
    if contents is None:
        return b"\x01" + item
    count, pos = read_leb(contents, 0)
    return leb(count + 1) + contents[pos:] + item


def name_bytes(text: str) -> bytes:
    raw = text.encode()
    return leb(len(raw)) + raw
