"""Counters and histograms for one process and one thread, as prometheus-client exposes them.

An update is a Python addition (a histogram's bucket found by `bisect`), with no lock: they are
updated and read on the event loop's thread only (every update is made in a request's task or
in a host function the guest calls from it, and /metrics is read by an `async def` route). A
registry reads them as prometheus-client's own Counter and Histogram families, sample for sample,
for the names, labels, buckets and values prometheus-client itself accepts (tests/test_tallies.py
compares the two). `_created` samples follow PROMETHEUS_DISABLE_CREATED_SERIES as read at start,
not `prometheus_client.disable_created_metrics()`.
"""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

# prometheus-client's switch for the `_created` samples, read as it reads it.
_CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in ("true", "1", "t")


class CounterTally:
    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self.value += amount


class HistogramTally:
    __slots__ = ("bounds", "counts", "sum", "created")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.sum += amount
        if amount == amount:  # NaN is in no bucket, as prometheus-client counts it
            self.counts[bisect.bisect_left(self.bounds, amount)] += 1  # the first bound >= amount


class _Tallied(Collector):
    """A family of tallies by label values, registered in `registry` as one collector."""

    kind = ""

    reserved: tuple[str, ...] = ()

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        if any(label in self.reserved for label in labelnames):
            raise ValueError(f"{name}: a label may not be called {', '.join(self.reserved)}")
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.children: dict[tuple[str, ...], CounterTally | HistogramTally] = {}
        registry.register(self)

    def _child(self, values: tuple[str, ...]) -> CounterTally | HistogramTally:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes {len(self.labelnames)} label values, not {len(values)}")
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self._new()
        return child

    def _new(self) -> CounterTally | HistogramTally:
        raise NotImplementedError

    def describe(self) -> Iterable[Metric]:
        return [Metric(self.name, self.documentation, self.kind)]

    def collect(self) -> Iterable[Metric]:
        family = Metric(self.name, self.documentation, self.kind)
        for values, child in self.children.items():
            labels = dict(zip(self.labelnames, values, strict=True))
            self._samples(family, labels, child)
            if _CREATED:
                family.add_sample(self.name + "_created", labels, child.created)
        return [family]

    def _samples(self, family: Metric, labels: dict[str, str], child: CounterTally | HistogramTally) -> None:
        raise NotImplementedError


class TalliedCounter(_Tallied):
    """prometheus_client.Counter's exposition, counted in plain numbers."""

    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry)  # as prometheus-client

    def labels(self, *values: str) -> CounterTally:
        child = self._child(tuple(str(v) for v in values))
        assert isinstance(child, CounterTally)
        return child

    def _new(self) -> CounterTally:
        return CounterTally()

    def _samples(self, family: Metric, labels: dict[str, str], child: CounterTally | HistogramTally) -> None:
        assert isinstance(child, CounterTally)
        family.add_sample(self.name + "_total", labels, child.value)


class TalliedHistogram(_Tallied):
    """prometheus_client.Histogram's exposition (its buckets and +Inf), counted in plain numbers."""

    kind = "histogram"
    reserved = ("le",)

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], registry: CollectorRegistry, buckets: Sequence[float]
    ) -> None:
        bounds = [float(b) for b in buckets]
        if bounds != sorted(bounds):
            raise ValueError(f"{name}: buckets not in sorted order")
        if bounds and bounds[-1] != INF:
            bounds.append(INF)
        if len(bounds) < 2:
            raise ValueError(f"{name}: a histogram needs at least two buckets")
        self.bounds = tuple(bounds)
        super().__init__(name, documentation, labelnames, registry)

    def labels(self, *values: str) -> HistogramTally:
        child = self._child(tuple(str(v) for v in values))
        assert isinstance(child, HistogramTally)
        return child

    def _new(self) -> HistogramTally:
        return HistogramTally(self.bounds)

    def _samples(self, family: Metric, labels: dict[str, str], child: CounterTally | HistogramTally) -> None:
        assert isinstance(child, HistogramTally)
        total = 0
        for bound, count in zip(self.bounds, child.counts, strict=True):
            total += count
            le = floatToGoString(bound)  # type: ignore[no-untyped-call]
            family.add_sample(self.name + "_bucket", {**labels, "le": le}, float(total))
        family.add_sample(self.name + "_count", labels, float(total))
        if self.bounds[0] >= 0:  # as prometheus-client: no sum where observations may be negative
            family.add_sample(self.name + "_sum", labels, child.sum)
