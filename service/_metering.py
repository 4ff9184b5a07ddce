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

from ._errors import GuestLoadError
from ._meter_decode import decode
from ._meter_emit import emit
from ._meter_opcodes import CHECK_FUEL as CHECK_FUEL  # noqa: F401 (tests and diagnostics read it here)
from ._meter_opcodes import MeterContext, Refused
from ._wasm_format import SECTION_CODE, SECTION_EXPORT, SECTION_GLOBAL, leb, sleb
from ._wasm_parse import parse_module
from ._wasm_renumber import with_function_import
from ._wasm_write import rebuild, vector_appended

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


def fuel_spent_trap(remaining: int) -> bool:
    """Whether a guest stopped with `remaining` in the counter was stopped by a check that found
    the counter below zero: by the clock raising, or by a clock that returned without refuelling.
    The host need not ask (its clock knows when it raises); kept for diagnostics and tests."""
    return remaining < 0


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
    m = parse_module(wasm)
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
    context = MeterContext.of(m, fuel_global)
    decoded = []
    for i, (start, end) in enumerate(m.bodies):
        index = m.imported_functions + i
        params = len(m.types[m.function_types[index]].params)
        try:
            decoded.append(decode(context, wasm[start:end], params))
        except Refused as e:
            raise GuestLoadError(f"the guest's function {index} cannot be metered: it uses {e}") from None
        except IndexError:
            raise GuestLoadError(f"the guest's function {index} cannot be metered: its body ends inside an instruction") from None
    code = bytearray(leb(len(m.bodies)))
    for function in decoded:
        body = emit(context, function)
        code += leb(len(body)) + body
    # The clock: a function import after the others (every function the module defines moves up
    # by one), of the type () -> () appended to the type section (no type moves).
    bodies, custom = with_function_import(wasm, m, CLOCK_MODULE, CLOCK_IMPORT)
    # The counter: a mutable i64 after every other global, so that no global moves.
    new_global = b"\x7e\x01\x42" + sleb(initial_fuel) + b"\x0b"
    new_export = leb(len(FUEL_EXPORT)) + FUEL_EXPORT.encode() + b"\x03" + leb(fuel_global)
    bodies[SECTION_GLOBAL] = vector_appended(bodies.get(SECTION_GLOBAL), new_global)
    bodies[SECTION_EXPORT] = vector_appended(bodies.get(SECTION_EXPORT), new_export)
    if m.bodies:
        bodies[SECTION_CODE] = bytes(code)
    return rebuild(wasm, m, bodies, custom)
