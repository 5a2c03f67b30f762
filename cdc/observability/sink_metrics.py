"""Prometheus metrics of a sink worker, kept per batch and read when scraped.

The worker (:mod:`cdc.sink.worker`) calls :meth:`SinkMetrics.batch_applied`
once per applied batch, :meth:`SinkMetrics.error` per error and
:meth:`SinkMetrics.refresh_lag` at most once a second from its own loop;
nothing here runs per record. :class:`SinkCollector` turns that and the
worker's counters (``WorkerStats``) into ``cdc_sink_*`` metric families at
scrape time, like :class:`cdc.observability.metrics.SourceCollector`.

Lag per partition: records = the partition's high watermark (as last fetched
by the consumer) minus the next offset the replica's checkpoint asks for;
seconds = now minus the source commit time (``source.ts_ms``) of the last
record applied from it, or 0 when the partition is caught up (absent until a
record of it was applied by this process). End-to-end lag: the replica's
commit time minus ``source.ts_ms`` of the last record applied per partition
in each batch (one sample per partition and batch).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from cdc import native

if TYPE_CHECKING:
    from cdc.sink.worker import SinkWorker

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]

# Seconds: a batch applies in milliseconds to seconds.
APPLY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Seconds: a pipeline keeps up within a second; a catching-up one is minutes to hours behind.
E2E_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                                  900.0, 3600.0, 21600.0, 86400.0)
# ErrorKind values (cdc.spi) and "fenced" (another worker's checkpoint won).
ERROR_KINDS: tuple[str, ...] = ("unavailable", "transient", "data", "fatal", "fenced")


class Histogram:
    """Cumulative buckets, observed by one thread, read by another (under a lock)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """``([(le, cumulative count)...], sum)`` in Prometheus order."""
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        out: list[tuple[str, float]] = []
        acc = 0
        for bound, n in zip((*map(_le, self.bounds), "+Inf"), counts, strict=True):
            acc += n
            out.append((bound, float(acc)))
        return out, total


def _le(bound: float) -> str:
    return repr(float(bound))


class SinkMetrics:
    """What a sink worker records per batch and per error."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.records = 0  # records done (applied, skipped or dead-lettered)
        self.apply_seconds = Histogram(APPLY_BUCKETS)
        self.e2e_seconds = Histogram(E2E_BUCKETS)
        self.e2e_last: float | None = None
        # every kind from the start (at 0): rate() and alerts see the first error
        self.errors: dict[str, int] = dict.fromkeys(ERROR_KINDS, 0)
        self._lock = threading.Lock()
        # per partition: (high watermark, next offset) and the last applied source ts (epoch s)
        self._lag: dict[TopicPartition, tuple[int, int]] = {}
        self._last_ts: dict[TopicPartition, float] = {}
        self._refreshed = 0.0

    # -- the worker's hooks (its own thread) ---------------------------------------------

    def batch_applied(self, seconds: float, consumed: Mapping[TopicPartition, int],
                      source_ts_ms: Mapping[TopicPartition, int]) -> None:
        """One batch committed in ``seconds``; ``source_ts_ms``: per partition, the source
        commit time of its last applied change (absent when unknown)."""
        self.apply_seconds.observe(seconds)
        self.records += sum(consumed.values())
        if source_ts_ms:
            now = self._clock()
            with self._lock:
                for tp, ts in source_ts_ms.items():
                    t = ts / 1000.0
                    self._last_ts[tp] = t
                    lag = max(0.0, now - t)
                    self.e2e_seconds.observe(lag)
                    self.e2e_last = lag

    def error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def error_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.errors)

    def due(self, interval_s: float = 1.0) -> bool:
        return time.monotonic() - self._refreshed >= interval_s

    def refresh_lag(self, offsets: Iterable[tuple[TopicPartition, int, int]]) -> None:
        """``(partition, high watermark, next offset to apply)`` of every assigned partition."""
        self._refreshed = time.monotonic()
        lag = {tp: (high, nxt) for tp, high, nxt in offsets}
        with self._lock:
            self._lag = lag
            for tp in [tp for tp in self._last_ts if tp not in lag]:
                del self._last_ts[tp]

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions revoked or lost: no lag of ours any more."""
        with self._lock:
            for tp in tps:
                self._lag.pop(tp, None)
                self._last_ts.pop(tp, None)

    # -- read at scrape time -------------------------------------------------------------

    def lag(self) -> list[tuple[TopicPartition, int, float | None]]:
        """``(partition, records behind, seconds behind or None when unknown)``."""
        now = self._clock()
        with self._lock:
            lag = dict(self._lag)
            last = dict(self._last_ts)
        out: list[tuple[TopicPartition, int, float | None]] = []
        for tp, (high, nxt) in sorted(lag.items()):
            records = max(0, high - nxt)
            ts = last.get(tp)
            seconds = 0.0 if records == 0 else (None if ts is None else max(0.0, now - ts))
            out.append((tp, records, seconds))
        return out


