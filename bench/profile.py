"""Where a single-row request's time goes, per layer, on the service (each engine) and on the
plain-Python peer: each server is loaded by wrk while py-spy samples it, and every sample of its
main thread is put in the layer of the innermost frame a layer claims.

    .venv-3.10/bin/python bench/profile.py [--seconds 10] [--connections 16] [--endpoint get]

Prints, per target, the server's CPU per request split by the layers' shares of the samples, and
MariaDB's own CPU per request; writes the raw py-spy stacks (flamegraph.pl's input) beside the
benchmark's results, so that every figure can be traced to the stacks behind it. Needs wrk and
py-spy (`pip install py-spy`; installed with the bench extra); sampling costs the server a few
per cent of its throughput, alike for every target.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run import BENCH, ORDER, ROOT, cpu_seconds, seed, wait_healthy, wrk_command

from service import EmbeddedMariaDB, available_engines
from service._embedded import free_port

REQUESTS = {
    "get": ("GET /api/orders/{id}", "GET", "/api/orders/42", None),
    "create": ("POST /create_order", "POST", "/create_order", ORDER),
}

# (layer, what a frame's file path contains): the first rule that claims a frame, from the
# innermost frame outwards, names the sample's layer. Order matters: the Wasm engines' frames
# sit inside the service's invocation code, the driver inside the host functions.
LAYERS = [
    ("Wasm: entries and guest computation", ("wasmtime/", "wasmer", "service/_wasmtime", "service/_wasmer")),
    ("driver (aiomysql, PyMySQL)", ("aiomysql/", "pymysql/")),
    (
        "host functions (statement check, database plumbing)",
        (
            "service/_hostfuncs",
            "service/_sql",
            "service/_statements",
            "service/_database",
            "service/_pool",
            "service/_deadline",
            "service/_reaper",
            "service/_driver",
            "sqlglot/",
        ),
    ),
    (
        "guest invocation (codec, instances, metering)",
        (
            "service/_guest",
            "service/_instance",
            "service/_abi",
            "service/_limits",
            "service/_meter",
        ),
    ),
    (
        "host HTTP plumbing (routing, ids, CORS, metrics, access line)",
        (
            "service/",
            "bench/peer",
            "starlette/",
            "prometheus_client/",
            "logging/",
            "json/",
        ),
    ),
    ("server (uvicorn, HTTP parsing)", ("uvicorn/", "httptools", "h11/")),
]
# asyncio's own Python code (streams, locks, tasks) belongs to whoever called it.
NEUTRAL = ("asyncio/", "contextlib.py", "functools.py", "typing.py")
EVENT_LOOP = "event loop (uvloop: sockets, scheduling, idle)"


COLLECTOR = "cycle collector (CPython's gc, seen with --native)"


def layer_of(frames: list[str]) -> str:
    if any(frame.startswith("gc_collect") for frame in frames):
        return COLLECTOR
    for frame in reversed(frames):
        place = frame[frame.rfind("(") + 1 :]
        if "uvicorn/_compat.py" in place or "asyncio/runners.py" in place:
            break  # the loop's own native run_forever: its work is no Python frame's
        if any(mark in place for mark in NEUTRAL):
            continue
        for name, marks in LAYERS:
            if any(mark in place for mark in marks):
                return name
    return EVENT_LOOP


def main_thread_layers(raw: Path) -> collections.Counter[str]:
    """Samples per layer, main thread only (the wasmtime epoch ticker and the like sleep)."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if any("threading.py" in f for f in frames[:3]):
            continue
        counts[layer_of(frames)] += int(n)
    return counts


