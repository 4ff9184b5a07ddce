"""A deadline for a block of awaits, as `asyncio.timeout` gives from Python 3.11 on, and an
alarm, as `loop.call_later` gives.

Every request enters two to four deadlines (reading a body, the guest's run, each statement,
sending a large answer) and sets an alarm (when to start watching for its client
leaving), and nearly all end long before they expire; a timer of the event loop's for each
(created, then cancelled) was a visible part of a single-row request's cost. So the deadlines
and alarms of one loop share one timer, set for the earliest of them: setting and dropping one
is a dict insertion and deletion, and the timer is moved only when one comes earlier than every
other (with ones of the same length, almost never).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

#: Tasks cancelled from outside (`cancel_from_outside`) whose cancellation is not yet handled:
#: on Python 3.10, which does not count cancellations, how a deadline that expires together with
#: one tells it is not alone.
_outside: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

#: The innermost deadline the running code is inside (a task's own, or one a task was created
#: inside: hence the check that a deadline's task is the same).
_current: contextvars.ContextVar[deadline | None] = contextvars.ContextVar("deadline", default=None)


class _Timer:
    """The one timer of a loop's deadlines and alarms: an entry's `_expire()` is called once its
    time has come, unless it was removed before."""

    __slots__ = ("_loop", "_active", "_handle", "_at")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._active: dict[deadline | alarm, float] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf

    def add(self, entry: deadline | alarm, when: float) -> None:
        self._active[entry] = when
        if when < self._at:
            self._set(when)

    def remove(self, entry: deadline | alarm) -> None:
        self._active.pop(entry, None)  # the timer stays: when it runs, it finds the next one

    def _set(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = when
        self._handle = self._loop.call_at(when, self._run)

    def _run(self) -> None:
        self._handle, self._at = None, math.inf
        now = self._loop.time()  # an early run (a loop's clock is coarse) expires nothing early
        expired = [entry for entry, when in self._active.items() if when <= now]
        for entry in expired:
            del self._active[entry]
            entry._expire()
        if self._active:
            self._set(min(self._active.values()))


#: The timer of the loop that last entered a deadline. Another loop (another thread's, or the
#: next `asyncio.run`) gets a timer of its own; a deadline keeps the timer it was added to, so
#: one that is replaced here still runs for the deadlines it holds.
_last: tuple[asyncio.AbstractEventLoop | None, _Timer | None] = (None, None)


def _timer_of(loop: asyncio.AbstractEventLoop) -> _Timer:
    global _last
    last_loop, timer = _last
    if last_loop is not loop or timer is None:
        timer = _Timer(loop)
        _last = (loop, timer)
    return timer


class deadline:  # noqa: N801 (used like asyncio.timeout, which Python 3.10 lacks)
    """`with deadline(s):`, inside a task, cancels the block after `s` seconds and raises
    TimeoutError. A plain `with`, not `async with` as asyncio.timeout: entering and leaving await
    nothing, and the two coroutines `async with` makes were a fifth of a deadline's cost (hot,
    under uvloop, 2.5 against 2.05 us per deadline entered and left).

    Nested deadlines that expire together (the same run of the timer, or two cancellations
    before the task runs) make one CancelledError on Python 3.10, which cannot count them: the
    outermost expired one turns it into TimeoutError, and an inner one lets it pass, so an
    inner timeout that the block handles cannot swallow the outer one. So does a cancellation
    from outside made with `cancel_from_outside`: a deadline expiring with it lets it pass."""

    __slots__ = ("_seconds", "_task", "_timer", "_outer", "_token", "expired")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self.expired = False

    def __enter__(self) -> deadline:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        self._task = task
        self._outer = _current.get()
        self._token = _current.set(self)
        self._timer = _timer_of(loop)
        self._timer.add(self, loop.time() + self._seconds)
        return self

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        self._timer.remove(self)
        _current.reset(self._token)
        if self.expired and kind is asyncio.CancelledError:
            uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+: cancellations counted
            if uncancel is not None:
                if uncancel() == 0:
                    raise asyncio.TimeoutError() from error
            elif not self._outer_expired() and self._task not in _outside:
                raise asyncio.TimeoutError() from error

    def _outer_expired(self) -> bool:
        outer = self._outer
        while outer is not None:
            if outer._task is self._task and outer.expired:
                return True
            outer = outer._outer
        return False


class alarm:  # noqa: N801 (used like loop.call_later's handle)
    """Calls `callback()` on the running loop after `seconds`, unless `cancel()` comes first: as
    `loop.call_later`, on the loop's one timer. The callback runs as a callback of the loop's
    own (`call_soon`), so that one that raises is reported as any is and stops nothing else;
    `cancel()` stops it also when its time has come but it has not run yet."""

    __slots__ = ("_callback", "_loop", "_timer", "_handle")

    def __init__(self, seconds: float, callback: Callable[[], object]) -> None:
        loop = asyncio.get_running_loop()
        self._callback: Callable[[], object] | None = callback
        self._loop = loop
        self._handle: asyncio.Handle | None = None
        self._timer = _timer_of(loop)
        self._timer.add(self, loop.time() + seconds)

    def _expire(self) -> None:
        if self._callback is not None:
            self._handle = self._loop.call_soon(self._ring)

    def _ring(self) -> None:
        callback = self._callback
        self._callback = self._handle = None  # rung: nothing of the owner's is held any more
        if callback is not None:
            callback()

    def cancel(self) -> None:
        """Stops the alarm, and lets go of its callback: an owner whose own method the callback
        is (a cycle through the alarm) is freed at once, not by the cycle collector."""
        self._timer.remove(self)
        self._callback = None
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()


def cancel_from_outside(task: asyncio.Task[Any]) -> None:
    """Cancels `task` from outside it (its client left), so that no deadline of the task expiring
    at the same moment takes the cancellation for its own timeout: Python 3.11+ counts
    cancellations; on 3.10 the task is marked until `cancel_handled`."""
    if not hasattr(task, "uncancel"):
        _outside.add(task)
    task.cancel()


def cancel_handled() -> None:
    """The current task has handled a cancellation from outside and goes on: its deadlines expire
    as their own timeouts again."""
    task = asyncio.current_task()
    assert task is not None
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()
    else:
        _outside.discard(task)
