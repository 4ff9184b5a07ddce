"""The service's exceptions: one small hierarchy, mapped to HTTP in `_app` only."""

from __future__ import annotations

import re


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigError(ServiceError):
    """A setting in the environment is missing or malformed."""


class GuestLoadError(ServiceError):
    """The guest module cannot be used: it does not compile, or breaks the ABI."""


class GuestFault(ServiceError):
    """The guest failed during an invocation: it trapped or broke the ABI at run time."""

    def __init__(self, message: str, frames: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        #: the functions on the guest's stack when it trapped, innermost first, by their index in
        #: the module as it ran (`trap_frames`); empty when the engine gave none
        self.frames = frames


def trap_frames(error: BaseException) -> tuple[int, ...]:
    """The function indices on an engine's trap, innermost first: wasmtime's `frames`, else
    what the message says (wasmer: `at f (<module>[7]:0x2b)`; wasmtime: `<wasm function 7>`)."""
    frames = getattr(error, "frames", None)
    if frames:
        return tuple(frame.func_index for frame in frames)
    found = re.findall(r"<module>\[(\d+)\]|<wasm function (\d+)>", str(error))
    return tuple(int(wasmer or wasmtime) for wasmer, wasmtime in found)


class LimitExceeded(GuestFault):
    """An invocation went over one of its limits (`limit` names it) and was stopped."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit
        #: whether changes the invocation had committed before it was stopped were kept
        self.kept_changes = False


class GuestMemoryError(GuestFault):
    """The guest handed the host a pointer or length outside its memory or over a cap."""


class DatabaseError(ServiceError):
    """A statement failed; `kind` is what the guest is told (ABI.md, "Database results")."""

    def __init__(self, kind: str, code: int, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message


class DatabaseUnavailable(DatabaseError):
    """No connection to the database could be had, or it was lost."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__("unavailable", code, message)


class EmbeddedDatabaseError(ServiceError):
    """The private MariaDB server could not be started."""
