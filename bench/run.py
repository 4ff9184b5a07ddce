"""The benchmark: the service on each engine against the plain-Python peer, measured in turn in
one run on this machine, plus the database ceiling and micro-benchmarks of the guest.

    .venv-3.10/bin/python bench/run.py [--seconds 10] [--connections 16]

Needs wrk (apt-get install wrk) and MariaDB's binaries; starts its own MariaDB. Writes
bench/results/results.json and bench/results/results.png and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiomysql
import httpx
import pymysql

from service import EmbeddedMariaDB, Guest, available_engines, load_engine
from service._abi import encode_request
from service._embedded import free_port
from service._engine import HostFunction, InstanceLimits
from service._guest import DEFAULT_MODULE, FUEL_SLICE
from service._instance import GuestInstance
from service._metering import CLOCK_IMPORT, FUEL_EXPORT, meter

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
ORDER = {"product_id": 12, "quantity": 2, "amount": 19.99, "shipping": 15.0, "tax": 2.0, "shipping_address": "Mataderos 2312"}
ENDPOINTS = [  # (name, method, path, body): reads first, on the 100 seeded orders
    ("GET /orders (100 orders)", "GET", "/orders", None),
    ("GET /api/orders/{id}", "GET", "/api/orders/42", None),
    ("POST /create_order", "POST", "/create_order", ORDER),
    ("POST /create_orders (100)", "POST", "/create_orders", [ORDER] * 100),
]


def seed(url: Any) -> None:
    with pymysql.connect(
        host=url.host, port=url.port, user=url.user, password=url.password, database=url.database, autocommit=True
    ) as c:
        cur = c.cursor()
        cur.execute((ROOT / "sql" / "schema.sql").read_text())
        cur.execute("TRUNCATE TABLE orders")
        cur.executemany(
            "INSERT INTO orders VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(i, 12, 2, "19.99", "15.00", "2.00", f"{i} Benchmark Road") for i in range(1, 101)],
        )


def wait_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    started = time.perf_counter()
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.perf_counter() - started > timeout:
            raise RuntimeError(f"the server did not come up ({process.returncode})")
        time.sleep(0.01)


def parse_wrk(text: str) -> dict[str, float]:
    def seconds(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]

    out = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "99"):
        out[f"p{pct}_ms"] = seconds(re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", text, re.M).group(1)) * 1000  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = float(bad.group(1)) if bad else 0.0
    return out


def run_wrk(base: str, method: str, path: str, body: Any, seconds: int, connections: int, tmp: Path) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", base + path]
    env = dict(os.environ)
    if method == "POST":
        body_file = tmp / "body.json"
        body_file.write_text(json.dumps(body))
        command[1:1] = ["-s", str(BENCH / "post.lua")]
        env["BODY_FILE"] = str(body_file)
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return parse_wrk(done.stdout)


def guest_seconds(base: str) -> tuple[float, float]:
    """(seconds, invocations) the service has spent in its guest so far, from its /metrics:
    the time of each invocation less its database waits, as the server measures it."""
    text = httpx.get(base + "/metrics", timeout=10).text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("guest_duration_seconds_sum"):
            total += float(line.split()[-1])
        elif line.startswith("guest_duration_seconds_count"):
            count += float(line.split()[-1])
    return total, count


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_targets(url: Any, engines: list[str], seconds: int, rounds: int, connections: int, tmp: Path) -> dict[str, Any]:
    """Every target serves at once, each on its own port; each endpoint is measured on each
    target in turn, `rounds` times, so that a noisy neighbour or a slow minute falls on all of
    them alike. Throughput is over all rounds; p50 and p99 are the medians of the rounds'; CPU
    is the server process's own time per request."""
    db_url = f"mysql://{url.user}@{url.host}:{url.port}/{url.database}"
    targets = {"python peer": [sys.executable, str(BENCH / "peer.py")]}
    for engine in engines:
        targets[f"service on {engine}"] = [sys.executable, "-m", "service"]
    seed(url)
    processes: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, command in targets.items():
            port = free_port()
            env = {**os.environ, "DATABASE_URL": db_url, "LOG_LEVEL": "WARNING"}
            if name.startswith("service on "):
                env["WASM_ENGINE"] = name.removeprefix("service on ")
            process = subprocess.Popen(
                [*command, "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            processes[name] = (process, f"http://127.0.0.1:{port}")
            results[name] = {"start_to_first_answer_s": wait_healthy(processes[name][1], process)}
        for endpoint, method, path, body in ENDPOINTS:  # reads first, on the 100 seeded orders
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            cpu = {name: 0.0 for name in targets}
            in_guest = {name: (0.0, 0.0) for name in targets}
            for _ in range(rounds):
                for name, (process, base) in processes.items():
                    before = cpu_seconds(process.pid)
                    guest_before = guest_seconds(base) if name != "python peer" else (0.0, 0.0)
                    runs[name].append(run_wrk(base, method, path, body, seconds, connections, tmp))
                    cpu[name] += cpu_seconds(process.pid) - before
                    if name != "python peer":
                        guest_after = guest_seconds(base)
                        in_guest[name] = (
                            in_guest[name][0] + guest_after[0] - guest_before[0],
                            in_guest[name][1] + guest_after[1] - guest_before[1],
                        )
            for name in targets:
                requests = sum(r["rps"] for r in runs[name]) * seconds
                results[name][endpoint] = {
                    "rps": requests / (seconds * rounds),
                    "p50_ms": statistics.median(r["p50_ms"] for r in runs[name]),
                    "p99_ms": statistics.median(r["p99_ms"] for r in runs[name]),
                    "cpu_us_per_request": cpu[name] / requests * 1e6,
                    "guest_us_per_request": in_guest[name][0] / in_guest[name][1] * 1e6 if in_guest[name][1] else None,
                    "non_2xx": sum(r["non_2xx"] for r in runs[name]),
                }
                print(f"  {name:22} {endpoint:28} {results[name][endpoint]['rps']:9.0f} req/s", flush=True)
    finally:
        for process, _ in processes.values():
            process.terminate()
            process.wait(30)
    return results


async def database_ceiling(url: Any, seconds: float, connections: int) -> dict[str, float]:
    """The same statements through aiomysql, no HTTP and no guest: statements per second."""
    pool = await aiomysql.create_pool(
        **url.connect_args(),
        autocommit=True,
        minsize=connections,
        maxsize=connections,
    )
    # The service's own statements (guest/src/store.rs): reads shaped as JSON by MariaDB.
    columns = "order_id, product_id, quantity, amount, shipping, tax, shipping_address"
    as_json = f"JSON_ARRAY({columns})"
    row = (12, 2, "19.99", "15.00", "2.00", "Mataderos 2312")
    many = ", ".join(["(NULL, %s, %s, %s, %s, %s, %s)"] * 100)
    work = {
        "GET /orders (100 orders)": (f"SELECT {as_json} FROM orders WHERE order_id <= 100 ORDER BY order_id", ()),
        "GET /api/orders/{id}": (f"SELECT {as_json} FROM orders WHERE order_id = %s", (42,)),
        "POST /create_order": (f"INSERT INTO orders ({columns}) VALUES (NULL, %s, %s, %s, %s, %s, %s)", row),
        "POST /create_orders (100)": (f"INSERT INTO orders ({columns}) VALUES {many}", row * 100),
    }
    out = {}
    for name, (sql, params) in work.items():
        count = 0
        deadline = time.perf_counter() + seconds

        async def loop(sql: str = sql, params: tuple[Any, ...] = params, deadline: float = deadline) -> None:
            nonlocal count
            while time.perf_counter() < deadline:
                async with pool.acquire() as conn, conn.cursor() as cur:
                    await cur.execute(sql, params)
                    await cur.fetchall()
                count += 1

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(connections)))
        out[name] = count / (time.perf_counter() - started)
    pool.close()
    await pool.wait_closed()
    return out


