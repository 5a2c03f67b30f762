"""The long-running halves of snapshot replication, as ``cdc source`` / ``cdc sink`` run them.

* :func:`run_scheduler` (``cdc source --name S`` of a source with a
  ``snapshot_replication`` block): performs a run whenever the schedule says
  so (an interval counts from the start of the last run; a source that never
  ran starts at once with an interval, at the next cron time with a cron).
* :func:`run_replica` (``cdc sink --name K`` of a sink subscribed to such a
  source): follows the runs topic and switches the replica to every newer
  published run (:class:`cdc.snapshot.replica.ReplicaLoader`).

Both serve ``/metrics`` (``cdc_snapshot_*``), ``/healthz`` and ``/readyz``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from cdc.config import CdcConfig, SourceConfigBase
from cdc.config.sinks import SinkConfigBase
from cdc.errors import CdcError
from cdc.observability.health import Health
from cdc.observability.server import serve_worker
from cdc.snapshot.publish import publish_run
from cdc.snapshot.replica import ReplicaLoader, RunIncomplete
from cdc.snapshot.runs import RunRecord
from cdc.snapshot.wiring import run_store, snapshot_sources_of

log = logging.getLogger(__name__)

POLL_S = 2.0
RETRY_S = 10.0


@dataclass(slots=True)
class RunStats:
    """What the metrics show of one worker's runs."""

    role: str  # source | sink
    name: str
    outcomes: dict[str, int] = field(default_factory=dict)  # published/failed or switched/failed
    last_run: str = ""
    last_success_s: float = 0.0  # epoch seconds of the last published run / switch
    last_rows: int = 0
    last_duration_s: float = 0.0

    def note(self, outcome: str, run_id: str, rows: int = 0, duration_s: float = 0.0) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.last_run = run_id
        if outcome in ("published", "switched"):
            self.last_success_s = datetime.now(UTC).timestamp()
            self.last_rows = rows
            self.last_duration_s = duration_s


class SnapshotCollector:
    """``cdc_snapshot_runs_total{role,name,outcome}`` and the last successful run's numbers."""

    def __init__(self, stats: RunStats) -> None:
        self.stats = stats

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        s = self.stats
        labels = ["role", "name"]
        runs = CounterMetricFamily("cdc_snapshot_runs", "Snapshot-replication runs by outcome "
                                   "(source: published/failed; replica: switched/failed).",
                                   labels=[*labels, "outcome"])
        for outcome, n in sorted(s.outcomes.items()):
            runs.add_metric([s.role, s.name, outcome], n)
        yield runs
        for metric, doc, value in (
            ("cdc_snapshot_last_success_timestamp_seconds",
             "When the last run was published (source) or switched to (replica).",
             s.last_success_s),
            ("cdc_snapshot_last_rows", "Rows of the last successful run.", float(s.last_rows)),
            ("cdc_snapshot_last_duration_seconds", "Duration of the last successful run.",
             s.last_duration_s),
        ):
            g = GaugeMetricFamily(metric, doc, labels=labels)
            g.add_metric([s.role, s.name], value)
            yield g


def _serve(config: CdcConfig, stats: RunStats, health: Health, port: int | None) -> Any:
    return serve_worker([SnapshotCollector(stats)], health, config.metrics, port)


def _next_time(source: SourceConfigBase, runs: list[RunRecord]) -> datetime | None:
    assert source.snapshot_replication is not None
    schedule = source.snapshot_replication.schedule()
    if schedule is None:
        return None
    started = [r.started_ms for r in runs if r.state != "running"]
    now = datetime.now(UTC)
    if not started:
        return now if schedule.cron is None else schedule.next_after(now)
    last = datetime.fromtimestamp(max(started) / 1000, UTC)
    return schedule.next_after(last)


def run_scheduler(config: CdcConfig, source: SourceConfigBase, stop: threading.Event,
                  metrics_port: int | None = None) -> None:
    """Run ``source``'s schedule until ``stop``."""
    health = Health("source", source.name, stale_after_s=3600.0)
    stats = RunStats("source", source.name)
    endpoint = _serve(config, stats, health, metrics_port)
    store = run_store(config, source)
    health.set_ready(None)
    health.set_state("waiting")
    try:
        while not stop.is_set():
            health.beat()
            due = _next_time(source, store.read().runs_of(source.name))
            if due is None:
                log.info("%s: snapshot replication without a schedule: runs only on demand "
                         "(cdc snapshot run)", source.name)
                stop.wait(3600)
                continue
            wait = (due - datetime.now(UTC)).total_seconds()
            if wait > 0:
                log.info("%s: next snapshot run at %s", source.name, due.isoformat())
                stop.wait(min(wait, 60.0))
                continue
            health.set_state("copying")
            try:
                run = publish_run(config, source, stop=stop, store=store, on_progress=health.beat)
                stats.note("published", run.run_id, run.rows, run.duration_s or 0.0)
            except InterruptedError:
                break
            except CdcError as e:
                stats.note("failed", "")
                health.error(str(e))
                log.error("%s: snapshot run failed: %s (next attempt in %.0fs)", source.name, e,
                          RETRY_S)
                stop.wait(RETRY_S)
            finally:
                health.set_state("waiting")
    finally:
        store.close()
        if endpoint is not None:
            endpoint.close()


def run_replica(config: CdcConfig, sink: SinkConfigBase, stop: threading.Event,
                metrics_port: int | None = None) -> None:
    """Switch ``sink``'s replica to every newer published run until ``stop``."""
    sources = snapshot_sources_of(config, sink)
    health = Health("sink", sink.name, stale_after_s=3600.0)
    stats = RunStats("sink", sink.name)
    endpoint = _serve(config, stats, health, metrics_port)
    stores = {s.name: run_store(config, s) for s in sources}
    loaders = {s.name: ReplicaLoader(config, sink, s, stores[s.name], stop=stop) for s in sources}
    done: dict[str, str] = {}  # source -> run id switched to (or given up on)
    health.set_ready(None)
    health.set_state("waiting")
    try:
        while not stop.is_set():
            health.beat()
            for name, loader in loaders.items():
                run = stores[name].read().latest_published(name)
                if run is None or done.get(name, "") >= run.run_id:
                    continue
                health.set_state("loading")
                try:
                    outcome = loader.apply(run)
                    if outcome.record is not None:
                        stats.note(outcome.record.state, run.run_id, outcome.record.rows,
                                   outcome.record.duration_s or 0.0)
                        done[name] = run.run_id
                    elif outcome.reason.startswith("already"):
                        done[name] = run.run_id
                except RunIncomplete as e:
                    stats.note("failed", run.run_id)
                    log.error("sink %s: %s", sink.name, e)
                    done[name] = run.run_id  # waits for the next run
                except InterruptedError:
                    return
                except CdcError as e:
                    stats.note("failed", run.run_id)
                    health.error(str(e))
                    log.error("sink %s: switching to run %s failed: %s (retry in %.0fs)",
                              sink.name, run.run_id, e, RETRY_S)
                    stop.wait(RETRY_S)
                finally:
                    health.set_state("waiting")
            stop.wait(POLL_S)
    finally:
        for store in stores.values():
            store.close()
        if endpoint is not None:
            endpoint.close()
