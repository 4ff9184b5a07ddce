"""The wasmtime engine (wasmtime-py): epoch deadlines, store limits, and the fast paths of
`_wasmtime_fast` where wasmtime-py's internals are as tested."""

from __future__ import annotations

import ctypes
import math
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

from ._engine import CompiledModule, Engine, Export, HostFunction, Instance, InstanceLimits, first_line
from ._errors import GuestFault, GuestLoadError, LimitExceeded, trap_frames
from ._wasmtime_fast import unchecked_epoch_deadline, unchecked_export, unchecked_import, unchecked_memory

_TICK_SECONDS = 0.01
_NO_DEADLINE_TICKS = 1 << 40


def _ticks(seconds: float | None) -> int:
    return _NO_DEADLINE_TICKS if seconds is None else max(1, math.ceil(seconds / _TICK_SECONDS)) + 1


class _EpochTicker:
    """One thread for the whole process, started with its first engine and living as long as
    the process: it advances the epoch of every engine still alive, so that a deadline stops a
    guest that never returns. An engine leaves it when dropped or closed."""

    def __init__(self) -> None:
        self._engines: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, engine: Any) -> None:
        with self._lock:
            self._engines.add(engine)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="wasmtime-epoch", daemon=True)
                self._thread.start()

    def discard(self, engine: Any) -> None:
        with self._lock:
            self._engines.discard(engine)

    def _run(self) -> None:
        while True:
            time.sleep(_TICK_SECONDS)
            self._tick()

    def _tick(self) -> None:
        # Strong references only for the tick, none while sleeping: a dropped engine is freed.
        with self._lock:
            engines = list(self._engines)
        for engine in engines:
            engine.increment_epoch()


_TICKER = _EpochTicker()


class _WasmtimeInstance(Instance):
    def __init__(self, wasmtime: Any, store: Any, instance: Any, keep: list[Any]) -> None:
        self._keep = keep  # C callbacks of the host functions: they must live as long as the store
        self._wasmtime = wasmtime
        self._store = store
        self._interrupt = wasmtime.TrapCode.INTERRUPT
        self._exports = instance.exports(store)
        self._memory = self._exports["memory"]
        self._errors = (wasmtime.Trap, wasmtime.WasmtimeError)
        fast = unchecked_memory(wasmtime, store, self._memory)
        if fast is not None:
            self.memory_size, self._base = fast  # type: ignore[method-assign]
        self._address = self._base()  # fixed for the memory's life (memory_may_move is off)
        #: the memory as far as a check has seen it (`_sized`): slicing a view is cheaper than a
        #: ctypes call per read or write
        self._view = memoryview(b"")
        self._set_epoch_deadline = unchecked_epoch_deadline(wasmtime, store) or store.set_epoch_deadline

    def export(self, name: str) -> Export:
        fast = unchecked_export(self._wasmtime, self._store, self._exports[name], name, self._interrupt)
        if fast is not None:
            return fast
        func = self._exports[name]
        store = self._store
        errors = self._errors
        interrupt = self._interrupt

        def call(*args: int) -> Any:
            try:
                return func(store, *args)
            except errors as e:
                if getattr(e, "trap_code", None) == interrupt:
                    raise LimitExceeded("time", "the guest ran past its time limit and was stopped") from None
                raise GuestFault(f"guest trapped in {name}: {first_line(e)}", trap_frames(e)) from None

        return call

    def set_deadline(self, seconds: float | None) -> None:
        self._set_epoch_deadline(_ticks(seconds))

    def get_global(self, name: str) -> int:
        return int(self._exports[name].value(self._store))

    def set_global(self, name: str, value: int) -> None:
        self._exports[name].set_value(self._store, self._wasmtime.Val.i64(value))

    def close(self) -> None:
        # The store owns the instance and its memory: closing it frees them now, rather than
        # whenever the garbage collector reaches this object.
        self._keep.clear()
        self._exports = self._memory = None
        # The fast accessors hold the store's raw context, and `_address` its memory: gone with
        # it, never used after.
        self.memory_size = self._base = self._set_epoch_deadline = _closed  # type: ignore[method-assign]
        self._read = self._write = _closed  # type: ignore[method-assign, assignment]
        self._view = memoryview(b"")
        self._store.close()

    def memory_size(self) -> int:
        return int(self._memory.data_len(self._store))

    def _base(self) -> int:
        return ctypes.addressof(self._memory.data_ptr(self._store).contents)

    def _sized(self, size: int) -> None:
        # The memory never moves, so a view of its first `size` bytes stays valid as it grows;
        # `check` has made sure that every range read or written lies inside the view.
        self._view = memoryview((ctypes.c_ubyte * size).from_address(self._address)).cast("B")

    def _read(self, ptr: int, length: int) -> bytes:
        return self._view[ptr : ptr + length].tobytes()

    def _write(self, ptr: int, data: bytes) -> None:
        self._view[ptr : ptr + len(data)] = data


