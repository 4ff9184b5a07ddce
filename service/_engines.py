"""Two Wasm engines behind one small interface; engine errors become ours here and nowhere else.

An engine compiles bytes into a `CompiledModule`; a module is instantiated with host functions
into an `Instance`, whose exports are plain Python callables taking and returning ints, and
whose memory is read and written through bounds-checked `read` / `write`.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import logging
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ._errors import ConfigError, GuestFault, GuestLoadError, GuestMemoryError, LimitExceeded

log = logging.getLogger("service.engine")

Export = Callable[..., Any]


class HostFunction(NamedTuple):
    """A function the guest imports: its Wasm types ("i32"/"i64") and the Python callable."""

    params: tuple[str, ...]
    results: tuple[str, ...]
    func: Callable[..., Any]


class Instance(ABC):
    """One instantiated guest: its exports and its memory."""

    @abstractmethod
    def export(self, name: str) -> Export:
        """A callable for an exported function; calling it raises GuestFault if the guest traps."""

    @abstractmethod
    def memory_size(self) -> int: ...

    def set_deadline(self, seconds: float | None) -> None:  # noqa: B027 (optional: a no-op by default)
        """Stop the guest if it runs `seconds` more (None: no deadline); a no-op where the
        engine cannot interrupt a running guest (the guest is metered there instead)."""

    @abstractmethod
    def get_global(self, name: str) -> int:
        """The value of an exported i32/i64 global (the instruction meter's counter)."""

    @abstractmethod
    def set_global(self, name: str, value: int) -> None:
        """Sets an exported mutable i64 global."""

    @abstractmethod
    def close(self) -> None:
        """Frees the instance and its memory now; it is not used again."""

    @abstractmethod
    def _read(self, ptr: int, length: int) -> bytes: ...

    @abstractmethod
    def _write(self, ptr: int, data: bytes) -> None: ...

    def read(self, ptr: int, length: int) -> bytes:
        """Copies guest memory out; raises GuestMemoryError when the range is not inside it."""
        self.check(ptr, length)
        return self._read(ptr, length)

    def write(self, ptr: int, data: bytes) -> None:
        """Copies bytes into guest memory; raises GuestMemoryError when they would not fit."""
        self.check(ptr, len(data))
        self._write(ptr, data)

    def check(self, ptr: int, length: int) -> None:
        """Raises GuestMemoryError unless `ptr..ptr+length` is inside the guest's memory."""
        if ptr < 0 or length < 0 or ptr + length > self.memory_size():
            raise GuestMemoryError(f"guest memory range {ptr}+{length} is outside its memory of {self.memory_size()} bytes")


class InstanceLimits(NamedTuple):
    """What an instance may hold, where the engine can enforce it itself (the module's own
    declared maximums, capped at load, hold on every engine)."""

    #: time for instantiation (the start function)
    deadline_seconds: float
    memory_bytes: int
    table_elements: int


class CompiledModule(ABC):
    @abstractmethod
    def serialize(self) -> bytes:
        """The compiled code, for `Engine.deserialize` in a later process."""

    @property
    @abstractmethod
    def imports(self) -> list[tuple[str, str]]:
        """(module, name) of every import."""

    @property
    @abstractmethod
    def exports(self) -> list[str]: ...

    @abstractmethod
    def instantiate(self, host: Mapping[str, HostFunction], limits: InstanceLimits) -> Instance:
        """Instantiates with `host` as the `host` module, its start function under the deadline;
        raises GuestFault (LimitExceeded past the deadline) if that fails."""


class Engine(ABC):
    name: str
    #: whether a running guest can be stopped at a deadline
    enforces_deadline = False

    @abstractmethod
    def compile(self, wasm: bytes) -> CompiledModule:
        """Compiles a module; raises GuestLoadError when the bytes are not a valid module."""

    @abstractmethod
    def deserialize(self, blob: bytes) -> CompiledModule:
        """A module from `CompiledModule.serialize`; raises an engine error if it does not fit."""

    @property
    def version(self) -> str:
        return importlib.metadata.version(self.name)

    def load(self, wasm: bytes, cache_dir: Path | None = None) -> CompiledModule:
        """Compiles `wasm`, or loads its compiled code from `cache_dir` when it was compiled
        before by this engine and version. Compiled code is native code: the cache directory
        must be as trusted as the service's own files. Each file carries a hash of its
        contents, checked before the engine sees it."""
        cached = self.cached(wasm, cache_dir)
        if cached is not None:
            return cached
        module = self.compile(wasm)
        self.keep(wasm, cache_dir, module)
        return module

    def _cache_path(self, wasm: bytes, cache_dir: Path) -> Path:
        key = hashlib.sha256(f"{self.name} {self.version}\n".encode() + wasm).hexdigest()
        return cache_dir / f"{key}.{self.name}"

    def cached(self, wasm: bytes, cache_dir: Path | None) -> CompiledModule | None:
        """The compiled code of `wasm` from the cache, or None."""
        if cache_dir is None:
            return None
        path = self._cache_path(wasm, cache_dir)
        try:
            stored = path.read_bytes()
        except OSError:
            return None
        digest, blob = stored[:32], stored[32:]
        if blob and hashlib.sha256(blob).digest() == digest:
            try:
                module = self.deserialize(blob)
            except Exception as e:  # an engine error: compile afresh and replace the file
                log.warning("ignoring the cached compiled module %s: %s", path, _first_line(e))
            else:
                log.info("guest module loaded compiled from %s", path)
                return module
        return None

    def keep(self, wasm: bytes, cache_dir: Path | None, module: CompiledModule) -> None:
        """Stores the compiled code of `wasm` in the cache."""
        if cache_dir is None:
            return
        path = self._cache_path(wasm, cache_dir)
        try:
            cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            compiled = module.serialize()
            temporary.write_bytes(hashlib.sha256(compiled).digest() + compiled)
            temporary.replace(path)
        except OSError as e:
            log.info("compiled guest module not cached (%s)", e)


# --- wasmtime -------------------------------------------------------------------------------


_TICK_SECONDS = 0.01
_NO_DEADLINE_TICKS = 1 << 40


class _WasmtimeInstance(Instance):
    def __init__(self, wasmtime: Any, store: Any, instance: Any, keep: list[Any]) -> None:
        self._keep = keep  # C callbacks of the host functions: they must live as long as the store
        self._wasmtime = wasmtime
        self._store = store
        self._interrupt = wasmtime.TrapCode.INTERRUPT
        self._exports = instance.exports(store)
        memory = self._exports["memory"]
        self._memory = memory
        self._errors = (wasmtime.Trap, wasmtime.WasmtimeError)

    def export(self, name: str) -> Export:
        fast = _unchecked_export(self._wasmtime, self._store, self._exports[name], name, self._interrupt)
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
                raise GuestFault(f"guest trapped in {name}: {_first_line(e)}") from None

        return call

    def set_deadline(self, seconds: float | None) -> None:
        self._store.set_epoch_deadline(_ticks(seconds))

    def get_global(self, name: str) -> int:
        return int(self._exports[name].value(self._store))

    def set_global(self, name: str, value: int) -> None:
        self._exports[name].set_value(self._store, self._wasmtime.Val.i64(value))

    def close(self) -> None:
        # The store owns the instance and its memory: closing it frees them now, rather than
        # whenever the garbage collector reaches this object.
        self._keep.clear()
        self._exports = self._memory = None
        self._store.close()

    def memory_size(self) -> int:
        return int(self._memory.data_len(self._store))

    def _base(self) -> int:
        return ctypes.addressof(self._memory.data_ptr(self._store).contents)

    def _read(self, ptr: int, length: int) -> bytes:
        return ctypes.string_at(self._base() + ptr, length)

    def _write(self, ptr: int, data: bytes) -> None:
        ctypes.memmove(self._base() + ptr, data, len(data))


def _unchecked_export(wasmtime: Any, store: Any, func: Any, name: str, interrupt: Any) -> Export | None:
    """A call through wasmtime's unchecked C entry point, which skips wasmtime-py's type lookup
    and value conversion on every call (most of the cost of a call from Python). Built on
    wasmtime-py internals: None, for the checked path, where they are not as expected."""
    try:
        ffi = wasmtime._ffi
        from wasmtime._func import maybe_raise_last_exn

        call_unchecked = ffi.wasmtime_func_call_unchecked
        raw_array = ffi.wasmtime_val_raw_t
        trap_pointer = ctypes.POINTER(ffi.wasm_trap_t)
        ty = func.type(store)
        kinds = [str(t) for t in (*ty.params, *ty.results)]
        context = store._context()
        func_ref = ctypes.byref(func._func)
    except (AttributeError, ImportError, TypeError):
        return None
    if any(kind not in ("i32", "i64") for kind in kinds) or len(ty.results) > 1:
        return None
    fields = ["i32" if str(t) == "i32" else "i64" for t in ty.params]
    result = None if not ty.results else ("i32" if str(ty.results[0]) == "i32" else "i64")
    size = max(len(fields), 1 if result else 0, 1)
    array_type = raw_array * size
    trap_class = wasmtime.Trap

    def call(*args: int) -> Any:
        values = array_type()
        for i, field in enumerate(fields):
            setattr(values[i], field, args[i])
        trap = trap_pointer()
        error = call_unchecked(context, func_ref, values, size, ctypes.byref(trap))
        if error or trap:
            maybe_raise_last_exn()  # a host function's own exception, as it was raised
            failure = trap_class._from_ptr(trap) if trap else wasmtime.WasmtimeError._from_ptr(error)
            if getattr(failure, "trap_code", None) == interrupt:
                raise LimitExceeded("time", "the guest ran past its time limit and was stopped")
            raise GuestFault(f"guest trapped in {name}: {_first_line(failure)}")
        return getattr(values[0], result) if result else None

    return call


def _unchecked_import(wasmtime: Any, store: Any, ty: Any, fn: HostFunction) -> tuple[Any, Any] | None:
    """A host function through wasmtime's unchecked C callback, which skips wasmtime-py's
    per-call Caller object and value conversion: (the Func, the C callback to keep alive). Built
    on wasmtime-py internals: None, for the checked path, where they are not as expected."""
    try:
        ffi = wasmtime._ffi
        from wasmtime import _func

        new_unchecked = ffi.wasmtime_func_new_unchecked
        callback_type = ffi.wasmtime_func_unchecked_callback_t
        func_type = ffi.wasmtime_func_t
        from_raw = wasmtime.Func._from_raw
    except (AttributeError, ImportError):
        return None
    fields = fn.params
    result = fn.results[0] if fn.results else None
    func = fn.func
    trap_class = wasmtime.Trap

    def callback(env: Any, caller: Any, values: Any, count: int) -> int:
        try:
            value = func(*[getattr(values[i], field) for i, field in enumerate(fields)])
            if result is not None:
                setattr(values[0], result, value)
            return 0
        except BaseException as e:
            # As wasmtime-py's own trampoline does: the caller of the export re-raises it.
            _func.LAST_EXCEPTION = e  # type: ignore[assignment]  # wasmtime-py stores BaseException too
            return ctypes.cast(trap_class("python exception")._consume(), ctypes.c_void_p).value or 0

    c_callback = callback_type(callback)
    raw = func_type()
    no_finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()  # a NULL function pointer
    new_unchecked(store._context(), ty.ptr(), c_callback, None, no_finalizer, ctypes.byref(raw))
    return from_raw(raw), c_callback


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
        store.set_limits(memory_size=limits.memory_bytes, table_elements=limits.table_elements, instances=1, tables=4, memories=1)
        store.set_epoch_deadline(_ticks(limits.deadline_seconds))
        types = {"i32": wt.ValType.i32(), "i64": wt.ValType.i64()}
        externs = []
        keep = []
        for module, name in self.imports:
            if module != "host" or name not in host:
                raise GuestLoadError(f"the guest imports {module}.{name}, which the host does not provide")
            fn = host[name]
            ty = wt.FuncType([types[t] for t in fn.params], [types[t] for t in fn.results])
            unchecked = _unchecked_import(wt, store, ty, fn)
            if unchecked is None:
                externs.append(wt.Func(store, ty, fn.func))
            else:
                externs.append(unchecked[0])
                keep.append(unchecked[1])
        try:
            instance = wt.Instance(store, self._module, externs)
        except (wt.Trap, wt.WasmtimeError) as e:
            keep.clear()
            store.close()
            if getattr(e, "trap_code", None) == wt.TrapCode.INTERRUPT:
                raise LimitExceeded("time", "the guest's start function ran past its time limit and was stopped") from None
            raise GuestFault(f"the guest could not be instantiated: {_first_line(e)}") from None
        result = _WasmtimeInstance(wt, store, instance, keep)
        store.set_epoch_deadline(_NO_DEADLINE_TICKS)
        return result


class WasmtimeEngine(Engine):
    name = "wasmtime"
    enforces_deadline = True

    def __init__(self) -> None:
        import wasmtime

        self._wasmtime = wasmtime
        config = wasmtime.Config()
        # Guests run on the event loop; an epoch ticker lets a deadline stop one that never returns.
        config.epoch_interruption = True
        self._engine = wasmtime.Engine(config)
        ticker = threading.Thread(target=_tick, args=(self._engine,), name="wasmtime-epoch", daemon=True)
        ticker.start()

    def compile(self, wasm: bytes) -> CompiledModule:
        try:
            module = self._wasmtime.Module(self._engine, wasm)
        except (self._wasmtime.WasmtimeError, self._wasmtime.Trap) as e:
            raise GuestLoadError(f"the guest module does not compile: {_first_line(e)}") from None
        return _WasmtimeModule(self._wasmtime, self._engine, module)

    def deserialize(self, blob: bytes) -> CompiledModule:
        return _WasmtimeModule(self._wasmtime, self._engine, self._wasmtime.Module.deserialize(self._engine, blob))


# --- wasmer ---------------------------------------------------------------------------------


class _WasmerInstance(Instance):
    def __init__(self, instance: Any) -> None:
        self._exports = instance.exports
        self._memory = instance.exports.memory
        self._globals: dict[str, Any] = {}  # looked up once: the lookup costs more than the set

    def _global(self, name: str) -> Any:
        found = self._globals.get(name)
        if found is None:
            found = self._globals[name] = getattr(self._exports, name)
        return found

    def get_global(self, name: str) -> int:
        return int(self._global(name).value)

    def set_global(self, name: str, value: int) -> None:
        self._global(name).value = value

    def close(self) -> None:
        # wasmer frees an instance when its last reference goes; the host functions' closures
        # refer back to their GuestInstance, which drops its references to this one (a cycle
        # through wasmer's objects, which the garbage collector cannot see into, is never freed).
        self._exports = self._memory = None
        self._globals.clear()

    def export(self, name: str) -> Export:
        func = getattr(self._exports, name)

        def call(*args: int) -> Any:
            try:
                return func(*args)
            except RuntimeError as e:  # how wasmer-python reports a trap
                raise GuestFault(f"guest trapped in {name}: {_first_line(e)}") from None

        return call

    def memory_size(self) -> int:
        return int(self._memory.data_size)

    def _read(self, ptr: int, length: int) -> bytes:
        # A fresh view each time: growing the memory invalidates older buffers.
        return memoryview(self._memory.buffer)[ptr : ptr + length].tobytes()

    def _write(self, ptr: int, data: bytes) -> None:
        memoryview(self._memory.buffer)[ptr : ptr + len(data)] = data


class _WasmerModule(CompiledModule):
    def __init__(self, wasmer: Any, store: Any, module: Any) -> None:
        self._wasmer = wasmer
        self._store = store
        self._module = module

    @property
    def imports(self) -> list[tuple[str, str]]:
        return [(i.module, i.name) for i in self._module.imports]

    @property
    def exports(self) -> list[str]:
        return [e.name for e in self._module.exports]

    def serialize(self) -> bytes:
        return bytes(self._module.serialize())

    def instantiate(self, host: Mapping[str, HostFunction], limits: InstanceLimits) -> Instance:
        # wasmer has no deadline and no store limits: the module is metered (its start function
        # included) and its memories and tables are capped in the module itself.
        w = self._wasmer
        types = {"i32": w.Type.I32, "i64": w.Type.I64}
        functions = {}
        for module, name in self.imports:
            if module != "host" or name not in host:
                raise GuestLoadError(f"the guest imports {module}.{name}, which the host does not provide")
            fn = host[name]
            ty = w.FunctionType([types[t] for t in fn.params], [types[t] for t in fn.results])
            functions[name] = w.Function(self._store, fn.func, ty)
        imports = w.ImportObject()
        imports.register("host", functions)
        try:
            instance = w.Instance(self._module, imports)
        except (RuntimeError, TypeError) as e:
            raise GuestFault(f"the guest could not be instantiated: {_first_line(e)}") from None
        return _WasmerInstance(instance)


class WasmerEngine(Engine):
    name = "wasmer"

    def __init__(self) -> None:
        import wasmer
        from wasmer_compiler_cranelift import Compiler

        self._wasmer = wasmer
        self._store = wasmer.Store(wasmer.engine.JIT(Compiler))

    def compile(self, wasm: bytes) -> CompiledModule:
        try:
            module = self._wasmer.Module(self._store, wasm)
        except (RuntimeError, TypeError, ValueError) as e:
            raise GuestLoadError(f"the guest module does not compile: {_first_line(e)}") from None
        return _WasmerModule(self._wasmer, self._store, module)

    def deserialize(self, blob: bytes) -> CompiledModule:
        return _WasmerModule(self._wasmer, self._store, self._wasmer.Module.deserialize(self._store, blob))


def _ticks(seconds: float | None) -> int:
    return _NO_DEADLINE_TICKS if seconds is None else max(1, math.ceil(seconds / _TICK_SECONDS)) + 1


def _tick(engine: Any) -> None:
    while True:
        time.sleep(_TICK_SECONDS)
        engine.increment_epoch()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def available_engines() -> list[str]:
    """Names of the engines that import on this Python, wasmer first."""
    names = []
    for name, modules in (("wasmer", ("wasmer", "wasmer_compiler_cranelift")), ("wasmtime", ("wasmtime",))):
        try:
            for module in modules:
                __import__(module)
        except ImportError:
            continue
        names.append(name)
    return names


def load_engine(choice: str) -> Engine:
    """The engine named by WASM_ENGINE; `auto` is wasmer where it imports, else wasmtime.

    Raises ConfigError when the chosen engine is not installed.
    """
    if choice in ("auto", "wasmer"):
        try:
            engine: Engine = WasmerEngine()
        except ImportError as e:
            if choice == "wasmer":
                raise ConfigError(
                    f"WASM_ENGINE=wasmer, but wasmer does not import ({e}); it has wheels only for "
                    "CPython 3.7-3.10: use Python 3.10 or WASM_ENGINE=wasmtime"
                ) from None
        else:
            log.info("wasm engine: wasmer (WASM_ENGINE=%s)", choice)
            return engine
    try:
        engine = WasmtimeEngine()
    except ImportError as e:
        raise ConfigError(f"wasmtime does not import ({e}): pip install wasmtime") from None
    log.info("wasm engine: wasmtime (WASM_ENGINE=%s%s)", choice, ", wasmer not installed" if choice == "auto" else "")
    return engine
