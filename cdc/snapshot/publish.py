"""The source side of a snapshot-replication run: copy, publish, record.

One run: write the ``running`` run record, open the connector's consistent
copy (:class:`cdc.spi.CopiesTables`), note each topic partition's end offset,
produce every row as an ``op=r`` record (Avro, the source's topics, header
``cdc.snapshot.run``), wait until Kafka has acknowledged all of them, note
the end offsets again, and write the ``published`` run record with the
position, per-table row counts and offset ranges (:mod:`cdc.snapshot.runs`).

A reader killed mid-run leaves a ``running`` record that never becomes
``published``: replicas never switch to it and keep the previous copy. The
next run (the scheduler's, or ``cdc snapshot run``) marks such records
``failed`` (see :func:`abandon_unfinished`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from cdc.config import CdcConfig, SourceConfigBase
from cdc.errors import CdcError, ConfigError, UnreachableError
from cdc.observability.progress import SnapshotProgress
from cdc.registry import get_connector
from cdc.runtime.pipeline import registry_client
from cdc.serde import AvroSerde
from cdc.snapshot.runs import RUN_HEADER, RunLog, RunRecord, RunStore, TableRun, new_run_id, now_ms
from cdc.snapshot.wiring import client_settings, run_store, topic_spec
from cdc.spi import CopiesTables
from cdc.transport.client_log import KAFKA_LOG
from cdc.transport.producer import EventProducer
from cdc.transport.topics import TopicManager

log = logging.getLogger(__name__)


def end_offsets(config: CdcConfig, topics: list[str], tm: TopicManager) -> dict[str, dict[int, int]]:
    """Each partition's end offset (high watermark) of ``topics``."""
    consumer = Consumer({**client_settings(config),
                         "bootstrap.servers": config.kafka.bootstrap_servers,
                         "group.id": "cdc-snapshot-watermarks", "enable.auto.commit": False,
                         "logger": KAFKA_LOG})
    try:
        out: dict[str, dict[int, int]] = {}
        for topic in topics:
            out[topic] = {}
            for p in range(tm.partitions(topic)):
                out[topic][p] = _high(consumer, TopicPartition(topic, p))
        return out
    finally:
        consumer.close()


