"""Decoding a function body for the meter: every instruction read and checked, where checks
and length charges go, and the control flow their costs are computed from."""

from __future__ import annotations

from ._meter_opcodes import (
    BLOCK,
    BR,
    BR_IF,
    BR_TABLE,
    CALL,
    CALL_INDIRECT,
    E_BLOCK,
    E_BR,
    E_BR_IF,
    E_ELSE,
    E_END,
    E_IF,
    E_LOOP,
    E_STOP,
    E_WEIGHT,
    ELSE,
    END,
    F32,
    F64,
    FC_IMMEDIATES,
    FC_LENGTH_FUEL_LOG2,
    FC_TABLE_GROW,
    FEATURES,
    GLOBAL_VARIABLE,
    GROW_FUEL,
    I32,
    I64,
    IF,
    INDEX,
    KINDS,
    LENGTH,
    LENGTH_CHARGE_FUEL,
    LOCAL,
    LOOP,
    MEMARG,
    MEMORY_GROW,
    MEMORY_INDEX,
    NONE,
    PREFIX_FC,
    REF_FUNC,
    REF_NULL,
    RENUMBER,
    SELECT_TYPED,
    STOP,
    Decoded,
    MeterContext,
    Refused,
    read_memory_index,
    read_signed,
    read_u32,
)
from ._wasm_format import MAX_LOCALS, VALUE_TYPES


