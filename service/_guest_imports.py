"""The functions the guest imports (module `host`, guest/ABI.md), and what one running request
tells them: its database calls are only recorded here, and run by the run loop (`_instance`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from ._abi import DATABASE_IMPORTS, HOST_IMPORTS
from ._engine import HostFunction, Instance
from ._errors import GuestFault, LimitExceeded
from ._limits import Limits
from ._metering import CLOCK_IMPORT, FUEL_EXPORT, FUEL_SLICE

# Runs one database call: (operation, payload) -> result bytes for the guest.
HostCall = Callable[[str, bytes], Awaitable[bytes]]
# Receives a guest log line: (level, message).
LogSink = Callable[[int, str], None]
# Seconds of host work done for the guest so far, counted against its time limit.
Charged = Callable[[], float]


def _nothing() -> float:
    return 0.0


class Invocation:
    """What one running request tells the imports of the instance it runs on."""

    __slots__ = ("host_call", "log", "pending", "result", "limits", "host_calls", "log_left", "guest_seconds", "charged")

    def __init__(self, host_call: HostCall, log_sink: LogSink, limits: Limits, charged: Charged | None = None) -> None:
        self.host_call = host_call
        #: host work done for the guest (checking its statements), counted as its own time
        self.charged = charged or _nothing
        self.log = log_sink
        self.pending: tuple[str, bytes] | None = None
        self.result: bytes | None = None  # a result too large for the inbox, until db_result
        self.limits = limits
        self.host_calls = 0
        self.log_left = limits.log_bytes
        self.guest_seconds = 0.0

    def count_host_call(self, name: str) -> None:
        self.host_calls += 1
        if self.host_calls > self.limits.host_calls:
            raise LimitExceeded(
                "host_calls",
                f"the guest made more than {self.limits.host_calls} host calls (GUEST_MAX_HOST_CALLS); it was stopped at {name}",
            )


class Bridge:
    """What an instance's host functions reach: kept apart from the instance, so that closing it
    breaks every reference cycle through the engine's objects and the instance is freed at once."""

    __slots__ = ("raw", "invocation", "deadline")

    def __init__(self) -> None:
        self.raw: Instance | None = None
        self.invocation: Invocation | None = None
        #: where the guest is metered: when the current call into it must end (perf_counter)
        self.deadline = 0.0

    def active(self, name: str) -> tuple[Instance, Invocation]:
        raw, inv = self.raw, self.invocation
        if raw is None or inv is None:
            raise GuestFault(f"the guest called {name} outside a request")
        return raw, inv


def host_functions(bridge: Bridge) -> dict[str, HostFunction]:
    """The `host` module of one instance, reaching its request through `bridge`."""

    def database_call(name: str, takes_payload: bool) -> Callable[..., None]:
        operation = name.removeprefix("db_")

        def call(*args: int) -> None:
            raw, inv = bridge.active(name)
            if inv.pending is not None:
                raise GuestFault(f"the guest called {name} without suspending after its previous database call")
            inv.count_host_call(name)
            payload = b""
            if takes_payload:
                ptr, length = args[0] & 0xFFFFFFFF, args[1] & 0xFFFFFFFF
                if length > inv.limits.statement_bytes:
                    raise LimitExceeded(
                        "statement_bytes", f"{name} was passed {length} bytes, over the limit of {inv.limits.statement_bytes}"
                    )
                payload = raw.read(ptr, length)
            inv.pending = (operation, payload)

        return call

    def result(ptr: int, length: int) -> None:
        raw, inv = bridge.active("db_result")
        if inv.result is None:
            raise GuestFault("the guest called db_result with no result waiting")
        if length & 0xFFFFFFFF != len(inv.result):
            raise GuestFault(f"the guest asked db_result for {length & 0xFFFFFFFF} bytes of a {len(inv.result)}-byte result")
        raw.write(ptr & 0xFFFFFFFF, inv.result)
        inv.result = None

    def log_line(level: int, ptr: int, length: int) -> None:
        raw, inv = bridge.active("log")
        inv.count_host_call("log")
        length &= 0xFFFFFFFF
        if inv.log_left <= 0:
            return
        taken = min(length, inv.log_left)
        inv.log_left -= taken
        message = raw.read(ptr & 0xFFFFFFFF, taken).decode("utf-8", "replace")
        if taken < length or inv.log_left <= 0:
            message += f" [guest log cut: {inv.limits.log_bytes} bytes per request (GUEST_LOG_BYTES)]"
            inv.log_left = 0
        inv.log(level, message)

    functions = {
        name: HostFunction(HOST_IMPORTS[name].params, (), database_call(name, name in ("db_query", "db_execute")))
        for name in DATABASE_IMPORTS
    }

    def clock() -> None:
        # The meter's look at the clock, once its slice of fuel is spent: another slice, or the end.
        raw = bridge.raw
        if raw is None:
            raise GuestFault("the guest ran outside a request")
        if time.perf_counter() >= bridge.deadline:
            raise LimitExceeded("time", "the guest ran past its time limit and was stopped")
        raw.set_global(FUEL_EXPORT, FUEL_SLICE)

    functions["db_result"] = HostFunction(HOST_IMPORTS["db_result"].params, (), result)
    functions[CLOCK_IMPORT] = HostFunction((), (), clock)
    functions["log"] = HostFunction(HOST_IMPORTS["log"].params, (), log_line)
    return functions
