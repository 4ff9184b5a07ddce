"""One instance of the guest and the run loop of a request on it (guest/ABI.md, "Suspension").

A request runs on the event loop thread. When the guest makes a database call, the import only
records it; the guest then unwinds itself (asyncify) and `handle` returns. `GuestInstance.run`
awaits the call, writes the result into the guest's inbox and calls `resume`, which rewinds the
guest to where it stopped: two crossings per statement. Every call into the guest runs under
what is left of the invocation's time budget: an epoch deadline on wasmtime, the instruction
meter written into the module on wasmer.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from ._abi import ABI_VERSION, GuestResponse, decode_response
from ._description import MAX_DESCRIPTION_BYTES
from ._engine import CompiledModule, Export, Instance, InstanceLimits
from ._errors import GuestFault, GuestLoadError, LimitExceeded
from ._guest_imports import Bridge, Invocation, host_functions
from ._limits import Limits
from ._metering import FUEL_EXPORT, FUEL_SLICE
from ._wasm_caps import START_EXPORT

log = logging.getLogger("service.guest")

REQUEST_BUFFER_BYTES = 64 * 1024
MAX_FRAMES = 16  # of a trap's stack, named in its log line


class InstanceOwner(Protocol):
    """What an instance needs of the guest it belongs to."""

    compiled: CompiledModule
    limits: Limits
    metered: bool
    has_start: bool
    name: str
    names: dict[int, str]

    def account(self, instance: GuestInstance) -> None:
        """Notes the instance's memory after a call into it; raises LimitExceeded past the total."""


