"""Two versions of the service side by side: the working tree against a git revision (or one
revision against another), on one MariaDB, with wrk taking turns between them round by round,
so that a noisy minute on this shared machine falls on both alike. For the small cuts the full
benchmark cannot tell from its noise: each cut's figure in the README's "What was cut" comes
from a run of this.

    .venv-3.10/bin/python bench/ab.py BASE [--against REV] [--endpoint get] [--engine wasmer]
        [--rounds 8] [--seconds 4] [--connections 16]

BASE (and REV) are checked out into temporary git worktrees; without --against the other side
is the working tree as it is, uncommitted changes included. Both sides run the guest module
built in this checkout, unless a side's guest/ differs from the working tree's: that side's is
built in its worktree (guest/build.sh). Prints, per side and engine, the median server CPU per
request, its range over the rounds, the median throughput and p99, and the difference of the
two sides round by round (a pair of runs back to back), as a median and a range.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from run import ENDPOINTS, ROOT, cpu_seconds, run_wrk, seed, wait_healthy

from service import EmbeddedMariaDB, available_engines
from service._embedded import free_port

SHORT = {"list": 0, "get": 1, "create": 2, "create100": 3}  # ENDPOINTS by a short name
MODULE = Path("service") / "guest" / "orders.wasm"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


class Side:
    """One version of the service: the working tree, or a revision in a worktree of its own."""

    def __init__(self, revision: str | None, where: Path) -> None:
        self.revision = revision
        self.worktree: Path | None = None
        if revision is None:
            self.label, self.root = "working tree", ROOT
        else:
            try:
                commit = git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
            except subprocess.CalledProcessError:
                raise SystemExit(f"ab: {revision!r} is not a commit of this repository") from None
            self.label = f"{revision} ({commit[:7]})" if not commit.startswith(revision) else commit[:7]
            self.root = self.worktree = where
            git("worktree", "add", "--detach", str(self.worktree), commit)
        try:
            self._prepare()
        except BaseException:
            self.remove()
            raise

    def _prepare(self) -> None:
        revision = self.revision
        self.module = ROOT / MODULE
        if revision is not None and subprocess.run(["git", "diff", "--quiet", revision, "--", "guest"], cwd=ROOT).returncode:
            print(f"ab: {self.label} has a guest of its own: building it", flush=True)
            subprocess.run([str(self.root / "guest" / "build.sh")], cwd=self.root, check=True, stdout=subprocess.DEVNULL)
            self.module = self.root / MODULE
        # `python -m service` in the side's directory imports that side's package, not the one
        # this checkout installed: checked, not assumed.
        imported = subprocess.run(
            [sys.executable, "-c", "import service; print(service.__file__)"],
            cwd=self.root,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not Path(imported).resolve().is_relative_to(self.root.resolve()):
            raise SystemExit(f"ab: {self.label} would run the service from {imported}, not from {self.root}")

    def remove(self) -> None:
        if self.worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(self.worktree)], cwd=ROOT, capture_output=True)
            self.worktree = None


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a running process on `cpus` (a process's affinity is its threads')."""
    for thread in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(thread), cpus)
        except ProcessLookupError:
            pass  # ended meanwhile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="a git revision: the side compared against")
    parser.add_argument("--against", help="a git revision for the other side (default: the working tree)")
    parser.add_argument("--endpoint", choices=sorted(SHORT), default="get")
    parser.add_argument("--engine", choices=["wasmer", "wasmtime", "both"], default="wasmer")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the services on the last CPU, MariaDB and wrk on the others: less noise, but not how the service runs",
    )
    args = parser.parse_args()
    engines = available_engines() if args.engine == "both" else [args.engine]
    if any(engine not in available_engines() for engine in engines):
        print(f"ab: {args.engine} is not available on this Python (wasmer: CPython 3.10 at most)", file=sys.stderr)
        return 2
    endpoint, method, path, body = ENDPOINTS[SHORT[args.endpoint]]
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) < 2:
        print("ab: --pin needs two CPUs at least", file=sys.stderr)
        return 2
    processes: list[subprocess.Popen[bytes]] = []
    sides: list[Side] = []
    with tempfile.TemporaryDirectory(prefix="orders-ab-") as name:
        tmp = Path(name)
        server = EmbeddedMariaDB(tmp / "data", database="orders_bench")
        try:
            url = server.start()
            if args.pin:
                others = set(cpus[:-1])
                os.sched_setaffinity(0, others)  # wrk, started from here, runs there too
                if server.pid is not None:
                    pin(server.pid, others)
            sides.append(Side(args.base, tmp / "base"))
            sides.append(Side(args.against, tmp / "other"))
            if sides[1].label == sides[0].label:  # the same version twice: the noise alone, told apart
                sides[0].label, sides[1].label = f"{sides[0].label} (A)", f"{sides[1].label} (B)"
            seed(url)
            targets: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
            for engine in engines:
                for side in sides:
                    port = free_port()
                    env = {
                        **os.environ,
                        "DATABASE_URL": f"mysql://{url.user}@{url.host}:{url.port}/{url.database}",
                        "LOG_LEVEL": "INFO",  # as the service runs by default, as in bench/run.py
                        "WASM_ENGINE": engine,
                        "GUEST_MODULE": str(side.module),
                    }
                    process = subprocess.Popen(
                        [sys.executable, "-m", "service", "--port", str(port)],
                        cwd=side.root,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    processes.append(process)
                    if args.pin:
                        os.sched_setaffinity(process.pid, {cpus[-1]})
                    base = f"http://127.0.0.1:{port}"
                    wait_healthy(base, process)
                    targets[f"{side.label} on {engine}"] = (process, base)
            runs = measure(targets, method, path, body, args, tmp)
            report(runs, endpoint, engines, sides, args)
            failed = {name: sum(r["non_2xx"] for r in out) for name, out in runs.items()}
            if any(failed.values()):
                for name, count in failed.items():
                    if count:
                        print(f"ab: {name} answered {count:.0f} requests with an error status: its figures are not comparable")
                return 1
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for side in sides:
                side.remove()
            server.stop()
    return 0


def measure(
    targets: dict[str, tuple[subprocess.Popen[bytes], str]], method: str, path: str, body: Any, args: Any, tmp: Path
) -> dict[str, list[dict[str, float]]]:
    """wrk on each target in turn, `rounds` times; every other round in the reverse order, so
    that neither side always runs just after the other."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    order = list(targets)
    for number in range(args.rounds):
        for name in order if number % 2 == 0 else order[::-1]:
            process, base = targets[name]
            before = cpu_seconds(process.pid)
            out = run_wrk(base, method, path, body, args.seconds, args.connections, tmp)
            requests = out["rps"] * args.seconds
            out["cpu_us"] = (cpu_seconds(process.pid) - before) / requests * 1e6
            runs[name].append(out)
        print(f"  round {number + 1} of {args.rounds}", flush=True)
    return runs


def report(runs: dict[str, list[dict[str, float]]], endpoint: str, engines: list[str], sides: list[Side], args: Any) -> None:
    print(f"\n{endpoint}, {args.rounds} rounds of {args.seconds} s, {args.connections} connections:\n")
    print("| target | CPU µs/req (median) | range | req/s (median) | p99 ms (median) |")
    print("|---|--:|--:|--:|--:|")
    for name, out in runs.items():
        cpu = [r["cpu_us"] for r in out]
        print(
            f"| {name} | {statistics.median(cpu):.0f} | {min(cpu):.0f}–{max(cpu):.0f} | "
            f"{statistics.median(r['rps'] for r in out):.0f} | {statistics.median(r['p99_ms'] for r in out):.2f} |"
        )
    print()
    base, other = sides
    for engine in engines:
        a, b = runs[f"{base.label} on {engine}"], runs[f"{other.label} on {engine}"]
        differences = sorted(y["cpu_us"] - x["cpu_us"] for x, y in zip(a, b, strict=True))
        print(
            f"{other.label} against {base.label} on {engine}: CPU per request {statistics.median(differences):+.0f} µs "
            f"(the rounds' differences: {differences[0]:+.0f} to {differences[-1]:+.0f})"
        )


if __name__ == "__main__":
    sys.exit(main())
