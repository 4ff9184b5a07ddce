"""What each part of the host's HTTP plumbing costs per request, hot: a trivial route (no guest,
no database) called straight through its ASGI interface in a loop under uvloop, first bare and
then with the service's parts added one at a time, as service/_app.py composes them: its one
middleware (`service._exchange.HostLayer`: request id, CORS headers, the exchange record), the
route taken there past Starlette's router as the guest's routes are, the metrics, the access line.

    scripts/bench plumbing [--requests 10000]

Prints µs per request for each step and what the step added. These are hot figures (the same
request over and over, so the code and data stay in the CPU caches); in a running server the
same code runs between other work and costs several times as much (the README's profile).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Message, Scope

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service._exchange import HostLayer  # noqa: E402
from service._logs import AccessLog, configure_logging  # noqa: E402
from service._metrics import Metrics  # noqa: E402

SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "scheme": "http",
    "method": "GET",
    "path": "/api/orders/42",
    "raw_path": b"/api/orders/42",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk")],
    "server": ("127.0.0.1", 8080),
    "client": ("127.0.0.1", 50000),
}
BODY = (
    b'{"order_id":42,"product_id":12,"quantity":2,"amount":19.99,"shipping":15.0,"tax":2.0,"shipping_address":"Mataderos 2312"}'
)


async def order(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


class Lane(Route):
    """The route, for the host layer to take past the router (as `service._routes.GuestRoutes`)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        return (match, child_scope) if match is Match.FULL else (Match.NONE, {})


def app_with(parts: int) -> Starlette:
    """The route behind the first `parts` of: the host layer, the route taken in it past the
    router, the exchange's metrics observer, its access line."""
    route = Lane("/api/orders/{order_id}", order)
    app = Starlette(routes=[route])
    metrics = Metrics()
    if parts >= 1:
        observers: list[Callable[..., None]] = []
        if parts >= 3:
            observers.append(metrics.observe_request)
        if parts >= 4:
            observers.append(AccessLog(json_lines=False))
        app.add_middleware(HostLayer, observers=observers, lane=route if parts >= 2 else None)
    return app


STEPS = [
    "a Starlette route alone",
    "+ host layer (request id, CORS, exchange)",
    "+ the route taken in the layer",
    "+ metrics (counter and histogram)",
    "+ access line (text, to a file)",
]


async def measure(requests: int, batches: int = 9) -> list[float]:
    """µs per request for each step: the best of `batches` batches each, the steps taking turns
    batch by batch, so that a neighbour's load falls on all of them alike."""

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    apps = [app_with(parts) for parts in range(len(STEPS))]
    for app in apps:
        for _ in range(500):
            await app(dict(SCOPE), receive, send)
    best = [float("inf")] * len(apps)
    for _ in range(batches):
        for i, app in enumerate(apps):
            started = time.perf_counter()
            for _ in range(requests):
                await app(dict(SCOPE), receive, send)
            best[i] = min(best[i], (time.perf_counter() - started) / requests * 1e6)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests per batch (default 10000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        configure_logging("INFO", json_lines=False)
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        with open(os.path.join(tmp, "access.log"), "w") as log_file:
            handler.setStream(log_file)
            uvloop.install()
            figures = asyncio.run(measure(args.requests))
    print(f"host plumbing per request, hot ({args.requests} requests a batch, best of 9, uvloop, {sys.version.split()[0]}):")
    previous = None
    for step, us in zip(STEPS, figures, strict=True):
        added = "" if previous is None else f"  ({us - previous:+.2f})"
        print(f"  {step:40} {us:7.2f} µs{added}")
        previous = us
    print(f"  the plumbing in all: {figures[-1] - figures[0]:+.2f} µs per request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
