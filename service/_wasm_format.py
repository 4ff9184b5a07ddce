"""The Wasm binary format's vocabulary: section ids, value types, LEB128 numbers read and
written, and a bounds-checked reader.

Decoding is strict: whatever this parser does not know (a section, a type, a feature) is
refused with GuestLoadError rather than passed on for an engine to read in its own way.
"""

from __future__ import annotations

from ._errors import GuestLoadError

PAGE = 65536
MAGIC = b"\0asm\x01\0\0\0"
(
    SECTION_TYPE,
    SECTION_IMPORT,
    SECTION_FUNCTION,
    SECTION_TABLE,
    SECTION_MEMORY,
    SECTION_GLOBAL,
    SECTION_EXPORT,
    SECTION_START,
    SECTION_ELEMENT,
    SECTION_CODE,
    SECTION_DATA,
    SECTION_DATA_COUNT,
) = range(1, 13)
SECTION_TAG = 13
SECTION_NAMES = {
    0: "custom",
    SECTION_TYPE: "type",
    SECTION_IMPORT: "import",
    SECTION_FUNCTION: "function",
    SECTION_TABLE: "table",
    SECTION_MEMORY: "memory",
    SECTION_GLOBAL: "global",
    SECTION_EXPORT: "export",
    SECTION_START: "start",
    SECTION_ELEMENT: "element",
    SECTION_CODE: "code",
    SECTION_DATA: "data",
    SECTION_DATA_COUNT: "data count",
}
# Where each known section must stand: the data count section comes before the code section.
SECTION_RANK = {
    SECTION_TYPE: 1,
    SECTION_IMPORT: 2,
    SECTION_FUNCTION: 3,
    SECTION_TABLE: 4,
    SECTION_MEMORY: 5,
    SECTION_GLOBAL: 6,
    SECTION_EXPORT: 7,
    SECTION_START: 8,
    SECTION_ELEMENT: 9,
    SECTION_DATA_COUNT: 10,
    SECTION_CODE: 11,
    SECTION_DATA: 12,
}
VALUE_TYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128", 0x70: "funcref", 0x6F: "externref"}
REFERENCE_TYPES = {0x70: "funcref", 0x6F: "externref"}
REFERENCE_BYTES = {name: byte for byte, name in REFERENCE_TYPES.items()}
EXTERNAL_KINDS = ("func", "table", "memory", "global")
# wasmparser's limit on a function's locals (parameters included): no engine here compiles more.
MAX_LOCALS = 50_000


def malformed(what: str, pos: int) -> GuestLoadError:
    return GuestLoadError(f"the guest module is malformed: {what} (at byte {pos})")


class Reader:
    """Reads values of the binary format from `data[pos:end]`; raises GuestLoadError past `end`."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data = data
        self.pos = pos
        self.end = end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise malformed("unexpected end of a section or function", self.pos)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def skip(self, count: int) -> bytes:
        if self.pos + count > self.end:
            raise malformed("unexpected end of a section or function", self.end)
        self.pos += count
        return self.data[self.pos - count : self.pos]

    def unsigned(self, bits: int = 32) -> int:
        start = self.pos
        try:
            value, self.pos = leb_unsigned(self.data, self.pos, bits, self.end)
        except ValueError as e:
            raise malformed(str(e), start) from None
        return value

    def signed(self, bits: int) -> int:
        start = self.pos
        try:
            value, self.pos = leb_signed(self.data, self.pos, bits, self.end)
        except ValueError as e:
            raise malformed(str(e), start) from None
        return value

    def count(self) -> int:
        """A vector's length or a size, which cannot be more than the bytes left (each item takes
        one at least)."""
        start = self.pos
        value = self.unsigned()
        if value > self.end - self.pos:
            raise malformed(f"a count of {value} that the section cannot hold", start)
        return value

    def name(self) -> str:
        start = self.pos
        raw = self.skip(self.count())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise malformed("a name that is not UTF-8", start) from None

    def value_type(self) -> str:
        byte = self.byte()
        if byte not in VALUE_TYPES:
            raise malformed(f"unknown value type 0x{byte:02x}", self.pos - 1)
        return VALUE_TYPES[byte]

    def reference_type(self) -> str:
        byte = self.byte()
        if byte not in REFERENCE_TYPES:
            raise malformed(f"unknown reference type 0x{byte:02x}", self.pos - 1)
        return REFERENCE_TYPES[byte]

    def index(self, limit: int, what: str) -> int:
        start = self.pos
        value = self.unsigned()
        if value >= limit:
            raise malformed(f"{what} {value} out of range (there are {limit})", start)
        return value

    def done(self, what: str) -> None:
        if self.pos != self.end:
            raise malformed(f"{self.end - self.pos} stray bytes at the end of the {what}", self.pos)


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


def read_leb(data: bytes, pos: int) -> tuple[int, int]:
    """A u32 at `pos` and the offset after it; raises GuestLoadError when it is malformed."""
    reader = Reader(data, pos, len(data))
    return reader.unsigned(), reader.pos


def leb(value: int) -> bytes:
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


def sleb(value: int) -> bytes:
    """A signed LEB128 number."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)
