"""Load with nothing lost: many clients mixing writes and reads, then the table is compared with
what the service acknowledged; and MariaDB killed under load, then restarted."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import httpx

from service import EmbeddedMariaDB

from .conftest import Db, Service, url_of

CLIENTS = int(os.environ.get("LOAD_CLIENTS", "64"))
SECONDS = float(os.environ.get("LOAD_SECONDS", "30"))


def order(order_id: int, rng: random.Random) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "product_id": rng.randint(1, 99),
        "quantity": rng.randint(1, 9),
        "amount": rng.randint(0, 99999) / 100,
        "shipping": rng.randint(0, 999) / 100,
        "tax": rng.randint(0, 999) / 100,
        "shipping_address": f"{order_id} Load Street",
    }


def row(o: dict[str, Any]) -> tuple[Any, ...]:
    return (
        o["order_id"],
        o["product_id"],
        o["quantity"],
        f"{o['amount']:.2f}",
        f"{o['shipping']:.2f}",
        f"{o['tax']:.2f}",
        o["shipping_address"],
    )


def stored(db: Db) -> dict[int, tuple[Any, ...]]:
    money = "CAST(amount AS CHAR), CAST(shipping AS CHAR), CAST(tax AS CHAR)"
    sql = f"SELECT order_id, product_id, quantity, {money}, shipping_address FROM orders"
    return {r[0]: tuple(r) for r in db.rows(sql)}


class Client:
    """One client's own ids, and what the service acknowledged for each of them."""

    def __init__(self, number: int) -> None:
        self.rng = random.Random(number)
        self.next_id = number * 1_000_000 + 1
        self.model: dict[int, dict[str, Any]] = {}
        self.uncertain: set[int] = set()  # ids whose last write got no answer we can trust
        self.batches: list[list[int]] = []
        self.failures: list[str] = []
        self.unavailable_at: list[float] = []

    def fresh(self) -> int:
        self.next_id += 1
        return self.next_id

    async def step(self, http: httpx.AsyncClient, tolerate_outage: bool) -> None:
        rng, ids = self.rng, sorted(self.model)
        choice = rng.random()
        if choice < 0.35 or not ids:
            o = order(self.fresh(), rng)
            await self.write(
                http,
                "POST",
                "/api/orders",
                o,
                201,
                [o["order_id"]],
                tolerate_outage,
                lambda: self.model.__setitem__(o["order_id"], o),
            )
        elif choice < 0.45:
            batch = [order(self.fresh(), rng) for _ in range(5)]
            ids_in = [o["order_id"] for o in batch]
            self.batches.append(ids_in)
            await self.write(
                http,
                "POST",
                "/create_orders",
                batch,
                200,
                ids_in,
                tolerate_outage,
                lambda: self.model.update({o["order_id"]: o for o in batch}),
            )
        elif choice < 0.65:
            target = rng.choice(ids)
            o = order(target, rng)
            await self.write(
                http, "PUT", f"/api/orders/{target}", o, 200, [target], tolerate_outage, lambda: self.model.__setitem__(target, o)
            )
        elif choice < 0.8:
            target = rng.choice(ids)
            await self.write(
                http, "DELETE", f"/api/orders/{target}", None, 204, [target], tolerate_outage, lambda: self.model.pop(target)
            )
        else:
            response = await http.get("/api/orders", params={"limit": 50, "offset": rng.randint(0, 500)})
            self.check(response, 200, tolerate_outage, [])

    async def write(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        body: Any,
        expected: int,
        ids: list[int],
        tolerate_outage: bool,
        acknowledged: Any,
    ) -> None:
        response = await http.request(method, path, json=body)
        if self.check(response, expected, tolerate_outage, ids):
            acknowledged()

    def check(self, response: httpx.Response, expected: int, tolerate_outage: bool, ids: list[int]) -> bool:
        if response.status_code == expected:
            return True
        if tolerate_outage and response.status_code == 503:
            self.unavailable_at.append(time.monotonic())
            for i in ids:  # it may or may not have happened: leave these ids alone from now on
                self.uncertain.add(i)
                self.model.pop(i, None)
            return False
        self.failures.append(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text[:200]}"
        )
        return False


async def drive(base: str, clients: list[Client], seconds: float, tolerate_outage: bool) -> int:
    limits = httpx.Limits(max_connections=len(clients), max_keepalive_connections=len(clients))
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        deadline = time.monotonic() + seconds
        steps = 0

        async def run(client: Client) -> None:
            nonlocal steps
            while time.monotonic() < deadline:
                await client.step(http, tolerate_outage)
                steps += 1

        await asyncio.gather(*(run(c) for c in clients))
        return steps


def expected_rows(clients: list[Client]) -> tuple[dict[int, tuple[Any, ...]], set[int]]:
    model = {i: row(o) for c in clients for i, o in c.model.items()}
    uncertain = {i for c in clients for i in c.uncertain}
    return model, uncertain


def test_load_loses_nothing(client: httpx.Client, service: Service, service_db: Db) -> None:
    clients = [Client(n) for n in range(CLIENTS)]
    steps = asyncio.run(drive(service.base, clients, SECONDS, tolerate_outage=False))
    failures = [f for c in clients for f in c.failures]
    assert failures == [], failures[:10]
    model, _ = expected_rows(clients)
    assert stored(service_db) == model
    assert steps > CLIENTS  # it really ran
    print(f"{steps} requests from {CLIENTS} clients in {SECONDS:.0f} s")


def test_mariadb_killed_under_load(own_mariadb: EmbeddedMariaDB, engine: str, tmp_path: Path) -> None:
    db = Db(own_mariadb.url)
    env = {"DATABASE_URL": url_of(db), "WASM_ENGINE": engine, "DB_CONNECT_TIMEOUT": "1", "DB_ACQUIRE_TIMEOUT": "3"}
    svc = Service(env, tmp_path / "service.log")
    clients = [Client(n) for n in range(16)]
    outage: dict[str, float] = {}

    async def scenario() -> None:
        load = asyncio.ensure_future(drive(svc.base, clients, 14, tolerate_outage=True))
        await asyncio.sleep(4)
        outage["killed"] = time.monotonic()
        own_mariadb.kill()
        await asyncio.sleep(3)
        own_mariadb.start()  # on this thread: the server is tied to the thread that starts it
        outage["back"] = time.monotonic()
        await load

    try:
        asyncio.run(scenario())
        failures = [f for c in clients for f in c.failures]
        assert failures == [], failures[:10]
        refused = [t for c in clients for t in c.unavailable_at]
        assert refused, "the outage should have been noticed"
        assert all(outage["killed"] <= t <= outage["back"] + 5 for t in refused), "503s outside the outage"
        model, uncertain = expected_rows(clients)
        now = stored(db)
        for order_id, expected in model.items():
            assert now.get(order_id) == expected, f"acknowledged write of order {order_id} lost"
        for order_id in set(now) - set(model):
            assert order_id in uncertain, f"order {order_id} is stored but was never acknowledged"
        # A batch cut by the outage was never touched again: it must be all there or not at all.
        for batch in (b for c in clients for b in c.batches if set(b) <= c.uncertain):
            present = sum(i in now for i in batch)
            assert present in (0, len(batch)), f"a batch was half written: {batch}"
        assert svc.client.get("/readyz").status_code == 200
    finally:
        svc.stop()
