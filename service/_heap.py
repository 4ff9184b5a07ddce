"""The cycle collector and what the service keeps for its whole life.

What the service builds to serve (the app, the guest's module, description and pool, sqlglot's
tables and the statements it has checked, the metrics, the libraries' own modules) lives as long
as the process: tens of thousands of objects the collector can track but never free. CPython does
not know that, and every full collection, which requests' short-lived objects trigger from time
to time, traverses all of them again while every request waits (README, "Where a single-row
request's time goes": `scripts/bench profile --native` showed the collector in 1-2 % of a
single-row request's samples and never in the plain peer's; a full collection took about 90 ms
on a loaded machine with the heap unfrozen, 1-3 ms frozen). `settle` moves what exists once the
service is up out of the collector's view (`gc.freeze`); objects made later are collected as
before. The app's end gives it all back (`unsettle`), so an app run in a process that goes on
(a test's, an embedding one's) leaves nothing frozen behind.

A reload replaces the guest: what the old one was made of must become collectable again, or its
reference cycles would stay frozen for good. `loosen` gives the whole frozen heap back to the
collector at once and settles it again later, when no request can still be on the old guest.
"""

from __future__ import annotations

import asyncio
import gc


def settle() -> int:
    """Collects what is garbage now, then freezes everything left; the number of objects frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def loosen(after_seconds: float, pending: asyncio.TimerHandle | None) -> asyncio.TimerHandle:
    """Unfreezes the heap now and settles it again after `after_seconds` (on the running loop);
    a settle still pending from an earlier call is replaced. Returns the new one, to cancel at
    shutdown."""
    if pending is not None:
        pending.cancel()
    gc.unfreeze()
    return asyncio.get_running_loop().call_later(after_seconds, settle)


def unsettle(pending: asyncio.TimerHandle | None) -> None:
    """At the app's end: no settle pending any more, and nothing frozen."""
    if pending is not None:
        pending.cancel()
    gc.unfreeze()
