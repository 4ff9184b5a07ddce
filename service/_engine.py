"""The engine interface: what the guest runtime asks of a Wasm engine, whichever it is.

An engine compiles bytes into a `CompiledModule`; a module is instantiated with host functions
into an `Instance`, whose exports are plain Python callables taking and returning ints, and
whose memory is read and written through bounds-checked `read` / `write`. Each engine converts
its own errors into ours (`_wasmtime_engine`, `_wasmer_engine`); `_engines` picks one.
"""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from . import _compile_cache
from ._errors import GuestMemoryError

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

    #: A size the memory has had: it only grows, so a range inside this one is inside it still,
    #: and most checks need not ask the engine (a call into it per check, several per request).
    _known_size = 0

    def _sized(self, size: int) -> None:  # noqa: B027 (optional: a no-op by default)
        """The memory is `size` bytes (it has grown, or is asked for the first time): every
        range a later `_read` or `_write` is given lies inside it, until the next call."""

    def check(self, ptr: int, length: int) -> None:
        """Raises GuestMemoryError unless `ptr..ptr+length` is inside the guest's memory."""
        end = ptr + length
        if ptr < 0 or length < 0:
            raise GuestMemoryError(f"guest memory range {ptr}+{length} is outside its memory")
        if end > self._known_size:
            size = self.memory_size()
            self._sized(size)  # first: should it fail, the size known stays the one the views cover
            self._known_size = size
            if end > size:
                raise GuestMemoryError(f"guest memory range {ptr}+{length} is outside its memory of {self._known_size} bytes")


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

    def close(self) -> None:  # noqa: B027 (optional: a no-op by default)
        """Releases what the engine holds beyond its objects (wasmtime: its epoch ticks); the
        engine is not used again. Dropping the last reference to an engine does the same."""

    @property
    def version(self) -> str:
        return importlib.metadata.version(self.name)

    def load(self, wasm: bytes, cache_dir: Path | None = None) -> CompiledModule:
        """Compiles `wasm`, or loads its compiled code from `cache_dir` when it was compiled
        before by this engine and version (see `_compile_cache`)."""
        cached = self.cached(wasm, cache_dir)
        if cached is not None:
            return cached
        module = self.compile(wasm)
        self.keep(wasm, cache_dir, module)
        return module

    def cached(self, wasm: bytes, cache_dir: Path | None) -> CompiledModule | None:
        """The compiled code of `wasm` from the cache, or None."""
        if cache_dir is None:
            return None
        return _compile_cache.read(_compile_cache.path(cache_dir, self.name, self.version, wasm), self.deserialize)

    def keep(self, wasm: bytes, cache_dir: Path | None, module: CompiledModule) -> None:
        """Stores the compiled code of `wasm` in the cache."""
        if cache_dir is not None:
            _compile_cache.write(_compile_cache.path(cache_dir, self.name, self.version, wasm), module.serialize)


def first_line(error: BaseException) -> str:
    """The first line of an engine's error message, for ours."""
    lines = str(error).strip().splitlines()
    trap = [line.strip() for line in lines if line.strip().startswith("wasm trap:")]  # wasmtime's cause
    return trap[0] if trap else lines[0] if lines else type(error).__name__
