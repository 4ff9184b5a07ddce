"""Metrics (Prometheus).

In one process the counters and histograms counted on every request are tallies of plain
Python numbers (`_tallies`), read into prometheus-client's families when /metrics is asked for:
prometheus-client's own take a lock and look a histogram's bucket up in Python on every update,
several microseconds a request. Everything runs on the event loop's thread, so nothing is lost.

With several worker processes (`--workers N`), `python -m service` sets PROMETHEUS_MULTIPROC_DIR
before they start: every worker writes its metrics there (prometheus-client's multiprocess
mode, its own Counter and Histogram) and whichever answers /metrics reports all of them together.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from starlette.responses import Response
from starlette.types import Scope

from ._exchange import Exchange
from ._tallies import TalliedCounter, TalliedHistogram

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The service's metrics, in a registry of their own (so tests can make several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        #: where the workers' metrics are written, when there are several
        self.shared_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        counter: Any = Counter if self.shared_dir else TalliedCounter
        histogram: Any = Histogram if self.shared_dir else TalliedHistogram
        self.http_requests = counter("http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r)
        self.http_seconds = histogram(
            "http_request_duration_seconds", "HTTP request latency", ["method", "route"], buckets=_FAST, registry=r
        )
        self.guest_invocations = counter("guest_invocations", "Guest invocations", ["engine", "outcome"], registry=r)
        self.guest_seconds = histogram(
            "guest_duration_seconds", "Time spent running the guest, per invocation", ["engine"], buckets=_FAST, registry=r
        )
        self.guest_traps = counter("guest_traps", "Guest invocations that trapped or broke the ABI", ["engine"], registry=r)
        self.host_calls = counter("host_calls", "Host function calls by the guest", ["function"], registry=r)
        self.host_call_seconds = histogram(
            "host_call_duration_seconds", "Host function call time", ["function"], buckets=_FAST, registry=r
        )
        # Across workers: the pools' connections added up, the engine once.
        self.db_pool = Gauge(
            "db_pool_connections", "Database pool connections", ["state"], registry=r, multiprocess_mode="livesum"
        )
        self.engine = Gauge("wasm_engine_info", "The Wasm engine in use (1)", ["engine"], registry=r, multiprocess_mode="max")
        self._pool_sizes: Callable[[], tuple[int, int]] | None = None
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def labelled(self, metric: Any, *values: str) -> Any:
        """`metric.labels(*values)`, looked up once: labels() costs microseconds on every call."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def host_call(self, function: str, seconds: float | None = None) -> None:
        """Counts one call to a host function by the guest, timed when `seconds` is given (what
        `_hostfuncs.HostCallMetrics` asks for)."""
        self.labelled(self.host_calls, function).inc()
        if seconds is not None:
            self.labelled(self.host_call_seconds, function).observe(seconds)

    def watch_pool(self, sizes: Callable[[], tuple[int, int]]) -> None:
        """`sizes()` gives (in use, free); read at every scrape."""
        self._pool_sizes = sizes

    def observe_request(self, scope: Scope, exchange: Exchange) -> None:
        """Counts and times one HTTP request (an observer of `Exchanges`)."""
        route = route_of(scope)
        method = scope["method"]
        self.labelled(self.http_requests, method, route, str(exchange.status)).inc()
        self.labelled(self.http_seconds, method, route).observe(exchange.seconds)
        if self.shared_dir is not None:
            self._note_pool()  # the worker that scrapes cannot read the others' pools

    def _note_pool(self) -> None:
        if self._pool_sizes is not None:
            in_use, free = self._pool_sizes()
            self.labelled(self.db_pool, "in_use").set(in_use)
            self.labelled(self.db_pool, "free").set(free)

    def render(self) -> Response:
        self._note_pool()
        if self.shared_dir is None:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker, self.shared_dir)  # type: ignore[no-untyped-call]
        return Response(generate_latest(every_worker), media_type=CONTENT_TYPE_LATEST)

    def close(self) -> None:
        """This worker stops: its live gauges leave the shared figures."""
        if self.shared_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.shared_dir)  # type: ignore[no-untyped-call]


def route_of(scope: Scope) -> str:
    """The route's template (`/api/orders/{order_id}`), so labels stay few."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path is not None else "unmatched"
