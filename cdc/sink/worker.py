"""The sink worker: a Kafka consumer-group member applying its partitions to a replica.

Loop: consume records into per-partition buffers and cut a batch (at any
record, or in transactional mode only after a source transaction's last
record) when the buffers hold ``max_rows`` records, when the oldest has
waited ``max_wait``, or as soon as the consumer has no more records fetched
(once the oldest has waited ``min_wait``, 0 by default); hand it to the
:class:`~cdc.sink.applier.Applier`, which applies it in one replica
transaction together with the checkpoint rows. Batches therefore adapt to the
rate (issue #15): a trickle is applied at once, one small transaction at a
time, and under load a batch is what arrived while the previous one applied,
up to ``max_rows``, so a backlog still drains in full batches. No loop waits a
fixed time while records are waiting: with records buffered it only takes what
the consumer has already fetched. The consumer fetches about two batches ahead
(:func:`prefetch_records`), not librdkafka's 100,000 records: a sink far behind
holds that much of the backlog in memory, no more.

Partition assignment reads the replica's checkpoints and starts each
partition at stored offset + 1 (the topic's beginning when the replica has
none: a new replica bootstraps from the whole topic). Revoked or lost
partitions drop their buffered records: nothing of them is applied after
the revoke, and the next owner resumes from the replica's checkpoint. A
worker that misses a rebalance is stopped by the checkpoint fencing instead.

Failures:

* a replica that is unreachable (down, restarting, connection lost): the
  worker reconnects and retries the batch, waiting with exponential backoff
  (``errors.retry``) for as long as it takes;
* deadlocks, serialization failures, lock timeouts: retried up to
  ``errors.retry.max_attempts`` times, then the worker stops;
* bad records: see the applier (dead letter queue, or stop);
* anything else stops the worker with the error (after one retry with
  the replica's table descriptions re-read, in case a table changed).

While it waits the worker keeps polling with its partitions paused, so it
stays in the group and still serves rebalances.

``cdc sink`` (:mod:`cdc.sink.cli`) builds and runs one worker per process. The
worker owns the consumer, buffering and retries only: what a batch does to
the replica is the applier's, the replica's tables are :mod:`cdc.sink.schema`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaPartition

from cdc import native
from cdc.errors import CdcError, DdlRefused, UnreachableError
from cdc.observability.health import Health
from cdc.observability.sink_metrics import SinkMetrics, source_ts_ms
from cdc.sink.applier import Applier, ApplyResult, Record, SinkFailure
from cdc.sink.checkpoint import NOTHING, Checkpoint, CheckpointStore, FencedError, TopicPartition
from cdc.spi import ErrorKind, SinkDialect, SinkSession
from cdc.transport.client_log import KAFKA_LOG, OUTAGE, is_transient

log = logging.getLogger(__name__)

# Records built from their eight fields in order, without the dataclass __init__.
_make_record = native.positional_constructor(Record)
# The consumed messages' fast path (cdc/sink/_crecords.c), or None: _add's loop alone.
_crecords = native.load("cdc.sink._crecords")
_take = None if _crecords is None else _crecords.take


# Longest the group's committed offsets (lag monitoring only) trail the replica's
# checkpoints while batches are applied back to back.
COMMIT_INTERVAL_S = 1.0

# How many records the consumer fetches ahead of the worker, in batches of ``max_rows``.
# librdkafka's own default (``queued.min.messages`` 100,000 records, which binds before
# ``queued.max.messages.kbytes`` for ordinary rows) made a sink behind a backlog hold
# 100,000 fetched records in C memory: what its RSS grew by with the backlog
# (docs/BENCHMARKS.md, "the sink's growth is librdkafka's prefetch"). The worker takes
# one batch at a time, so two batches ahead keep it fed. ``kafka.client``
# (``queued.min.messages``) still overrides it.
PREFETCH_BATCHES = 2
PREFETCH_MIN_RECORDS = 1_000
# With a prefetch that small, librdkafka's pause before it fetches again once the queue
# went over it (``fetch.queue.backoff.ms``, 1,000 ms by default) starved the worker: a
# 3M-row snapshot applied at 47k rows/s against 83k with the old prefetch; 10 ms gave
# 79k (docs/BENCHMARKS.md). ``kafka.client`` overrides it too.
FETCH_QUEUE_BACKOFF_MS = 10


def prefetch_records(max_rows: int) -> int:
    """librdkafka ``queued.min.messages`` for a worker cutting batches of ``max_rows``."""
    return max(PREFETCH_MIN_RECORDS, PREFETCH_BATCHES * max_rows)


class StopRequested(Exception):
    """The worker was asked to stop while it waited."""


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    max_rows: int = 5_000
    max_wait_s: float = 0.2
    min_wait_s: float = 0.0
    max_attempts: int = 10
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    log_interval_s: float = 30.0


@dataclass(slots=True)
class WorkerStats:
    batches: int = 0
    applied: int = 0
    skipped: int = 0
    dead_letters: int = 0
    retries: int = 0
    fenced: int = 0


def batch_due(options: WorkerOptions, buffered: int, age_s: float, *, drained: bool,
              stalled: bool) -> bool:
    """Whether to apply ``buffered`` records whose oldest came ``age_s`` ago: a full
    batch, the oldest has waited ``max_wait_s``, or the consumer had nothing more
    fetched (``drained``) and the oldest has waited ``min_wait_s``; never while
    ``stalled`` on an open source transaction (transactional mode)."""
    if not buffered or stalled:
        return False
    if buffered >= options.max_rows:
        return True
    return age_s >= options.max_wait_s or (drained and age_s >= options.min_wait_s)


def gather_timeout(options: WorkerOptions, age_s: float) -> float:
    """How long a consume may block while records are buffered: until the oldest has
    waited ``min_wait_s`` (never past ``max_wait_s``), then 0: take what the consumer
    has fetched, wait for nothing more."""
    return max(0.0, min(options.min_wait_s, options.max_wait_s) - age_s)


class SinkWorker:
    """Runs one consumer-group member of one sink until stopped or failed."""

    def __init__(
        self,
        name: str,
        applier: Applier,
        dialect: SinkDialect,
        connect: Callable[[], SinkSession],
        consumer_config: Mapping[str, Any],
        subscription: Sequence[str],
        options: WorkerOptions = WorkerOptions(),
        *,
        stop: threading.Event | None = None,
        on_batch: Callable[[ApplyResult], None] | None = None,
        health: Health | None = None,
    ) -> None:
        self.name = name
        self.applier = applier
        self.dialect = dialect
        self.store: CheckpointStore = applier.checkpoints
        self._connect = connect
        conf = dict(consumer_config)
        strategy = str(conf.get("partition.assignment.strategy", "roundrobin"))
        conf["partition.assignment.strategy"] = strategy
        conf.setdefault("enable.partition.eof", False)
        conf.setdefault("queued.min.messages", prefetch_records(options.max_rows))
        conf.setdefault("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS)
        conf["on_commit"] = self._on_commit
        conf["error_cb"] = self._on_error
        conf.setdefault("logger", KAFKA_LOG)
        OUTAGE.watch(str(conf.get("bootstrap.servers", "")))
        self._missing_topics: set[str] = set()
        self._cooperative = "cooperative" in strategy
        self._consumer_config = conf
        self.subscription = list(subscription)
        self.options = options
        self.stop = stop or threading.Event()
        self.stats = WorkerStats()
        self._on_batch = on_batch
        self._session: SinkSession | None = None
        self._consumer: Consumer | None = None
        self._buffers: dict[TopicPartition, list[Record]] = {}
        self._checkpoints: dict[TopicPartition, Checkpoint] = {}
        self._buffered = 0
        self._oldest = 0.0
        self._fatal_retried = False
        self._stalled = False  # transactional mode: buffered records end mid-transaction
        self._drained = False  # the consumer had nothing more fetched at the last look
        self._to_commit: dict[TopicPartition, int] = {}  # applied, not yet committed to the group
        self._last_commit = 0.0
        self._in_callback = False
        self._last_log = time.monotonic()
        self._logged = WorkerStats()
        # /metrics and /readyz (cdc.observability): updated per batch, per error, per round
        self.metrics = SinkMetrics()
        self.health = health or Health("sink", name, initial=None)
        self.health.set_ready("not connected", part="replica")
        self.health.set_ready("waiting for partition assignment", part="assignment")
        self.health.add_check(lambda: "Kafka unreachable" if OUTAGE.active else None)

    @property
    def buffered(self) -> int:
        """Records consumed and not yet applied."""
        return self._buffered

    # -- the replica session -------------------------------------------------------------

    def _classify(self, e: BaseException) -> ErrorKind:
        if isinstance(e, UnreachableError):
            return ErrorKind.UNAVAILABLE
        if isinstance(e, CdcError):
            return ErrorKind.TRANSIENT if e.retriable else ErrorKind.FATAL
        return self.dialect.classify(e)

    def _drop_session(self) -> None:
        if self._session is not None:
            try:
                self._session.rollback()
            except Exception as e:  # the connection is broken: closing is all that is left
                log.debug("rollback on a broken replica session: %s", e)
            self._session.close()
            self._session = None

    def _ensure_session(self) -> SinkSession:
        if self._session is None:
            session = self._connect()
            try:
                self.store.ensure_table(session)
                if self.applier.conflicts is not None:  # master-master: versions, conflict log
                    self.applier.conflicts[0].store.ensure_tables(session)
                if self.applier.settings.origin is not None:
                    session.set_origin(self.applier.settings.origin)
            except BaseException:
                session.close()
                raise
            self._session = session
            self.health.set_ready(None, part="replica")
            log.info("%s: connected to the replica", self.name)
        return self._session

    def _backoff(self, attempt: int) -> float:
        o = self.options
        return float(min(o.max_backoff_s, o.initial_backoff_s * (2 ** min(attempt, 30))))

    def _retrying(self, what: str, action: Callable[[], Any]) -> Any:
        """Run ``action`` until it succeeds, waiting out an unavailable replica
        (without limit) and transient errors (up to max_attempts)."""
        attempt = 0
        while True:
            try:
                return action()
            except StopRequested:
                raise
            except Exception as e:
                kind = self._classify(e)
                if kind not in (ErrorKind.UNAVAILABLE, ErrorKind.TRANSIENT):
                    raise
                self._drop_session()
                attempt += 1
                self.stats.retries += 1
                self.metrics.error(kind.value)
                self.health.error(f"{what}: {kind.value}")
                if kind is ErrorKind.UNAVAILABLE:
                    self.health.set_ready("replica unreachable", part="replica")
                if kind is ErrorKind.TRANSIENT and attempt >= self.options.max_attempts:
                    raise SinkFailure(
                        f"sink {self.name}: {what} failed {attempt} times: {e}",
                        hint="raise errors.retry.max_attempts if the replica is merely busy",
                    ) from e
                delay = self._backoff(attempt - 1)
                log.warning(
                    "%s: %s failed (%s, attempt %d): %s; retrying in %.1fs",
                    self.name, what, kind.value, attempt, str(e).strip(), delay,
                )
                self._wait(delay)

    # -- waiting while staying in the group ----------------------------------------------

    def _wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        consumer = self._consumer
        if consumer is None or self._in_callback:  # no nested polls inside a rebalance callback
            while (left := end - time.monotonic()) > 0:
                self.health.beat()  # waiting out the replica is alive
                if self.stop.wait(min(1.0, left)):
                    raise StopRequested
            if self.stop.is_set():
                raise StopRequested
            return
        paused = consumer.assignment()
        if paused:
            consumer.pause(paused)
        try:
            while True:
                if self.stop.is_set():
                    raise StopRequested
                self.health.beat()
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._add(consumer.consume(num_messages=1000, timeout=min(0.5, left)))
        finally:
            current = consumer.assignment()
            if current:
                consumer.resume(current)

    # -- rebalance callbacks -------------------------------------------------------------

    def _load(self, tps: list[TopicPartition]) -> dict[TopicPartition, Checkpoint]:
        def load() -> dict[TopicPartition, Checkpoint]:
            return self.store.load(self._ensure_session(), tps)

        loaded: dict[TopicPartition, Checkpoint] = self._retrying("reading checkpoints", load)
        return loaded

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._in_callback = True
        try:
            cps = self._load(tps) if tps else {}
        finally:
            self._in_callback = False
        for p in partitions:
            cp = cps.get((p.topic, p.partition), NOTHING)
            p.offset = cp.next_offset if cp.offset >= 0 else OFFSET_BEGINNING
            self._checkpoints[(p.topic, p.partition)] = cp
            self._buffers[(p.topic, p.partition)] = []
        self.health.set_ready(None, part="assignment")  # (nothing assigned: idle in the group)
        log.info(
            "%s: assigned %s",
            self.name,
            ", ".join(f"{p.topic}[{p.partition}]@{p.offset}" for p in partitions) or "nothing",
        )
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def _forget(self, partitions: list[KafkaPartition]) -> None:
        for p in partitions:
            tp = (p.topic, p.partition)
            dropped = self._buffers.pop(tp, None)
            if dropped:
                self._buffered -= len(dropped)
            self._checkpoints.pop(tp, None)
            self._to_commit.pop(tp, None)  # the next owner commits its own

    def _on_revoke(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        log.info(
            "%s: revoked %s", self.name, ", ".join(f"{p.topic}[{p.partition}]" for p in partitions)
        )
        self._forget(partitions)
        self.metrics.forget((p.topic, p.partition) for p in partitions)
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            self.health.set_ready("rebalancing", part="assignment")
            consumer.unassign()

    def _on_lost(self, consumer: Consumer, partitions: list[KafkaPartition]) -> None:
        # While the broker is away this is expected (the outage's warning covers it).
        log.log(
            logging.INFO if OUTAGE.active else logging.WARNING,
            "%s: lost %s (session timed out?)",
            self.name, ", ".join(f"{p.topic}[{p.partition}]" for p in partitions),
        )
        self._on_revoke(consumer, partitions)

    def _on_commit(self, err: KafkaError | None, partitions: list[KafkaPartition]) -> None:
        if err is not None and err.code() != KafkaError._NO_OFFSET:
            # Only lag monitoring reads these offsets; the replica's checkpoint is the truth.
            log.warning("%s: committing offsets for lag monitoring failed: %s", self.name, err.str())

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("%s: fatal Kafka error: %s", self.name, err.str())
        elif is_transient(err):
            OUTAGE.report(f"{self.name}: {err.str()}")
        else:
            log.warning("%s: Kafka: %s", self.name, err.str())

    def _consumer_error(self, err: KafkaError) -> None:
        """An error the consumer delivers in place of a record (it goes on consuming)."""
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            # A subscribed topic that does not exist yet: its source has not
            # published to it. The subscription picks it up once created.
            text = err.str()
            if not self._checkpoints:  # nothing to consume yet: idle, as a member without partitions
                self.health.set_ready(None, part="assignment")
            if text not in self._missing_topics:
                self._missing_topics.add(text)
                log.info("%s: waiting for a topic to be created (%s)", self.name, text)
        elif is_transient(err):
            OUTAGE.report(f"{self.name}: {err.str()}")
        else:
            log.warning("%s: consumer: %s", self.name, err.str())

    # -- buffering -----------------------------------------------------------------------

    def _add(self, messages: list[Message]) -> None:
        # Once per consumed record. The native take() buffers the plain ones (no error,
        # an assigned partition, no headers) and stops at any other, which the loop
        # below handles; without it, the loop is the whole path (the reference).
        buffers = self._buffers
        started = time.monotonic() if not self._buffered else 0.0
        added = 0
        i, n = 0, len(messages)
        while i < n:
            if _take is not None:
                got, i = _take(messages, i, buffers, _make_record)
                added += got
                if i >= n:
                    break
            added += self._add_one(messages[i])
            i += 1
        if added:
            if started:
                self._oldest = started
            self._buffered += added
            self._stalled = False
            self._drained = False

    def _add_one(self, m: Message) -> int:
        """Buffer one record (the reference path); 1 if it was buffered."""
        err = m.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            self._consumer_error(err)
            return 0
        topic, part = m.topic(), m.partition()
        assert topic is not None and part is not None
        buf = self._buffers.get((topic, part))
        if buf is None:
            log.warning("%s: record for unassigned %s[%d] ignored", self.name, topic, part)
            return 0
        raw = m.headers()
        headers = (
            [(str(k), v if isinstance(v, bytes) else str(v or "").encode()) for k, v in raw]
            if raw and isinstance(raw, list)
            else None
        )
        buf.append(_make_record(topic, part, m.offset() or 0, m.key(), m.value(), headers,
                                None, None))  # fmt: skip
        return 1

    def partitions_of(self, topic: str) -> int:
        """The topic's partition count (asked each time: only truncates need it)."""
        consumer = self._consumer
        if consumer is None:
            raise UnreachableError("no consumer to ask for partition counts")
        try:
            md = consumer.list_topics(topic, timeout=10)
        except KafkaException as e:
            raise UnreachableError(f"cannot read metadata of {topic}: {e}") from e
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            raise UnreachableError(f"cannot read metadata of {topic}: {t.error if t else 'absent'}")
        return len(t.partitions)

    # -- applying ------------------------------------------------------------------------

    def _cut(self) -> dict[TopicPartition, list[Record]]:
        batch: dict[TopicPartition, list[Record]] = {}
        for tp, buf in self._buffers.items():
            if buf:
                n = self.applier.cut(buf)
                if n:
                    batch[tp] = buf[:n]
        return batch

    def _apply_once(self) -> ApplyResult | None:
        batch = self._cut()
        if not batch:
            return None
        session = self._ensure_session()
        expected = {tp: self._checkpoints[tp] for tp in batch}
        t0 = time.perf_counter()
        result = self.applier.apply(session, batch, expected)
        elapsed = time.perf_counter() - t0
        stamps: dict[TopicPartition, int] = {}
        if result.applied:  # one look per partition and batch, not per record
            for tp, n in result.consumed.items():
                ts = source_ts_ms(self.applier.serde, batch[tp], n) if n else None
                if ts is not None:
                    stamps[tp] = ts
        self.metrics.batch_applied(elapsed, result.consumed, stamps)
        return result

    def flush(self) -> int:
        """Apply what is buffered (one batch); returns the records it consumed."""
        while True:
            try:
                result = self._retrying("applying a batch", self._apply_once)
            except FencedError as e:
                self.stats.fenced += 1
                self.metrics.error("fenced")
                log.warning("%s: %s", self.name, e)
                self._resync(e.stored)
                continue
            except (StopRequested, SinkFailure, DdlRefused):
                raise  # (a refused DDL was planned from a fresh look at the table)
            except Exception as e:
                self.metrics.error(self._classify(e).value)
                self.health.error(f"applying a batch: {type(e).__name__}")
                if self._classify(e) is ErrorKind.FATAL and not self._fatal_retried:
                    # A replica table changed behind the sink? Re-read, try once more.
                    self._fatal_retried = True
                    log.warning("%s: %s; re-reading the replica's tables and retrying once",
                                self.name, e)
                    self.applier.schemas.reset()
                    self._drop_session()
                    continue
                raise
            break
        if result is None:
            return 0
        self._fatal_retried = False
        n = self._done(result)
        if self._on_batch is not None:
            self._on_batch(result)
        if result.failure is not None:
            raise result.failure
        return n

    def _done(self, result: ApplyResult) -> int:
        consumed = 0
        commits = self._to_commit
        for tp, n in result.consumed.items():
            buf = self._buffers.get(tp)
            if buf is None:
                continue
            del buf[:n]
            consumed += n
            cp = result.checkpoints[tp]
            self._checkpoints[tp] = cp
            if cp.offset >= 0:
                commits[tp] = cp.offset + 1
        self._buffered -= consumed
        self._drained = False  # look again before applying what is left
        if self._buffered > 0:
            self._oldest = time.monotonic()
        s = self.stats
        s.batches += 1
        s.applied += result.applied
        s.skipped += result.skipped
        s.dead_letters += result.dead_letters
        self._commit_offsets()
        return consumed

    def _commit_offsets(self, force: bool = False) -> None:
        """Commit the applied offsets to the group, for lag monitoring only (the
        replica's checkpoint is the truth): at most every ``COMMIT_INTERVAL_S`` while
        batches come fast (small adaptive batches would otherwise cost the broker a
        commit each), and whenever the worker goes idle (``force``)."""
        pending = self._to_commit
        consumer = self._consumer
        if not pending or consumer is None:
            return
        now = time.monotonic()
        if not force and now - self._last_commit < COMMIT_INTERVAL_S:
            return
        self._last_commit = now
        offsets = [KafkaPartition(t, p, o) for (t, p), o in pending.items()]
        pending.clear()
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as e:
            log.warning("%s: committing offsets for lag monitoring failed: %s", self.name, e)

    def _resync(self, stored: Mapping[TopicPartition, Checkpoint]) -> None:
        consumer = self._consumer
        for tp, cp in stored.items():
            if tp not in self._checkpoints:
                continue
            self._checkpoints[tp] = cp
            buf = self._buffers.get(tp)
            if buf:
                self._buffered -= len(buf)
                buf.clear()
            if consumer is not None:
                offset = cp.next_offset if cp.offset >= 0 else OFFSET_BEGINNING
                consumer.seek(KafkaPartition(tp[0], tp[1], offset))

    # -- the loop ------------------------------------------------------------------------

    def _batch_ready(self) -> bool:
        """Whether to apply the buffered records now (:func:`batch_due`)."""
        if not self._buffered:
            return False
        return batch_due(self.options, self._buffered, time.monotonic() - self._oldest,
                         drained=self._drained, stalled=self._stalled)

    def _fetch(self, consumer: Consumer) -> None:
        """Consume the next records into the buffers, and note whether the consumer
        had no more fetched. A consume of N records blocks until it has N or its
        timeout ends, so it blocks only while nothing is buffered (for the first
        record: then it takes the rest already fetched at once) or while a batch
        gathers for ``min_wait_s``."""
        o = self.options
        if self._buffered and not self._stalled:
            want = max(1, min(10_000, o.max_rows - self._buffered))
            timeout = gather_timeout(o, time.monotonic() - self._oldest)
            messages = consumer.consume(num_messages=want, timeout=timeout)
        else:
            # Stalled (transactional mode, a source transaction larger than a batch):
            # read on to its end, however far that is.
            want = 10_000 if self._stalled else min(10_000, o.max_rows)
            timeout = 0.0
            messages = consumer.consume(num_messages=1, timeout=0.5)
            if not messages:
                self._commit_offsets(force=True)  # idle: the group's offsets catch up
                return
            if want > 1:
                messages += consumer.consume(num_messages=want - 1, timeout=0.0)
        self._add(messages)
        if timeout <= 0.0 and len(messages) < want and self._buffered:
            self._drained = True  # it returned all the consumer had fetched

    def _log_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_log < self.options.log_interval_s:
            return
        s, last = self.stats, self._logged
        rate = (s.applied - last.applied) / max(1e-9, now - self._last_log)
        log.info(
            "%s: %d records applied (%.0f/s), %d skipped, %d dead letters, %d retries, "
            "%d buffered", self.name, s.applied, rate, s.skipped, s.dead_letters, s.retries,
            self._buffered,
        )
        self._last_log = now
        self._logged = WorkerStats(**{f: getattr(s, f) for f in s.__slots__})

    def _refresh_lag(self, consumer: Consumer) -> None:
        """Per assigned partition: the high watermark the consumer last fetched and the
        next offset the replica's checkpoint asks for (cached: no broker round trip)."""
        rows = []
        for tp, cp in list(self._checkpoints.items()):
            try:
                low, high = consumer.get_watermark_offsets(KafkaPartition(tp[0], tp[1]),
                                                           cached=True)
            except (KafkaException, RuntimeError):
                continue
            if high is None or high < 0:
                continue  # nothing fetched yet
            rows.append((tp, high, max(cp.next_offset, low or 0)))
        self.metrics.refresh_lag(rows)

    def run(self) -> None:
        """Consume and apply until ``stop`` is set (returns) or a failure (raises)."""
        try:
            self._retrying("connecting to the replica", self._ensure_session)
        except StopRequested:
            return
        consumer = Consumer(self._consumer_config)
        self._consumer = consumer
        self.applier.partitions_of = self.partitions_of
        if self.applier.dead_letters is not None:
            self.applier.dead_letters.ensure_topic()
        consumer.subscribe(
            self.subscription,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("%s: consuming %s", self.name, ", ".join(self.subscription))
        self.health.set_state("consuming")
        try:
            while not self.stop.is_set():
                self.health.beat()
                if self.metrics.due():
                    self._refresh_lag(consumer)
                if self._batch_ready():
                    if not self.flush() and self._buffered:
                        self._stalled = True  # an open source transaction: consume more first
                    self._log_progress()
                    continue
                self._fetch(consumer)
                self._log_progress()
        except StopRequested:
            pass
        finally:
            self.health.set_ready("stopping", part="assignment")
            self._log_progress(force=True)
            self._commit_offsets(force=True)
            self._consumer = None
            try:
                consumer.close()
            except (KafkaException, RuntimeError) as e:
                log.warning("%s: closing the consumer: %s", self.name, e)
            self._drop_session()
            if self.applier.dead_letters is not None:
                self.applier.dead_letters.close()
            if self.applier.conflicts is not None:
                self.applier.conflicts[1].close()
