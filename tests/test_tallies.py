"""The tallies the service counts requests with in one process expose exactly what
prometheus-client's own Counter and Histogram would for the same updates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from service._metrics import Metrics
from service._tallies import TalliedCounter, TalliedHistogram

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Exactly on bounds, between them, below the first, past the last, zero and infinity.
AMOUNTS = [0.0, 0.0005, 0.0004, 0.00051, 0.001, 0.003, 0.025, 0.0250001, 4.99, 5.0, 5.01, 1e9, float("inf"), 0.07, -1.0]


def exposition(registry: CollectorRegistry) -> str:
    """The text format, `_created` timestamps (when each was made) set aside."""
    return re.sub(r"(_created(\{[^}]*\})?) \S+", r"\1 T", generate_latest(registry).decode())


def test_counters_and_histograms_read_as_prometheus_clients_own() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    families = []
    for registry, counter, histogram in ((theirs, Counter, Histogram), (ours, TalliedCounter, TalliedHistogram)):
        requests = counter("http_requests_total", 'HTTP "requests"\\ answered', ["method", "status"], registry=registry)
        seconds = histogram("duration_seconds", "latency", ["route"], buckets=BUCKETS, registry=registry)
        never = counter("never", "a family with no child yet", ["x"], registry=registry)
        families.append((requests, seconds, never))
        for i, amount in enumerate(AMOUNTS):
            requests.labels("GET", str(200 + i % 3) + '"\\\n' * (i % 2)).inc()
            requests.labels("POST", "201").inc(2.5)
            seconds.labels(f"/r{i % 2}").observe(amount)
    assert exposition(ours) == exposition(theirs)
    assert 'duration_seconds_bucket{le="+Inf",route="/r0"} 8.0' in exposition(ours)
    for (_, _, never) in families:
        with pytest.raises(ValueError):
            never.labels("a", "b")
    with pytest.raises(ValueError):
        families[1][0].labels("GET", "200").inc(-1)


def test_one_process_counts_in_tallies_and_shared_metrics_in_prometheus_clients(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """In one process the request metrics are tallies; with PROMETHEUS_MULTIPROC_DIR (several
    workers) they are prometheus-client's own, which write where every worker's are read."""
    assert isinstance(Metrics().http_requests, TalliedCounter)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    shared = Metrics()
    assert isinstance(shared.http_requests, Counter) and isinstance(shared.http_seconds, Histogram)


def test_a_histogram_refuses_what_prometheus_clients_refuses_and_counts_nan_in_no_bucket() -> None:
    for histogram in (Histogram, TalliedHistogram):
        for buckets in ((1.0, 0.5), (float("inf"),), ()):
            with pytest.raises(ValueError):
                histogram("h", "h", [], buckets=buckets, registry=CollectorRegistry())
        with pytest.raises(ValueError):
            histogram("h", "h", ["le"], buckets=BUCKETS, registry=CollectorRegistry())
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    Histogram("h", "h", buckets=(1.0,), registry=theirs).observe(float("nan"))
    TalliedHistogram("h", "h", [], buckets=(1.0,), registry=ours).labels().observe(float("nan"))
    assert exposition(ours) == exposition(theirs)
