"""Fast paths into wasmtime-py's internals: calls into the guest and host functions through
wasmtime's unchecked C entry points, which skip wasmtime-py's per-call type lookup, Caller
object and value conversion (most of the cost of a crossing from Python).

They reach private names of wasmtime-py (`_ffi`, `_func`, `Func._from_raw`, `Store._context`),
so they are tested on the versions in `TESTED_VERSIONS`, which pyproject.toml allows and no
other. Where the internals are not as expected each falls back to wasmtime-py's public, checked
path, says so once in the log, and notes it in `fallbacks`, which tests/test_wasmtime_fast.py
requires to stay empty on the installed wasmtime.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from typing import Any

from ._engine import Export, HostFunction, first_line
from ._errors import GuestFault, LimitExceeded, trap_frames

log = logging.getLogger("service.engine")

#: wasmtime-py releases these paths are tested on (the major version); pyproject.toml pins it.
TESTED_VERSIONS = range(50, 51)
#: the fast paths that fell back to the public path in this process, and why
fallbacks: dict[str, str] = {}


def _fell_back(path: str, why: BaseException | str) -> None:
    if path not in fallbacks:
        fallbacks[path] = str(why)
        log.warning("wasmtime-py's internals are not as expected (%s: %s): the slower public path is used", path, why)


def unchecked_export(wasmtime: Any, store: Any, func: Any, name: str, interrupt: Any) -> Export | None:
    """A call of the export `func` through `wasmtime_func_call_unchecked`; None, for the
    checked path, where the internals are not as expected."""
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
    except (AttributeError, ImportError, TypeError) as e:
        _fell_back("export", e)
        return None
    if any(kind not in ("i32", "i64") for kind in kinds) or len(ty.results) > 1:
        return None  # not an ABI function: the checked path, as intended
    fields = ["i32" if str(t) == "i32" else "i64" for t in ty.params]
    result = None if not ty.results else ("i32" if str(ty.results[0]) == "i32" else "i64")
    size = max(len(fields), 1 if result else 0, 1)
    array_type = raw_array * size
    trap_class = wasmtime.Trap

    # Made once: the export is never entered again before a call of it returns (the host
    # calls no export from a host function), so one array and one trap slot serve every call.
    values = array_type()
    slots = [(values[i], field) for i, field in enumerate(fields)]
    trap = trap_pointer()
    trap_ref = ctypes.byref(trap)

    def call(*args: int) -> Any:
        for (slot, field), arg in zip(slots, args, strict=True):
            setattr(slot, field, arg)
        error = call_unchecked(context, func_ref, values, size, trap_ref)
        if error or trap:
            # The failure owns the trap from here (a pointer object of its own, freed with it),
            # and the slot is emptied for the next call, whatever is raised below.
            failure = trap_class._from_ptr(ctypes.cast(trap, trap_pointer)) if trap else wasmtime.WasmtimeError._from_ptr(error)
            ctypes.memset(trap_ref, 0, ctypes.sizeof(trap))
            maybe_raise_last_exn()  # a host function's own exception, as it was raised
            if getattr(failure, "trap_code", None) == interrupt:
                raise LimitExceeded("time", "the guest ran past its time limit and was stopped")
            raise GuestFault(f"guest trapped in {name}: {first_line(failure)}", trap_frames(failure))
        return getattr(values[0], result) if result else None

    return call


def unchecked_import(wasmtime: Any, store: Any, ty: Any, fn: HostFunction) -> tuple[Any, Any] | None:
    """The host function `fn` through `wasmtime_func_new_unchecked`: (the Func, the C callback,
    which must live as long as the store); None, for the checked path, where the internals are
    not as expected."""
    try:
        ffi = wasmtime._ffi
        from wasmtime import _func

        new_unchecked = ffi.wasmtime_func_new_unchecked
        callback_type = ffi.wasmtime_func_unchecked_callback_t
        func_type = ffi.wasmtime_func_t
        from_raw = wasmtime.Func._from_raw
        context = store._context()
    except (AttributeError, ImportError) as e:
        _fell_back("import", e)
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
    new_unchecked(context, ty.ptr(), c_callback, None, no_finalizer, ctypes.byref(raw))
    return from_raw(raw), c_callback


_C_FUNCTIONS: dict[str, Any] = {}


def _c_function(wasmtime: Any, name: str, restype: Any, argtypes: list[Any]) -> Any:
    """A function object of our own for wasmtime's C function `name` (wasmtime-py's keep their
    argument and result types), made once per process and shared by every instance."""
    function = _C_FUNCTIONS.get(name)
    if function is None:
        function = wasmtime._ffi.dll[name]
        function.restype, function.argtypes = restype, argtypes
        _C_FUNCTIONS[name] = function
    return function


def unchecked_memory(wasmtime: Any, store: Any, memory: Any) -> tuple[Callable[[], int], Callable[[], int]] | None:
    """(size in bytes, address of byte 0) of the exported `memory`, each one C call with its
    arguments made once, where wasmtime-py's own accessors make a context, a reference and a
    pointer object per call; None, for the public path, where the internals are not as expected.
    The closures must not be called after the store is closed."""
    try:
        context = ctypes.cast(store._context(), ctypes.c_void_p)
        memory_ref = ctypes.byref(memory._memory)
        data_size = _c_function(wasmtime, "wasmtime_memory_data_size", ctypes.c_size_t, [ctypes.c_void_p, ctypes.c_void_p])
        data = _c_function(wasmtime, "wasmtime_memory_data", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_void_p])
    except (AttributeError, ImportError, KeyError) as e:
        _fell_back("memory", e)
        return None

    def size() -> int:
        return int(data_size(context, memory_ref))

    def base() -> int:
        return int(data(context, memory_ref) or 0)

    return size, base


def unchecked_epoch_deadline(wasmtime: Any, store: Any) -> Callable[[int], None] | None:
    """Sets the store's epoch deadline, `ticks` after the current epoch, in one C call (called
    at every entry into the guest); None, for the public path, where the internals are not as
    expected. Not to be called after the store is closed."""
    try:
        context = ctypes.cast(store._context(), ctypes.c_void_p)
        set_deadline = _c_function(wasmtime, "wasmtime_context_set_epoch_deadline", None, [ctypes.c_void_p, ctypes.c_uint64])
    except (AttributeError, ImportError, KeyError) as e:
        _fell_back("epoch deadline", e)
        return None

    def set_epoch_deadline(ticks: int) -> None:
        set_deadline(context, ticks)

    return set_epoch_deadline
