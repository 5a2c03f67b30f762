"""Runs one source: snapshot, barrier, stream; acks drive offsets, one way only.

Order of durability, never reversed:
  event produced -> broker acknowledges -> tracker advances the durable position
  -> offsets topic records it (acknowledged) -> the source may release log.

A crash anywhere in that chain replays from the last recorded position: events
after it may appear twice in Kafka (at new offsets, with the same positions),
none is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from cdc.errors import PrerequisiteError, UnreachableError
from cdc.events import ChangeEvent, Op
from cdc.observability.health import Health
from cdc.observability.progress import SnapshotProgress
from cdc.offsets.store import OffsetStore, SourceOffset, resume_from_snapshot, resume_to_dict
from cdc.runtime.incremental import STATE_KEY, IncrementalSnapshotter, IncrementalState
from cdc.serde import EncodedChange
from cdc.spi import (
    BatchesSnapshot,
    BatchesStream,
    EstimatesRows,
    Heartbeat,
    Position,
    ResumesSnapshot,
    SnapshotChunk,
    SnapshotResume,
    SnapshotRows,
    SnapshotsIncrementally,
    SourceConnector,
    StreamRows,
)
from cdc.transport.backlog import ConsumerBacklog
from cdc.transport.client_log import OUTAGE
from cdc.transport.producer import EventProducer
from cdc.transport.topics import TopicManager, TopicSpec

log = logging.getLogger(__name__)
# At most this often a snapshot's chunk progress is written to the offsets (one small
# acknowledged record; a crash re-reads at most the chunks of this long, plus those
# not yet acknowledged by Kafka).
CHUNK_SAVE_INTERVAL_S = 0.25


@dataclass(frozen=True, slots=True)
class _ChunkMark(Position):
    """A chunk's end in the ack tracker: durable once it and every row before it is
    acknowledged; never stored as a position (its ``resume`` is, in the snapshot)."""

    kind: ClassVar[str] = "snapshot-chunk"
    seq: int
    resume: SnapshotResume
    last_in_tx: bool = True

    def sort_key(self) -> tuple[Any, ...]:
        return (self.seq,)

    def to_dict(self) -> dict[str, Any]:
        raise TypeError("a snapshot chunk mark is not a stored position")


class _ChunkProgress:
    """The snapshot's chunk progress as the reader reports it (ahead of Kafka's acks)."""

    def __init__(self, start: Position, resume: SnapshotResume | None) -> None:
        self.start = resume.start if resume is not None else start
        self.tables_done: list[str] = list(resume.tables_done) if resume is not None else []
        self.rows = resume.rows if resume is not None else 0
        self.attempt = resume.attempt if resume is not None else 0
        self.first = resume  # what this attempt started from
        self.seq = 0
        self.saved_seq = 0

    def chunk(self, c: SnapshotChunk) -> _ChunkMark:
        if c.done:
            if c.table not in self.tables_done:
                self.tables_done.append(c.table)
            table, after = None, None
        else:
            table, after = c.table, c.after
        self.seq += 1
        return _ChunkMark(self.seq, SnapshotResume(self.start, tuple(self.tables_done), table,
                                                   after, self.rows, self.attempt))

    def offset(self, mark: _ChunkMark | None = None) -> SourceOffset:
        if mark is not None:
            r = mark.resume
        elif self.first is not None:
            r = self.first
        else:
            r = SnapshotResume(self.start, (), None, None, 0, 0)
        return SourceOffset(None, snapshot={"state": "running", "resume": resume_to_dict(r)})


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
    # Its next chunk waits while the consumers of the table's topic are more records behind
    # than this (signal.max_backlog; None: half a chunk; 0: never waits).
    incremental_max_backlog: int | None = None


@dataclass(slots=True)
class RunnerStats:
    events: int = 0
    snapshot_rows: int = 0
    checkpoints: int = 0
    last_checkpoint: Position | None = None
    last_checkpoint_at: float = 0.0  # wall clock (epoch seconds)
    last_event_ts_ms: int = 0  # commit time of the last event produced


class SourceRunner:
    # Incremental snapshots (cdc.runtime.incremental), set when the stream starts with a
    # signal table.
    incremental: IncrementalSnapshotter | None = None

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
        backlog: ConsumerBacklog | None = None,
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
        self._backlog = backlog  # paces incremental snapshots (None: unpaced)
        self._topic_of: dict[str, str] = {}  # table -> topic, for the backlog
        self._tx_open: str | None = None  # id of the transaction whose BEGIN was sent
        self._tx_collections: dict[str, int] = {}  # table -> events so far (for END)
        # /healthz and /readyz (cdc.observability.health): an HA elector may add its own
        # condition (health.set_ready("standby", part="ha")).
        self.health = Health("source", name)
        self.health.add_check(lambda: "Kafka unreachable" if OUTAGE.active else None)
        self._streaming = False
        self.snapshot_progress: SnapshotProgress | None = None
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
        source = self.source
        resumable = isinstance(source, ResumesSnapshot)
        resume = None
        if interrupted and stored is not None and resumable:
            resume = resume_from_snapshot(stored.snapshot)
        if resume is not None:
            resume = dataclasses.replace(resume, attempt=resume.attempt + 1)
            log.warning("%s: resuming the interrupted snapshot from its last finished chunk "
                        "(table %s after key %s; %d tables and %d rows done; attempt %d); the "
                        "stream will start at %s", self.name, resume.table, resume.after,
                        len(resume.tables_done), resume.rows, resume.attempt, resume.start)
        elif interrupted:
            log.warning("%s: the previous snapshot did not finish; snapshotting again", self.name)
        if resume is None:
            # Marks the snapshot as running, so a crash before its end re-runs it.
            self.offsets.save(self.name, SourceOffset(None, snapshot={"state": "running"}))
        if isinstance(source, BatchesSnapshot) and self._emits_rows():
            source.batch_snapshot()
        if resumable:
            assert isinstance(source, ResumesSnapshot)
            consistent, items = source.resumable_snapshot(resume)
        else:
            consistent, items = source.snapshot(None)
        if resume is not None and consistent != resume.start:
            log.warning("%s: the source could not resume its snapshot exactly; it is taken "
                        "again from the start at %s", self.name, consistent)
            resume = None
        chunks = _ChunkProgress(consistent, resume)
        if resumable:
            # The consistent point is recorded before any row: a crash from here on
            # resumes (and streams from this point), whatever chunk it reached.
            self.offsets.save(self.name, chunks.offset())
        progress = SnapshotProgress("initial", self.name, self._estimate(),
                                    rows_done=chunks.rows)
        self.snapshot_progress = progress
        health = self.health
        health.set_state("snapshotting")
        health.set_ready(None)
        health.beat()
        t0 = time.monotonic()
        stats = self.stats
        emit = self._emit
        stop = self.stop
        pending = 0  # rows since the last progress update
        for item in items:
            if stop.is_set():
                raise InterruptedError(f"{self.name}: stopped during snapshot")
            if type(item) is SnapshotChunk:
                progress.advance(pending, table=item.table)
                pending = 0
                if item.done:
                    progress.table_done(item.table)
                self.producer.mark(chunks.chunk(item))
                self._save_chunks(chunks)
                continue
            if type(item) is SnapshotRows:
                n = len(item)
                self._emit_rows(item)
                stats.snapshot_rows += n
                chunks.rows += n
                pending += n
                health.beat()
                progress.advance(pending, chunk=False)
                pending = 0
                continue
            assert isinstance(item, ChangeEvent)
            emit(item)
            stats.snapshot_rows += 1
            chunks.rows += 1
            pending += 1
            if not stats.snapshot_rows & 1023:
                health.beat()
                progress.advance(pending, chunk=False)
                pending = 0
        progress.advance(pending, chunk=False)
        # Barrier: every snapshot row is durable before the stream starts.
        self.producer.flush(timeout=300)
        progress.close()
        # The durable position is the consistent point again (not a chunk mark), for
        # the stream's checkpoints.
        self.producer.mark(consistent)
        self.producer.poll(0)
        self.offsets.save(self.name, SourceOffset(consistent))
        self._saved_version = self.producer.tracker.durable_version
        log.info("%s: snapshot of %d rows done in %.1fs, streaming from %s", self.name,
                 stats.snapshot_rows, time.monotonic() - t0, consistent)
        return consistent

    def _estimate(self) -> int | None:
        source = self.source
        if not isinstance(source, EstimatesRows):
            return None
        try:
            return sum(max(0, n) for n in source.estimate_rows().values())
        except Exception as e:  # an estimate is a nicety: never fail the snapshot for it
            log.info("%s: no row estimate for the snapshot's progress (%s)", self.name, e)
            return None

    def _save_chunks(self, chunks: _ChunkProgress) -> None:
        """Record the latest chunk whose rows (and every row before) Kafka acknowledged."""
        now = time.monotonic()
        if now - self._last_save < CHUNK_SAVE_INTERVAL_S:
            return
        self.producer.poll(0)
        durable = self.producer.durable
        if not isinstance(durable, _ChunkMark) or durable.seq <= chunks.saved_seq:
            return
        self._last_save = now
        self.offsets.save(self.name, chunks.offset(durable))
        chunks.saved_seq = durable.seq
        self.health.beat()
        log.debug("%s: snapshot progress recorded: %s after %s", self.name,
                  durable.resume.table, durable.resume.after)

    def _stream_phase(self, start: Position | None) -> None:
        if self._transactions is not None:
            topic = self._transactions.topic
            self.topics.ensure([topic], self.settings.topic_spec)
            self._partitions[topic] = self.topics.partitions(topic)
        interval = self.settings.checkpoint_interval_s
        source = self.source
        incremental = (isinstance(source, SnapshotsIncrementally)
                       and source.signal_table() is not None)
        if (isinstance(source, BatchesStream) and self._emits_rows()
                and hasattr(self.producer, "send_run")
                and self._transactions is None and not incremental):
            # Runs of inserts as StreamRows: nothing here needs their events (the
            # transaction markers and the incremental snapshot's merge do).
            source.batch_stream()
        items = self.source.stream(start)
        if incremental:
            assert isinstance(source, SnapshotsIncrementally)
            # Incremental snapshots (cdc.runtime.incremental): signals and chunks.
            stored = self.offsets.load(self.name)
            saved = stored.extra.get(STATE_KEY) if stored is not None else None
            chunk = self.settings.incremental_chunk_size
            limit = self.settings.incremental_max_backlog
            self.incremental = IncrementalSnapshotter(
                self.name, source, chunk_size=chunk,
                state=IncrementalState.from_dict(saved) if saved else None,
                downstream=self if self._backlog is not None else None,
                max_backlog=max(1, chunk // 2) if limit is None else limit)
            items = self.incremental.wrap(items)
        for item in items:
            if item.__class__ is StreamRows:
                self._emit_stream_rows(item)
            elif isinstance(item, Heartbeat):
                self.producer.mark(item.position)
            else:
                self._emit(item)  # type: ignore[arg-type]
            now = time.monotonic()
            if now - self._last_save >= interval:
                self.checkpoint()
            if self.stop.is_set():
                break
        self.producer.flush(timeout=300)
        self.checkpoint(force=True)
        if self.incremental is not None:
            self.incremental.close()

    def backlog(self, table: str, sample: ChangeEvent) -> int:
        """cdc.runtime.incremental.Downstream: records of ``table``'s topic that its most
        lagging consumer group has not committed, plus this source's records not yet
        acknowledged by Kafka (any topic: an upper bound)."""
        assert self._backlog is not None
        topic = self._topic_of.get(table)
        if topic is None:
            topic = self._topic_of[table] = self.encoder.encode(sample).topic
        self.producer.poll(0)
        behind = self._backlog.behind(topic)
        return max(behind.values(), default=0) + self.producer.tracker.in_flight

    # -- producing ---------------------------------------------------------------------------

    def _emits_rows(self) -> bool:
        """Whether this runner's encoder and producer take snapshot batches whole."""
        return hasattr(self.encoder, "encode_rows") and hasattr(self.producer, "send_many")

    def _emit_rows(self, rows: SnapshotRows) -> None:
        """A snapshot batch: its records, in order, as its events would have been sent
        (none carries a position or ends a transaction; see :class:`SnapshotRows`)."""
        topic, keys, values = self.encoder.encode_rows(rows)  # type: ignore[attr-defined]
        if topic not in self._partitions:
            self.topics.ensure([topic], self.settings.topic_spec)
            self._partitions[topic] = self.topics.partitions(topic)
        # A table without a primary key keeps its rows in one partition (see _emit).
        partition = 0 if keys and keys[0] is None else None
        self.producer.send_many(topic, keys, values, partition=partition)
        stats = self.stats
        stats.events += len(values)
        stats.last_event_ts_ms = rows.source.ts_ms

    def _emit_stream_rows(self, rows: StreamRows) -> None:
        """A run of inserts: their records, in order, as their events would have been sent
        (only the last may end the transaction; see :class:`StreamRows`)."""
        topic, keys, values = self.encoder.encode_rows(rows)  # type: ignore[attr-defined]
        if topic not in self._partitions:
            self.topics.ensure([topic], self.settings.topic_spec)
            self._partitions[topic] = self.topics.partitions(topic)
        n = len(values)
        self.producer.send_run(
            topic, keys, values, position=rows.source_at(n - 1).position,
            boundary=rows.last_in_tx)
        stats = self.stats
        stats.events += n
        stats.last_event_ts_ms = rows.source.ts_ms

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