class GuestInstance:
    """One instance of the guest, used by one request at a time."""

    def __init__(self, guest: InstanceOwner, invocation: Invocation | None = None) -> None:
        """Instantiates the guest and runs its setup calls, on the time budget of `invocation`
        (the request that needs the instance) or, for one made ahead, a budget of its own.
        Raises GuestFault, or GuestLoadError when the module speaks another ABI version; the
        instance is freed before either leaves here."""
        self._guest = guest
        self.metered = guest.metered
        self._bridge = Bridge()
        limits = guest.limits
        self.raw: Instance = guest.compiled.instantiate(
            host_functions(self._bridge), InstanceLimits(limits.time_seconds, limits.memory_bytes, limits.table_elements)
        )
        self._bridge.raw = self.raw
        try:
            export = self.raw.export
            abi_version = export("abi_version")
            setup = invocation or Invocation(_no_host_call, _no_log, limits)
            self.memory = self.raw.memory_size()
            if guest.has_start:  # the module's start function, taken out of instantiation
                self._enter(setup, export(START_EXPORT))
            version = self._enter(setup, abi_version)
            if version != ABI_VERSION:
                raise GuestLoadError(
                    f"{guest.name} speaks guest ABI version {version}, but this host speaks version {ABI_VERSION}; "
                    "rebuild the guest (guest/build.sh) or run a matching service"
                )
            self.handle = export("handle")
            self.resume = export("resume")
            self.alloc = export("alloc")
            self.dealloc = export("dealloc")
            inbox = self._enter(setup, export("inbox")) & 0xFFFFFFFFFFFFFFFF
            self.inbox_ptr, self.inbox_capacity = inbox >> 32, inbox & 0xFFFFFFFF
            self.raw.check(self.inbox_ptr, self.inbox_capacity)
            self.request_capacity = REQUEST_BUFFER_BYTES
            self.request_ptr = self._alloc(setup, REQUEST_BUFFER_BYTES)
        except BaseException:
            self.close()
            raise
        self.memory = self.raw.memory_size()

    def describe(self) -> bytes:
        """What the guest's `describe` returns (guest/ABI.md, "Description"), read on a time
        budget of its own; raises GuestFault, LimitExceeded, or GuestLoadError when too long."""
        setup = Invocation(_no_host_call, _no_log, self._guest.limits)
        packed = self._enter(setup, self.raw.export("describe")) & 0xFFFFFFFFFFFFFFFF
        ptr, length = packed >> 32, packed & 0xFFFFFFFF
        if length > MAX_DESCRIPTION_BYTES:  # before copying it out
            raise GuestLoadError(f"{self._guest.name} describes itself in {length} bytes, more than {MAX_DESCRIPTION_BYTES}")
        self.raw.check(ptr, length)
        return self.raw.read(ptr, length)

    @property
    def closed(self) -> bool:
        return self._bridge.raw is None

    def close(self) -> None:
        """Frees the instance now."""
        bridge = self._bridge
        if bridge.raw is not None:
            bridge.raw = bridge.invocation = None
            self.raw.close()

    def _enter(self, inv: Invocation, function: Export, *args: int) -> int:
        """Calls into the guest with what is left of the invocation's time budget."""
        left = inv.limits.time_seconds - inv.guest_seconds - inv.charged()
        if left <= 0:
            raise LimitExceeded("time", "the guest ran past its time limit and was stopped")
        raw = self.raw
        raw.set_deadline(left)
        started = time.perf_counter()
        if self.metered:
            self._bridge.deadline = started + left
            raw.set_global(FUEL_EXPORT, FUEL_SLICE)
        try:
            result = function(*args)
            return 0 if result is None else int(result)
        finally:
            inv.guest_seconds += time.perf_counter() - started
            self._guest.account(self)

    def _alloc(self, inv: Invocation, length: int) -> int:
        ptr = self._enter(inv, self.alloc, length)
        self.raw.check(ptr, length)
        return ptr

    def _write_request(self, inv: Invocation, request: bytes) -> int:
        if len(request) > self.request_capacity:
            self._enter(inv, self.dealloc, self.request_ptr, self.request_capacity)
            self.request_capacity = max(len(request), 2 * self.request_capacity)
            self.request_ptr = self._alloc(inv, self.request_capacity)
        self.raw.write(self.request_ptr, request)
        return self.request_ptr

    async def run(self, request: bytes, invocation: Invocation) -> GuestResponse:
        """Runs one request to its response; raises GuestFault when the guest misbehaves."""
        self._bridge.invocation = invocation
        limits = invocation.limits
        db_seconds = 0.0
        try:
            packed = self._enter(invocation, self.handle, self._write_request(invocation, request), len(request))
            while invocation.pending is not None:
                operation, payload = invocation.pending
                invocation.pending = None
                waited = time.perf_counter()
                result = await invocation.host_call(operation, payload)
                db_seconds += time.perf_counter() - waited
                if len(result) <= self.inbox_capacity:
                    self.raw.write(self.inbox_ptr, result)
                else:
                    invocation.result = result
                packed = self._enter(invocation, self.resume, len(result))
            response = self._response(packed & 0xFFFFFFFFFFFFFFFF, limits.response_bytes)
            response.db_seconds = db_seconds
            response.guest_seconds = invocation.guest_seconds
            return response
        except GuestFault as fault:
            fault = self._named(fault)
            size = 0 if self.closed else self.raw.memory_size()
            if not isinstance(fault, LimitExceeded) and size > limits.memory_bytes * 3 // 4:
                # A memory.grow refused at the cap shows up as a trap (an allocation failing) with
                # the memory close to the cap: how close depends on the size the guest asked for.
                message = (
                    f"the guest trapped with {size} bytes of memory, near its limit of "
                    f"{limits.memory_bytes} (GUEST_MEMORY_LIMIT_MB): {fault}"
                )
                raise LimitExceeded("memory", message) from None
            raise fault from None
        finally:
            if not self.closed:
                self.raw.set_deadline(None)
                self._bridge.invocation = None

    def _named(self, fault: GuestFault) -> GuestFault:
        """The trap, its message naming the guest functions on its stack, innermost first, from
        the guest's symbol map (its `.names` beside the module), when there are both."""
        names = self._guest.names
        if not fault.frames or not names or type(fault) is not GuestFault:
            return fault
        stack = " < ".join(names.get(index, f"function {index}") for index in fault.frames[:MAX_FRAMES])
        more = f" < ... {len(fault.frames) - MAX_FRAMES} more" if len(fault.frames) > MAX_FRAMES else ""
        return GuestFault(f"{fault}; guest stack: {stack}{more}", fault.frames)

    def _response(self, packed: int, max_response_bytes: int) -> GuestResponse:
        length = packed & 0xFFFFFFFF
        if length > max_response_bytes:  # before copying it out
            raise LimitExceeded(
                "response_bytes", f"the guest's response of {length} bytes is over the limit of {max_response_bytes}"
            )
        return decode_response(self.raw.read(packed >> 32, length), max_response_bytes)


async def _no_host_call(operation: str, payload: bytes) -> bytes:
    raise GuestFault("the guest called the database while starting")


def _no_log(level: int, message: str) -> None:
    log.info("guest, while starting: %s", message)
