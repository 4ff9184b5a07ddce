"""The limits of one guest invocation, from the settings (GUEST_*, MAX_*)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one invocation may use; going over stops it (LimitExceeded)."""

    #: time running in the guest, not counting database waits (enforced where the engine can)
    time_seconds: float = 1.0
    #: the guest's linear memory, written into the module as its maximum
    memory_bytes: int = 64 * 1024 * 1024
    #: calls to host functions (database statements and log lines)
    host_calls: int = 200
    #: the size of one statement the guest hands the host
    statement_bytes: int = 8 * 1024 * 1024
    #: the size of the guest's response
    response_bytes: int = 32 * 1024 * 1024
