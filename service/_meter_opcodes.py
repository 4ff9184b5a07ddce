"""What the meter knows of the instructions: how each opcode's immediates are read, what each
costs, and what it keeps of a function's control flow (see `_metering` for the rule)."""

from __future__ import annotations

from typing import NamedTuple

from ._wasm_format import leb, leb_signed, leb_unsigned
from ._wasm_module import ParsedModule

#: fuel for a memory.grow or table.grow beyond its one unit: each is a call into the engine, as
#: costly as a few hundred instructions (the bytes they add are bounded by the caps)
GROW_FUEL = 256
#: memory.fill, memory.copy and memory.init are charged 2**MEMORY_BYTE_FUEL_LOG2 units per byte,
#: and table.fill, table.copy and table.init 2**TABLE_ELEMENT_FUEL_LOG2 per element: about what
#: an instruction costs for the time they take (wasmer fills a table one element at a time)
MEMORY_BYTE_FUEL_LOG2 = -1
TABLE_ELEMENT_FUEL_LOG2 = 5
#: the instructions of a check, charged with its region
CHECK_FUEL = 9
#: the instructions charging a length, charged with the instruction's region
LENGTH_CHARGE_FUEL = 15


# How the immediates of each one-byte opcode are read; the opcodes with no entry are refused.
(
    NONE,
    STOP,
    BLOCK,
    IF,
    LOOP,
    ELSE,
    END,
    BR,
    BR_IF,
    BR_TABLE,
    CALL,
    CALL_INDIRECT,
    REF_FUNC,
    INDEX,
    LOCAL,
    GLOBAL_VARIABLE,
    MEMARG,
    MEMORY_INDEX,
    MEMORY_GROW,
    I32,
    I64,
    F32,
    F64,
    SELECT_TYPED,
    REF_NULL,
    PREFIX_FC,
) = range(26)
KINDS: dict[int, int] = {
    0x00: STOP,  # unreachable
    0x01: NONE,  # nop
    0x02: BLOCK,
    0x03: LOOP,
    0x04: IF,
    0x05: ELSE,
    0x0B: END,
    0x0C: BR,
    0x0D: BR_IF,
    0x0E: BR_TABLE,
    0x0F: STOP,  # return
    0x10: CALL,
    0x11: CALL_INDIRECT,
    0x1A: NONE,  # drop
    0x1B: NONE,  # select
    0x1C: SELECT_TYPED,
    0x20: LOCAL,  # local.get
    0x21: LOCAL,  # local.set
    0x22: LOCAL,  # local.tee
    0x23: GLOBAL_VARIABLE,  # global.get
    0x24: GLOBAL_VARIABLE,  # global.set
    0x25: INDEX,  # table.get
    0x26: INDEX,  # table.set
    **{op: MEMARG for op in range(0x28, 0x3F)},  # loads and stores
    0x3F: MEMORY_INDEX,  # memory.size
    0x40: MEMORY_GROW,
    0x41: I32,
    0x42: I64,
    0x43: F32,
    0x44: F64,
    **{op: NONE for op in range(0x45, 0xC5)},  # numeric instructions, sign extension included
    0xD0: REF_NULL,
    0xD1: NONE,  # ref.is_null
    0xD2: REF_FUNC,
    0xFC: PREFIX_FC,
}
FEATURES = {
    **{op: "exception handling" for op in (0x06, 0x07, 0x08, 0x09, 0x0A, 0x18, 0x19, 0x1F)},
    **{op: "tail calls" for op in (0x12, 0x13, 0x15)},
    **{op: "typed function references" for op in (0x14, 0xD3, 0xD4, 0xD5, 0xD6)},
    0xFB: "garbage collection",
    0xFD: "SIMD",
    0xFE: "threads",
}
FC_MEMORY_INIT, FC_MEMORY_COPY, FC_MEMORY_FILL = 8, 10, 11
FC_TABLE_INIT, FC_TABLE_COPY, FC_TABLE_GROW, FC_TABLE_FILL = 12, 14, 15, 17
# The immediates of the instructions after 0xFC, by their number: an index (a u32) or a memory
# index (a zero byte: only one memory is supported).
FC_IMMEDIATES: dict[int, tuple[str, ...]] = {
    **{op: () for op in range(8)},  # saturating truncations
    FC_MEMORY_INIT: ("index", "memory"),
    9: ("index",),  # data.drop
    FC_MEMORY_COPY: ("memory", "memory"),
    FC_MEMORY_FILL: ("memory",),
    FC_TABLE_INIT: ("index", "index"),
    13: ("index",),  # elem.drop
    FC_TABLE_COPY: ("index", "index"),
    FC_TABLE_GROW: ("index",),
    16: ("index",),  # table.size
    FC_TABLE_FILL: ("index",),
}
# Charged by their length, the operand on top of the stack: log2 of the fuel per byte or element.
FC_LENGTH_FUEL_LOG2 = {
    FC_MEMORY_INIT: MEMORY_BYTE_FUEL_LOG2,
    FC_MEMORY_COPY: MEMORY_BYTE_FUEL_LOG2,
    FC_MEMORY_FILL: MEMORY_BYTE_FUEL_LOG2,
    FC_TABLE_INIT: TABLE_ELEMENT_FUEL_LOG2,
    FC_TABLE_COPY: TABLE_ELEMENT_FUEL_LOG2,
    FC_TABLE_FILL: TABLE_ELEMENT_FUEL_LOG2,
}

