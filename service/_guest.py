"""The guest: loading and checking the module, a pool of instances, and running one request.

A request runs on the event loop thread. When the guest makes a database call, the import only
records it; the guest then unwinds itself (asyncify) and `handle` returns. `GuestInstance.run`
awaits the call, writes the result into the guest's inbox and calls `resume`, which rewinds the
guest to where it stopped (guest/ABI.md, "Suspension"): two crossings per statement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from ._engines import Engine, Export, HostFunction, Instance
from ._errors import GuestFault, GuestLoadError, LimitExceeded
from ._limits import Limits
from ._wasm_binary import cap_memory

log = logging.getLogger("service.guest")

ABI_VERSION = 2
DEFAULT_MODULE = Path(__file__).resolve().parent / "guest" / "orders.wasm"
# Imports that hand the host a database call; the guest suspends after each.
DATABASE_IMPORTS = ("db_query", "db_execute", "db_begin", "db_commit", "db_rollback")
HOST_IMPORTS = (*DATABASE_IMPORTS, "db_result", "log")
REQUIRED_EXPORTS = ("memory", "abi_version", "alloc", "dealloc", "inbox", "handle", "resume")
REQUEST_BUFFER_BYTES = 64 * 1024
# An instance whose memory grew past this is dropped after its request rather than reused.
MAX_REUSED_MEMORY_BYTES = 64 * 1024 * 1024

# Runs one database call: (operation, payload) -> result bytes for the guest.
HostCall = Callable[[str, bytes], Awaitable[bytes]]
# Receives a guest log line: (level, message).
LogSink = Callable[[int, str], None]


# Headers a guest may set on its response (guest/ABI.md, "Request and response").
GUEST_HEADERS = frozenset({"location"})
# A response header line with no headers: `{"status":200,"content_type":"application/json"}`.
_SIMPLE_HEAD = re.compile(rb'\{"status":(\d{3}),"content_type":"([ !#-\[\]-~]*)"\}')


def _is_header_value(value: object) -> bool:
    return isinstance(value, str) and value.isascii() and value.isprintable()


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

    __slots__ = ("host_call", "log", "pending", "result", "limits", "host_calls")

    def __init__(self, host_call: HostCall, log_sink: LogSink, limits: Limits) -> None:
        self.host_call = host_call
        self.log = log_sink
        self.pending: tuple[str, bytes] | None = None
        self.result: bytes | None = None  # a result too large for the inbox, until db_result
        self.limits = limits
        self.host_calls = 0

    def count_host_call(self, name: str) -> None:
        self.host_calls += 1
        if self.host_calls > self.limits.host_calls:
            raise LimitExceeded(
                "host_calls",
                f"the guest made more than {self.limits.host_calls} host calls (GUEST_MAX_HOST_CALLS); it was stopped at {name}",
            )


class GuestInstance:
    """One instance of the guest, used by one request at a time."""

    def __init__(self, guest: Guest) -> None:
        self.invocation: _Invocation | None = None
        self.raw: Instance = guest.compiled.instantiate(self._imports())
        export = self.raw.export
        self.abi_version = int(export("abi_version")())
        if self.abi_version != ABI_VERSION:
            return  # Guest refuses it, naming both versions
        self.handle = export("handle")
        self.resume = export("resume")
        self.alloc = export("alloc")
        self.dealloc = export("dealloc")
        inbox = int(export("inbox")()) & 0xFFFFFFFFFFFFFFFF
        self.inbox_ptr, self.inbox_capacity = inbox >> 32, inbox & 0xFFFFFFFF
        self.raw._check(self.inbox_ptr, self.inbox_capacity)
        self.request_ptr = self._alloc(REQUEST_BUFFER_BYTES)
        self.request_capacity = REQUEST_BUFFER_BYTES

    def _alloc(self, length: int) -> int:
        ptr = int(self.alloc(length))
        self.raw._check(ptr, length)
        return ptr

    def _imports(self) -> dict[str, HostFunction]:
        imports = {name: HostFunction(("i32", "i32"), (), self._database_call(name, True)) for name in DATABASE_IMPORTS[:2]}
        for name in DATABASE_IMPORTS[2:]:
            imports[name] = HostFunction((), (), self._database_call(name, False))
        imports["db_result"] = HostFunction(("i32", "i32"), (), self._result)
        imports["log"] = HostFunction(("i32", "i32", "i32"), (), self._log)
        return imports

    def _database_call(self, name: str, takes_payload: bool) -> Callable[..., None]:
        operation = name.removeprefix("db_")

        def call(*args: int) -> None:
            inv = self.invocation
            if inv is None:
                raise GuestFault(f"the guest called {name} outside a request")
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
                payload = self.raw.read(ptr, length)
            inv.pending = (operation, payload)

        return call

    def _result(self, ptr: int, length: int) -> None:
        inv = self.invocation
        if inv is None or inv.result is None:
            raise GuestFault("the guest called db_result with no result waiting")
        if length & 0xFFFFFFFF != len(inv.result):
            raise GuestFault(f"the guest asked db_result for {length & 0xFFFFFFFF} bytes of a {len(inv.result)}-byte result")
        self.raw.write(ptr & 0xFFFFFFFF, inv.result)
        inv.result = None

    def _log(self, level: int, ptr: int, length: int) -> None:
        inv = self.invocation
        if inv is None:
            raise GuestFault("the guest called log outside a request")
        inv.count_host_call("log")
        message = self.raw.read(ptr & 0xFFFFFFFF, min(length & 0xFFFFFFFF, 64 * 1024))
        inv.log(level, message.decode("utf-8", "replace"))

    def _write_request(self, request: bytes) -> int:
        if len(request) > self.request_capacity:
            self.dealloc(self.request_ptr, self.request_capacity)
            self.request_capacity = max(len(request), 2 * self.request_capacity)
            self.request_ptr = self._alloc(self.request_capacity)
        self.raw.write(self.request_ptr, request)
        return self.request_ptr

    async def run(self, request: bytes, invocation: _Invocation) -> GuestResponse:
        """Runs one request to its response; raises GuestFault when the guest misbehaves."""
        self.invocation = invocation
        limits = invocation.limits
        started = time.perf_counter()
        db_seconds = 0.0

        def enter(function: Export, *args: int) -> int:
            # The time budget counts only time in the guest: what is left of it at each entry.
            left = limits.time_seconds - (time.perf_counter() - started - db_seconds)
            if left <= 0:
                raise LimitExceeded("time", "the guest ran past its time limit and was stopped")
            self.raw.set_deadline(left)
            return int(function(*args))

        try:
            packed = enter(self.handle, self._write_request(request), len(request))
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
                packed = enter(self.resume, len(result))
            response = self._response(packed & 0xFFFFFFFFFFFFFFFF, limits.response_bytes)
            response.db_seconds = db_seconds
            response.guest_seconds = time.perf_counter() - started - db_seconds
            return response
        except GuestFault as fault:
            if not isinstance(fault, LimitExceeded) and self.raw.memory_size() > limits.memory_bytes * 3 // 4:
                # A memory.grow refused at the cap shows up as a trap (an allocation failing) with
                # the memory close to the cap: how close depends on the size the guest asked for.
                message = (
                    f"the guest trapped with {self.raw.memory_size()} bytes of memory, near its limit of "
                    f"{limits.memory_bytes} (GUEST_MEMORY_LIMIT_MB): {fault}"
                )
                raise LimitExceeded("memory", message) from None
            raise
        finally:
            self.raw.set_deadline(None)
            self.invocation = None

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
            if 200 <= status <= 599:
                return GuestResponse(status, simple[2].decode(), [], body)
        try:
            meta = json.loads(head)
            status, content_type, extra = meta["status"], meta["content_type"], meta.get("headers", [])
            headers = [(str(name).lower(), value) for name, value in extra]
        except (ValueError, TypeError, KeyError, AttributeError):
            raise GuestFault("the guest's response has no valid header line") from None
        if (
            type(status) is not int
            or not 200 <= status <= 599
            or not _is_header_value(content_type)
            or not all(name in GUEST_HEADERS and _is_header_value(value) for name, value in headers)
        ):
            raise GuestFault(f"the guest's response header is not valid: {head[:200]!r}")
        return GuestResponse(status, content_type, headers, body)


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
    ) -> None:
        """Compiles and checks the module; raises GuestLoadError saying why it cannot be used."""
        self.engine = engine
        self.name = name
        self.limits = limits or Limits()
        self.compiled = engine.load(cap_memory(wasm, self.limits.memory_bytes), cache_dir)
        foreign = [f"{m}.{n}" for m, n in self.compiled.imports if m != "host" or n not in HOST_IMPORTS]
        if foreign:
            hint = (
                " (asyncify's imports are left in: post-process it with wasm-opt --asyncify, as guest/build.sh does)"
                if any(f.startswith("asyncify.") for f in foreign)
                else ""
            )
            raise GuestLoadError(
                f"{name} imports {', '.join(foreign)}; a guest may import only {list(HOST_IMPORTS)} from 'host'{hint}"
            )
        missing = [e for e in REQUIRED_EXPORTS if e not in self.compiled.exports]
        if missing:
            raise GuestLoadError(
                f"{name} does not export {', '.join(missing)}; this host speaks guest ABI version {ABI_VERSION} "
                "(guest/ABI.md): rebuild the guest with guest/build.sh"
            )
        self._pool_max = pool_max
        self._idle: list[GuestInstance] = []
        self._slots: asyncio.Semaphore | None = None  # made on the event loop, at first use
        try:
            first = GuestInstance(self)
        except GuestFault as e:
            raise GuestLoadError(f"{name} failed while starting: {e}") from None
        if first.abi_version != ABI_VERSION:
            raise GuestLoadError(
                f"{name} speaks guest ABI version {first.abi_version}, but this host speaks version {ABI_VERSION}; "
                "rebuild the guest (guest/build.sh) or run a matching service"
            )
        self._idle.append(first)

    @classmethod
    def load(
        cls,
        engine: Engine,
        path: Path | None = None,
        *,
        pool_max: int = 64,
        limits: Limits | None = None,
        cache_dir: Path | None = None,
    ) -> Guest:
        """Reads and checks the module at `path` (the packaged guest by default); compiled code
        is cached in `cache_dir` when one is given."""
        path = path or DEFAULT_MODULE
        try:
            wasm = path.read_bytes()
        except OSError as e:
            raise GuestLoadError(f"cannot read the guest module {path}: {e.strerror}") from None
        return cls(engine, wasm, pool_max=pool_max, name=str(path), limits=limits, cache_dir=cache_dir)

    async def _acquire(self) -> GuestInstance:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._pool_max)
        await self._slots.acquire()
        try:
            return self._idle.pop() if self._idle else GuestInstance(self)
        except BaseException:
            self._slots.release()
            raise

    def _release(self, instance: GuestInstance, reusable: bool) -> None:
        if reusable and instance.raw.memory_size() <= MAX_REUSED_MEMORY_BYTES:
            self._idle.append(instance)
        assert self._slots is not None
        self._slots.release()

    async def invoke(self, request: bytes, host_call: HostCall, log_sink: LogSink) -> GuestResponse:
        """Runs one request on an instance of its own; raises GuestFault if the guest misbehaves
        and LimitExceeded if it goes over a limit.

        An instance that faulted, or was cancelled while suspended, is discarded, never reused.
        """
        instance = await self._acquire()
        reusable = False
        try:
            response = await instance.run(request, _Invocation(host_call, log_sink, self.limits))
            reusable = True
            return response
        finally:
            self._release(instance, reusable)