def _high(consumer: Consumer, tp: TopicPartition, timeout_s: float = 60.0) -> int:
    """A partition's high watermark; retries while a new topic's leader is elected."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            return int(high)
        except KafkaException as e:
            err = e.args[0] if e.args else None
            retriable = isinstance(err, KafkaError) and (
                err.retriable() or err.code() in (KafkaError.NOT_LEADER_FOR_PARTITION,
                                                  KafkaError.LEADER_NOT_AVAILABLE,
                                                  KafkaError.UNKNOWN_TOPIC_OR_PART))
            if not retriable or time.monotonic() > deadline:
                raise UnreachableError(
                    f"cannot read the end offset of {tp.topic} [{tp.partition}]: {e}") from e
            time.sleep(0.2)


def abandon_unfinished(store: RunStore, runs: RunLog, source: str, *, older_than_ms: int) -> None:
    """Mark ``running`` runs that started before ``older_than_ms`` as failed (their
    reader is gone: a kill, a crash); replicas never switch to them anyway."""
    for run in runs.runs_of(source):
        if run.state == "running" and run.started_ms < older_than_ms:
            log.warning("%s: run %s never finished (its reader stopped); marked failed",
                        source, run.run_id)
            store.write(run.finished("failed", error="the reader stopped before the run ended"))


def publish_run(config: CdcConfig, source_cfg: SourceConfigBase, *,
                stop: threading.Event | None = None, trigger: str = "schedule",
                store: RunStore | None = None,
                on_progress: Callable[[], None] | None = None) -> RunRecord:
    """Perform one run of ``source_cfg``; returns its ``published`` record.

    Raises (after recording the run ``failed`` when Kafka can still be told)
    when the copy or the publishing fails. ``on_progress`` is called after each
    chunk of rows (a worker's liveness beat). Progress: a bar or log lines and the
    ``cdc_snapshot_*{kind="replication"}`` metrics (:mod:`cdc.observability.progress`).
    """
    if source_cfg.snapshot_replication is None:
        raise ConfigError(f"source {source_cfg.name} has no snapshot_replication block",
                          hint="add snapshot_replication: {interval_s: 3600} to it")
    name = source_cfg.name
    store = store or run_store(config, source_cfg)
    started = now_ms()
    abandon_unfinished(store, store.read(), name, older_than_ms=started)
    run = RunRecord(name, new_run_id(), "running", started, trigger=trigger)
    store.write(run)
    log.info("%s: snapshot run %s started", name, run.run_id)
    source = get_connector(source_cfg.kind).create_source(source_cfg, name=name)
    copy = None
    try:
        if not isinstance(source, CopiesTables):
            raise ConfigError(f"source {name} ({source_cfg.kind}) cannot copy tables for "
                              "snapshot replication",
                              hint="remove its snapshot_replication block")
        copy = source.copy_tables()
        kafka = config.kafka
        tm = TopicManager(kafka.bootstrap_servers, client_settings(config))
        topic_of = {t: source_cfg.topic_for(t) for t in copy.tables}
        topics = list(topic_of.values())
        tm.ensure(topics, topic_spec(config))
        starts = end_offsets(config, topics, tm)
        producer_settings = dict(kafka.producer_config())
        producer_settings.pop("bootstrap.servers", None)
        producer = EventProducer(kafka.bootstrap_servers, producer_settings,
                                 max_in_flight=kafka.producer.max_in_flight_events)
        serde = AvroSerde(registry_client(config),
                          topic_naming=lambda _prefix, table: source_cfg.topic_for(table))
        headers = [(RUN_HEADER, run.run_id.encode())]
        counts: dict[str, int] = dict.fromkeys(topics, 0)
        progress = SnapshotProgress("replication", name, copy.estimated_rows)
        chunk = source_cfg.snapshot.chunk_size
        try:
            send = producer.send
            current, pending = "", 0
            for event in copy.rows:
                if stop is not None and stop.is_set():
                    raise InterruptedError(f"{name}: stopped during snapshot run {run.run_id}")
                enc = serde.encode(event)
                if enc.key is None:
                    send(enc.topic, None, enc.value, headers=headers, partition=0)
                else:
                    send(enc.topic, enc.key, enc.value, headers=headers)
                counts[enc.topic] = counts.get(enc.topic, 0) + 1
                if enc.topic != current:
                    if current:
                        progress.advance(pending, current)
                        progress.table_done(current)
                    current, pending = enc.topic, 0
                pending += 1
                if pending >= chunk:
                    progress.advance(pending, current)
                    pending = 0
                    if on_progress is not None:
                        on_progress()
            if current:
                progress.advance(pending, current)
                progress.table_done(current)
            producer.flush(timeout=300)
        finally:
            progress.close()
            producer.close()
        ends = end_offsets(config, topics, tm)
        tables = tuple(
            TableRun(table.qualified, topic, counts.get(topic, 0),
                     _ranges(starts[topic], ends[topic]))
            for table, topic in topic_of.items()
        )
        done = run.finished("published", position=copy.position.to_dict(), tables=tables)
        store.write(done)
        log.info("%s: snapshot run %s published: %d rows of %d tables in %.1fs, consistent "
                 "at %s", name, run.run_id, done.rows, len(tables), done.duration_s or 0.0,
                 copy.position)
        return done
    except BaseException as e:
        try:
            store.write(run.finished("failed", error=_one_line(e)))
        except CdcError:
            log.warning("%s: could not record run %s as failed", name, run.run_id)
        raise
    finally:
        if copy is not None:
            copy.close()
        source.close()


def _ranges(start: Mapping[int, int], end: Mapping[int, int]) -> dict[int, tuple[int, int]]:
    return {p: (start.get(p, 0), e) for p, e in end.items() if e > start.get(p, 0)}


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:500]
