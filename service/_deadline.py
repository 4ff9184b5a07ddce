"""A deadline for a block of awaits, as `asyncio.timeout` gives from Python 3.11 on."""

from __future__ import annotations

import asyncio
from types import TracebackType


class deadline:  # noqa: N801 (used like asyncio.timeout, which Python 3.10 lacks)
    """`async with deadline(s):` cancels the block after `s` seconds and raises TimeoutError."""

    __slots__ = ("_seconds", "_task", "_handle", "expired")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self.expired = False

    async def __aenter__(self) -> deadline:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._handle.cancel()
        if self.expired and kind is asyncio.CancelledError:
            uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
            if uncancel is None or uncancel() == 0:
                raise asyncio.TimeoutError() from error
