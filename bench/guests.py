"""The two guests side by side, through the service's own engine adapters:
`python bench/guests.py [engine ...]` prints, for each engine and guest, the module's size, its
compile time (median of 5), instantiation (mean of 100), an instance's memory fresh and after
4,000 requests of eight kinds, and one invocation with a canned host (best of 5 batches)."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service import Guest, load_engine  # noqa: E402
from service._abi import encode_request  # noqa: E402
from service._instance import GuestInstance  # noqa: E402

GUESTS = {"rust": ROOT / "service/guest/orders.wasm", "as": ROOT / "service/guest/orders-as.wasm"}
ROW = '[{0},12,2,19.99,15.00,2.00,"{0} Mataderos 2312"]'


async def host_call(operation: str, payload: bytes) -> bytes:
    if operation == "execute":
        return b'{"rows_affected":1,"last_insert_id":7}'
    if operation in ("begin", "commit", "rollback"):
        return b'{"ok":true}'
    sql = json.loads(payload)["sql"]
    if "COUNT" in sql:
        return b'{"rows":[[100]]}'
    rows = 50 if "LIMIT ? OFFSET" in sql else 100 if "order_id > ?" in sql else 1
    return ('{"rows":[' + ",".join(ROW.format(i) for i in range(1, rows + 1)) + "]}").encode()


def log(level: int, message: str) -> None:
    pass


NEW = json.dumps(
    {"product_id": 12, "quantity": 2, "amount": 19.99, "shipping": 15.0, "tax": 2.0, "shipping_address": "Mataderos 2312"}
)
REQUESTS = [
    encode_request("echo", {}, {}, "text/plain; charset=utf-8", False) + b"ping",
    encode_request("get", {}, {"order_id": "42"}, "", False),
    encode_request("create", {}, {}, "application/json", False) + NEW.encode(),
    encode_request("create_order", {}, {}, "application/json", False) + NEW.encode(),
    encode_request("list", {}, {}, "", False),
    encode_request("orders", {}, {}, "", False),
    encode_request("patch", {}, {"order_id": "42"}, "application/json", False) + b'{"quantity":3}',
    encode_request("create_order", {}, {}, "application/json", False) + b'{"quantity":-1}',
]


def per_call_us(guest: Guest, request: bytes, n: int) -> float:
    async def run() -> float:
        for _ in range(200):
            await guest.invoke(request, host_call, log)
        best = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(n):
                await guest.invoke(request, host_call, log)
            best.append((time.perf_counter() - started) / n * 1e6)
        return min(best)

    return asyncio.run(run())


def measure(engine_name: str, module: Path) -> dict[str, float]:
    engine = load_engine(engine_name)
    wasm = module.read_bytes()
    compile_ms = []
    for _ in range(5):
        started = time.perf_counter()
        engine.compile(wasm)
        compile_ms.append((time.perf_counter() - started) * 1000)
    guest = Guest(engine, wasm, pool_max=1)
    instance = guest.idle_instances()[0]
    fresh = instance.raw.memory_size()

    async def warm() -> None:
        for _ in range(500):
            for request in REQUESTS:
                answered = await guest.invoke(request, host_call, log)
                assert answered.status < 500, (request[:80], answered.status, answered.body[:200])

    asyncio.run(warm())
    assert guest.idle_instances() == [instance], "the instance was dropped"
    warm_memory = instance.raw.memory_size()
    started = time.perf_counter()
    for _ in range(100):
        GuestInstance(guest).close()
    instantiate_ms = (time.perf_counter() - started) / 100 * 1000
    return {
        "module_bytes": len(wasm),
        "compile_ms": round(statistics.median(compile_ms), 1),
        "instantiate_ms": round(instantiate_ms, 3),
        "memory_fresh_kib": fresh // 1024,
        "memory_after_4000_requests_kib": warm_memory // 1024,
        "echo_us": round(per_call_us(guest, REQUESTS[0], 1000), 1),
        "get_one_host_call_us": round(per_call_us(guest, REQUESTS[1], 1000), 1),
        "list_two_host_calls_us": round(per_call_us(guest, REQUESTS[4], 300), 1),
    }


if __name__ == "__main__":
    for engine_name in sys.argv[1:] or ["wasmtime", "wasmer"]:
        for name, module in GUESTS.items():
            print(engine_name, name, json.dumps(measure(engine_name, module)), flush=True)