def micro(engine_name: str) -> dict[str, float]:
    """Per-invocation overhead with no and with one (canned) host call; instantiation; compile
    against deserialising a compiled module."""
    engine = load_engine(engine_name)
    wasm = DEFAULT_MODULE.read_bytes()
    guest = Guest(engine, wasm, pool_max=4)
    canned = json.dumps({"rows": [[42, 12, 2, "19.99", "15.00", "2.00", "Mataderos 2312"]]}).encode()

    async def host_call(operation: str, payload: bytes) -> bytes:
        return canned

    def log(level: int, message: str) -> None:
        pass

    echo = encode_request("echo", {}, {}, "text/plain; charset=utf-8", False) + b"ping"
    get = encode_request("get", {}, {"order_id": "42"}, "", False)
    for request, status in ((echo, 200), (get, 200)):  # the requests measured are answered, not refused
        answered = asyncio.run(guest.invoke(request, host_call, log))
        assert answered.status == status, (request, answered.status, answered.body[:200])

    # Between requests a server does other work, which evicts the guest's code and data from
    # the CPU caches: "cold" calls have a few megabytes of other memory traffic between them.
    other = bytearray(8 << 20)
    junk = [{f"k{i}": [i, str(i), i / 7] for i in range(50)} for _ in range(20)]

    def pollute() -> None:
        other[:] = bytes(len(other))
        json.dumps(junk)

    async def per_call(request: bytes, n: int, cold: bool = False) -> float:
        # The best of seven batches: on a shared machine the slow batches measure the neighbours.
        for _ in range(200):
            await guest.invoke(request, host_call, log)
        batches = []
        for _ in range(7):
            spent = 0.0
            for _ in range(n):
                if cold:
                    pollute()
                started = time.perf_counter()
                await guest.invoke(request, host_call, log)
                spent += time.perf_counter() - started
            batches.append(spent / n * 1e6)
        return min(batches)

    def empty_call(cold: bool) -> float:
        abi_version = guest.idle_instances()[-1].raw.export("abi_version")
        batches = []
        for _ in range(7):
            spent = 0.0
            for _ in range(300):
                if cold:
                    pollute()
                started = time.perf_counter()
                abi_version()
                spent += time.perf_counter() - started
            batches.append(spent / 300 * 1e6)
        return min(batches)

    out = {
        "invocation_no_host_call_us": asyncio.run(per_call(echo, 1000)),
        "invocation_one_host_call_us": asyncio.run(per_call(get, 1000)),
        "invocation_one_host_call_cold_us": asyncio.run(per_call(get, 300, cold=True)),
        "empty_export_call_us": empty_call(cold=False),
        "empty_export_call_cold_us": empty_call(cold=True),
    }
    # The instruction meter (written into the module where the engine has no deadline, wasmer):
    # the same request on the module with and without it.
    for metered in (False, True):
        guest = Guest(engine, wasm, pool_max=4, metering=metered)
        out[f"invocation_one_host_call_{'metered' if metered else 'unmetered'}_us"] = asyncio.run(per_call(get, 1000))
    started = time.perf_counter()
    for _ in range(100):
        GuestInstance(guest).close()
    out["instantiate_ms"] = (time.perf_counter() - started) / 100 * 1000
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        engine.compile(wasm)
        timings.append(time.perf_counter() - started)
    out["compile_ms"] = statistics.median(timings) * 1000
    out["deserialize_ms"] = _deserialize_ms(engine_name, wasm)
    return out