def _closed(*args: object) -> Any:
    raise ValueError("the instance is closed")


class _WasmtimeModule(CompiledModule):
    def __init__(self, wasmtime: Any, engine: Any, module: Any) -> None:
        self._wasmtime = wasmtime
        self._engine = engine
        self._module = module

    @property
    def imports(self) -> list[tuple[str, str]]:
        return [(i.module, i.name or "") for i in self._module.imports]

    @property
    def exports(self) -> list[str]:
        return [e.name for e in self._module.exports]

    def serialize(self) -> bytes:
        return bytes(self._module.serialize())

    def instantiate(self, host: Mapping[str, HostFunction], limits: InstanceLimits) -> Instance:
        wt = self._wasmtime
        store = wt.Store(self._engine)
        keep: list[Any] = []
        try:
            store.set_limits(
                memory_size=limits.memory_bytes, table_elements=limits.table_elements, instances=1, tables=4, memories=1
            )
            store.set_epoch_deadline(_ticks(limits.deadline_seconds))
            instance = wt.Instance(store, self._module, self._externs(store, host, keep))
            result = _WasmtimeInstance(wt, store, instance, keep)
        except (wt.Trap, wt.WasmtimeError) as e:
            keep.clear()
            store.close()
            if getattr(e, "trap_code", None) == wt.TrapCode.INTERRUPT:
                raise LimitExceeded("time", "the guest's start function ran past its time limit and was stopped") from None
            raise GuestFault(f"the guest could not be instantiated: {first_line(e)}") from None
        except BaseException:
            keep.clear()
            store.close()
            raise
        store.set_epoch_deadline(_NO_DEADLINE_TICKS)
        return result

    def _externs(self, store: Any, host: Mapping[str, HostFunction], keep: list[Any]) -> list[Any]:
        wt = self._wasmtime
        types = {"i32": wt.ValType.i32(), "i64": wt.ValType.i64()}
        externs = []
        for module, name in self.imports:
            if module != "host" or name not in host:
                raise GuestLoadError(f"the guest imports {module}.{name}, which the host does not provide")
            fn = host[name]
            ty = wt.FuncType([types[t] for t in fn.params], [types[t] for t in fn.results])
            unchecked = unchecked_import(wt, store, ty, fn)
            if unchecked is None:
                externs.append(wt.Func(store, ty, fn.func))
            else:
                externs.append(unchecked[0])
                keep.append(unchecked[1])
        return externs


class WasmtimeEngine(Engine):
    name = "wasmtime"
    enforces_deadline = True

    def __init__(self) -> None:
        import wasmtime

        self._wasmtime = wasmtime
        config = wasmtime.Config()
        # Guests run on the event loop; epoch ticks let a deadline stop one that never returns.
        config.epoch_interruption = True
        # A guest's memory never moves as it grows (it is reserved whole up front, 4 GiB on a
        # 64-bit host, more than a 32-bit memory can reach), so each instance reads its address
        # once rather than at every read and write.
        config.memory_may_move = False
        self._engine = wasmtime.Engine(config)
        _TICKER.add(self._engine)

    def compile(self, wasm: bytes) -> CompiledModule:
        try:
            module = self._wasmtime.Module(self._engine, wasm)
        except (self._wasmtime.WasmtimeError, self._wasmtime.Trap) as e:
            raise GuestLoadError(f"the guest module does not compile: {first_line(e)}") from None
        return _WasmtimeModule(self._wasmtime, self._engine, module)

    def deserialize(self, blob: bytes) -> CompiledModule:
        return _WasmtimeModule(self._wasmtime, self._engine, self._wasmtime.Module.deserialize(self._engine, blob))

    def close(self) -> None:
        # Modules and stores made by it hold the engine's code on their own (wasmtime counts its
        # references); this only ends its ticks and the Python handle.
        _TICKER.discard(self._engine)
        self._engine.close()


def epoch_ticker_threads() -> list[threading.Thread]:
    """The epoch threads alive in this process (at most one)."""
    return [t for t in threading.enumerate() if t.name == "wasmtime-epoch"]
