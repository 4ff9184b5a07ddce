"""Fuel metering written into the guest module, so that every engine stops a guest that runs too long.

wasmer-python has no fuel and no deadline: a guest looping without calling the host would never
return. `meter` adds a counter, a mutable i64 global exported as `FUEL_EXPORT`, and code that
subtracts from it at the entry of functions and at the head of every loop; a check that leaves
the counter below zero calls the host's clock, a function the module now imports as
`host`.CLOCK_IMPORT, of type () -> (). The units are only a rough measure of time (a cache miss
or a call into the engine costs far more than an instruction): the counter does not decide when
the guest stops, it decides how often the host looks at a real clock. The host gives the guest a
slice of fuel at a time, and its clock function, called at the end of each slice, stops the
guest or gives it another.

A check charges the static cost of its region (a function body, or one pass through a loop
body): the longest path through it, one unit per instruction (its own included), not counting
the loops nested in it, which charge themselves, nor the functions it calls, which charge at
their entry. Only loops branch backwards, so no pass runs more than that. Instructions whose
work grows with an operand (memory.fill/copy/init, table.fill/copy/init) are charged for their
length as well, before they run, by the same check.

The rule, for the host:
  - before calling into the guest, set the counter to a slice (0 <= slice < 2**63);
  - a check that leaves the counter below zero calls the clock, with the counter as the
    subtraction left it (its distance below zero is what the region or length charged past the
    slice). The clock function must either raise, which stops the guest: the call into the guest
    raises that same exception, on every engine (the counter stays below zero); or set the
    counter to a new slice, 0 or more, and return, and the guest goes on where it was (a clock
    that returns with the counter still below zero traps the guest, `unreachable`);
  - so the counter is never below zero while the guest runs on: a call that spends exactly its
    slice returns normally with 0 left, and a trap of the guest's own leaves it at 0 or more.
The initial value, `initial_fuel`, is the slice of the start function and of whatever the host
calls before it first sets the counter.

The clock is imported after the module's other function imports, at index `imported functions`:
every function the module defines moves up by one (its calls and ref.func, element segments,
exports, the start section, global initialisers, and the function, local and label names of the
name section are renumbered to match). The type () -> () is appended to the type section, and
the counter after the module's globals: no type and no global moves.
"""

from __future__ import annotations

from typing import NamedTuple

from ._errors import GuestLoadError
from ._wasm_binary import (
    _CODE,
    _EXPORT,
    _GLOBAL,
    MAX_LOCALS,
    VALUE_TYPES,
    _leb,
    _Module,
    _parse,
    _rebuild,
    _sleb,
    _vector_appended,
    _with_function_import,
    leb_signed,
    leb_unsigned,
)

#: the name the fuel counter is exported under
FUEL_EXPORT = "__orders_fuel"
#: the function, imported from CLOCK_MODULE, of type () -> (), that a check calls when it finds
#: the counter below zero: it raises, or sets the counter to a new slice and returns
CLOCK_IMPORT = "__orders_clock"
CLOCK_MODULE = "host"
#: The host's slice: instruction-meter units between two looks at the clock. Ordinary guest code
#: spends this in well under a millisecond; the slowest code found (cache misses on every load,
#: instructions the engine runs as calls) in some 0.1 s, which is then how far past its time
#: limit a guest can run.
FUEL_SLICE = 4_000_000
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


def fuel_spent_trap(remaining: int) -> bool:
    """Whether a guest stopped with `remaining` in the counter was stopped by a check that found
    the counter below zero: by the clock raising, or by a clock that returned without refuelling.
    The host need not ask (its clock knows when it raises); kept for diagnostics and tests."""
    return remaining < 0