def _deserialize_ms(engine_name: str, wasm: bytes) -> float:
    timings = []
    if engine_name == "wasmtime":
        import wasmtime

        wt_engine = wasmtime.Engine()
        blob = wasmtime.Module(wt_engine, wasm).serialize()
        for _ in range(5):
            started = time.perf_counter()
            wasmtime.Module.deserialize(wt_engine, blob)
            timings.append(time.perf_counter() - started)
    else:
        import wasmer
        from wasmer_compiler_cranelift import Compiler

        store = wasmer.Store(wasmer.engine.JIT(Compiler))
        blob = wasmer.Module(store, wasm).serialize()
        for _ in range(5):
            started = time.perf_counter()
            wasmer.Module.deserialize(store, blob)
            timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def compute(engines: list[str], tmp: Path, orders: int = 10_000) -> dict[str, Any]:
    """The guest's computation alone (guest/examples/compute.rs: parse, validate and encode
    `orders` orders), built natively and to Wasm by the same compiler, each timed in one call;
    Wasm runs through the service's own engine adapters, configured as the service runs them."""
    import ctypes

    subprocess.run([str(ROOT / "guest" / "build.sh"), "compute", str(tmp / "compute")], check=True)
    native = ctypes.CDLL(str(tmp / "compute" / "compute.so"))
    native.prepare.argtypes = [ctypes.c_uint32]
    native.compute.restype = ctypes.c_uint64
    native.prepare(orders)
    runs: dict[str, Any] = {"native": native.compute}
    wasm = (tmp / "compute" / "compute.wasm").read_bytes()
    for engine in engines:
        # As the service runs it: on an engine without deadlines (wasmer), metered, the clock
        # giving a fresh slice each time one is spent.
        adapter = load_engine(engine)
        module, host, instances = wasm, {}, []
        if not adapter.enforces_deadline:
            module = meter(wasm, initial_fuel=FUEL_SLICE)
            host = {CLOCK_IMPORT: HostFunction((), (), lambda held=instances: held[0].set_global(FUEL_EXPORT, FUEL_SLICE))}
        instance = adapter.compile(module).instantiate(host, InstanceLimits(600.0, 1 << 30, 1 << 20))
        instances.append(instance)
        instance.export("prepare")(orders)
        runs[engine] = instance.export("compute")
    out: dict[str, Any] = {"orders": orders}
    checksums = set()
    for name, run in runs.items():
        checksums.add(int(run()) & 0xFFFFFFFFFFFFFFFF)  # warm up, and the same work everywhere
        timings = []
        for _ in range(7):
            started = time.perf_counter()
            run()
            timings.append(time.perf_counter() - started)
        out[f"{name}_ms"] = min(timings) * 1000  # the best of seven, as for the micro-benchmarks
    if len(checksums) != 1 or 0 in checksums:
        raise RuntimeError(f"the builds did not compute the same result: {checksums}")
    for engine in engines:
        out[f"{engine}_to_native"] = out[f"{engine}_ms"] / out["native_ms"]
    return out


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peer = results["throughput"]["python peer"]
    services = [name for name in results["throughput"] if name != "python peer"]
    endpoints = [e[0] for e in ENDPOINTS]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / max(1, len(services))
    for i, name in enumerate(services):
        ratios = [results["throughput"][name][e]["rps"] / peer[e]["rps"] for e in endpoints]
        ax.bar([x + i * width for x in range(len(endpoints))], ratios, width, label=name)
    ax.axhline(1.0, color="black", linewidth=1)
    ax.set_xticks([x + width * (len(services) - 1) / 2 for x in range(len(endpoints))], endpoints, fontsize=8)
    ax.set_ylabel("throughput / plain-Python peer")
    ax.set_title(f"Wasm-hosted service against the plain-Python peer ({results['date'][:10]}, {results['machine']})", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4, help="per round, endpoint and target (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, taking the targets in turn (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is needed (apt-get install wrk)", file=sys.stderr)
        return 2
    engines = available_engines()
    if "wasmer" not in engines:
        print("bench: wasmer does not import on this Python; run with Python 3.10 to measure both engines", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="orders-bench-"))
    server = EmbeddedMariaDB(tmp / "data", database="orders_bench")
    url = server.start()
    try:
        print(
            f"throughput, {args.rounds} x {args.seconds} s per endpoint and target, {args.connections} connections (wrk)",
            flush=True,
        )
        throughput = measure_targets(url, engines, args.seconds, args.rounds, args.connections, tmp)
        seed(url)
        ceiling = asyncio.run(database_ceiling(url, 5, args.connections))
    finally:
        server.stop()
    results: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        "throughput": throughput,
        "database_ceiling_statements_per_s": ceiling,
        "micro": {engine: micro(engine) for engine in engines},
        "compute_wasm_vs_native": compute(engines, tmp),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, args.out / "results.png")
    print_table(results)
    return 0