def decode(ctx: MeterContext, body: bytes, params: int) -> Decoded:
    """Decodes every instruction of a body; raises Refused, or IndexError when it ends early."""
    groups, pos = read_u32(body, 0)
    groups_end = pos
    locals_ = params
    for _ in range(groups):
        count, pos = read_u32(body, pos)
        if body[pos] not in VALUE_TYPES:
            raise Refused(f"unknown value type 0x{body[pos]:02x} for a local")
        pos += 1
        locals_ += count
        if locals_ > MAX_LOCALS - 2:  # room for the two it may be given
            raise Refused(f"more than {MAX_LOCALS - 2} locals")
    code_start = pos
    inserts = [(code_start, 0, 0)]
    events: list[int] = []
    loops = 0
    pending = 0  # the cost of the instructions since the last event
    ifs = [False]  # per open frame: whether it is an if still without its else
    kinds = KINDS
    append = events.append
    while True:
        op_at = pos
        op = body[pos]
        pos += 1
        kind = kinds.get(op, -1)
        if kind == LOCAL:
            index = body[pos]
            if index < 0x80:
                pos += 1
            else:
                index, pos = read_u32(body, pos)
            if index >= locals_:
                raise Refused(f"local {index}, but it has {locals_} locals")
            pending += 1
        elif kind == NONE:
            pending += 1
        elif kind == I32:
            _, pos = read_signed(body, pos, 32)
            pending += 1
        elif kind == MEMARG:
            align, pos = read_u32(body, pos)
            if align >= 64:  # the flag of an explicit memory index
                raise Refused(f"opcode 0x{op:02x} with an explicit memory index (multiple memories are not supported)")
            _, pos = read_u32(body, pos)
            pending += 1
        elif kind == GLOBAL_VARIABLE:
            index, pos = read_u32(body, pos)
            # Past the module's own globals is the fuel counter itself: the original module
            # did not validate, and the metered one would let the guest reset its budget.
            if index >= ctx.globals:
                raise Refused(f"global {index}, but the module has {ctx.globals} globals")
            pending += 1
        elif kind == CALL or kind == REF_FUNC:
            index, pos = read_u32(body, pos)
            if index >= ctx.functions:
                raise Refused(f"function {index}, but the module has {ctx.functions}")
            if index >= ctx.clock:
                inserts.append((op_at + 1, RENUMBER, index))
            pending += 1
        elif kind == BLOCK or kind == IF or kind == LOOP:
            byte = body[pos]
            if byte == 0x40 or byte in VALUE_TYPES:
                pos += 1
            else:  # a type index, as a positive s33
                type_index, pos = read_signed(body, pos, 33)
                if not 0 <= type_index < ctx.types:
                    raise Refused(f"block type {type_index}, but the module has {ctx.types} types")
            append(E_WEIGHT)
            append(pending + 1)
            pending = 0
            if kind == LOOP:
                loops += 1
                inserts.append((pos, loops, 0))
            append(E_BLOCK if kind == BLOCK else E_IF if kind == IF else E_LOOP)
            append(0)
            ifs.append(kind == IF)
        elif kind == END:
            append(E_WEIGHT)
            append(pending)
            append(E_END)
            append(0)
            pending = 0
            ifs.pop()
            if not ifs:
                break
        elif kind == BR or kind == BR_IF or kind == BR_TABLE:
            labels = [body[pos]] if body[pos] < 0x80 and kind != BR_TABLE else []
            if labels:
                pos += 1
            else:
                count = 1
                if kind == BR_TABLE:
                    count, pos = read_u32(body, pos)
                    count += 1
                for _ in range(count):
                    label, pos = read_u32(body, pos)
                    labels.append(label)
            if max(labels) >= len(ifs):
                raise Refused(f"a branch to label {max(labels)} at a depth of {len(ifs)}")
            append(E_WEIGHT)
            append(pending + 1)
            pending = 0
            # br_table: a br_if to each label but the last, then a br to it.
            for label in labels[:-1]:
                append(E_BR_IF)
                append(label)
            append(E_BR_IF if kind == BR_IF else E_BR)
            append(labels[-1])
        elif kind == STOP:
            append(E_WEIGHT)
            append(pending + 1)
            append(E_STOP)
            append(0)
            pending = 0
        elif kind == ELSE:
            if not ifs[-1]:
                raise Refused("an else outside an if")
            ifs[-1] = False
            append(E_WEIGHT)
            append(pending)
            append(E_ELSE)
            append(0)
            pending = 0
        elif kind == I64:
            _, pos = read_signed(body, pos, 64)
            pending += 1
        elif kind == INDEX:
            _, pos = read_u32(body, pos)
            pending += 1
        elif kind == CALL_INDIRECT:
            type_index, pos = read_u32(body, pos)
            if type_index >= ctx.types:
                raise Refused(f"call_indirect of type {type_index}, but the module has {ctx.types} types")
            _, pos = read_u32(body, pos)
            pending += 1
        elif kind == MEMORY_INDEX:
            pos = read_memory_index(body, pos)
            pending += 1
        elif kind == MEMORY_GROW:
            pos = read_memory_index(body, pos)
            pending += 1 + GROW_FUEL
        elif kind == F32:
            pos += 4
            pending += 1
        elif kind == F64:
            pos += 8
            pending += 1
        elif kind == SELECT_TYPED:
            count, pos = read_u32(body, pos)
            if count != 1:
                raise Refused(f"a typed select of {count} types")
            if body[pos] not in VALUE_TYPES:
                raise Refused(f"unknown value type 0x{body[pos]:02x} in a select")
            pos += 1
            pending += 1
        elif kind == REF_NULL:
            if body[pos] not in (0x70, 0x6F):
                raise Refused(f"ref.null of unknown type 0x{body[pos]:02x}")
            pos += 1
            pending += 1
        elif kind == PREFIX_FC:
            sub, pos = read_u32(body, pos)
            immediates = FC_IMMEDIATES.get(sub)
            if immediates is None:
                raise Refused(f"opcode 0xfc {sub}, which the host does not run")
            for immediate in immediates:
                if immediate == "memory":
                    pos = read_memory_index(body, pos)
                else:
                    _, pos = read_u32(body, pos)
            if sub in FC_LENGTH_FUEL_LOG2:
                inserts.append((op_at, LENGTH, FC_LENGTH_FUEL_LOG2[sub]))
                pending += LENGTH_CHARGE_FUEL
            pending += 1 + (GROW_FUEL if sub == FC_TABLE_GROW else 0)
        else:
            feature = FEATURES.get(op)
            if op in (0xFB, 0xFD, 0xFE):
                sub, _ = read_u32(body, pos)
                raise Refused(f"opcode 0x{op:02x} {sub} ({feature}), which the host does not run")
            raise Refused(f"opcode 0x{op:02x}{f' ({feature})' if feature else ''}, which the host does not run")
    if pos != len(body):
        raise Refused(f"{len(body) - pos} bytes after the end of its body")
    return Decoded(body, groups, groups_end, code_start, locals_, inserts, events, loops)
