"""The guest: its module loaded and checked, compiled once, and run one request at a time per
instance from a pool (`_guest_module`, `_instance_pool`, `_instance`; the envelope's codec is `_abi`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ._abi import ABI_VERSION as ABI_VERSION  # noqa: F401 (service/__init__.py imports it from here)
from ._abi import GuestResponse
from ._database import deadline
from ._description import read_description
from ._engine import CompiledModule, Engine
from ._errors import GuestFault, GuestLoadError, LimitExceeded
from ._guest_imports import Charged, HostCall, Invocation, LogSink
from ._guest_module import DEFAULT_MODULE, prepare_module, read_module, read_names
from ._instance import GuestInstance
from ._instance_pool import InstancePool
from ._limits import GUEST_MEMORY_TOTAL_BYTES, GUEST_POOL_MAX, Limits
from ._metering import FUEL_SLICE as FUEL_SLICE  # noqa: F401 (service/_app.py imports it from here)
from ._wasm_caps import START_EXPORT

__all__ = ["ABI_VERSION", "DEFAULT_MODULE", "FUEL_SLICE", "Guest"]


class Guest:
    """The compiled guest module, checked against the ABI, and its pool of instances."""

    def __init__(
        self,
        engine: Engine,
        wasm: bytes,
        *,
        pool_max: int = GUEST_POOL_MAX,
        name: str = "guest",
        limits: Limits | None = None,
        cache_dir: Path | None = None,
        memory_total: int = GUEST_MEMORY_TOTAL_BYTES,
        metering: bool | None = None,
        compiled: CompiledModule | None = None,
        names: dict[int, str] | None = None,
    ) -> None:
        """Checks and compiles the module and starts one instance; raises GuestLoadError saying
        why it cannot be used. `metering`: write the instruction meter into the module (the
        default where the engine has no deadline of its own). `compiled`: the module as
        `prepare_module` made it, compiled elsewhere (`load_isolated`); `wasm` is then unused.
        `names`: the guest's function names by index (`read_names`), for the log of a trap."""
        self.engine = engine
        self.names = names or {}
        self.name = name
        self.limits = limits or Limits()
        self.metered = (not engine.enforces_deadline) if metering is None else metering
        self.compiled = compiled or engine.load(prepare_module(wasm, name, self.limits, self.metered), cache_dir)
        self.has_start = START_EXPORT in self.compiled.exports
        self._pool = InstancePool(self._make_instance, pool_max, memory_total)
        try:
            first = self._pool.new_instance()
        except GuestFault as e:
            raise GuestLoadError(f"{name} failed while starting: {e}") from None
        try:
            #: what the guest says of itself: its routes, operations, errors and schemas
            self.description = read_description(first.describe(), name)
        except GuestFault as e:
            first.close()
            raise GuestLoadError(f"{name} failed while describing itself: {e}") from None
        except GuestLoadError:
            first.close()
            raise
        self._pool.start(first)

    @classmethod
    def load(
        cls,
        engine: Engine,
        path: Path | None = None,
        *,
        pool_max: int = GUEST_POOL_MAX,
        limits: Limits | None = None,
        cache_dir: Path | None = None,
        memory_total: int = GUEST_MEMORY_TOTAL_BYTES,
    ) -> Guest:
        """Reads and checks the module at `path` (the packaged guest by default); compiled code
        is cached in `cache_dir` when one is given. Raises GuestLoadError."""
        path = path or DEFAULT_MODULE
        wasm = read_module(path)
        names = read_names(path, wasm, not engine.enforces_deadline)
        return cls(
            engine,
            wasm,
            name=str(path),
            pool_max=pool_max,
            limits=limits,
            cache_dir=cache_dir,
            memory_total=memory_total,
            names=names,
        )

    @classmethod
    async def load_isolated(
        cls,
        engine: Engine,
        path: Path | None = None,
        *,
        compile_timeout: float,
        pool_max: int = GUEST_POOL_MAX,
        limits: Limits | None = None,
        cache_dir: Path | None = None,
        memory_total: int = GUEST_MEMORY_TOTAL_BYTES,
    ) -> Guest:
        """As `load`, with the compiling done in a child process bounded by `compile_timeout`, so
        that the event loop keeps serving meanwhile. Raises GuestLoadError."""
        from ._compile import compile_isolated

        path = path or DEFAULT_MODULE
        limits = limits or Limits()
        metered = not engine.enforces_deadline
        # Pure Python on bytes, and slow for a big module: in a thread, so the loop keeps serving.
        wasm = read_module(path)
        prepared = await asyncio.to_thread(prepare_module, wasm, str(path), limits, metered)
        names = await asyncio.to_thread(read_names, path, wasm, metered)
        compiled = await compile_isolated(engine, prepared, compile_timeout, cache_dir)
        return cls(
            engine,
            b"",
            name=str(path),
            pool_max=pool_max,
            limits=limits,
            memory_total=memory_total,
            compiled=compiled,
            names=names,
        )

    def _make_instance(self, invocation: Invocation | None) -> GuestInstance:
        return GuestInstance(self, invocation)

    def account(self, instance: GuestInstance) -> None:
        """Notes an instance's memory after a call into it (see `InstancePool.account`)."""
        self._pool.account(instance)

    def retire(self) -> None:
        """This guest was replaced: idle instances are freed now, busy ones when they finish."""
        self._pool.retire()

    def memory_in_use(self) -> int:
        """Bytes of guest memory held by this guest's instances, idle and busy."""
        return self._pool.memory_in_use()

    def idle_instances(self) -> list[GuestInstance]:
        """The instances waiting for a request, the next to serve last."""
        return self._pool.idle()

    async def invoke(
        self, request: bytes, host_call: HostCall, log_sink: LogSink, charged: Charged | None = None
    ) -> GuestResponse:
        """Runs one request on an instance of its own; raises GuestFault if the guest misbehaves
        and LimitExceeded if it goes over a limit (`request_time` when the whole invocation,
        database waits and the wait for an instance included, runs past REQUEST_TIMEOUT).

        `charged` gives the seconds of host work done for the guest (checking its statements),
        which count against its time limit as its own time does; so does setting up a new
        instance for it. An instance that faulted, or was cancelled while suspended, is
        discarded, never reused.
        """
        invocation = Invocation(host_call, log_sink, self.limits, charged)
        instance: GuestInstance | None = None
        reusable = False
        try:
            # Waiting for an instance while all are busy counts too: a queue of requests each
            # waits at most REQUEST_TIMEOUT, not the time of everyone before it.
            with deadline(self.limits.request_seconds):
                instance = await self._pool.acquire(invocation)
                response = await instance.run(request, invocation)
            reusable = True
            return response
        except asyncio.TimeoutError:
            raise LimitExceeded(
                "request_time",
                f"the request took more than {self.limits.request_seconds:g} s (REQUEST_TIMEOUT), database waits and "
                "waiting for a guest instance included",
            ) from None
        finally:
            if instance is not None:
                self._pool.release(instance, reusable)