def profile(
    name: str, command: list[str], env: dict[str, str], args: argparse.Namespace, mariadb_pid: int, out: Path, tmp: Path
) -> dict[str, Any]:
    label, method, path, body = REQUESTS[args.endpoint]
    port = free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, process)
        wrk, wrk_env = wrk_command(base, method, path, body, args.connections, tmp)
        subprocess.run([*wrk, "-d3s"], env=wrk_env, capture_output=True, check=True)  # warm up
        raw = out / f"{name.replace(' ', '-')}-{args.endpoint}.txt"
        spy = subprocess.Popen(
            [
                args.py_spy,
                "record",
                "-p",
                str(process.pid),
                "-r",
                str(args.rate),
                "-d",
                str(args.seconds + 1),
                "-f",
                "raw",
                # --native must stop the process for each sample (py-spy cannot read C stacks
                # of a running one), which costs throughput but keeps the shares.
                *(["--native"] if args.native else ["--nonblocking"]),
                "-o",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        cpu, db_cpu = cpu_seconds(process.pid), cpu_seconds(mariadb_pid)
        done = subprocess.run([*wrk, f"-d{args.seconds}s"], env=wrk_env, capture_output=True, text=True, check=True)
        cpu, db_cpu = cpu_seconds(process.pid) - cpu, cpu_seconds(mariadb_pid) - db_cpu
        spy.wait(60)
        # Kept compressed beside the results: flamegraph.pl reads them through zcat.
        stacks = raw.with_suffix(".txt.gz")
        stacks.write_bytes(gzip.compress(raw.read_bytes(), mtime=0))
        rps = float(done.stdout.split("Requests/sec:")[1].split()[0])
        requests = rps * args.seconds
        counts = main_thread_layers(raw)
        raw.unlink()
        total = sum(counts.values())
        server_us = cpu / requests * 1e6
        return {
            "endpoint": label,
            "rps": rps,
            "server_cpu_us_per_request": server_us,
            "mariadb_cpu_us_per_request": db_cpu / requests * 1e6,
            "layers_us_per_request": {layer: server_us * n / total for layer, n in counts.most_common()},
            "samples": total,
            "stacks": str(stacks.relative_to(ROOT)) if stacks.is_relative_to(ROOT) else str(stacks),
        }
    finally:
        process.terminate()
        process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second (default 250)")
    parser.add_argument("--endpoint", choices=sorted(REQUESTS), action="append")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "profile")
    parser.add_argument("--native", action="store_true", help="py-spy's --native: C frames too (e.g. the collector)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"))
    args = parser.parse_args()
    if not Path(args.py_spy).exists() and shutil.which(args.py_spy) is None:
        print("profile: py-spy is needed (pip install py-spy)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="orders-profile-"))
    server = EmbeddedMariaDB(tmp / "data", database="orders_bench")
    url = server.start()
    results = []
    try:
        db_url = f"mysql://{url.user}@{url.host}:{url.port}/{url.database}"
        targets = {"python peer": ([sys.executable, str(BENCH / "peer.py")], {})}
        for engine in available_engines():
            targets[f"service on {engine}"] = ([sys.executable, "-m", "service"], {"WASM_ENGINE": engine})
        for endpoint in args.endpoint or ["get", "create"]:
            args.endpoint = endpoint
            for name, (command, extra) in targets.items():
                seed(url)
                env = {**os.environ, "DATABASE_URL": db_url, "LOG_LEVEL": "INFO", **extra}
                assert server.pid is not None
                result = profile(name, command, env, args, server.pid, args.out, tmp)
                result["target"] = name
                results.append(result)
                print_one(result)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    (args.out / "profile.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_one(r: dict[str, Any]) -> None:
    print(
        f"\n{r['endpoint']} on {r['target']}: {r['rps']:.0f} req/s, server CPU {r['server_cpu_us_per_request']:.0f} us/request "
        f"({r['samples']} samples, {r['stacks']}), MariaDB CPU {r['mariadb_cpu_us_per_request']:.0f} us/request",
        flush=True,
    )
    for layer, us in r["layers_us_per_request"].items():
        print(f"  {us:6.0f} us  {layer}")


if __name__ == "__main__":
    sys.exit(main())
