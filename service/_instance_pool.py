"""The pool of a guest's instances: one per request in flight, idle ones kept for reuse, and
the guest memory of all of them bounded together. Instances are freed the moment they are
dropped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from . import _malloc
from ._errors import LimitExceeded
from ._guest_imports import Invocation
from ._instance import GuestInstance

#: An idle instance is kept for reuse only if its memory grew by at most this much; the memory a
#: big request grew stays with its instance, so that instance is dropped instead.
IDLE_GROWTH_BYTES = 8 * 1024 * 1024
#: Idle instances unused this long are dropped (one is always kept).
IDLE_SECONDS = 10.0


class InstancePool:
    """At most `size` instances in use at once; together they hold at most `memory_total` bytes."""

    def __init__(self, make: Callable[[Invocation | None], GuestInstance], size: int, memory_total: int) -> None:
        self._make = make
        self._size = size
        self._memory_total = memory_total
        self._idle: list[tuple[GuestInstance, float]] = []
        self._live: dict[GuestInstance, int] = {}
        self._slots: asyncio.Semaphore | None = None  # made on the event loop, at first use
        self._retired = False
        self._trim: asyncio.TimerHandle | None = None
        self._base_memory = 0

    def start(self, first: GuestInstance) -> None:
        """Takes the guest's first instance: its memory is what an instance starts with."""
        self._live[first] = first.memory
        self._base_memory = first.memory
        self._idle.append((first, time.monotonic()))

    def new_instance(self, invocation: Invocation | None = None) -> GuestInstance:
        """A fresh instance, counted in the pool; raises LimitExceeded when the guests of the
        process hold their total memory already."""
        if sum(self._live.values()) + self._base_memory > self._memory_total:
            raise LimitExceeded(
                "memory_total",
                f"the guests of this process hold {sum(self._live.values())} bytes of memory, the most allowed being "
                f"{self._memory_total} (GUEST_MEMORY_TOTAL_MB)",
            )
        instance = self._make(invocation)
        self._live[instance] = instance.memory
        return instance

    def account(self, instance: GuestInstance) -> None:
        """Notes an instance's memory after a call into it; stops the call's invocation when the
        guests of the process would hold more than their total (idle instances go first)."""
        if instance not in self._live or instance.closed:
            return
        size = instance.raw.memory_size()
        if size == self._live[instance]:
            return
        self._live[instance] = size
        total = sum(self._live.values())
        while total > self._memory_total and self._idle:
            idle, _ = self._idle.pop(0)
            total -= self._live.get(idle, 0)
            self.discard(idle)
        if total > self._memory_total:
            raise LimitExceeded(
                "memory_total",
                f"the guests of this process would hold {total} bytes of memory, over the limit of "
                f"{self._memory_total} (GUEST_MEMORY_TOTAL_MB)",
            )

    def discard(self, instance: GuestInstance) -> None:
        self._live.pop(instance, None)
        instance.close()

    async def acquire(self, invocation: Invocation) -> GuestInstance:
        """An idle instance, or a new one made on `invocation`'s time; waits while all are busy."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        await self._slots.acquire()
        try:
            if self._idle:
                return self._idle.pop()[0]
            return self.new_instance(invocation)
        except BaseException:
            self._slots.release()
            raise

    def release(self, instance: GuestInstance, reusable: bool) -> None:
        """Gives an instance back: kept idle when it may serve again, else freed now."""
        assert self._slots is not None
        self._slots.release()
        size = self._live.get(instance, 0)
        if reusable and not self._retired and size <= self._base_memory + IDLE_GROWTH_BYTES:
            self._idle.append((instance, time.monotonic()))
            if self._trim is None and len(self._idle) > 1:
                self._trim = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._trim_idle)
        else:
            self.discard(instance)

    def _trim_idle(self) -> None:
        """Drops instances idle for IDLE_SECONDS, keeping one: after a burst, memory comes back."""
        self._trim = None
        cutoff = time.monotonic() - IDLE_SECONDS
        dropped = 0
        while len(self._idle) > 1 and self._idle[0][1] <= cutoff:
            self.discard(self._idle.pop(0)[0])
            dropped += 1
        if dropped:
            _malloc.release()
        if len(self._idle) > 1:  # again when the oldest of those left has been idle long enough
            delay = max(0.1, self._idle[0][1] + IDLE_SECONDS - time.monotonic())
            self._trim = asyncio.get_running_loop().call_later(delay, self._trim_idle)

    def retire(self) -> None:
        """Idle instances are freed now, busy ones when they are released."""
        self._retired = True
        if self._trim is not None:
            self._trim.cancel()
            self._trim = None
        while self._idle:
            self.discard(self._idle.pop()[0])

    def memory_in_use(self) -> int:
        """Bytes of guest memory held by the instances, idle and busy."""
        return sum(self._live.values())

    def idle(self) -> list[GuestInstance]:
        """The idle instances, the one to be used next last."""
        return [instance for instance, _ in self._idle]
