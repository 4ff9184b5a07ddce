"""service._deadline: the deadlines of a loop share one timer; each still expires on time, only
its own block, and never after it has been left, on asyncio's loop and on uvloop (the server's)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from service._deadline import alarm, cancel_from_outside, cancel_handled, deadline

LOOPS: dict[str, Callable[[Coroutine[Any, Any, Any]], Any]] = {
    "asyncio": asyncio.run,
    "uvloop": lambda main: uvloop.new_event_loop().run_until_complete(main),
}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    return LOOPS[request.param]


async def expires_after(seconds: float, *, inner: float | None = None) -> float:
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        with deadline(seconds):
            if inner is None:
                await asyncio.sleep(30)
            else:
                with deadline(inner):
                    await asyncio.sleep(30)
    return time.monotonic() - started


def test_a_block_is_stopped_at_its_deadline_and_not_before(run: Callable[..., Any]) -> None:
    assert 0.19 <= run(expires_after(0.2)) < 0.4


def test_the_earlier_of_nested_deadlines_stops_the_block(run: Callable[..., Any]) -> None:
    assert 0.09 <= run(expires_after(0.1, inner=30)) < 0.3
    assert 0.09 <= run(expires_after(30, inner=0.1)) < 0.3


def test_many_deadlines_each_expire_at_their_own_time(run: Callable[..., Any]) -> None:
    """Later ones first, earlier ones after: the shared timer is moved for each earlier one."""

    async def one(seconds: float) -> float:
        return await expires_after(seconds) - seconds

    async def main() -> list[float]:
        return await asyncio.gather(*(one(0.05 * (7 - i % 7)) for i in range(300)))

    late = run(main())
    assert min(late) > -0.005 and max(late) < 0.2


def test_a_deadline_left_in_time_never_fires_later(run: Callable[..., Any]) -> None:
    """Neither the task (which goes on to sleep past the old deadline) nor anything else is
    cancelled by a deadline that was left."""

    async def main() -> None:
        for _ in range(1000):
            with deadline(0.05):
                await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        with deadline(0.01):
            pass
        await asyncio.sleep(0.1)

    run(main())


def test_a_cancellation_from_outside_stays_a_cancellation(run: Callable[..., Any]) -> None:
    async def main() -> None:
        async def guarded() -> None:
            with deadline(10):
                await asyncio.sleep(30)

        task = asyncio.ensure_future(guarded())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


@pytest.mark.parametrize("which", ["inner", "only"])
def test_a_cancellation_from_outside_with_a_deadline_expiring_at_that_moment_stays_a_cancellation(
    run: Callable[..., Any], which: str
) -> None:
    """The client leaves (the service cancels the request from outside) in the very loop
    iteration in which a deadline of the request expires: Python 3.10 makes the two one
    CancelledError. It must reach the request as a cancellation. Taken for the inner deadline's
    timeout (a statement's: the guest is told and goes on) it would be lost, and the request
    would run on for nobody; taken for the request's own, it would be answered as a timeout."""

    async def main() -> str:
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        try:
            with deadline(10 if which == "inner" else 0.05) as outer:
                try:
                    with deadline(0.05) as inner:
                        expiring = inner if which == "inner" else outer

                        def together() -> None:  # both before the task runs again, on either loop
                            cancel_from_outside(me)
                            expiring._expire()

                        loop.call_later(0.02, together)
                        await asyncio.sleep(5)
                except asyncio.TimeoutError:
                    await asyncio.sleep(0.3)  # the statement's error handed to the guest, which goes on
                    return "went on after the inner timeout"
        except asyncio.TimeoutError:
            return "timed out"
        except asyncio.CancelledError:
            cancel_handled()
            return "cancelled"
        return "not stopped"

    assert run(main()) == "cancelled"


def test_after_a_handled_cancellation_deadlines_are_timeouts_again(run: Callable[..., Any]) -> None:
    async def main() -> float:
        me = asyncio.current_task()
        assert me is not None
        asyncio.get_running_loop().call_later(0.01, cancel_from_outside, me)
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            cancel_handled()
        return await expires_after(0.05)

    assert run(main()) < 1


def test_loops_in_two_threads_keep_their_own_deadlines() -> None:
    """Each thread's loop, entering deadlines at once with the other's: each expires on time."""
    results: dict[str, float] = {}

    def work(name: str, seconds: float) -> None:
        async def main() -> float:
            for _ in range(2000):  # interleaved with the other thread's
                with deadline(60):
                    await asyncio.sleep(0)
            return await expires_after(seconds)

        results[name] = LOOPS[name](main())

    threads = [threading.Thread(target=work, args=("asyncio", 0.3)), threading.Thread(target=work, args=("uvloop", 0.2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert 0.29 <= results["asyncio"] < 1.5 and 0.19 <= results["uvloop"] < 1.5


@pytest.mark.parametrize("gap", [0.0, 0.0003, 0.0008])
def test_an_outer_deadline_is_kept_when_an_inner_one_expires_with_it(run: Callable[..., Any], gap: float) -> None:
    """REQUEST_TIMEOUT and DB_ACQUIRE_TIMEOUT are both 10 s by default: a request whose first
    statement waits for a full pool enters the acquire's deadline a moment after its own, and
    both fall due together. The inner TimeoutError is handled (the guest is told the database
    is unavailable and goes on): the outer deadline must still stop the block."""

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            with deadline(0.1):  # the request's
                await asyncio.sleep(gap)
                try:
                    with deadline(0.1):  # the pool's, entered just after
                        await asyncio.sleep(5)
                except asyncio.TimeoutError:
                    pass
                await asyncio.sleep(1)  # must be stopped at 0.1 s
        return time.monotonic() - started

    assert run(main()) < 0.5


def test_an_inner_deadline_alone_is_the_inner_blocks_timeout(run: Callable[..., Any]) -> None:
    async def main() -> str:
        with deadline(5):
            try:
                with deadline(0.05):
                    await asyncio.sleep(1)
            except asyncio.TimeoutError:
                return "inner"
        return "none"

    assert run(main()) == "inner"


def test_no_deadline_expires_more_than_the_clocks_millisecond_early_on_uvloop() -> None:
    """uvloop's clock counts whole milliseconds: a deadline may expire up to one early, no more."""

    async def one(delay: float) -> float:
        await asyncio.sleep(delay)
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            with deadline(0.02):
                await asyncio.sleep(1)
        return time.monotonic() - started

    async def main() -> list[float]:
        return await asyncio.gather(*(one(i * 0.0001) for i in range(100)))

    took = [t for _ in range(5) for t in LOOPS["uvloop"](main())]
    assert min(took) >= 0.019, f"expired {1000 * (0.02 - min(took)):.3f} ms early"


def test_alarms_ring_at_their_own_time_among_deadlines_and_never_once_cancelled(run: Callable[..., Any]) -> None:
    """Alarms (each request sets one, to start watching for its client leaving after 50 ms)
    share the deadlines' timer: set later ones first and earlier ones after, cancel every other
    one, and keep deadlines coming and going meanwhile: each alarm left rings once, at its
    time and not a millisecond before, and no cancelled one rings."""

    async def main() -> tuple[dict[int, float], set[int], float]:
        rang: dict[int, float] = {}
        started = time.monotonic()
        alarms = {}
        for i in range(200):
            seconds = 0.02 * (1 + (7 - i % 7))
            alarms[i] = (alarm(seconds, lambda i=i, s=seconds: rang.setdefault(i, time.monotonic() - started - s)), seconds)
        cancelled = set(range(0, 200, 2))
        for i in cancelled:
            alarms[i][0].cancel()
        for _ in range(500):
            with deadline(0.01):
                await asyncio.sleep(0)
        timed_out = await expires_after(0.05)
        await asyncio.sleep(0.3)
        return rang, cancelled, timed_out

    rang, cancelled, timed_out = run(main())
    assert not cancelled & set(rang), "a cancelled alarm rang"
    assert set(rang) == set(range(1, 200, 2)), "an alarm left did not ring"
    assert min(rang.values()) > -0.0011 and max(rang.values()) < 0.2
    assert 0.049 <= timed_out < 0.3


def test_an_alarm_that_raises_stops_no_other_alarm_or_deadline(run: Callable[..., Any]) -> None:
    """A callback that raises is reported by the loop, as a `call_later` callback's would be;
    the alarms and deadlines due with it still happen."""

    async def main() -> tuple[list[str], list[Any]]:
        loop = asyncio.get_running_loop()
        reported: list[Any] = []
        loop.set_exception_handler(lambda loop, context: reported.append(context.get("exception")))
        rang: list[str] = []

        def boom() -> None:
            raise RuntimeError("the callback failed")

        alarm(0.02, boom)
        alarm(0.02, lambda: rang.append("after"))
        with pytest.raises(asyncio.TimeoutError):
            with deadline(0.02):
                await asyncio.sleep(1)
        await asyncio.sleep(0.05)
        return rang, reported

    rang, reported = run(main())
    assert rang == ["after"]
    assert len(reported) == 1 and isinstance(reported[0], RuntimeError)


def test_an_alarm_cancelled_after_its_time_came_but_before_it_ran_never_runs(run: Callable[..., Any]) -> None:
    """The timer's run hands the callback to the loop; a request that ends in that same loop
    iteration cancels its alarm before the callback's turn (which would start watching a
    request already over). Cancelled then, it does not run, as a `call_later` handle would not."""

    async def main() -> list[str]:
        rang: list[str] = []
        early = alarm(30, lambda: rang.append("cancelled in time"))
        early._expire()  # what the timer does when the alarm's time comes
        early.cancel()
        alarm(0.01, lambda: rang.append("left alone"))
        await asyncio.sleep(0.05)
        early.cancel()  # again, after all: nothing
        return rang

    assert run(main()) == ["left alone"]


@pytest.mark.parametrize("when", ["before its time", "after it ran", "after it ran, never cancelled"])
def test_an_owner_whose_method_an_alarm_calls_is_freed_at_cancel_without_the_collector(
    run: Callable[..., Any], when: str
) -> None:
    """The request's watcher keeps its alarm and the alarm calls the watcher's method: a cycle.
    Cancelled, or once it has rung, the alarm lets go of the method, so the watcher (and the
    request's task, its exchange and what it raised, which the watcher holds) is freed at once,
    as it was with a `call_later` handle, and not when the cycle collector comes by."""

    class Owner:
        def __init__(self) -> None:
            self.rang = 0
            self.alarm = alarm(0.01, self.ring)

        def ring(self) -> None:
            self.rang += 1

    async def main() -> tuple[bool, int]:
        owner = Owner()
        if when != "before its time":
            await asyncio.sleep(0.05)
        rang = owner.rang
        if when != "after it ran, never cancelled":
            owner.alarm.cancel()
        gone = weakref.ref(owner)
        del owner
        await asyncio.sleep(0)
        return gone() is None, rang

    gc.disable()
    try:
        freed, rang = run(main())
    finally:
        gc.enable()
    assert rang == (0 if when == "before its time" else 1)
    assert freed, "the owner is kept alive by a reference cycle through its alarm"