# How the immediates of each one-byte opcode are read; the opcodes with no entry are refused.
(
    _NONE,
    _STOP,
    _BLOCK,
    _IF,
    _LOOP,
    _ELSE,
    _END,
    _BR,
    _BR_IF,
    _BR_TABLE,
    _CALL,
    _CALL_INDIRECT,
    _REF_FUNC,
    _INDEX,
    _LOCAL,
    _GLOBAL_VARIABLE,
    _MEMARG,
    _MEMORY_INDEX,
    _MEMORY_GROW,
    _I32,
    _I64,
    _F32,
    _F64,
    _SELECT_TYPED,
    _REF_NULL,
    _PREFIX_FC,
) = range(26)
_KINDS: dict[int, int] = {
    0x00: _STOP,  # unreachable
    0x01: _NONE,  # nop
    0x02: _BLOCK,
    0x03: _LOOP,
    0x04: _IF,
    0x05: _ELSE,
    0x0B: _END,
    0x0C: _BR,
    0x0D: _BR_IF,
    0x0E: _BR_TABLE,
    0x0F: _STOP,  # return
    0x10: _CALL,
    0x11: _CALL_INDIRECT,
    0x1A: _NONE,  # drop
    0x1B: _NONE,  # select
    0x1C: _SELECT_TYPED,
    0x20: _LOCAL,  # local.get
    0x21: _LOCAL,  # local.set
    0x22: _LOCAL,  # local.tee
    0x23: _GLOBAL_VARIABLE,  # global.get
    0x24: _GLOBAL_VARIABLE,  # global.set
    0x25: _INDEX,  # table.get
    0x26: _INDEX,  # table.set
    **{op: _MEMARG for op in range(0x28, 0x3F)},  # loads and stores
    0x3F: _MEMORY_INDEX,  # memory.size
    0x40: _MEMORY_GROW,
    0x41: _I32,
    0x42: _I64,
    0x43: _F32,
    0x44: _F64,
    **{op: _NONE for op in range(0x45, 0xC5)},  # numeric instructions, sign extension included
    0xD0: _REF_NULL,
    0xD1: _NONE,  # ref.is_null
    0xD2: _REF_FUNC,
    0xFC: _PREFIX_FC,
}
_FEATURES = {
    **{op: "exception handling" for op in (0x06, 0x07, 0x08, 0x09, 0x0A, 0x18, 0x19, 0x1F)},
    **{op: "tail calls" for op in (0x12, 0x13, 0x15)},
    **{op: "typed function references" for op in (0x14, 0xD3, 0xD4, 0xD5, 0xD6)},
    0xFB: "garbage collection",
    0xFD: "SIMD",
    0xFE: "threads",
}
_FC_MEMORY_INIT, _FC_MEMORY_COPY, _FC_MEMORY_FILL = 8, 10, 11
_FC_TABLE_INIT, _FC_TABLE_COPY, _FC_TABLE_GROW, _FC_TABLE_FILL = 12, 14, 15, 17
# The immediates of the instructions after 0xFC, by their number: an index (a u32) or a memory
# index (a zero byte: only one memory is supported).
_FC_IMMEDIATES: dict[int, tuple[str, ...]] = {
    **{op: () for op in range(8)},  # saturating truncations
    _FC_MEMORY_INIT: ("index", "memory"),
    9: ("index",),  # data.drop
    _FC_MEMORY_COPY: ("memory", "memory"),
    _FC_MEMORY_FILL: ("memory",),
    _FC_TABLE_INIT: ("index", "index"),
    13: ("index",),  # elem.drop
    _FC_TABLE_COPY: ("index", "index"),
    _FC_TABLE_GROW: ("index",),
    16: ("index",),  # table.size
    _FC_TABLE_FILL: ("index",),
}
# Charged by their length, the operand on top of the stack: log2 of the fuel per byte or element.
_FC_LENGTH_FUEL_LOG2 = {
    _FC_MEMORY_INIT: MEMORY_BYTE_FUEL_LOG2,
    _FC_MEMORY_COPY: MEMORY_BYTE_FUEL_LOG2,
    _FC_MEMORY_FILL: MEMORY_BYTE_FUEL_LOG2,
    _FC_TABLE_INIT: TABLE_ELEMENT_FUEL_LOG2,
    _FC_TABLE_COPY: TABLE_ELEMENT_FUEL_LOG2,
    _FC_TABLE_FILL: TABLE_ELEMENT_FUEL_LOG2,
}
# i64.const 0; i64.lt_s
_NEGATIVE = b"\x42\x00\x53"
# if; unreachable; end
_TRAP = b"\x04\x40\x00\x0b"

# What a decoded body keeps of its control flow, for the cost of its paths: pairs (event, value).
(
    _E_WEIGHT,  # the instructions since the previous event: their cost
    _E_BLOCK,
    _E_IF,
    _E_ELSE,
    _E_END,
    _E_LOOP,
    _E_BR,  # the label's depth
    _E_BR_IF,  # the label's depth
    _E_STOP,  # return or unreachable: what follows, to the end of the block, never runs
) = range(9)


