"""Source high availability: one active process per source, the lock held in Kafka.

With ``sources[].ha.enabled``, every process of a source joins the consumer
group ``cdc-lease-<name>`` on the one-partition topic ``<offsets_topic>.lease``
(no record is ever written to it). Kafka's group coordinator assigns that
partition to exactly one member: that process is the active one and captures;
the others are standbys that wait in :meth:`Lease.acquire`. When the active
process stops cleanly it leaves the group and a standby is assigned at once;
when it dies (kill -9, a lost host) the coordinator expires its session after
``ha.session_timeout_ms`` and assigns the partition to a standby.

Never two writers. The danger is an active process that is alive but cut off
from the coordinator: the group may hand the partition to a standby while the
old process still runs. So the active process must stop capturing *before*
the coordinator can expire it:

* every ``renew_interval_ms`` it commits its lease epoch to the group
  synchronously. The coordinator accepts a commit only from a current member
  of the current generation, on the same connection as the heartbeats that
  librdkafka sends every ``session_timeout_ms / 10``; so a commit sent at local
  time ``t`` and accepted means the member's session was alive then and its
  heartbeats flowing: the coordinator cannot expire it before about
  ``t + session_timeout - heartbeat_interval``;
* the lease is valid until ``t + session_timeout - heartbeat_interval - margin``
  (``margin`` = a fifth of the session) after the last accepted commit sent at
  ``t``. A keeper thread checks this; when it passes, or Kafka revokes or
  loses the assignment (callbacks), the process exits at once
  (``os._exit(75)``, nothing more is produced) and a supervisor restarts it
  as a standby. Every offsets write checks the lease first as well.

Records already handed to the broker before the exit may still be appended
after the new active's first records; they are duplicates of events the new
active re-reads from the last durable position, which sinks skip by position
(see cdc.sink.checkpoint). The lease epoch is written into every offsets
record (``extra.lease_epoch``), so the order of writers is visible in the
offsets topic: epochs never decrease. The epoch is the group's committed
metadata on the lease partition (``lease_epoch=N``), +1 at every acquisition.

The database adds a second fence where it has one: a PostgreSQL slot has at
most one active reader (a second START_REPLICATION fails while the old
walsender lives); MariaDB/MySQL drop the older of two binlog readers with the
same server id.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from confluent_kafka import Consumer, KafkaException, TopicPartition

from cdc.config import CdcConfig
from cdc.config.operations import SourceHa
from cdc.events import ChangeEvent
from cdc.offsets.store import OffsetStore, SourceOffset
from cdc.spi import Position, Problem, ReportsMetrics, SourceConnector, StreamItem
from cdc.transport.client_log import KAFKA_LOG
from cdc.transport.topics import TopicManager, TopicSpec

if TYPE_CHECKING:
    from cdc.runtime.source_runner import SourceRunner

log = logging.getLogger(__name__)
T = TypeVar("T")

EXIT_LEASE_LOST: Final = 75
"""Exit status of an active process that lost its lease (``EX_TEMPFAIL``): restart it;
it comes back as a standby."""


_EPOCH: Final = "lease_epoch="


def epoch_of(metadata: str | None) -> int:
    """The epoch a lease commit's metadata holds (0: none yet)."""
    if metadata and metadata.startswith(_EPOCH) and metadata[len(_EPOCH):].isdigit():
        return int(metadata[len(_EPOCH):])
    return 0


def lease_topic(offsets_topic: str) -> str:
    return f"{offsets_topic}.lease"


def lease_group(source: str) -> str:
    return f"cdc-lease-{source}"


