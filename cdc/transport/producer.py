"""An idempotent Kafka producer whose delivery reports drive source checkpoints.

Every record is registered with an :class:`AckTracker` before it is handed to
librdkafka; its delivery callback acknowledges it. A failed delivery is fatal:
it is kept and raised from the next call, so the pipeline stops instead of
checkpointing past a lost record.

Snapshot batches (:meth:`EventProducer.send_many`) go through a second
librdkafka producer that reports failed deliveries only: a delivery report per
record into Python cost about a quarter of the produce path's CPU. Its batches
are acknowledged together once that producer has nothing outstanding (every
record it was given is acknowledged or failed, and a failure was raised): it
is drained when the in-flight bound is reached, when it did not run empty by
itself for ``BULK_SETTLE_INTERVAL_S``, and at every flush. Single records sent
while it holds batches (a snapshot's held-back last row of a chunk) go through
it too, so nothing overtakes a batch in its partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from cdc.errors import DeliveryError, UnreachableError
from cdc.offsets.tracker import AckTracker, Batch, Pending
from cdc.positions import Position
from cdc.transport.client_log import KAFKA_LOG, OUTAGE, is_transient

__all__ = ["DEFAULT_SETTINGS", "FIXED_SETTINGS", "KAFKA_LOG", "EventProducer"]

log = logging.getLogger(__name__)

# Not configurable: without them a retry can reorder or duplicate records.
FIXED_SETTINGS: Mapping[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "max.in.flight.requests.per.connection": 5,
}

DEFAULT_SETTINGS: Mapping[str, Any] = {
    "linger.ms": 20,  # as kafka.producer.linger_ms (a produce request per linger: CPU)
    "batch.size": 1_048_576,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 65_536,  # as kafka.producer.buffer_max_kbytes
    "message.timeout.ms": 300_000,
    "message.max.bytes": 16_777_216,
}

Headers = Sequence[tuple[str, bytes]]

_POLL_EVERY = 64  # records between delivery-report polls on the send path
# At most this long between two settlements of the snapshot batches (a drain of the
# snapshot producer if it never runs empty by itself): the durable position, and so
# a snapshot's saved progress, lags the rows in Kafka by about this much.
BULK_SETTLE_INTERVAL_S = 1.0


class EventProducer:
    """Produces change records and tracks which source positions are durable."""

    def __init__(
        self,
        bootstrap_servers: str,
        settings: Mapping[str, Any] | None = None,
        *,
        max_in_flight: int = 100_000,
        tracker: AckTracker | None = None,
    ) -> None:
        conf: dict[str, Any] = {**DEFAULT_SETTINGS, **(settings or {}), **FIXED_SETTINGS}
        conf["bootstrap.servers"] = bootstrap_servers
        conf["error_cb"] = self._on_client_error
        conf["logger"] = KAFKA_LOG
        self._bootstrap = bootstrap_servers
        OUTAGE.watch(bootstrap_servers)
        self._producer = Producer(conf)
        self.tracker = tracker or AckTracker()
        self.tracker.on_failure = self._on_delivery_failure
        self._produce = self._producer.produce
        self._unpolled = 0
        self._max_in_flight = max_in_flight
        self._failure: BaseException | None = None
        # Snapshot batches: their own producer (failed deliveries reported only) and
        # their tokens, not yet known to be acknowledged, in order.
        self._conf = conf
        self._bulk: Producer | None = None
        self._bulk_tokens: list[Pending] = []
        self._bulk_settled_at = time.monotonic()
        # Called on every round of a wait for Kafka (the runner's liveness heartbeat:
        # a source waiting out a broker outage is alive, only not ready).
        self.waiting: Callable[[], None] | None = None

    # -- sending ---------------------------------------------------------------------------

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        position: Position | None = None,
        boundary: bool = False,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record; blocks (polling) while too many are unacknowledged."""
        if self._failure is not None:
            raise self._failure
        tracker = self.tracker
        if tracker.in_flight >= self._max_in_flight:
            self._drain_bulk()
            self._wait_below(self._max_in_flight // 2)
        token = tracker.register(position, boundary=boundary)
        bulk = self._bulk
        if bulk is not None:
            # Between a snapshot's batches: the same producer as they, so that this
            # record keeps its place among them in its partition.
            self._bulk_tokens.append(token)
            produce = bulk.produce
        else:
            produce = self._produce
        while True:
            try:
                if bulk is not None:
                    kw: dict[str, Any] = {}
                    if headers:
                        kw["headers"] = list(headers)
                    if partition is not None:
                        kw["partition"] = partition
                    produce(topic, value, key, **kw)
                elif partition is None and not headers:
                    self._produce(topic, value, key, on_delivery=token)
                else:
                    kwargs: dict[str, Any] = {"on_delivery": token}
                    if headers:
                        kwargs["headers"] = list(headers)
                    if partition is not None:
                        kwargs["partition"] = partition
                    self._produce(topic, value, key, **kwargs)
                break
            except BufferError:
                # librdkafka's local queue is full: serve callbacks until it drains a bit.
                (bulk or self._producer).poll(0.1)
                self._raise_failure()
            except KafkaException as e:
                raise DeliveryError(f"cannot produce to {topic}: {e}") from e
        if bulk is not None:
            return
        # Serving delivery reports in batches: a poll per record costs more than the record.
        self._unpolled += 1
        if self._unpolled >= _POLL_EVERY:
            self._unpolled = 0
            self._producer.poll(0)

    def send_run(
        self,
        topic: str,
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        *,
        position: Position | None,
        boundary: bool,
    ) -> None:
        """Queue records in order, only the last carrying ``position`` and ``boundary``
        (a stream's run of inserts): :meth:`send` of each, in one call.

        Each record keeps its own ack token, so the durable position and failures
        are exactly those of sending them one by one; only the per-call checks are
        shared. A record without a key goes to partition 0 (as :meth:`send` is told
        for a table without a primary key)."""
        if self._failure is not None:
            raise self._failure
        n = len(values)
        if self._bulk is not None or None in keys:
            for i in range(n):
                last = i == n - 1
                key = keys[i]
                self.send(topic, key, values[i], position=position if last else None,
                          boundary=boundary and last, partition=None if key is not None else 0)
            return
        tracker = self.tracker
        register = tracker.register
        produce = self._produce
        limit = self._max_in_flight
        for i in range(n):
            if tracker.in_flight >= limit:
                self._drain_bulk()
                self._wait_below(limit // 2)
            last = i == n - 1
            token = register(position if last else None, boundary=boundary and last)
            while True:
                try:
                    produce(topic, values[i], keys[i], on_delivery=token)
                    break
                except BufferError:
                    self._producer.poll(0.1)
                    self._raise_failure()
                except KafkaException as e:
                    raise DeliveryError(f"cannot produce to {topic}: {e}") from e
        self._unpolled += n
        if self._unpolled >= _POLL_EVERY:
            self._unpolled = 0
            self._producer.poll(0)

    def send_many(
        self,
        topic: str,
        keys: Sequence[bytes | None],
        values: Sequence[bytes],
        *,
        partition: int | None = None,
    ) -> None:
        """Queue records that carry no position and end no transaction (a snapshot
        batch), in order, with one ack token for all: the durable position passes
        them only once Kafka acknowledged every one.

        They go through the snapshot producer, which reports failures only: the
        token is settled when that producer has nothing outstanding (see
        :meth:`_settle_bulk`). Until a flush finds it empty, send() goes through it
        too, so that records keep their order in a partition; records sent
        before the first batch are acknowledged before it is produced."""
        n = len(values)
        if not n:
            return
        if self._failure is not None:
            raise self._failure
        tracker = self.tracker
        if self._bulk_tokens and not self._settle_bulk(0) and (
                time.monotonic() - self._bulk_settled_at >= BULK_SETTLE_INTERVAL_S):
            self._drain_bulk()
        if tracker.in_flight + n > self._max_in_flight:
            # Batch tokens settle only when the snapshot producer is drained.
            self._drain_bulk()
            if tracker.in_flight + n > self._max_in_flight:
                self._wait_below(max(0, self._max_in_flight - n) // 2)
        bulk = self._bulk
        if bulk is None:
            # Records sent before (send()) are in Kafka before any of the batches.
            while self._producer.flush(0.5):
                self._raise_failure()
                if self.waiting is not None:
                    self.waiting()
            self._raise_failure()
            bulk = self._bulk = self._bulk_producer()
        self._bulk_tokens.append(tracker.register_many(n))
        produce = bulk.produce
        i = 0
        while i < n:
            try:
                if partition is None:
                    for i in range(i, n):  # noqa: B020 - resumes at a record the queue refused
                        produce(topic, values[i], keys[i])
                else:
                    for i in range(i, n):  # noqa: B020
                        produce(topic, values[i], keys[i], partition=partition)
                i = n
            except BufferError:
                # librdkafka's local queue is full: serve reports until it drains a bit.
                bulk.poll(0.1)
                self._raise_failure()
                if self.waiting is not None:
                    self.waiting()
            except KafkaException as e:
                raise DeliveryError(f"cannot produce to {topic}: {e}") from e
        self._settle_bulk(0)

    def _bulk_producer(self) -> Producer:
        conf = dict(self._conf)
        # confluent-kafka's own setting: success reports end in C, failures reach
        # on_delivery (the default callback of records produced without one).
        conf["delivery.report.only.error"] = True
        conf["on_delivery"] = self._on_delivery_failure
        return Producer(conf)

    def _settle_bulk(self, timeout: float) -> bool:
        """Serve the snapshot producer's reports; if it then has nothing outstanding,
        every batch given to it is acknowledged (a failure would have been raised)."""
        bulk = self._bulk
        if bulk is None:
            return True
        remaining = bulk.flush(timeout) if timeout > 0 else (bulk.poll(0), len(bulk))[1]
        self._raise_failure()
        if remaining:
            return False
        tokens = self._bulk_tokens
        if tokens:
            tracker = self.tracker
            for token in tokens:
                if type(token) is Batch:
                    tracker.ack_batch(token)
                else:
                    tracker.ack(token)
            tokens.clear()
        self._bulk_settled_at = time.monotonic()
        return True

    def _drain_bulk(self) -> None:
        while not self._settle_bulk(0.5):
            if self.waiting is not None:
                self.waiting()

    def mark(self, position: Position) -> None:
        """A position with nothing to send (heartbeat, filtered transaction)."""
        self.tracker.mark(position)

    def _on_delivery_failure(self, err: Any, msg: Any) -> None:
        if self._failure is None:
            reason = err.str() if isinstance(err, KafkaError) else str(err)
            self._failure = DeliveryError(
                f"Kafka did not accept a record for {msg.topic()}: {reason}",
                hint="check the broker and topic; cdc stops rather than skip a change",
            )

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._failure = DeliveryError(f"fatal producer error: {err.str()}")
        elif is_transient(err):
            # Queued records wait and are retried; one warning per outage (client_log).
            OUTAGE.report(err.str(), self._bootstrap)
        else:
            log.warning("Kafka producer: %s", err.str())

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _wait_below(self, limit: int) -> None:
        while self.tracker.in_flight > limit:
            self._producer.poll(0.1)
            self._raise_failure()
            if self.waiting is not None:
                self.waiting()

    # -- progress ----------------------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks (advancing the durable position)."""
        self._producer.poll(timeout)
        self._raise_failure()
        self._settle_bulk(0)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every queued record is acknowledged, or fail clearly."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = self._producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
            self._raise_failure()
            if self._bulk is not None:
                if self._settle_bulk(min(1.0, max(0.0, deadline - time.monotonic()))):
                    # Nothing outstanding: the snapshot producer's threads and
                    # connections are not kept for the stream (a later batch makes another).
                    self._bulk = None
                else:
                    remaining += len(self._bulk)
            if self.waiting is not None:
                self.waiting()
            if remaining == 0 and self.tracker.in_flight == 0:
                return
            if time.monotonic() >= deadline:
                raise UnreachableError(
                    f"{remaining} records not acknowledged by Kafka at {self._bootstrap} "
                    f"after {timeout:.0f}s",
                    hint="is the broker up? records stay queued and are retried",
                )

    @property
    def durable(self) -> Position | None:
        return self.tracker.durable

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is queued; a failure is still raised."""
        self.flush(timeout)