# What a decoded body keeps of its control flow, for the cost of its paths: pairs (event, value).
(
    E_WEIGHT,  # the instructions since the previous event: their cost
    E_BLOCK,
    E_IF,
    E_ELSE,
    E_END,
    E_LOOP,
    E_BR,  # the label's depth
    E_BR_IF,  # the label's depth
    E_STOP,  # return or unreachable: what follows, to the end of the block, never runs
) = range(9)


# What an insert is when it is not a region's check.
LENGTH, RENUMBER = -1, -2


class Refused(Exception):
    """Why a function cannot be metered; `meter` adds which function."""


def read_u32(body: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(body):
        raise IndexError(pos)  # a body that ends early: `meter` says so
    try:
        return leb_unsigned(body, pos, 32)
    except ValueError as e:
        raise Refused(str(e)) from None


def read_signed(body: bytes, pos: int, bits: int) -> tuple[int, int]:
    if pos >= len(body):
        raise IndexError(pos)
    try:
        return leb_signed(body, pos, bits)
    except ValueError as e:
        raise Refused(str(e)) from None


def read_memory_index(body: bytes, pos: int) -> int:
    # One memory: its index is a zero byte (multi-memory would make it a LEB128 number).
    if body[pos] != 0:
        raise Refused(f"memory index byte 0x{body[pos]:02x} (multiple memories are not supported)")
    return pos + 1


class Decoded(NamedTuple):
    """One function body, decoded: where checks go, and its control flow for their costs."""

    body: bytes
    groups: int  # local declaration groups
    groups_end: int  # offset just past their count
    code_start: int  # offset of the first instruction
    locals: int  # parameters and locals
    # Where code goes in: (offset, the region whose check goes there, 0), or (offset, LENGTH,
    # log2) for a length charge of 2**log2 per byte or element, or (offset, RENUMBER, index)
    # for the function index of a call or ref.func, which moves up by one past the clock's.
    # Region 0 is the function's entry, 1.. its loops.
    inserts: list[tuple[int, int, int]]
    events: list[int]
    loops: int


class MeterContext(NamedTuple):
    """What decoding and rewriting the function bodies of one module need of it."""

    types: int
    functions: int  # imported and defined
    globals: int  # the module's own, before the counter
    fuel: bytes  # the counter's global index, encoded
    clock: int  # the clock's function index: the functions the module defines move up by one past it

    @classmethod
    def of(cls, m: ParsedModule, fuel_global: int) -> MeterContext:
        return cls(len(m.types), len(m.function_types), m.globals, leb(fuel_global), m.imported_functions)