class Lease:
    """The lease of one source; :meth:`acquire` blocks until this process holds it."""

    def __init__(self, config: CdcConfig, source: str, ha: SourceHa) -> None:
        kafka = config.kafka
        self.source = source
        self.topic = lease_topic(kafka.offsets_topic)
        self.session_s = ha.session_timeout_ms / 1000
        self.renew_s = ha.renew_interval_ms / 1000
        heartbeat_ms = max(100, ha.session_timeout_ms // 10)
        self.window_s = self.session_s - heartbeat_ms / 1000 - self.session_s / 5
        client = dict(kafka.common_client_config())
        bootstrap = str(client.pop("bootstrap.servers"))
        TopicManager(bootstrap, client).ensure(
            [self.topic], TopicSpec(partitions=1, replication_factor=kafka.topics.replication_factor))
        self._consumer = Consumer({
            **kafka.common_client_config(),
            "group.id": lease_group(source),
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": ha.session_timeout_ms,
            "heartbeat.interval.ms": heartbeat_ms,
            "max.poll.interval.ms": max(ha.session_timeout_ms, 30_000),
            # The holder keeps the partition through rebalances (a standby joining).
            "partition.assignment.strategy": "cooperative-sticky",
            "logger": KAFKA_LOG,
        })
        self.epoch = 0
        self._assigned = False
        self._valid_until = 0.0
        self._releasing = False
        self._held = False
        self._keeper: threading.Thread | None = None
        self._stop_keeper = threading.Event()

    # -- group callbacks (run inside poll, on the polling thread) ---------------------------

    def _on_assign(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._assigned = True

    def _on_revoke(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._assigned = False
            self._lost("Kafka revoked the lease")

    def _on_lost(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        self._assigned = False
        self._lost("the lease's group session was lost")

    # -- acquiring ---------------------------------------------------------------------------

    def acquire(self, stop: threading.Event) -> int | None:
        """Wait until this process holds the lease; its epoch, or None when ``stop`` is set."""
        self._consumer.subscribe([self.topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("%s: standby: waiting for the lease (group %s on %s)", self.source,
                 lease_group(self.source), self.topic)
        while not stop.is_set():
            self._consumer.poll(0.2)
            if not self._assigned:
                continue
            tp = TopicPartition(self.topic, 0)
            try:
                (committed,) = self._consumer.committed([tp], timeout=self.session_s)
                epoch = epoch_of(committed.metadata) + 1
                if self._renew(epoch):
                    self.epoch = epoch
                    self._held = True
                    log.info("%s: lease acquired (epoch %d): this process is the active one",
                             self.source, epoch)
                    self._keeper = threading.Thread(target=self._keep, name="lease-keeper",
                                                    daemon=True)
                    self._keeper.start()
                    return epoch
            except KafkaException as e:
                log.warning("%s: could not take the lease yet: %s", self.source, e)
        return None

    def _renew(self, epoch: int) -> bool:
        """Commit ``epoch`` (only a current holder can); extends the lease on success."""
        sent = time.monotonic()
        try:
            # Offset 0 (the topic stays empty); the epoch rides in the commit's metadata.
            self._consumer.commit(
                offsets=[TopicPartition(self.topic, 0, 0, metadata=f"{_EPOCH}{epoch}")],
                asynchronous=False)
        except KafkaException as e:
            log.warning("%s: lease not confirmed by Kafka (%s); valid for %.1fs more",
                        self.source, e, max(0.0, self._valid_until - time.monotonic()))
            return False
        self._valid_until = sent + self.window_s
        return True

    # -- holding ------------------------------------------------------------------------------

    def valid(self) -> bool:
        return self._held and time.monotonic() < self._valid_until

    def check(self) -> None:
        """Exit now unless the lease is still valid (called before every offsets write)."""
        if not self.valid():
            self._lost("the lease was not confirmed by Kafka in time")

    def _keep(self) -> None:
        next_renew = time.monotonic() + self.renew_s
        while not self._stop_keeper.is_set():
            self._consumer.poll(0.1)
            now = time.monotonic()
            if now >= next_renew:
                self._renew(self.epoch)
                next_renew = now + self.renew_s
            if not self._releasing and now >= self._valid_until:
                self._lost(f"Kafka has not confirmed the lease for {now - self._valid_until + self.window_s:.1f}s")

    def _lost(self, why: str) -> None:
        if self._releasing or not self._held:
            return
        log.error("%s: %s: stopping capture at once (exit %d) so the standby can take over "
                  "alone; restart this process to make it a standby", self.source, why,
                  EXIT_LEASE_LOST)
        logging.shutdown()
        os._exit(EXIT_LEASE_LOST)

    def release(self) -> None:
        """Leave the group (a standby takes over at once). Call after capture stopped."""
        self._releasing = True
        self._stop_keeper.set()
        if self._keeper is not None:
            self._keeper.join(5)
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as e:
            log.debug("closing the lease consumer: %s", e)
        if self._held:
            log.info("%s: lease released (epoch %d)", self.source, self.epoch)
        self._held = False


class LeasedOffsetStore(OffsetStore):
    """An offsets store that writes only while the lease is valid, tagging each record
    with the lease epoch (``extra.lease_epoch``)."""

    def __init__(self, inner: OffsetStore, lease: Lease) -> None:  # shares inner's clients
        self.__dict__.update(inner.__dict__)
        self._lease = lease

    def save(self, name: str, offset: SourceOffset) -> None:
        self._lease.check()
        extra = {**offset.extra, "lease_epoch": self._lease.epoch}
        super().save(name, dataclasses.replace(offset, extra=extra))


class LeasedSource:
    """A source whose snapshot rows and stream items are handed out only while the lease
    is valid: a process frozen past its lease (SIGSTOP, a long GC pause) exits on the
    next item instead of producing it."""

    def __init__(self, inner: SourceConnector, lease: Lease) -> None:
        self.inner = inner
        self._lease = lease

    def _guard(self, items: Iterator[T]) -> Iterator[T]:
        try:
            for item in items:
                self._lease.check()
                yield item
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def check(self) -> list[Problem]:
        return self.inner.check()

    def snapshot(self, resume: Position | None) -> tuple[Position, Iterator[ChangeEvent]]:
        position, rows = self.inner.snapshot(resume)
        return position, self._guard(rows)

    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        return self._guard(self.inner.stream(start))

    def acknowledge(self, position: Position) -> None:
        self.inner.acknowledge(position)

    def close(self) -> None:
        self.inner.close()

    def metrics(self) -> Mapping[str, float | None]:
        return self.inner.metrics() if isinstance(self.inner, ReportsMetrics) else {}


def fence(runner: SourceRunner, lease: Lease) -> None:
    """Make ``runner`` produce and record offsets only while ``lease`` is valid."""
    runner.source = LeasedSource(runner.source, lease)
    runner.offsets = LeasedOffsetStore(runner.offsets, lease)


def start_lease(config: CdcConfig, name: str, stop: threading.Event) -> Lease | None:
    """The held lease of source ``name`` when its ``ha`` is enabled (waits for it);
    None when HA is off. Returns a lease that is not held when ``stop`` is set first."""
    source = next((s for s in config.sources if s.name == name), None)
    if source is None or not source.ha.enabled:
        return None
    lease = Lease(config, name, source.ha)
    # While it waits, `cdc source` serves a standby's probes (alive, not ready).
    lease.acquire(stop)
    return lease
