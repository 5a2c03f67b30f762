"""``cdc sink CONFIG [--name SINK ...] [--workers N]``: run sink workers.

One sink with one worker runs in this process. Several (more names, or
``--workers`` > 1 to share one sink's partitions among processes of its
consumer group) run as child processes, each its own Python interpreter, so
no two hot loops share a GIL; when one fails the others are stopped and the
command exits non-zero (an orchestrator restarts it; checkpoints in the
replicas make that lossless).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import click

from cdc import native
from cdc.config import CdcConfig, load_config
from cdc.errors import EXIT_NEEDS_OPERATOR, CdcError, ConfigError, DdlRefused
from cdc.observability.logging import setup_logging
from cdc.observability.server import serve_worker
from cdc.observability.sink_metrics import SinkCollector
from cdc.registry import get_connector
from cdc.runtime.gcpolicy import settle_heap
from cdc.serde import AvroSerde, DecodeLimits, RegistryClient, SchemaRegistry
from cdc.sink.applier import Applier, SinkFailure, SinkSettings
from cdc.sink.checkpoint import CHECKPOINT_TABLE, CheckpointStore
from cdc.sink.conflictplan import ConflictLog, ConflictOptions, ConflictPlanner
from cdc.sink.deadletter import DeadLetterQueue
from cdc.sink.schema import ReplicaSchemas, table_settings
from cdc.sink.versionstore import VersionStore
from cdc.sink.worker import SinkWorker, WorkerOptions
from cdc.spi import SinkDialect, TableName
from cdc.transport.topics import TopicSpec

log = logging.getLogger(__name__)


def registry_for(config: CdcConfig) -> RegistryClient:
    reg = config.schema_registry
    password = reg.password.get_secret_value() if reg.password is not None else None
    return RegistryClient(
        reg.url, username=reg.username, password=password, timeout=reg.timeout_s,
        deadline=reg.timeout_s * 2,
        cafile=str(reg.ssl_ca_location) if reg.ssl_ca_location is not None else None,
    )


def build_worker(
    config: CdcConfig,
    name: str,
    *,
    stop: threading.Event | None = None,
    dialect: SinkDialect | None = None,
    registry: SchemaRegistry | None = None,
) -> SinkWorker:
    """A ready-to-run worker for the sink ``name`` of ``config``."""
    try:
        sink: Any = config.sink(name)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    dialect = dialect or get_connector(sink.kind).create_dialect()
    schema = dialect.default_schema(sink)
    settings = SinkSettings(
        name=name,
        group=sink.consumer_group,
        policy=sink.errors.policy,
        origin=sink.origin,
        transactional=sink.transactional,
    )
    dead_letters = None
    if settings.policy == "dead_letter":
        topics = config.kafka.topics
        dead_letters = DeadLetterQueue(
            sink.errors.dead_letter_topic,
            name,
            dict(config.kafka.producer_config()),
            topic_spec=TopicSpec(partitions=1, replication_factor=topics.replication_factor),
        )
    conflicts = None
    if sink.conflicts is not None:
        conflicts = conflict_handling(config, sink, schema)
    applier = Applier(
        settings,
        AvroSerde(
            registry or registry_for(config),
            limits=DecodeLimits(sink.decoding.max_items, sink.decoding.max_record_bytes),
        ),
        ReplicaSchemas(table_settings(sink, schema)),
        CheckpointStore(TableName(schema, CHECKPOINT_TABLE), sink.consumer_group),
        dead_letters=dead_letters,
        conflicts=conflicts,
    )
    retry = sink.errors.retry
    options = WorkerOptions(
        max_rows=sink.batch.max_rows,
        max_wait_s=sink.batch.max_wait_ms / 1000,
        min_wait_s=sink.batch.min_wait_ms / 1000,
        max_attempts=retry.max_attempts,
        initial_backoff_s=retry.initial_backoff_s,
        max_backoff_s=retry.max_backoff_s,
    )
    return SinkWorker(
        name,
        applier,
        dialect,
        lambda: dialect.connect(sink),
        dict(config.kafka.consumer_config(sink.consumer_group)),
        sink.subscription(),
        options,
        stop=stop,
    )


def conflict_handling(
    config: CdcConfig, sink: Any, schema: str | None
) -> tuple[ConflictPlanner, ConflictLog]:
    """The master-master planner and conflict log of a sink with ``conflicts`` set."""
    c = sink.conflicts
    store = VersionStore(TableName(schema, c.versions_table), TableName(schema, c.log.table),
                         sink.name)
    options = ConflictOptions(
        node=sink.origin, sink=sink.name, resolution=c.resolution,
        tables={t: v.resolution for t, v in c.tables.items()}, priority=tuple(c.priority),
        max_clock_skew_ms=c.max_clock_skew_ms, reject_skew=c.on_clock_skew == "reject",
        priority_window_ms=c.priority_window_ms,
        owns=c.owns,
    )
    topic = c.log.topic or f"cdc_conflicts.{sink.name}"
    return (ConflictPlanner(options, store),
            ConflictLog(store, topic, c.log.retention_hours, dict(config.kafka.producer_config())))


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_sink(config_path: Path, name: str, metrics_port: int | None = None) -> int:
    """Run one worker of sink ``name`` until a signal (0) or a failure (non-zero).

    It serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``metrics_port``
    (default ``metrics.port``)."""
    config = load_config(config_path)
    setup_logging(config.log.level, config.log.format)
    log.info("sink %s: %s", name, native.summary())
    stop = threading.Event()
    _stop_on_signals(stop)
    replica = _snapshot_replica(config, name, stop, metrics_port)
    if replica is not None:
        return replica
    worker = build_worker(config, name, stop=stop)
    endpoint = serve_worker([SinkCollector(worker)], worker.health, config.metrics, metrics_port)
    settle_heap()
    try:
        worker.run()
    except SinkFailure as e:
        log.error("%s", e)
        return 2
    except DdlRefused as e:
        log.error("stopped: %s", e.one_line())  # (it names the sink)
        return EXIT_NEEDS_OPERATOR
    except CdcError as e:
        log.error("sink %s stopped: %s", name, e)
        return 1
    except Exception:
        log.exception("sink %s stopped on an unexpected error", name)
        return 1
    finally:
        if endpoint is not None:
            endpoint.close()
    return 0


def _snapshot_replica(config: CdcConfig, name: str, stop: threading.Event,
                      metrics_port: int | None) -> int | None:
    """Run a snapshot replica (cdc.snapshot) when the sink subscribes to a snapshot-replication
    source; None when it is a streaming sink."""
    from cdc.snapshot.service import run_replica
    from cdc.snapshot.wiring import snapshot_sources_of

    try:
        sink = config.sink(name)
        if not snapshot_sources_of(config, sink):
            return None
        run_replica(config, sink, stop, metrics_port)
    except KeyError as e:
        log.error("%s", e.args[0])
        return 2
    except ConfigError as e:
        log.error("sink %s: %s", name, e)
        return 2
    except CdcError as e:
        log.error("sink %s stopped: %s", name, e)
        return 1
    return 0


def _child(config_path: str, name: str, metrics_port: int | None) -> None:
    sys.exit(run_sink(Path(config_path), name, metrics_port))


def _supervise(config_path: Path, jobs: list[str], base_port: int) -> int:
    import multiprocessing  # only a supervising sink has children (memory)

    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_child, args=(str(config_path), n, base_port + i),
                            name=f"sink-{n}") for i, n in enumerate(jobs)]
    for c in children:
        c.start()
    stop = threading.Event()
    _stop_on_signals(stop)
    rc = 0
    try:
        while not stop.is_set() and all(c.exitcode is None for c in children):
            time.sleep(0.5)
        for c in children:
            if c.exitcode:
                log.error("%s exited with %d: stopping the others", c.name, c.exitcode)
                rc = rc or c.exitcode
    finally:
        for c in children:
            if c.exitcode is None and c.pid is not None:
                c.terminate()
        for c in children:
            c.join(60)
            if c.exitcode is None:
                c.kill()
    return rc


@click.command("sink")
@click.argument("config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", "names", multiple=True, help="Sink to run (repeatable; default: every sink).")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Processes per sink; they share its partitions as one consumer group.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve /metrics, /healthz and /readyz on this port instead of metrics.port "
                   "(several processes: this port plus each one's index).")
def sink_command(config_path: Path, names: tuple[str, ...], workers: int,
                 metrics_port: int | None) -> None:
    """Apply change topics to replica databases (see docs/SINK.md)."""
    try:
        config = load_config(config_path)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    known = [s.name for s in config.sinks]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.ClickException(
            f"no sink named {', '.join(unknown)} in {config_path} (sinks: {', '.join(known) or 'none'})"
        )
    jobs = [n for n in (names or known) for _ in range(workers)]
    if not jobs:
        raise click.ClickException(f"{config_path} defines no sinks")
    if len(jobs) == 1:
        rc = run_sink(config_path, jobs[0], metrics_port)
    else:
        setup_logging(config.log.level, config.log.format)
        rc = _supervise(config_path, jobs, config.metrics.port if metrics_port is None
                        else metrics_port)
    if rc:
        sys.exit(rc)
