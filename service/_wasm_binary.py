"""A memory cap written into the guest module itself, so that every engine enforces it.

wasmer-python has no store limits; a memory whose declared maximum is N pages cannot grow past
N on any engine. `cap_memory` rewrites the memory section's limits before compiling.
"""

from __future__ import annotations

from ._errors import GuestLoadError

PAGE = 65536
_MAGIC = b"\0asm\x01\0\0\0"
_MEMORY_SECTION = 5


def _read_leb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 35:
            raise ValueError("LEB128 too long")


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _cap_section(body: bytes, max_pages: int) -> bytes:
    count, pos = _read_leb(body, 0)
    out = bytearray(_leb(count))
    for _ in range(count):
        flags = body[pos]
        pos += 1
        if flags not in (0, 1):
            raise GuestLoadError("the guest declares a shared or 64-bit memory, which the host does not run")
        initial, pos = _read_leb(body, pos)
        maximum = max_pages
        if flags == 1:
            declared, pos = _read_leb(body, pos)
            maximum = min(declared, max_pages)
        if initial > maximum:
            raise GuestLoadError(f"the guest starts with {initial * PAGE} bytes of memory, over the limit of {max_pages * PAGE}")
        out += b"\x01" + _leb(initial) + _leb(maximum)
    if pos != len(body):
        raise ValueError("trailing bytes in the memory section")
    return bytes(out)


def cap_memory(wasm: bytes, max_bytes: int) -> bytes:
    """The module with every memory's maximum lowered to `max_bytes` (whole pages).

    Bytes that are not a well-formed module come back unchanged, for the engine to refuse.
    """
    if not wasm.startswith(_MAGIC):
        return wasm
    max_pages = max(1, max_bytes // PAGE)
    out = bytearray(_MAGIC)
    pos = len(_MAGIC)
    try:
        while pos < len(wasm):
            section = wasm[pos]
            size, start = _read_leb(wasm, pos + 1)
            body = wasm[start : start + size]
            if len(body) != size:
                return wasm
            if section == _MEMORY_SECTION:
                body = _cap_section(body, max_pages)
            out += bytes([section]) + _leb(len(body)) + body
            pos = start + size
    except (IndexError, ValueError):
        return wasm
    return bytes(out)
