"""What the app builds once and owns for its life: the guest, the database, the metrics; and the
reload of the guest on SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette

from . import _heap, _malloc
from ._database import SCHEMA_DIR, Database
from ._engines import load_engine
from ._errors import GuestLoadError
from ._guest import FUEL_SLICE, Guest
from ._metrics import Metrics
from ._printable import printable
from ._settings import DatabaseURL, Settings
from ._sql import Capability

log = logging.getLogger("service")
# Tasks started from signal handlers, kept referenced until they end.
_background: set[asyncio.Task[None]] = set()


@dataclass
class Runtime:
    """What the routes use, built once in the lifespan."""

    settings: Settings
    guest: Guest
    database: Database
    metrics: Metrics
    capability: Capability
    reloading: bool = False
    #: a SIGHUP came during a reload: the module is loaded again when that one ends
    reload_again: bool = False
    #: bytes of large answers being sent to clients that have not taken them yet
    unsent_bytes: int = 0
    #: the heap settled again after a reload (service/_heap.py), until it is
    settle_timer: asyncio.TimerHandle | None = None


def guest_tables() -> list[str]:
    """The service's own tables, from sql/schema.sql: the only ones a guest may use."""
    return sorted(Capability.from_schema_file(SCHEMA_DIR / "schema.sql").tables)


def load_guest(settings: Settings) -> Guest:
    """The engine and guest the settings name, checked. Raises ConfigError or GuestLoadError."""
    engine = load_engine(settings.wasm_engine)
    guest = Guest.load(
        engine,
        settings.guest_module,
        pool_max=settings.guest_pool_max,
        limits=settings.limits,
        cache_dir=settings.cache_dir,
        memory_total=settings.guest_memory_total,
    )
    if guest.metered:
        log.info(
            "the %s engine cannot interrupt running code: the guest is metered, and looks at the clock every %d "
            "instructions or so, to stop at GUEST_TIME_LIMIT_MS",
            engine.name,
            FUEL_SLICE,
        )
    return guest


def lifespan(
    settings: Settings, database_url: DatabaseURL, metrics: Metrics, guest: Guest | None
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The app's lifespan: builds the Runtime into `app.state.runtime` (loading the guest unless
    one is given), and closes the database at shutdown."""

    @asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        _malloc.tune()
        loaded = guest or load_guest(settings)
        capability = Capability.from_schema_file(SCHEMA_DIR / "schema.sql", truncate=settings.allow_reset)
        database = Database(
            database_url,
            admin_url=settings.database_admin_url,
            pool_min=settings.db_pool_min,
            pool_max=settings.db_pool_max,
            connect_timeout=settings.db_connect_timeout,
            acquire_timeout=settings.db_acquire_timeout,
            statement_timeout=settings.db_statement_timeout,
            lock_timeout=settings.db_lock_timeout,
            guest_tables=frozenset(capability.tables),
        )
        await database.start()
        runtime = app.state.runtime = Runtime(settings, loaded, database, metrics, capability)
        watch_for_reload(runtime)
        metrics.engine.labels(loaded.engine.name).set(1)
        metrics.watch_pool(database.pool_sizes)
        log.info("serving with the %s engine, database %s", loaded.engine.name, database_url.redacted())
        _heap.settle()  # what was built to serve is out of the collector's way
        try:
            yield
        finally:
            await database.close()
            metrics.close()
            # Last, after every await: a reload ending meanwhile may have set a new timer.
            _heap.unsettle(runtime.settle_timer)

    return run


def watch_for_reload(runtime: Runtime) -> None:
    """On SIGHUP, load the guest module again and swap it in; a module that does not load is
    refused and the running one keeps serving. The module is compiled in a child process, so
    requests are served meanwhile; requests in flight finish on the guest they started on."""

    async def reload() -> None:
        try:
            await load_once()
        except BaseException:  # cancelled (the service is stopping): no other load after it
            runtime.reloading = runtime.reload_again = False
            raise
        if runtime.reload_again:  # the file may have changed since this load read it
            runtime.reload_again = False
            start()
        else:
            runtime.reloading = False

    async def load_once() -> None:
        settings = runtime.settings
        try:
            fresh = await Guest.load_isolated(
                runtime.guest.engine,
                settings.guest_module,
                compile_timeout=settings.guest_compile_timeout,
                pool_max=settings.guest_pool_max,
                limits=settings.limits,
                cache_dir=settings.cache_dir,
                memory_total=settings.guest_memory_total,
            )
        except GuestLoadError as e:
            log.error("SIGHUP: the new guest module was refused; the running one keeps serving: %s", printable(str(e)))
            return
        except Exception as e:  # a failure of ours or of the engine: still, never stop serving
            log.error("SIGHUP: loading the new guest module failed; the running one keeps serving", exc_info=e)
            return
        old, runtime.guest = runtime.guest, fresh
        old.retire()
        # The old guest's objects become collectable; the heap is settled again once no request
        # can still be running on it (each ends within REQUEST_TIMEOUT).
        runtime.settle_timer = _heap.loosen(settings.limits.request_seconds + 1, runtime.settle_timer)
        log.info("SIGHUP: guest module reloaded from %s", fresh.name)

    def start() -> None:
        runtime.reloading = True
        task = asyncio.get_running_loop().create_task(reload())
        _background.add(task)
        task.add_done_callback(_background.discard)

    def on_sighup() -> None:
        if runtime.reloading:
            # Not dropped: the module on disk may be newer than the one being loaded (a second
            # save while the first compiles). SIGHUPs meanwhile make one more load, not several.
            if not runtime.reload_again:
                log.info("SIGHUP: a reload is under way; the module will be loaded again when it ends")
            runtime.reload_again = True
            return
        start()

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        log.info("no SIGHUP here (not the main thread, or not POSIX): the guest module cannot be reloaded")
