"""Rewriting a decoded function body: the cost of each region's longest path, and the checks
and length charges written in (see `_metering` for the rule)."""

from __future__ import annotations

from ._meter_opcodes import (
    CHECK_FUEL,
    E_BLOCK,
    E_BR,
    E_BR_IF,
    E_ELSE,
    E_IF,
    E_LOOP,
    E_STOP,
    E_WEIGHT,
    LENGTH,
    Decoded,
    MeterContext,
)
from ._wasm_format import leb, leb_unsigned, sleb

# i64.const 0; i64.lt_s
_NEGATIVE = b"\x42\x00\x53"
# if; unreachable; end
_TRAP = b"\x04\x40\x00\x0b"


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
    frames = [[E_BLOCK, 0, -1, 0]]
    for i in range(0, len(events), 2):
        event, value = events[i], events[i + 1]
        if event == E_WEIGHT:
            if at >= 0:
                at += value
                if at > peak[region]:
                    peak[region] = at
        elif event == E_BLOCK or event == E_IF:
            frames.append([event, region, -1, at])
        elif event == E_LOOP:
            frames.append([event, region, -1, at])
            loops_seen += 1
            region, at = loops_seen, 0
        elif event == E_BR or event == E_BR_IF:
            target = frames[-1 - value]
            if at >= 0 and target[0] != E_LOOP:  # a branch to a loop's header ends a pass: it charges anew
                reached = at
                for frame in frames[len(frames) - value :]:
                    if frame[0] == E_LOOP and frame[1] == target[1]:
                        reached = frame[3]  # out of a loop: the path in the label's region is the loop's
                        break
                if reached > target[2]:
                    target[2] = reached
            if event == E_BR:
                at = -1
        elif event == E_STOP:
            at = -1
        elif event == E_ELSE:
            frame = frames[-1]
            if at >= 0:
                at += 1
                if at > peak[region]:
                    peak[region] = at
                if at > frame[2]:
                    frame[2] = at
            at = frame[3]
            frame[0] = E_BLOCK  # its false branch now runs through the else
        else:  # E_END
            kind, outer, exits, start = frames.pop()
            if kind == E_LOOP:
                if at >= 0:  # the loop's end is the last of its region; the outer path goes on
                    at += 1
                    if at > peak[region]:
                        peak[region] = at
                    at = start
                region = outer
                continue
            if kind == E_IF and start > exits:
                exits = start
            if exits > at:
                at = exits
            if at >= 0:
                at += 1
                if at > peak[region]:
                    peak[region] = at
    return peak


def emit(ctx: MeterContext, f: Decoded) -> bytes:
    """The body with its checks and length charges."""
    costs = _region_costs(f.events, f.loops)
    inserts, body = f.inserts, f.body
    # New locals after all the others: an i64 for the counter, an i32 for lengths being charged.
    lengths = any(region == LENGTH for _, region, _ in inserts)
    new_locals = b"\x01\x7e\x01\x7f" if lengths else b"\x01\x7e"
    out = bytearray(leb(f.groups + len(new_locals) // 2) + body[f.groups_end : f.code_start] + new_locals)
    temporary, length = leb(f.locals), leb(f.locals + 1)
    g = ctx.fuel
    # Subtract, keep the result in the local (rather than read the global again) and store
    # it; if it is negative, call the clock, which raises or refuels, and trap if it did
    # neither. Nothing after the call reads the local: the counter is now the clock's.
    subtract = (
        b"\x7d\x22" + temporary + b"\x24" + g + b"\x20" + temporary + _NEGATIVE
        + b"\x04\x40\x10" + leb(ctx.clock) + b"\x23" + g + _NEGATIVE + _TRAP + b"\x0b"
    )  # fmt: skip
    last = f.code_start
    for offset, region, value in inserts:
        out += body[last:offset]
        last = offset
        if region >= 0:  # global.get; i64.const cost; subtract
            out += b"\x23" + g + b"\x42" + sleb(costs[region] + CHECK_FUEL) + subtract
        elif region == LENGTH:
            # local.set length; global.get; local.get length; i64.extend_i32_u; scaled;
            # subtract; local.get length, where scaled is i64.const log2; i64.shl, or
            # i64.const -log2; i64.shr_u (value is log2)
            scaled = b"\x42" + sleb(abs(value)) + (b"\x86" if value > 0 else b"\x88") if value else b""
            out += b"\x21" + length + b"\x23" + g + b"\x20" + length + b"\xad" + scaled + subtract + b"\x20" + length
        else:  # RENUMBER: value is the function index, past the clock's
            _, last = leb_unsigned(body, offset)
            out += leb(value + 1)
    out += body[last:]
    return bytes(out)