def print_table(results: dict[str, Any]) -> None:
    peer = results["throughput"]["python peer"]
    print(
        f"\n{'endpoint':28} {'target':22} {'req/s':>8} {'x peer':>7} {'p50 ms':>7} {'p99 ms':>7} {'p99 x':>6} "
        f"{'cpu us/req':>10} {'cpu x':>6} {'guest us/req':>12}"
    )
    for endpoint, *_ in ENDPOINTS:
        for name, numbers in results["throughput"].items():
            m, base = numbers[endpoint], peer[endpoint]
            print(
                f"{endpoint:28} {name:22} {m['rps']:8.0f} {m['rps'] / base['rps']:7.2f} {m['p50_ms']:7.2f} "
                f"{m['p99_ms']:7.2f} {m['p99_ms'] / base['p99_ms']:6.2f} {m['cpu_us_per_request']:10.0f} "
                f"{m['cpu_us_per_request'] / base['cpu_us_per_request']:6.2f} "
                f"{'' if m['guest_us_per_request'] is None else format(m['guest_us_per_request'], '12.0f')}"
            )
        print(f"{endpoint:28} {'database ceiling':22} {results['database_ceiling_statements_per_s'][endpoint]:8.0f}")
    for engine, m in results["micro"].items():
        print(f"\n{engine}: " + ", ".join(f"{k} {v:.2f}" for k, v in m.items()))
    for name, numbers in results["throughput"].items():
        print(f"{name}: start to first answer {numbers['start_to_first_answer_s']:.2f} s")
    c = results["compute_wasm_vs_native"]
    print(f"\nvalidating and encoding {c['orders']} orders: native {c['native_ms']:.1f} ms", end="")
    for engine in results["micro"]:
        print(f", {engine} {c[f'{engine}_ms']:.1f} ms ({c[f'{engine}_to_native']:.2f}x native)", end="")
    print()


if __name__ == "__main__":
    sys.exit(main())
