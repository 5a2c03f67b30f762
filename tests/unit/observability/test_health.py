"""Health conditions, the worker endpoint over real HTTP, and the sink metric families."""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cdc.config import MetricsConfig
from cdc.observability.health import Health
from cdc.observability.server import WorkerEndpoint, serve_worker
from cdc.observability.sink_metrics import Histogram, SinkMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_liveness_goes_stale_without_beats_and_recovers() -> None:
    clock = Clock()
    h = Health("sink", "s", stale_after_s=10, clock=clock)
    clock.now += 500
    assert h.liveness().ok  # startup (before the first beat) is not checked
    h.beat()
    clock.now += 9
    assert h.liveness().ok
    clock.now += 2
    v = h.liveness()
    assert not v.ok and "silent for 11s" in v.reasons[0]
    assert not h.readiness().ok  # a wedged worker is not ready either
    h.beat()
    assert h.liveness().ok


def test_readiness_conditions_checks_and_error_window() -> None:
    clock = Clock()
    h = Health("source", "pg", error_window_s=15, clock=clock)
    assert h.readiness().reasons == ("starting",)
    h.set_ready(None)
    assert h.readiness().ok
    h.set_ready("standby", part="ha")
    assert h.standby
    assert h.readiness().reasons == ("ha: standby",)
    h.set_ready(None, part="ha")
    assert not h.standby
    outage = {"on": True}
    h.add_check(lambda: "Kafka unreachable" if outage["on"] else None)
    assert h.readiness().reasons == ("Kafka unreachable",)
    outage["on"] = False
    h.error("applying a batch: unavailable")
    clock.now += 14
    assert h.readiness().reasons == ("error 14s ago: applying a batch: unavailable",)
    clock.now += 2
    assert h.readiness().ok
    h.add_check(lambda: 1 // 0 and None)  # a broken check answers "not ready", never raises
    assert "check failed" in h.readiness().reasons[0]


def test_concurrent_callers_do_not_corrupt_conditions() -> None:
    h = Health("sink", "s", initial=None)

    def flip(part: str) -> None:
        for i in range(2000):
            h.set_ready(None if i % 2 else "busy", part=part)

    threads = [threading.Thread(target=flip, args=(f"p{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for _ in range(200):
        h.readiness()
    for t in threads:
        t.join()
    assert h.readiness().ok  # every part ended at None (odd i last)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


class Counting:
    """A collector with one counter family (what a worker's collector yields)."""

    def __init__(self) -> None:
        self.value = 3.0

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        c = CounterMetricFamily("cdc_test_things", "Things.", labels=["sink"])
        c.add_metric(["s"], self.value)
        yield c


@pytest.fixture()
def endpoint() -> Iterator[tuple[WorkerEndpoint, Health]]:
    health = Health("sink", "s", stale_after_s=60)
    ep = serve_worker([Counting()], health, MetricsConfig(port=_free_port()))
    assert ep is not None
    yield ep, health
    ep.close()


def test_one_port_serves_metrics_healthz_and_readyz(
        endpoint: tuple[WorkerEndpoint, Health]) -> None:
    ep, health = endpoint
    base = f"http://127.0.0.1:{ep.port}"
    code, ctype, text = _get(base + "/metrics")
    assert code == 200 and ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["cdc_test_things"].samples[0].value == 3.0
    ready = [s for s in families["cdc_worker_ready"].samples]
    assert ready[0].labels == {"role": "sink", "name": "s"} and ready[0].value == 0.0

    code, ctype, text = _get(base + "/readyz")
    assert code == 503 and ctype == "application/json"
    body = json.loads(text)
    assert body["status"] == "unavailable" and body["reasons"] == ["starting"]
    assert body["role"] == "sink" and body["name"] == "s"
    assert _get(base + "/healthz")[0] == 200

    health.set_ready(None)
    code, _, text = _get(base + "/readyz")
    assert code == 200 and json.loads(text)["status"] == "ok"
    assert _get(base + "/nothing")[0] == 404


def test_a_taken_port_is_a_warning_and_no_endpoint(
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, "cdc.observability.server"):
            ep = serve_worker([], Health("source", "pg"), MetricsConfig(port=port))
    assert ep is None
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
    assert serve_worker([], Health("source", "pg"), MetricsConfig(enabled=False)) is None


def test_histogram_buckets_are_cumulative_with_inf() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0):
        h.observe(v)
    buckets, total = h.snapshot()
    assert buckets == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert total == pytest.approx(2.65)


def test_partition_lag_records_and_seconds() -> None:
    clock = Clock()
    m = SinkMetrics(clock=clock)
    t = ("topic", 0)
    u = ("topic", 1)
    m.batch_applied(0.01, {t: 5}, {t: int((clock.now - 3) * 1000)})
    assert m.records == 5 and m.e2e_last == pytest.approx(3.0)
    m.refresh_lag([(t, 110, 100), (u, 7, 7)])
    clock.now += 10
    lag = dict(((tp, (n, s)) for tp, n, s in m.lag()))
    assert lag[t] == (10, pytest.approx(13.0))  # behind: now - source commit of the last applied
    assert lag[u] == (0, 0.0)  # caught up
    m.refresh_lag([(t, 120, 100), (("topic", 2), 9, 4)])
    lag = dict(((tp, (n, s)) for tp, n, s in m.lag()))
    assert lag[("topic", 2)] == (5, None)  # nothing applied from it yet: seconds unknown
    m.forget([t])
    assert [tp for tp, _, _ in m.lag()] == [("topic", 2)]
    assert m.errors["unavailable"] == 0
    m.error("unavailable")
    assert m.errors["unavailable"] == 1


def test_a_source_waiting_out_kafka_keeps_beating() -> None:
    """The runner hands its heartbeat to the producer: a source blocked on an unreachable
    broker is alive (only not ready), so an orchestrator does not restart it in a loop."""
    from cdc.errors import UnreachableError
    from cdc.transport.producer import EventProducer
    from connectors.postgres.position import Lsn, PgPosition

    clock = Clock()
    health = Health("source", "pg", stale_after_s=10, clock=clock)
    producer = EventProducer("127.0.0.1:1", {"message.timeout.ms": 60_000})
    producer.waiting = health.beat
    producer.send("t", b"k", b"v", position=PgPosition(Lsn(1)), boundary=True)
    health.beat()
    clock.now += 100
    assert not health.liveness().ok
    with pytest.raises(UnreachableError):
        producer.flush(timeout=2)
    assert health.liveness().ok
