"""Prometheus metrics of a source process, read when scraped (nothing on the hot path).

A source's counters live in its runner (``RunnerStats``); connector-specific
gauges (retained WAL of a PostgreSQL slot, binlog lag of a MySQL reader) come
from the connector's ``metrics()`` (:class:`cdc.spi.ReportsMetrics`) and are
exported as ``cdc_source_<name>``; ``cdc_native_module_loaded`` says which C
speed-ups run (:mod:`cdc.native`). Served with ``/healthz`` and ``/readyz`` by
:mod:`cdc.observability.server`. Each process of ``cdc run`` serves its own
port: ``metrics.port`` plus its index in the pipeline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cdc import native
from cdc.spi import ReportsMetrics

if TYPE_CHECKING:
    from cdc.config import MetricsConfig
    from cdc.runtime.source_runner import SourceRunner

log = logging.getLogger(__name__)


class SourceCollector:
    """Exposes one runner's counters and its connector's gauges."""

    def __init__(self, runner: SourceRunner) -> None:
        self.runner = runner
        self.native = native.report()  # fixed for the life of the process

    def describe(self) -> list[Any]:
        return []  # collected on demand; no fixed description

    def collect(self) -> Iterator[Any]:
        r = self.runner
        labels = ["source"]
        values = [r.name]
        stats = r.stats

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            m = CounterMetricFamily(name, doc, labels=labels)
            m.add_metric(values, value)
            return m

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            m = GaugeMetricFamily(name, doc, labels=labels)
            m.add_metric(values, value)
            return m

        yield counter("cdc_source_events", "Change events produced to Kafka.", stats.events)
        yield counter("cdc_source_snapshot_rows", "Snapshot rows produced.", stats.snapshot_rows)
        yield counter("cdc_source_checkpoints", "Durable positions recorded.", stats.checkpoints)
        yield gauge("cdc_source_in_flight_records", "Records sent, not yet acknowledged by Kafka.",
                    r.producer.tracker.in_flight)
        if stats.last_checkpoint_at:
            yield gauge("cdc_source_seconds_since_checkpoint",
                        "Seconds since the durable position last moved.",
                        time.time() - stats.last_checkpoint_at)
        if stats.last_event_ts_ms:
            yield gauge("cdc_source_last_event_lag_seconds",
                        "Now minus the commit time of the last event produced.",
                        max(0.0, time.time() - stats.last_event_ts_ms / 1000))
        loaded = GaugeMetricFamily(
            "cdc_native_module_loaded",
            "1 when this C speed-up runs, 0 when its pure-Python twin does (cdc --version).",
            labels=["source", "module"],
        )
        for status in self.native:
            loaded.add_metric([r.name, status.name], 1.0 if status.loaded else 0.0)
        yield loaded
        source = r.source
        if isinstance(source, ReportsMetrics):
            try:
                extra = source.metrics()
            except Exception as e:
                log.debug("connector metrics failed: %s", e)
                extra = {}
            for key, value in extra.items():
                if value is not None:
                    yield gauge(f"cdc_source_{key}", f"Connector metric {key}.", float(value))


def serve_source_metrics(runner: SourceRunner, cfg: MetricsConfig, port: int | None = None) -> int:
    """Serve this process's metrics, /healthz and /readyz (:mod:`cdc.observability.server`);
    returns the port (0 when disabled or the port is taken)."""
    from cdc.observability.server import serve_worker

    endpoint = serve_worker([SourceCollector(runner)], runner.health, cfg, port)
    return 0 if endpoint is None else endpoint.port
