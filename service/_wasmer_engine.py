"""The wasmer engine (wasmer-python 1.1, CPython 3.7-3.10): no deadline and no store limits, so
the module is metered and its memories and tables are capped in the module itself."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._engine import CompiledModule, Engine, Export, HostFunction, Instance, InstanceLimits, first_line
from ._errors import GuestFault, GuestLoadError, trap_frames


class _WasmerInstance(Instance):
    def __init__(self, instance: Any) -> None:
        self._exports = instance.exports
        self._memory = instance.exports.memory
        self._globals: dict[str, Any] = {}  # looked up once: the lookup costs more than the set
        self._view = memoryview(b"")
        self._view_size = -1

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
        self._view, self._view_size = memoryview(b""), -1

    def export(self, name: str) -> Export:
        func = getattr(self._exports, name)

        def call(*args: int) -> Any:
            try:
                return func(*args)
            except RuntimeError as e:  # how wasmer-python reports a trap
                raise GuestFault(f"guest trapped in {name}: {first_line(e)}", trap_frames(e)) from None

        return call

    def memory_size(self) -> int:
        return int(self._memory.data_size)

    def _buffer(self) -> memoryview:
        # Growing the memory may move it, which leaves older buffers pointing at freed memory:
        # a view is made again whenever the size differs from the one it was made at (a memory
        # only grows, so the same size means the same place). Asking the size is a cheaper call
        # than making a buffer, and it is asked every time: the guest can grow its memory during
        # a call and then hand a host function a range inside the old size.
        size = self._memory.data_size
        if size != self._view_size:
            self._view, self._view_size = memoryview(self._memory.buffer), size
        return self._view

    def _read(self, ptr: int, length: int) -> bytes:
        return self._buffer()[ptr : ptr + length].tobytes()

    def _write(self, ptr: int, data: bytes) -> None:
        self._buffer()[ptr : ptr + len(data)] = data


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
            raise GuestFault(f"the guest could not be instantiated: {first_line(e)}") from None
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
            raise GuestLoadError(f"the guest module does not compile: {first_line(e)}") from None
        return _WasmerModule(self._wasmer, self._store, module)

    def deserialize(self, blob: bytes) -> CompiledModule:
        return _WasmerModule(self._wasmer, self._store, self._wasmer.Module.deserialize(self._store, blob))
