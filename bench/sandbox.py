"""The sandbox's own CPU per single-row request, without HTTP: what the service does for a request
between reading it and answering it (the request's header line, a session, the guest invoked on
an instance, its statement checked, bound and run) against what the plain-Python peer does for
the same request (the body parsed and checked in Python, its statement run by aiomysql), both
in this one process, on one MariaDB, batches of each taking turns.

    .venv-3.10/bin/python bench/sandbox.py [--batches 60] [--batch 100] [--guest MODULE] [--json FILE]

The running servers' figure (bench/run.py: the service's CPU per request less the plumbing
peer's) has two whole servers' noise in it (uvicorn, sockets, the event loop, the access line,
wrk beside them); this one has neither server. The CPU is this process's: MariaDB's is not
counted, and the statements are not quite the same: the guest's `GET` asks MariaDB for the row
as one JSON array (`JSON_ARRAY(...)`, built by the server) where the peer reads seven columns
and decodes them in Python, which is the service's design, not the benchmark's. Each side's
figure is its best batch (on a shared machine the slower batches measure the neighbours); the
sandbox's own is the median of the rounds' paired differences, each round taking the four
cases in turn, in the opposite order every other round. bench/run.py runs it too, in a process
of its own, into results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomysql
import uvloop
from peer import COLUMNS, DECODERS, order_json, parse_order
from pymysql.constants import CLIENT
from run import ORDER, seed  # the order the benchmark posts; the schema and the 100 seeded orders

from service import EmbeddedMariaDB, Guest, _heap, available_engines, load_engine
from service._abi import encode_request
from service._database import Database
from service._guest import DEFAULT_MODULE
from service._hostfuncs import HostSession
from service._sql import Capability

ROOT = Path(__file__).resolve().parent.parent
ORDER_ID = "42"  # one of the seeded orders (bench/run.py's seed)
BODY = json.dumps(ORDER).encode()
GET, POST = "GET /api/orders/{id}", "POST /create_order"


async def measure(
    url: Any, engines: list[str], guest_module: Path = DEFAULT_MODULE, batches: int = 60, batch: int = 100
) -> dict[str, Any]:
    """Per engine and endpoint: the service's and the peer's CPU µs per request (each its best
    batch), and the sandbox's own: the median of the rounds' paired differences, with its range."""
    database = Database(url)
    pool: aiomysql.Pool | None = None
    try:
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
        peer = _Peer(pool)
        out: dict[str, Any] = {}
        for engine in engines:
            guest = Guest(load_engine(engine), guest_module.read_bytes())
            try:
                out[engine] = await _rounds(guest, database, capability, peer, batches, batch)
            finally:
                guest.retire()
        return {"batches": batches, "batch": batch, "engines": out}
    finally:
        if pool is not None:
            pool.close()
            await pool.wait_closed()
        await database.close()


class _Peer:
    """The plain peer's logic for the two requests (bench/peer.py's get_order and create_order,
    without Starlette's request and response)."""

    def __init__(self, pool: aiomysql.Pool) -> None:
        self.pool = pool

    async def get(self) -> None:
        raw = ORDER_ID
        if not re.fullmatch(r"\d{1,10}", raw):
            raise AssertionError(raw)
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"SELECT {COLUMNS} FROM orders WHERE order_id = %s", (int(raw),))
            row = await cur.fetchone()
        assert row is not None
        order_json(row)

    async def post(self) -> None:
        params, errors = parse_order(json.loads(BODY))
        assert not errors
        async with self.pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(f"INSERT INTO orders ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)", params)


async def _rounds(
    guest: Guest, database: Database, capability: Capability, peer: _Peer, batches: int, batch: int
) -> dict[str, Any]:
    limits = guest.limits

    def service(request: Callable[[], bytes]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            session = HostSession(database, capability, max_result_bytes=limits.result_bytes, max_result_rows=limits.result_rows)
            clean = False
            try:
                answer = await guest.invoke(request(), session.call, session.log, session.charged)
                clean = True
            finally:
                await session.close(broken=not clean)
            assert answer.status == 200, answer.body[:200]

        return run

    # Each request's header line is made for it, as the service's endpoint makes it.
    cases: dict[tuple[str, str], Callable[[], Awaitable[None]]] = {
        (GET, "service"): service(lambda: encode_request("get", {}, {"order_id": ORDER_ID}, "", False)),
        (GET, "peer"): peer.get,
        (POST, "service"): service(lambda: encode_request("create_order", {}, {}, "application/json", False) + BODY),
        (POST, "peer"): peer.post,
    }
    for case in cases.values():  # warm: the first calls compile, connect, fill caches
        for _ in range(50):
            await case()
    spent: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    order = list(cases)
    # What is built by now lives as long as the run, as what the service builds to serve lives
    # as long as it does: out of the cycle collector's way, as the service puts it.
    _heap.settle()
    try:
        for _ in range(batches):
            for key in order:
                case = cases[key]
                started = time.process_time()
                for _ in range(batch):
                    await case()
                spent[key].append((time.process_time() - started) / batch * 1e6)
            order.reverse()  # the cases take turns, each side first every other round
    finally:
        _heap.unsettle(None)
    out = {}
    for endpoint in (GET, POST):
        differences = [s - p for s, p in zip(spent[(endpoint, "service")], spent[(endpoint, "peer")], strict=True)]
        out[endpoint] = {
            "service_cpu_us": min(spent[(endpoint, "service")]),
            "peer_cpu_us": min(spent[(endpoint, "peer")]),
            "sandbox_us": statistics.median(differences),
            "sandbox_range_us": [min(differences), max(differences)],
        }
    return out


def print_table(results: dict[str, Any]) -> None:
    print(
        f"\nThe sandbox's own CPU per request without HTTP (bench/sandbox.py), µs of this process's CPU per "
        f"request: the service's and the plain peer's best of {results['batches']} batches of {results['batch']}, "
        "and the median of the rounds' paired differences (service less peer), with their range.\n"
    )
    print("| endpoint | engine | service | plain peer | sandbox's own | its range |")
    print("|---|---|--:|--:|--:|--:|")
    for engine, endpoints in results["engines"].items():
        for endpoint, m in endpoints.items():
            low, high = m["sandbox_range_us"]
            print(
                f"| {endpoint} | {engine} | {m['service_cpu_us']:.1f} | {m['peer_cpu_us']:.1f} | "
                f"{m['sandbox_us']:.1f} | {low:.0f} to {high:.0f} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=60, help="batches of each case, taking turns (default 60)")
    parser.add_argument("--batch", type=int, default=100, help="requests per batch (default 100)")
    parser.add_argument("--guest", type=Path, default=DEFAULT_MODULE, help="the guest module (default: the Rust guest)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file (bench/run.py reads them)")
    args = parser.parse_args()
    uvloop.install()  # as uvicorn runs the servers

    with tempfile.TemporaryDirectory(prefix="orders-sandbox-") as tmp:
        server = EmbeddedMariaDB(Path(tmp) / "data", database="orders_bench")
        url = server.start()
        try:
            seed(url)
            results = asyncio.run(measure(url, available_engines(), args.guest.resolve(), args.batches, args.batch))
        finally:
            server.stop()
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
