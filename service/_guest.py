"""The guest: loading and checking the module, a pool of instances, and running one request.

A request runs on the event loop thread. When the guest makes a database call, the import only
records it; the guest then unwinds itself (asyncify) and `handle` returns. `GuestInstance.run`
awaits the call, writes the result into the guest's inbox and calls `resume`, which rewinds the
guest to where it stopped (guest/ABI.md, "Suspension"): two crossings per statement.

Every call into the guest runs under what is left of the invocation's time budget: an epoch
deadline on wasmtime, the instruction meter written into the module on wasmer. Instances are
freed the moment they are dropped, and the guest memory of all instances together is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from . import _malloc
from ._database import deadline
from ._engines import CompiledModule, Engine, Export, HostFunction, Instance, InstanceLimits
from ._errors import GuestFault, GuestLoadError, LimitExceeded
from ._limits import Limits
from ._metering import CLOCK_IMPORT, FUEL_EXPORT, meter
from ._wasm_binary import START_EXPORT, FuncType, ModuleInfo, cap_memory, cap_tables, defer_start, inspect

log = logging.getLogger("service.guest")

ABI_VERSION = 4
DEFAULT_MODULE = Path(__file__).resolve().parent / "guest" / "orders.wasm"
# Imports that hand the host a database call; the guest suspends after each.
DATABASE_IMPORTS = ("db_query", "db_execute", "db_begin", "db_commit", "db_rollback")
HOST_IMPORTS: dict[str, FuncType] = {
    "db_query": FuncType(("i32", "i32"), ()),
    "db_execute": FuncType(("i32", "i32"), ()),
    "db_begin": FuncType((), ()),
    "db_commit": FuncType((), ()),
    "db_rollback": FuncType((), ()),
    "db_result": FuncType(("i32", "i32"), ()),
    "log": FuncType(("i32", "i32", "i32"), ()),
}
REQUIRED_EXPORTS: dict[str, FuncType | None] = {
    "memory": None,
    "abi_version": FuncType((), ("i32",)),
    "alloc": FuncType(("i32",), ("i32",)),
    "dealloc": FuncType(("i32", "i32"), ()),
    "inbox": FuncType((), ("i64",)),
    "handle": FuncType(("i32", "i32"), ("i64",)),
    "resume": FuncType(("i32",), ("i64",)),
    "describe": FuncType((), ("i64",)),
}
REQUEST_BUFFER_BYTES = 64 * 1024
#: Where the guest is metered (wasmer): instruction-meter units between two looks at the clock.
#: Ordinary guest code spends this in well under a millisecond; the slowest code found (cache
#: misses on every load, instructions the engine runs as calls) in some 0.1 s, which is then
#: how far past its time limit a guest can run.
FUEL_SLICE = 4_000_000
#: An idle instance is kept for reuse only if its memory grew by at most this much; the memory a
#: big request grew stays with its instance, so that instance is dropped instead.
IDLE_GROWTH_BYTES = 8 * 1024 * 1024
#: Idle instances unused this long are dropped (one is always kept).
IDLE_SECONDS = 10.0

# Runs one database call: (operation, payload) -> result bytes for the guest.
HostCall = Callable[[str, bytes], Awaitable[bytes]]
# Receives a guest log line: (level, message).
LogSink = Callable[[int, str], None]
# Seconds of host work done for the guest so far, counted against its time limit.
Charged = Callable[[], float]


def _nothing() -> float:
    return 0.0


# Headers a guest may set on its response (guest/ABI.md, "Request and response"), each once,
# and what their values may be: a path on this service (not `//host`, which a browser would
# follow elsewhere), and whole seconds.
GUEST_HEADERS = {
    "location": re.compile(r"/(?!/)[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,2047}"),
    "retry-after": re.compile(r"[0-9]{1,6}"),
}
# What a guest's answer may be: nothing, JSON, problem details, plain text or bytes. Never HTML
# or script, which a browser would run as this service's own.
GUEST_CONTENT_TYPES = frozenset(
    {"", "application/json", "application/problem+json", "text/plain; charset=utf-8", "application/octet-stream"}
)
# Statuses whose answer has no body.
_NO_BODY = frozenset({204, 205, 304})
# A response header line with no headers: `{"status":200,"content_type":"application/json"}`.
_SIMPLE_HEAD = re.compile(rb'\{"status":(\d{3}),"content_type":"([ !#-\[\]-~]*)"\}')


def _headers_valid(headers: list[tuple[str, object]]) -> bool:
    names = [name for name, _ in headers]
    if len(set(names)) != len(names):
        return False
    for name, value in headers:
        pattern = GUEST_HEADERS.get(name)
        if pattern is None or not isinstance(value, str) or pattern.fullmatch(value) is None:
            return False
    return True


class GuestResponse:
    """A guest's answer, and how long the request spent in the guest and in the database."""

    __slots__ = ("status", "content_type", "headers", "body", "guest_seconds", "db_seconds")

    def __init__(self, status: int, content_type: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self.headers = headers
        self.body = body
        self.guest_seconds = 0.0
        self.db_seconds = 0.0


class _Invocation:
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


class _Bridge:
    """What an instance's host functions reach: kept apart from the instance, so that closing it
    breaks every reference cycle through the engine's objects and the instance is freed at once."""

    __slots__ = ("raw", "invocation", "deadline")

    def __init__(self) -> None:
        self.raw: Instance | None = None
        self.invocation: _Invocation | None = None
        #: where the guest is metered: when the current call into it must end (perf_counter)
        self.deadline = 0.0

    def active(self, name: str) -> tuple[Instance, _Invocation]:
        raw, inv = self.raw, self.invocation
        if raw is None or inv is None:
            raise GuestFault(f"the guest called {name} outside a request")
        return raw, inv


def _host_functions(bridge: _Bridge) -> dict[str, HostFunction]:
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


class GuestInstance:
    """One instance of the guest, used by one request at a time."""

    def __init__(self, guest: Guest, invocation: _Invocation | None = None) -> None:
        """Instantiates the guest and runs its setup calls, on the time budget of `invocation`
        (the request that needs the instance) or, for one made ahead, a budget of its own."""
        self.guest = guest
        self.metered = guest.metered
        self._bridge = _Bridge()
        limits = guest.limits
        self.raw: Instance = guest.compiled.instantiate(
            _host_functions(self._bridge), InstanceLimits(limits.time_seconds, limits.memory_bytes, limits.table_elements)
        )
        self._bridge.raw = self.raw
        try:
            export = self.raw.export
            self._abi_version = export("abi_version")
            self.handle = export("handle")
            self.resume = export("resume")
            self.alloc = export("alloc")
            self.dealloc = export("dealloc")
            setup = invocation or _Invocation(_no_host_call, _no_log, limits)
            self.memory = self.raw.memory_size()
            if guest.has_start:  # the module's start function, taken out of instantiation
                self._enter(setup, export(START_EXPORT))
            self.abi_version = self._enter(setup, self._abi_version)
            if self.abi_version != ABI_VERSION:
                return  # Guest refuses it, naming both versions
            inbox = self._enter(setup, export("inbox")) & 0xFFFFFFFFFFFFFFFF
            self.inbox_ptr, self.inbox_capacity = inbox >> 32, inbox & 0xFFFFFFFF
            self.raw.check(self.inbox_ptr, self.inbox_capacity)
            self.request_capacity = REQUEST_BUFFER_BYTES
            self.request_ptr = self._alloc(setup, REQUEST_BUFFER_BYTES)
        except BaseException:
            self.close()
            raise
        self.memory = self.raw.memory_size()

    def close(self) -> None:
        """Frees the instance now."""
        bridge = self._bridge
        if bridge.raw is not None:
            bridge.raw = bridge.invocation = None
            self.raw.close()

    def _enter(self, inv: _Invocation, function: Export, *args: int) -> int:
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
            self.guest.account(self)

    def _alloc(self, inv: _Invocation, length: int) -> int:
        ptr = self._enter(inv, self.alloc, length)
        self.raw.check(ptr, length)
        return ptr

    def _write_request(self, inv: _Invocation, request: bytes) -> int:
        if len(request) > self.request_capacity:
            self._enter(inv, self.dealloc, self.request_ptr, self.request_capacity)
            self.request_capacity = max(len(request), 2 * self.request_capacity)
            self.request_ptr = self._alloc(inv, self.request_capacity)
        self.raw.write(self.request_ptr, request)
        return self.request_ptr

    async def run(self, request: bytes, invocation: _Invocation) -> GuestResponse:
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
            size = self.raw.memory_size() if self._bridge.raw is not None else 0
            if not isinstance(fault, LimitExceeded) and size > limits.memory_bytes * 3 // 4:
                # A memory.grow refused at the cap shows up as a trap (an allocation failing) with
                # the memory close to the cap: how close depends on the size the guest asked for.
                message = (
                    f"the guest trapped with {size} bytes of memory, near its limit of "
                    f"{limits.memory_bytes} (GUEST_MEMORY_LIMIT_MB): {fault}"
                )
                raise LimitExceeded("memory", message) from None
            raise
        finally:
            if self._bridge.raw is not None:
                self.raw.set_deadline(None)
                self._bridge.invocation = None

    def _response(self, packed: int, max_response_bytes: int) -> GuestResponse:
        ptr, length = packed >> 32, packed & 0xFFFFFFFF
        if length > max_response_bytes:
            raise LimitExceeded(
                "response_bytes", f"the guest's response of {length} bytes is over the limit of {max_response_bytes}"
            )
        raw = self.raw.read(ptr, length)
        head, _, body = raw.partition(b"\n")
        simple = _SIMPLE_HEAD.fullmatch(head)
        if simple is not None:  # the common case, without a JSON parser
            status = int(simple[1])
            content_type = simple[2].decode()
            if 200 <= status <= 599 and not (body and status in _NO_BODY) and content_type in GUEST_CONTENT_TYPES:
                return GuestResponse(status, content_type, [], body)
        try:
            meta = json.loads(head)
            status, content_type, extra = meta["status"], meta["content_type"], meta.get("headers", [])
            headers = [(str(name).lower(), value) for name, value in extra]
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
            raise GuestFault("the guest's response has no valid header line") from None
        if (
            type(status) is not int
            or not 200 <= status <= 599
            or (body and status in _NO_BODY)
            or content_type not in GUEST_CONTENT_TYPES
            or not _headers_valid(headers)
        ):
            raise GuestFault(f"the guest's response header is not valid: {head[:200]!r}")
        return GuestResponse(status, content_type, headers, body)


async def _no_host_call(operation: str, payload: bytes) -> bytes:
    raise GuestFault("the guest called the database while starting")


def _no_log(level: int, message: str) -> None:
    log.info("guest, while starting: %s", message)


def check_module(info: ModuleInfo, name: str) -> None:
    """Raises GuestLoadError unless the module's imports and exports are the ABI's, with its types."""
    foreign = [f"{i.module}.{i.name}" for i in info.imports if i.module != "host" or i.name not in HOST_IMPORTS]
    if foreign:
        hint = (
            " (asyncify's imports are left in: post-process it with wasm-opt --asyncify, as guest/build.sh does)"
            if any(f.startswith("asyncify.") for f in foreign)
            else ""
        )
        raise GuestLoadError(
            f"{name} imports {', '.join(foreign)}; a guest may import only {list(HOST_IMPORTS)} from 'host'{hint}"
        )
    missing = [e for e in REQUIRED_EXPORTS if info.export(e) is None]
    if missing:
        raise GuestLoadError(
            f"{name} does not export {', '.join(missing)}; this host speaks guest ABI version {ABI_VERSION} "
            "(guest/ABI.md): rebuild the guest with guest/build.sh"
        )
    for i in info.imports:
        if i.kind != "func" or i.type != HOST_IMPORTS[i.name]:
            given = f"{i.kind} {i.type}" if i.type else i.kind
            raise GuestLoadError(f"{name} imports host.{i.name} as {given}; the host gives a function {HOST_IMPORTS[i.name]}")
    for export_name, wanted in REQUIRED_EXPORTS.items():
        export = info.export(export_name)
        assert export is not None
        right = export.kind == "memory" if wanted is None else export.kind == "func" and export.type == wanted
        if not right:
            shown = f"a {export.kind}" + (f" of type {export.type}" if export.type else "")
            expected = "a memory" if wanted is None else f"a function of type {wanted}"
            raise GuestLoadError(f"{name} exports {export_name} as {shown}; guest ABI version {ABI_VERSION} wants {expected}")
    if len(info.memories) != 1:
        raise GuestLoadError(f"{name} has {len(info.memories)} memories; a guest has exactly one")


def prepare_module(wasm: bytes, name: str, limits: Limits, metered: bool) -> bytes:
    """The module as the host runs it: checked against the ABI, its memory and tables capped at
    the limits, its start function made an export the host calls under the deadline, and
    metered if asked. Raises GuestLoadError."""
    check_module(inspect(wasm), name)
    prepared = defer_start(cap_tables(cap_memory(wasm, limits.memory_bytes), limits.table_elements))
    if metered:
        prepared = meter(prepared, initial_fuel=FUEL_SLICE)
    return prepared


class Guest:
    """The compiled guest module, checked against the ABI, and its pool of instances."""

    def __init__(
        self,
        engine: Engine,
        wasm: bytes,
        *,
        pool_max: int = 64,
        name: str = "guest",
        limits: Limits | None = None,
        cache_dir: Path | None = None,
        memory_total: int = 512 * 1024 * 1024,
        metering: bool | None = None,
        compiled: CompiledModule | None = None,
    ) -> None:
        """Checks and compiles the module and starts one instance; raises GuestLoadError saying
        why it cannot be used. `metering`: write the instruction meter into the module (the
        default where the engine has no deadline of its own). `compiled`: the module as
        `prepare_module` made it, compiled elsewhere (`load_isolated`); `wasm` is then unused."""
        self.engine = engine
        self.name = name
        self.limits = limits or Limits()
        self.metered = (not engine.enforces_deadline) if metering is None else metering
        self.compiled = compiled or engine.load(prepare_module(wasm, name, self.limits, self.metered), cache_dir)
        self.has_start = START_EXPORT in self.compiled.exports
        self._pool_max = pool_max
        self._memory_total = memory_total
        self._idle: list[tuple[GuestInstance, float]] = []
        self._live: dict[GuestInstance, int] = {}
        self._slots: asyncio.Semaphore | None = None  # made on the event loop, at first use
        self._retired = False
        self._trim: asyncio.TimerHandle | None = None
        self._base_memory = 0
        try:
            first = self._new_instance()
        except GuestFault as e:
            raise GuestLoadError(f"{name} failed while starting: {e}") from None
        if first.abi_version != ABI_VERSION:
            self._discard(first)
            raise GuestLoadError(
                f"{name} speaks guest ABI version {first.abi_version}, but this host speaks version {ABI_VERSION}; "
                "rebuild the guest (guest/build.sh) or run a matching service"
            )
        self._base_memory = first.memory
        self._idle.append((first, time.monotonic()))

    @classmethod
    def load(
        cls,
        engine: Engine,
        path: Path | None = None,
        *,
        pool_max: int = 64,
        limits: Limits | None = None,
        cache_dir: Path | None = None,
        memory_total: int = 512 * 1024 * 1024,
    ) -> Guest:
        """Reads and checks the module at `path` (the packaged guest by default); compiled code
        is cached in `cache_dir` when one is given. Raises GuestLoadError."""
        path = path or DEFAULT_MODULE
        return cls(
            engine, _read(path), name=str(path), pool_max=pool_max, limits=limits, cache_dir=cache_dir, memory_total=memory_total
        )

    @classmethod
    async def load_isolated(
        cls,
        engine: Engine,
        path: Path | None = None,
        *,
        compile_timeout: float,
        pool_max: int = 64,
        limits: Limits | None = None,
        cache_dir: Path | None = None,
        memory_total: int = 512 * 1024 * 1024,
    ) -> Guest:
        """As `load`, with the compiling done in a child process bounded by `compile_timeout`, so
        that the event loop keeps serving meanwhile. Raises GuestLoadError."""
        from ._compile import compile_isolated

        path = path or DEFAULT_MODULE
        limits = limits or Limits()
        metered = not engine.enforces_deadline
        # Pure Python on bytes, and slow for a big module: in a thread, so the loop keeps serving.
        prepared = await asyncio.to_thread(prepare_module, _read(path), str(path), limits, metered)
        compiled = await compile_isolated(engine, prepared, compile_timeout, cache_dir)
        return cls(engine, b"", name=str(path), pool_max=pool_max, limits=limits, memory_total=memory_total, compiled=compiled)

    # --- the pool --------------------------------------------------------------------------------

    def _new_instance(self, invocation: _Invocation | None = None) -> GuestInstance:
        if sum(self._live.values()) + self._base_memory > self._memory_total:
            raise LimitExceeded(
                "memory_total",
                f"the guests of this process hold {sum(self._live.values())} bytes of memory, the most allowed being "
                f"{self._memory_total} (GUEST_MEMORY_TOTAL_MB)",
            )
        instance = GuestInstance(self, invocation)
        self._live[instance] = instance.memory
        return instance

    def account(self, instance: GuestInstance) -> None:
        """Notes an instance's memory after a call into it; stops the call's invocation when the
        guests of the process would hold more than their total (idle instances go first)."""
        if instance not in self._live or instance._bridge.raw is None:
            return
        size = instance.raw.memory_size()
        if size == self._live[instance]:
            return
        self._live[instance] = size
        total = sum(self._live.values())
        while total > self._memory_total and self._idle:
            idle, _ = self._idle.pop(0)
            total -= self._live.get(idle, 0)
            self._discard(idle)
        if total > self._memory_total:
            raise LimitExceeded(
                "memory_total",
                f"the guests of this process would hold {total} bytes of memory, over the limit of "
                f"{self._memory_total} (GUEST_MEMORY_TOTAL_MB)",
            )

    def _discard(self, instance: GuestInstance) -> None:
        self._live.pop(instance, None)
        instance.close()

    async def _acquire(self, invocation: _Invocation) -> GuestInstance:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._pool_max)
        await self._slots.acquire()
        try:
            if self._idle:
                return self._idle.pop()[0]
            return self._new_instance(invocation)
        except BaseException:
            self._slots.release()
            raise

    def _release(self, instance: GuestInstance, reusable: bool) -> None:
        assert self._slots is not None
        self._slots.release()
        size = self._live.get(instance, 0)
        if reusable and not self._retired and size <= self._base_memory + IDLE_GROWTH_BYTES:
            self._idle.append((instance, time.monotonic()))
            if self._trim is None and len(self._idle) > 1:
                self._trim = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._trim_idle)
        else:
            self._discard(instance)

    def _trim_idle(self) -> None:
        """Drops instances idle for IDLE_SECONDS, keeping one: after a burst, memory comes back."""
        self._trim = None
        cutoff = time.monotonic() - IDLE_SECONDS
        dropped = 0
        while len(self._idle) > 1 and self._idle[0][1] <= cutoff:
            self._discard(self._idle.pop(0)[0])
            dropped += 1
        if dropped:
            _malloc.release()
        if len(self._idle) > 1:  # again when the oldest of those left has been idle long enough
            delay = max(0.1, self._idle[0][1] + IDLE_SECONDS - time.monotonic())
            self._trim = asyncio.get_running_loop().call_later(delay, self._trim_idle)

    def retire(self) -> None:
        """This guest was replaced: idle instances are freed now, busy ones when they finish."""
        self._retired = True
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None
        while self._idle:
            self._discard(self._idle.pop()[0])

    def memory_in_use(self) -> int:
        """Bytes of guest memory held by this guest's instances, idle and busy."""
        return sum(self._live.values())

    async def invoke(
        self, request: bytes, host_call: HostCall, log_sink: LogSink, charged: Charged | None = None
    ) -> GuestResponse:
        """Runs one request on an instance of its own; raises GuestFault if the guest misbehaves
        and LimitExceeded if it goes over a limit (`request_time` when the whole invocation,
        database waits included, runs past REQUEST_TIMEOUT).

        `charged` gives the seconds of host work done for the guest (checking its statements),
        which count against its time limit as its own time does; so does setting up a new
        instance for it. An instance that faulted, or was cancelled while suspended, is
        discarded, never reused.
        """
        invocation = _Invocation(host_call, log_sink, self.limits, charged)
        instance = await self._acquire(invocation)
        reusable = False
        try:
            async with deadline(self.limits.request_seconds):
                response = await instance.run(request, invocation)
            reusable = True
            return response
        except asyncio.TimeoutError:
            raise LimitExceeded(
                "request_time",
                f"the request took more than {self.limits.request_seconds:g} s (REQUEST_TIMEOUT), database waits included",
            ) from None
        finally:
            self._release(instance, reusable)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise GuestLoadError(f"cannot read the guest module {path}: {e.strerror}") from None
