"""Runs one source: snapshot, barrier, stream; acks drive offsets, one way only.

Order of durability, never reversed:
  event produced -> broker acknowledges -> tracker advances the durable position
  -> offsets topic records it (acknowledged) -> the source may release log.

A crash anywhere in that chain replays from the last recorded position: events
after it may appear twice in Kafka (at new offsets, with the same positions),
none is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from cdc.errors import PrerequisiteError, UnreachableError
from cdc.events import ChangeEvent, Op
from cdc.observability.health import Health
from cdc.offsets.store import OffsetStore, SourceOffset
from cdc.runtime.incremental import STATE_KEY, IncrementalSnapshotter, IncrementalState
from cdc.serde import EncodedChange
from cdc.spi import Heartbeat, Position, SnapshotsIncrementally, SourceConnector
from cdc.transport.client_log import OUTAGE
from cdc.transport.producer import EventProducer
from cdc.transport.topics import TopicManager, TopicSpec

log = logging.getLogger(__name__)


class SnapshotMode(StrEnum):
    INITIAL = "initial"  # snapshot once, then stream
    NEVER = "never"  # stream only, from the source's current position
    INITIAL_ONLY = "initial_only"  # snapshot once, then stop
    ALWAYS = "always"  # snapshot on every start, then stream


class RecordEncoder(Protocol):
    """Turns an event into its topic, key and value (``cdc.serde.AvroSerde``)."""

    def encode(self, event: ChangeEvent) -> EncodedChange: ...


class TransactionEncoder(Protocol):
    """Frames transaction markers (``cdc.serde.transaction.TransactionMetadataEncoder``)."""

    topic: str

    def key(self, tx_id: str) -> bytes: ...

    def begin(self, tx_id: str, ts_ms: int) -> bytes: ...

    def end(self, tx_id: str, ts_ms: int, event_count: int,
            collections: Sequence[tuple[str, int]]) -> bytes: ...


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    snapshot_mode: SnapshotMode = SnapshotMode.INITIAL
    tombstones_on_delete: bool = True
    checkpoint_interval_s: float = 1.0
    topic_spec: TopicSpec = field(default_factory=TopicSpec)
    # Run the connector's check() first and refuse to start on a fatal problem
    # (`cdc source` / `cdc run` do; the same checks `cdc check` prints).
    preflight: bool = False
    # Rows per chunk of an incremental snapshot (the source's signal.chunk_size).
    incremental_chunk_size: int = 1024


@dataclass(slots=True)
class RunnerStats:
    events: int = 0
    snapshot_rows: int = 0
    checkpoints: int = 0
    last_checkpoint: Position | None = None
    last_checkpoint_at: float = 0.0  # wall clock (epoch seconds)
    last_event_ts_ms: int = 0  # commit time of the last event produced


class SourceRunner:
    def __init__(
        self,
        name: str,
        source: SourceConnector,
        encoder: RecordEncoder,
        producer: EventProducer,
        offsets: OffsetStore,
        topics: TopicManager,
        settings: RunnerSettings = RunnerSettings(),
        *,
        stop: threading.Event | None = None,
        on_checkpoint: Callable[[Position], None] | None = None,
        transactions: TransactionEncoder | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.encoder = encoder
        self.producer = producer
        self.offsets = offsets
        self.topics = topics
        self.settings = settings
        self.stop = stop or threading.Event()
        self.stats = RunnerStats()
        self._on_checkpoint = on_checkpoint
        self._saved_version = -1
        self._last_save = 0.0
        self._partitions: dict[str, int] = {}
        self._transactions = transactions
        self._tx_open: str | None = None  # id of the transaction whose BEGIN was sent
        self._tx_collections: dict[str, int] = {}  # table -> events so far (for END)
        # /healthz and /readyz (cdc.observability.health): an HA elector may add its own
        # condition (health.set_ready("standby", part="ha")).
        self.health = Health("source", name)
        self.health.add_check(lambda: "Kafka unreachable" if OUTAGE.active else None)
        self._streaming = False
        self.incremental: IncrementalSnapshotter | None = None  # with a signal table
        if isinstance(producer, EventProducer):
            producer.waiting = self.health.beat  # waiting out Kafka is alive

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> None:
        try:
            if self.settings.preflight:
                self.preflight()
            start = self._snapshot_phase()
            if self.settings.snapshot_mode is SnapshotMode.INITIAL_ONLY:
                log.info("%s: snapshot complete (initial_only): stopping", self.name)
                return
            self._stream_phase(start)
        finally:
            self.source.close()

    def preflight(self) -> None:
        """The connector's checks: warn about minor problems, refuse to start on fatal ones."""
        problems = self.source.check()
        for p in problems:
            if not p.fatal:
                log.warning("%s: %s (fix: %s)", self.name, p.what, p.fix)
        fatal = [p for p in problems if p.fatal]
        if fatal:
            lines = "; ".join(
                f"{p.key + ': ' if p.key else ''}{p.what} (fix: {p.fix})" for p in fatal
            )
            # Only "cannot connect": the server may merely be down (retriable), or
            # the credentials wrong; anything else is a prerequisite to fix first.
            error = UnreachableError if all(p.key == "connection" for p in fatal) \
                else PrerequisiteError
            raise error(
                f"{len(fatal)} prerequisite{'s' if len(fatal) != 1 else ''} not met: {lines}",
                hint="`cdc check FILE` lists every problem of the deployment",
            )

    def _snapshot_phase(self) -> Position | None:
        stored = self.offsets.load(self.name)
        mode = self.settings.snapshot_mode
        interrupted = stored is not None and stored.snapshot is not None
        needed = (
            mode is SnapshotMode.ALWAYS
            or (mode in (SnapshotMode.INITIAL, SnapshotMode.INITIAL_ONLY)
                and (stored is None or interrupted))
        )
        if not needed:
            if stored is not None:
                log.info("%s: resuming stream after %s", self.name, stored.position)
                return stored.position
            return None
        if interrupted:
            log.warning("%s: the previous snapshot did not finish; snapshotting again", self.name)
        # Marks the snapshot as running, so a crash before its end re-runs it.
        self.offsets.save(self.name, SourceOffset(None, snapshot={"state": "running"}))
        consistent, rows = self.source.snapshot(None)
        health = self.health
        health.set_state("snapshotting")
        health.set_ready(None)
        health.beat()
        t0 = time.monotonic()
        for event in rows:
            if self.stop.is_set():
                raise InterruptedError(f"{self.name}: stopped during snapshot")
            self._emit(event)
            self.stats.snapshot_rows += 1
            if not self.stats.snapshot_rows & 1023:
                health.beat()
        # Barrier: every snapshot row is durable before the stream starts.
        self.producer.flush(timeout=300)
        self.offsets.save(self.name, SourceOffset(consistent))
        log.info("%s: snapshot of %d rows done in %.1fs, streaming from %s", self.name,
                 self.stats.snapshot_rows, time.monotonic() - t0, consistent)
        return consistent

    def _stream_phase(self, start: Position | None) -> None:
        if self._transactions is not None:
            topic = self._transactions.topic
            self.topics.ensure([topic], self.settings.topic_spec)
            self._partitions[topic] = self.topics.partitions(topic)
        interval = self.settings.checkpoint_interval_s
        items = self.source.stream(start)
        source = self.source
        if isinstance(source, SnapshotsIncrementally) and source.signal_table() is not None:
            # Incremental snapshots (cdc.runtime.incremental): signals and chunks.
            stored = self.offsets.load(self.name)
            saved = stored.extra.get(STATE_KEY) if stored is not None else None
            self.incremental = IncrementalSnapshotter(
                self.name, source, chunk_size=self.settings.incremental_chunk_size,
                state=IncrementalState.from_dict(saved) if saved else None)
            items = self.incremental.wrap(items)
        for item in items:
            if isinstance(item, Heartbeat):
                self.producer.mark(item.position)
            else:
                self._emit(item)
            now = time.monotonic()
            if now - self._last_save >= interval:
                self.checkpoint()
            if self.stop.is_set():
                break
        self.producer.flush(timeout=300)
        self.checkpoint(force=True)
        if self.incremental is not None:
            self.incremental.close()

    # -- producing ---------------------------------------------------------------------------

    def _emit(self, event: ChangeEvent) -> None:
        record = self.encoder.encode(event)
        topic, key, value = record.topic, record.key, record.value
        if topic not in self._partitions:
            self.topics.ensure([topic], self.settings.topic_spec)
            self._partitions[topic] = self.topics.partitions(topic)
        position = event.position
        boundary = position.last_in_tx
        tx = event.transaction
        marking = self._transactions is not None and tx is not None
        if marking:
            self._begin_marker(event)
            boundary = False  # the END marker carries the transaction's boundary
        if event.op is Op.TRUNCATE:
            # Every partition sees the truncate in order with its own rows.
            n = self._partitions[topic]
            for p in range(n):
                last = p == n - 1
                self.producer.send(topic, None, value, partition=p,
                                   position=position if last else None, boundary=boundary and last)
        elif key is None:
            # A table without a primary key: its rows can only be told apart by their
            # whole image, so all its changes must stay in source order, in one
            # partition (librdkafka spreads null keys over partitions at random). No
            # tombstone: there is no key for compaction to remove.
            self.producer.send(topic, None, value, partition=0, position=position,
                               boundary=boundary)
        else:
            tomb = event.op is Op.DELETE and self.settings.tombstones_on_delete
            self.producer.send(topic, key, value, position=None if tomb else position,
                               boundary=boundary and not tomb)
            if tomb:
                self.producer.send(topic, key, None, position=position, boundary=boundary)
        stats = self.stats
        stats.events += 1
        stats.last_event_ts_ms = event.source.ts_ms
        if marking and position.last_in_tx:
            self._end_marker(event)

    # -- transaction markers -------------------------------------------------------------------

    def _begin_marker(self, event: ChangeEvent) -> None:
        tx = event.transaction
        assert tx is not None and self._transactions is not None
        if tx.id != self._tx_open:
            self._tx_open = tx.id
            self._tx_collections = {}
            if tx.total_order == 1:  # not when resuming inside a transaction
                enc = self._transactions
                self.producer.send(enc.topic, enc.key(tx.id),
                                   enc.begin(tx.id, event.source.ts_ms))
        name = event.table.qualified
        self._tx_collections[name] = tx.data_collection_order

    def _end_marker(self, event: ChangeEvent) -> None:
        tx = event.transaction
        assert tx is not None and self._transactions is not None
        enc = self._transactions
        self.producer.send(
            enc.topic, enc.key(tx.id),
            enc.end(tx.id, event.source.ts_ms, tx.total_order,
                    sorted(self._tx_collections.items())),
            position=event.position, boundary=True,
        )
        self._tx_open = None
        self._tx_collections = {}

    # -- checkpoints -------------------------------------------------------------------------

    def checkpoint(self, force: bool = False) -> None:
        """Record the durable position and let the source release log up to it."""
        self._last_save = time.monotonic()
        self.health.beat()
        if not self._streaming:  # the first round of the stream (at most a second in)
            self._streaming = True
            self.health.set_state("streaming")
            self.health.set_ready(None)
        self.producer.poll(0)
        version = self.producer.tracker.durable_version
        durable = self.producer.durable
        if durable is None or (version == self._saved_version and not force):
            return
        extra: dict[str, Any] = {}
        if self.incremental is not None:
            state = self.incremental.state_for(durable)
            if state is not None:
                extra[STATE_KEY] = state.to_dict()
        self.offsets.save(self.name, SourceOffset(durable, extra=extra))
        self._saved_version = version
        self.stats.checkpoints += 1
        self.stats.last_checkpoint = durable
        self.stats.last_checkpoint_at = time.time()
        self.source.acknowledge(durable)
        if self._on_checkpoint is not None:
            self._on_checkpoint(durable)