# What an insert is when it is not a region's check.
_LENGTH, _RENUMBER = -1, -2


class _Refused(Exception):
    """Why a function cannot be metered; `meter` adds which function."""


def _u32(body: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(body):
        raise IndexError(pos)  # a body that ends early: `meter` says so
    try:
        return leb_unsigned(body, pos, 32)
    except ValueError as e:
        raise _Refused(str(e)) from None


def _signed(body: bytes, pos: int, bits: int) -> tuple[int, int]:
    if pos >= len(body):
        raise IndexError(pos)
    try:
        return leb_signed(body, pos, bits)
    except ValueError as e:
        raise _Refused(str(e)) from None


def _memory_index(body: bytes, pos: int) -> int:
    # One memory: its index is a zero byte (multi-memory would make it a LEB128 number).
    if body[pos] != 0:
        raise _Refused(f"memory index byte 0x{body[pos]:02x} (multiple memories are not supported)")
    return pos + 1


class _Decoded(NamedTuple):
    """One function body, decoded: where checks go, and its control flow for their costs."""

    body: bytes
    groups: int  # local declaration groups
    groups_end: int  # offset just past their count
    code_start: int  # offset of the first instruction
    locals: int  # parameters and locals
    # Where code goes in: (offset, the region whose check goes there, 0), or (offset, _LENGTH,
    # log2) for a length charge of 2**log2 per byte or element, or (offset, _RENUMBER, index)
    # for the function index of a call or ref.func, which moves up by one past the clock's.
    # Region 0 is the function's entry, 1.. its loops.
    inserts: list[tuple[int, int, int]]
    events: list[int]
    loops: int


def _region_costs(events: list[int], loops: int) -> list[int]:
    """The longest path through each region, in fuel: the function's entry, then each loop.

    A path runs forwards from the region's start to where it leaves the region: its end, a
    return, a trap, a branch back to a loop header, or out of the region. A loop nested in the
    region is one instruction on it, after which the path goes on past the loop's end or at a
    label the loop's body branches to.
    """
    peak = [0] * (loops + 1)
    region = loops_seen = 0
    at = 0  # the length of the path to here; -1 where no path reaches
    # Open frames: [kind, region it is in, longest path to its label (-1: none), path at its start].
    # An if's false branch goes from its start; a loop's outer path goes on from its start.
    frames = [[_E_BLOCK, 0, -1, 0]]
    for i in range(0, len(events), 2):
        event, value = events[i], events[i + 1]
        if event == _E_WEIGHT:
            if at >= 0:
                at += value
                if at > peak[region]:
                    peak[region] = at
        elif event == _E_BLOCK or event == _E_IF:
            frames.append([event, region, -1, at])
        elif event == _E_LOOP:
            frames.append([event, region, -1, at])
            loops_seen += 1
            region, at = loops_seen, 0
        elif event == _E_BR or event == _E_BR_IF:
            target = frames[-1 - value]
            if at >= 0 and target[0] != _E_LOOP:  # a branch to a loop's header ends a pass: it charges anew
                reached = at
                for frame in frames[len(frames) - value :]:
                    if frame[0] == _E_LOOP and frame[1] == target[1]:
                        reached = frame[3]  # out of a loop: the path in the label's region is the loop's
                        break
                if reached > target[2]:
                    target[2] = reached
            if event == _E_BR:
                at = -1
        elif event == _E_STOP:
            at = -1
        elif event == _E_ELSE:
            frame = frames[-1]
            if at >= 0:
                at += 1
                if at > peak[region]:
                    peak[region] = at
                if at > frame[2]:
                    frame[2] = at
            at = frame[3]
            frame[0] = _E_BLOCK  # its false branch now runs through the else
        else:  # _E_END
            kind, outer, exits, start = frames.pop()
            if kind == _E_LOOP:
                if at >= 0:  # the loop's end is the last of its region; the outer path goes on
                    at += 1
                    if at > peak[region]:
                        peak[region] = at
                    at = start
                region = outer
                continue
            if kind == _E_IF and start > exits:
                exits = start
            if exits > at:
                at = exits
            if at >= 0:
                at += 1
                if at > peak[region]:
                    peak[region] = at
    return peak


class _Meter:
    """Decodes and rewrites the function bodies of one module."""

    def __init__(self, m: _Module, fuel_global: int) -> None:
        self.types = len(m.types)
        self.functions = len(m.function_types)
        self.globals = m.globals
        self.fuel = _leb(fuel_global)
        # The clock's index: the functions the module defines, from there on, move up by one.
        self.clock = m.imported_functions

    def decode(self, body: bytes, params: int) -> _Decoded:
        """Decodes every instruction of a body; raises _Refused, or IndexError when it ends early."""
        groups, pos = _u32(body, 0)
        groups_end = pos
        locals_ = params
        for _ in range(groups):
            count, pos = _u32(body, pos)
            if body[pos] not in VALUE_TYPES:
                raise _Refused(f"unknown value type 0x{body[pos]:02x} for a local")
            pos += 1
            locals_ += count
            if locals_ > MAX_LOCALS - 2:  # room for the two it may be given
                raise _Refused(f"more than {MAX_LOCALS - 2} locals")
        code_start = pos
        inserts = [(code_start, 0, 0)]
        events: list[int] = []
        loops = 0
        pending = 0  # the cost of the instructions since the last event
        ifs = [False]  # per open frame: whether it is an if still without its else
        kinds = _KINDS
        append = events.append
        while True:
            op_at = pos
            op = body[pos]
            pos += 1
            kind = kinds.get(op, -1)
            if kind == _LOCAL:
                index = body[pos]
                if index < 0x80:
                    pos += 1
                else:
                    index, pos = _u32(body, pos)
                if index >= locals_:
                    raise _Refused(f"local {index}, but it has {locals_} locals")
                pending += 1
            elif kind == _NONE:
                pending += 1
            elif kind == _I32:
                _, pos = _signed(body, pos, 32)
                pending += 1
            elif kind == _MEMARG:
                align, pos = _u32(body, pos)
                if align >= 64:  # the flag of an explicit memory index
                    raise _Refused(f"opcode 0x{op:02x} with an explicit memory index (multiple memories are not supported)")
                _, pos = _u32(body, pos)
                pending += 1
            elif kind == _GLOBAL_VARIABLE:
                index, pos = _u32(body, pos)
                # Past the module's own globals is the fuel counter itself: the original module
                # did not validate, and the metered one would let the guest reset its budget.
                if index >= self.globals:
                    raise _Refused(f"global {index}, but the module has {self.globals} globals")
                pending += 1
            elif kind == _CALL or kind == _REF_FUNC:
                index, pos = _u32(body, pos)
                if index >= self.functions:
                    raise _Refused(f"function {index}, but the module has {self.functions}")
                if index >= self.clock:
                    inserts.append((op_at + 1, _RENUMBER, index))
                pending += 1
            elif kind == _BLOCK or kind == _IF or kind == _LOOP:
                byte = body[pos]
                if byte == 0x40 or byte in VALUE_TYPES:
                    pos += 1
                else:  # a type index, as a positive s33
                    type_index, pos = _signed(body, pos, 33)
                    if not 0 <= type_index < self.types:
                        raise _Refused(f"block type {type_index}, but the module has {self.types} types")
                append(_E_WEIGHT)
                append(pending + 1)
                pending = 0
                if kind == _LOOP:
                    loops += 1
                    inserts.append((pos, loops, 0))
                append(_E_BLOCK if kind == _BLOCK else _E_IF if kind == _IF else _E_LOOP)
                append(0)
                ifs.append(kind == _IF)
            elif kind == _END:
                append(_E_WEIGHT)
                append(pending)
                append(_E_END)
                append(0)
                pending = 0
                ifs.pop()
                if not ifs:
                    break
            elif kind == _BR or kind == _BR_IF or kind == _BR_TABLE:
                labels = [body[pos]] if body[pos] < 0x80 and kind != _BR_TABLE else []
                if labels:
                    pos += 1
                else:
                    count = 1
                    if kind == _BR_TABLE:
                        count, pos = _u32(body, pos)
                        count += 1
                    for _ in range(count):
                        label, pos = _u32(body, pos)
                        labels.append(label)
                if max(labels) >= len(ifs):
                    raise _Refused(f"a branch to label {max(labels)} at a depth of {len(ifs)}")
                append(_E_WEIGHT)
                append(pending + 1)
                pending = 0
                # br_table: a br_if to each label but the last, then a br to it.
                for label in labels[:-1]:
                    append(_E_BR_IF)
                    append(label)
                append(_E_BR_IF if kind == _BR_IF else _E_BR)
                append(labels[-1])
            elif kind == _STOP:
                append(_E_WEIGHT)
                append(pending + 1)
                append(_E_STOP)
                append(0)
                pending = 0
            elif kind == _ELSE:
                if not ifs[-1]:
                    raise _Refused("an else outside an if")
                ifs[-1] = False
                append(_E_WEIGHT)
                append(pending)
                append(_E_ELSE)
                append(0)
                pending = 0
            elif kind == _I64:
                _, pos = _signed(body, pos, 64)
                pending += 1
            elif kind == _INDEX:
                _, pos = _u32(body, pos)
                pending += 1
            elif kind == _CALL_INDIRECT:
                type_index, pos = _u32(body, pos)
                if type_index >= self.types:
                    raise _Refused(f"call_indirect of type {type_index}, but the module has {self.types} types")
                _, pos = _u32(body, pos)
                pending += 1
            elif kind == _MEMORY_INDEX:
                pos = _memory_index(body, pos)
                pending += 1
            elif kind == _MEMORY_GROW:
                pos = _memory_index(body, pos)
                pending += 1 + GROW_FUEL
            elif kind == _F32:
                pos += 4
                pending += 1
            elif kind == _F64:
                pos += 8
                pending += 1
            elif kind == _SELECT_TYPED:
                count, pos = _u32(body, pos)
                if count != 1:
                    raise _Refused(f"a typed select of {count} types")
                if body[pos] not in VALUE_TYPES:
                    raise _Refused(f"unknown value type 0x{body[pos]:02x} in a select")
                pos += 1
                pending += 1
            elif kind == _REF_NULL:
                if body[pos] not in (0x70, 0x6F):
                    raise _Refused(f"ref.null of unknown type 0x{body[pos]:02x}")
                pos += 1
                pending += 1
            elif kind == _PREFIX_FC:
                sub, pos = _u32(body, pos)
                immediates = _FC_IMMEDIATES.get(sub)
                if immediates is None:
                    raise _Refused(f"opcode 0xfc {sub}, which the host does not run")
                for immediate in immediates:
                    if immediate == "memory":
                        pos = _memory_index(body, pos)
                    else:
                        _, pos = _u32(body, pos)
                if sub in _FC_LENGTH_FUEL_LOG2:
                    inserts.append((op_at, _LENGTH, _FC_LENGTH_FUEL_LOG2[sub]))
                    pending += LENGTH_CHARGE_FUEL
                pending += 1 + (GROW_FUEL if sub == _FC_TABLE_GROW else 0)
            else:
                feature = _FEATURES.get(op)
                if op in (0xFB, 0xFD, 0xFE):
                    sub, _ = _u32(body, pos)
                    raise _Refused(f"opcode 0x{op:02x} {sub} ({feature}), which the host does not run")
                raise _Refused(f"opcode 0x{op:02x}{f' ({feature})' if feature else ''}, which the host does not run")
        if pos != len(body):
            raise _Refused(f"{len(body) - pos} bytes after the end of its body")
        return _Decoded(body, groups, groups_end, code_start, locals_, inserts, events, loops)

    def emit(self, f: _Decoded) -> bytes:
        """The body with its checks and length charges."""
        costs = _region_costs(f.events, f.loops)
        inserts, body = f.inserts, f.body
        # New locals after all the others: an i64 for the counter, an i32 for lengths being charged.
        lengths = any(region == _LENGTH for _, region, _ in inserts)
        new_locals = b"\x01\x7e\x01\x7f" if lengths else b"\x01\x7e"
        out = bytearray(_leb(f.groups + len(new_locals) // 2) + body[f.groups_end : f.code_start] + new_locals)
        temporary, length = _leb(f.locals), _leb(f.locals + 1)
        g = self.fuel
        # Subtract, keep the result in the local (rather than read the global again) and store
        # it; if it is negative, call the clock, which raises or refuels, and trap if it did
        # neither. Nothing after the call reads the local: the counter is now the clock's.
        subtract = (
            b"\x7d\x22" + temporary + b"\x24" + g + b"\x20" + temporary + _NEGATIVE
            + b"\x04\x40\x10" + _leb(self.clock) + b"\x23" + g + _NEGATIVE + _TRAP + b"\x0b"
        )  # fmt: skip
        last = f.code_start
        for offset, region, value in inserts:
            out += body[last:offset]
            last = offset
            if region >= 0:  # global.get; i64.const cost; subtract
                out += b"\x23" + g + b"\x42" + _sleb(costs[region] + CHECK_FUEL) + subtract
            elif region == _LENGTH:
                # local.set length; global.get; local.get length; i64.extend_i32_u; scaled;
                # subtract; local.get length, where scaled is i64.const log2; i64.shl, or
                # i64.const -log2; i64.shr_u (value is log2)
                scaled = b"\x42" + _sleb(abs(value)) + (b"\x86" if value > 0 else b"\x88") if value else b""
                out += b"\x21" + length + b"\x23" + g + b"\x20" + length + b"\xad" + scaled + subtract + b"\x20" + length
            else:  # _RENUMBER: value is the function index, past the clock's
                _, last = leb_unsigned(body, offset)
                out += _leb(value + 1)
        out += body[last:]
        return bytes(out)


def meter(wasm: bytes, *, initial_fuel: int) -> bytes:
    """The module with a fuel counter (exported as FUEL_EXPORT, starting at `initial_fuel`) and
    checks that call the host's clock, `host`.CLOCK_IMPORT, when it runs out; see the module's
    docstring for the rule, and for what moves (the index of every function the module defines).

    Raises GuestLoadError for a malformed module, one that already exports FUEL_EXPORT or imports
    anything named CLOCK_IMPORT, or code it cannot meter: a 64-bit memory, an opcode it does not
    know, an index past the module's globals or a function's locals. Raises ValueError when
    `initial_fuel` is not in 0 .. 2**63 - 1.
    """
    if not 0 <= initial_fuel < 1 << 63:
        raise ValueError(f"an initial fuel of {initial_fuel} is not in 0 .. 2**63 - 1")
    m = _parse(wasm)
    if any(memory.is64 for memory in m.memories):
        # Its lengths would be i64, where the charges read an i32; no engine the host runs has it.
        raise GuestLoadError("the guest declares a 64-bit memory, which the host does not run")
    if any(export.name == FUEL_EXPORT for export in m.exports):
        raise GuestLoadError(f"the guest module already exports {FUEL_EXPORT!r}, the name of the host's fuel counter")
    taken = next((i for i in m.imports if i.name == CLOCK_IMPORT), None)
    if taken is not None:
        raise GuestLoadError(
            f"the guest module already imports {taken.module}.{CLOCK_IMPORT}, the name of the host's clock for the meter"
        )
    fuel_global = m.globals
    metering = _Meter(m, fuel_global)
    decoded = []
    for i, (start, end) in enumerate(m.bodies):
        index = m.imported_functions + i
        params = len(m.types[m.function_types[index]].params)
        try:
            decoded.append(metering.decode(wasm[start:end], params))
        except _Refused as e:
            raise GuestLoadError(f"the guest's function {index} cannot be metered: it uses {e}") from None
        except IndexError:
            raise GuestLoadError(f"the guest's function {index} cannot be metered: its body ends inside an instruction") from None
    code = bytearray(_leb(len(m.bodies)))
    for function in decoded:
        body = metering.emit(function)
        code += _leb(len(body)) + body
    # The clock: a function import after the others (every function the module defines moves up
    # by one), of the type () -> () appended to the type section (no type moves).
    bodies, custom = _with_function_import(wasm, m, CLOCK_MODULE, CLOCK_IMPORT)
    # The counter: a mutable i64 after every other global, so that no global moves.
    new_global = b"\x7e\x01\x42" + _sleb(initial_fuel) + b"\x0b"
    new_export = _leb(len(FUEL_EXPORT)) + FUEL_EXPORT.encode() + b"\x03" + _leb(fuel_global)
    bodies[_GLOBAL] = _vector_appended(bodies.get(_GLOBAL), new_global)
    bodies[_EXPORT] = _vector_appended(bodies.get(_EXPORT), new_export)
    if m.bodies:
        bodies[_CODE] = bytes(code)
    return _rebuild(wasm, m, bodies, custom)