class SinkCollector:
    """Exposes one sink worker's counters, lags and histograms as ``cdc_sink_*``."""

    def __init__(self, worker: SinkWorker) -> None:
        self.worker = worker
        self.native = native.report()

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        w = self.worker
        m = w.metrics
        s = w.stats
        name = w.name
        labels = ["sink"]

        def counter(metric: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(metric, doc, labels=labels)
            c.add_metric([name], value)
            return c

        def gauge(metric: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(metric, doc, labels=labels)
            g.add_metric([name], value)
            return g

        yield counter("cdc_sink_records", "Kafka records done: applied, skipped or dead-lettered.",
                      m.records)
        yield counter("cdc_sink_rows_applied", "Row changes applied to the replica.", s.applied)
        yield counter("cdc_sink_batches", "Batches committed to the replica.", s.batches)
        yield counter("cdc_sink_dead_letters", "Records sent to the dead letter topic.",
                      s.dead_letters)
        yield counter("cdc_sink_skipped_records",
                      "Records skipped: replays already applied (at or before the replica's "
                      "checkpoint), tombstones, and changes of the sink's own origin.", s.skipped)
        if w.applier.conflicts is not None:  # master-master sinks only
            conflicts = CounterMetricFamily(
                "cdc_sink_conflicts", "Conflicts detected, by replica table, conflict type "
                "and the resolution policy that decided them.",
                labels=["sink", "table", "type", "resolution"])
            for (table, ctype, resolution), n in sorted(w.applier.conflicts[1].counts.items()):
                conflicts.add_metric([name, table, ctype, resolution], n)
            yield conflicts
        errors = CounterMetricFamily("cdc_sink_errors",
                                     "Errors by kind: unavailable (replica unreachable), transient "
                                     "(retried), data (rows the replica refused that the applier could "
                                     "not set aside), fatal, "
                                     "fenced (another worker's checkpoint won).",
                                     labels=["sink", "kind"])
        for kind, n in sorted(m.error_counts().items()):
            errors.add_metric([name, kind], n)
        yield errors
        yield gauge("cdc_sink_buffered_records", "Records consumed, not yet applied.",
                    w.buffered)
        yield _histogram("cdc_sink_batch_apply_seconds",
                         "Seconds to apply one batch in one replica transaction.", name,
                         m.apply_seconds)
        yield _histogram("cdc_sink_e2e_lag_seconds",
                         "Source commit (source.ts_ms) to replica commit, the last change of "
                         "each partition in each batch.", name, m.e2e_seconds)
        if m.e2e_last is not None:
            yield gauge("cdc_sink_e2e_lag_last_seconds",
                        "The last end-to-end lag observed (source commit to replica commit).",
                        m.e2e_last)
        part_labels = ["sink", "topic", "partition"]
        records = GaugeMetricFamily("cdc_sink_consumer_lag_records",
                                    "Records of the partition not yet applied (high watermark "
                                    "minus the replica checkpoint's next offset).",
                                    labels=part_labels)
        seconds = GaugeMetricFamily("cdc_sink_consumer_lag_seconds",
                                    "Now minus the source commit time of the partition's last "
                                    "applied record; 0 when caught up.", labels=part_labels)
        lag = m.lag()
        for (topic, part), n, secs in lag:
            records.add_metric([name, topic, str(part)], n)
            if secs is not None:
                seconds.add_metric([name, topic, str(part)], secs)
        yield records
        yield seconds
        yield gauge("cdc_sink_assigned_partitions", "Partitions assigned to this worker.",
                    len(lag))
        loaded = GaugeMetricFamily(
            "cdc_native_module_loaded",
            "1 when this C speed-up runs, 0 when its pure-Python twin does (cdc --version).",
            labels=["sink", "module"],
        )
        for status in self.native:
            loaded.add_metric([name, status.name], 1.0 if status.loaded else 0.0)
        yield loaded


def _histogram(metric: str, doc: str, sink: str, h: Histogram) -> HistogramMetricFamily:
    buckets, total = h.snapshot()
    fam = HistogramMetricFamily(metric, doc, labels=["sink"])
    fam.add_metric([sink], buckets, total)
    return fam


def source_ts_ms(serde: Any, records: Sequence[Any], end: int) -> int | None:
    """``source.ts_ms`` of the last change among the few records before ``records[end]``
    (None if none has one)."""
    for i in range(end - 1, max(-1, end - 5), -1):
        rec = records[i]
        try:
            d = rec.decoded
            source: Mapping[str, Any] | None = None
            if d is not None:
                source = getattr(d, "source", None)
            elif rec.value is not None:
                fast = getattr(serde, "fast_read", None)
                got = fast(rec.value) if fast is not None else None
                if got is not None:
                    source = got[1][1]
                else:
                    source = getattr(serde.decode(rec.key, rec.value), "source", None)
            ts = source.get("ts_ms") if source else None
            if isinstance(ts, int) and ts > 0:
                return ts
        except Exception as e:  # metrics never fail a batch
            log.debug("no source.ts_ms for %s[%d]@%d: %s", rec.topic, rec.partition, rec.offset, e)
    return None
