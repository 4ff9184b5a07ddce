"""The sandbox's own CPU per single-row request, without HTTP: what the service does for a request
between reading it and answering it (the request's header line, a session, the guest invoked on
an instance, its statement checked, bound and run) against what the plain-Python peer does for
the same request (the body parsed and checked in Python, the same statement run by aiomysql),
both in this one process, on one MariaDB, batches of each taking turns.

    .venv-3.10/bin/python bench/sandbox.py [--batches 60] [--batch 100]

The running servers' figure (bench/run.py: the service's CPU per request less the plumbing
peer's) has two whole servers' noise in it (uvicorn, sockets, the event loop, the access line,
wrk beside them); this one has neither server, so it can show a change of a few µs. Each figure
is the best batch's CPU time (this process's, MariaDB's not counted) per request: on a shared
machine the slower batches measure the neighbours. bench/run.py runs it too, into results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiomysql
from peer import COLUMNS, DECODERS, order_json, parse_order
from pymysql.constants import CLIENT

from service import EmbeddedMariaDB, Guest, available_engines, load_engine
from service._abi import encode_request
from service._database import Database
from service._guest import DEFAULT_MODULE
from service._hostfuncs import HostSession
from service._sql import Capability

ROOT = Path(__file__).resolve().parent.parent
ORDER_ID = "42"  # one of the seeded orders (bench/run.py's seed)
BODY = json.dumps(
    {"product_id": 12, "quantity": 2, "amount": 19.99, "shipping": 15.0, "tax": 2.0, "shipping_address": "Mataderos 2312"}
).encode()
GET, POST = "GET /api/orders/{id}", "POST /create_order"


async def measure(
    url: Any, engines: list[str], guest_module: Path = DEFAULT_MODULE, batches: int = 60, batch: int = 100
) -> dict[str, Any]:
    """Per engine and endpoint: the service's and the peer's CPU µs per request, and the difference."""
    database = Database(url)
    quiet = logging.getLogger("service.database")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its warning that the benchmark's user is MariaDB's root
    try:
        await database.start()
    finally:
        quiet.setLevel(level)
    capability = Capability.from_schema_file(ROOT / "sql" / "schema.sql")
    pool = await aiomysql.create_pool(
        **url.connect_args(), autocommit=True, conv=DECODERS, client_flag=CLIENT.FOUND_ROWS, maxsize=4
    )
    get_request = encode_request("get", {}, {"order_id": ORDER_ID}, "", False)
    try:

        async def peer_get() -> None:
            raw = ORDER_ID
            if not re.fullmatch(r"\d{1,10}", raw):
                raise AssertionError(raw)
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(f"SELECT {COLUMNS} FROM orders WHERE order_id = %s", (int(raw),))
                row = await cur.fetchone()
            assert row is not None
            order_json(row)

        async def peer_post() -> None:
            params, errors = parse_order(json.loads(BODY))
            assert not errors
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(f"INSERT INTO orders ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)", params)

        def service(guest: Guest, request: Callable[[], bytes], status: int) -> Callable[[], Awaitable[None]]:
            limits = guest.limits

            async def run() -> None:
                session = HostSession(
                    database, capability, max_result_bytes=limits.result_bytes, max_result_rows=limits.result_rows
                )
                clean = False
                try:
                    answer = await guest.invoke(request(), session.call, session.log, session.charged)
                    clean = True
                finally:
                    await session.close(broken=not clean)
                assert answer.status == status, answer.body[:200]

            return run

        out: dict[str, Any] = {}
        for engine in engines:
            guest = Guest(load_engine(engine), guest_module.read_bytes())
            cases = {
                (GET, "service"): service(guest, lambda: get_request, 200),
                (GET, "peer"): peer_get,
                # The header line is made per request, as the service's endpoint makes it.
                (POST, "service"): service(
                    guest, lambda: encode_request("create_order", {}, {}, "application/json", False) + BODY, 200
                ),
                (POST, "peer"): peer_post,
            }
            best = {key: float("inf") for key in cases}
            for case in cases.values():  # warm: the first calls compile, connect, fill caches
                for _ in range(50):
                    await case()
            for _ in range(batches):
                for key, case in cases.items():
                    started = time.process_time()
                    for _ in range(batch):
                        await case()
                    best[key] = min(best[key], (time.process_time() - started) / batch * 1e6)
            guest.retire()
            out[engine] = {
                endpoint: {
                    "service_cpu_us": best[(endpoint, "service")],
                    "peer_cpu_us": best[(endpoint, "peer")],
                    "sandbox_us": best[(endpoint, "service")] - best[(endpoint, "peer")],
                }
                for endpoint in (GET, POST)
            }
        return {"batches": batches, "batch": batch, "engines": out}
    finally:
        pool.close()
        await pool.wait_closed()
        await database.close()


def print_table(results: dict[str, Any]) -> None:
    print(
        f"\nThe sandbox's own CPU per request without HTTP (bench/sandbox.py): best of {results['batches']} batches "
        f"of {results['batch']}, µs of this process's CPU per request.\n"
    )
    print("| endpoint | engine | service | plain peer | sandbox's own |")
    print("|---|---|--:|--:|--:|")
    for engine, endpoints in results["engines"].items():
        for endpoint, m in endpoints.items():
            print(f"| {endpoint} | {engine} | {m['service_cpu_us']:.1f} | {m['peer_cpu_us']:.1f} | {m['sandbox_us']:.1f} |")


def run_loop(work: Coroutine[Any, Any, Any]) -> Any:
    """`work` run to its end on a new uvloop loop where uvloop is installed (as uvicorn runs the
    servers), else as `asyncio.run` runs it; the loop policy is left as it was."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    loop = uvloop.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(work)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=60, help="batches of each case, taking turns (default 60)")
    parser.add_argument("--batch", type=int, default=100, help="requests per batch (default 100)")
    parser.add_argument("--guest", type=Path, default=DEFAULT_MODULE, help="the guest module (default: the Rust guest)")
    args = parser.parse_args()
    from run import seed  # bench/run.py's: the schema and the 100 seeded orders

    with tempfile.TemporaryDirectory(prefix="orders-sandbox-") as tmp:
        server = EmbeddedMariaDB(Path(tmp) / "data", database="orders_bench")
        url = server.start()
        try:
            seed(url)
            results = run_loop(measure(url, available_engines(), args.guest.resolve(), args.batches, args.batch))
        finally:
            server.stop()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
