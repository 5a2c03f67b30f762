"""Source offsets in a compacted Kafka topic, like Kafka Connect's offsets topic.

Keyed by source name, so a source restarted on any host resumes from the last
position written. A record is written only for positions the tracker says are
durable, and the source is told to release log only after this write is
acknowledged: offsets never run ahead of the data they describe.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from cdc.errors import DeliveryError, PositionError, UnreachableError
from cdc.positions import Position, position_from_dict
from cdc.spi import SnapshotResume
from cdc.transport.client_log import KAFKA_LOG, OUTAGE, is_transient
from cdc.transport.producer import FIXED_SETTINGS
from cdc.transport.topics import TopicManager, TopicSpec

_FORMAT = 1
log = logging.getLogger(__name__)
# Delivery errors worth producing the record again for (the broker was away too long).
_RETRY_CODES = frozenset({KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT,
                          KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT})
# Reading: also the states of a topic whose partition leader is not settled yet.
_READ_RETRY_CODES = _RETRY_CODES | {
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION,
}


class _Transient(Exception):
    """A read failed in a way worth retrying (see OffsetStore.load)."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(error.str())
        self.error = error


@dataclass(frozen=True, slots=True)
class SourceOffset:
    """What a source needs to resume: its stream position, and whether a snapshot runs.

    ``snapshot`` is None once the snapshot is complete (or never ran). While a
    snapshot runs the runner stores ``{"state": "running"}``; for a source that
    can resume its snapshot (:class:`cdc.spi.ResumesSnapshot`) also
    ``"resume"``: the chunk progress of :func:`resume_to_dict`, recorded only
    once every row before it is acknowledged by Kafka. A marker without
    ``"resume"`` (written by older versions, or by a source that cannot resume)
    means the snapshot is taken again from the start.
    """

    position: Position | None
    snapshot: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps({
            "v": _FORMAT,
            "position": self.position.to_dict() if self.position is not None else None,
            "snapshot": self.snapshot,
            "extra": self.extra,
            "written_ms": int(time.time() * 1000),
        }, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SourceOffset:
        try:
            d = json.loads(data)
        except ValueError as e:
            raise PositionError(f"offsets record is not JSON: {data[:80]!r}") from e
        if int(d.get("v", 0)) > _FORMAT:
            raise PositionError(f"offsets record format v{d.get('v')} is newer than this cdc")
        pos = d.get("position")
        return cls(position_from_dict(pos) if pos else None, d.get("snapshot"), d.get("extra") or {})


def resume_to_dict(r: SnapshotResume) -> dict[str, Any]:
    """The stored form of a snapshot's chunk progress (under ``snapshot["resume"]``)."""
    return {
        "start": r.start.to_dict(),
        "tables_done": list(r.tables_done),
        "table": r.table,
        "after": None if r.after is None else [_key_value(v) for v in r.after],
        "rows": r.rows,
        "attempt": r.attempt,
    }


def resume_from_snapshot(snapshot: dict[str, Any] | None) -> SnapshotResume | None:
    """The chunk progress stored in ``SourceOffset.snapshot``; None when it holds none
    (no snapshot running, or a marker without progress). PositionError if malformed."""
    if not snapshot or not isinstance(snapshot.get("resume"), dict):
        return None
    d = snapshot["resume"]
    try:
        after = d.get("after")
        return SnapshotResume(
            start=position_from_dict(d["start"]),
            tables_done=tuple(str(t) for t in d.get("tables_done") or ()),
            table=None if d.get("table") is None else str(d["table"]),
            after=None if after is None else tuple(_key_from_json(v) for v in after),
            rows=int(d.get("rows") or 0),
            attempt=int(d.get("attempt") or 0),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise PositionError(f"malformed snapshot progress in the offsets: {d!r:.300}: {e}") from e


def _key_value(v: Any) -> Any:
    """A key value as JSON: bytes tagged as base64, the JSON scalars as they are."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"b64": base64.b64encode(bytes(v)).decode()}
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    raise PositionError(f"a snapshot key value of type {type(v).__name__} cannot be stored")


def _key_from_json(v: Any) -> Any:
    if isinstance(v, dict):
        return base64.b64decode(v["b64"])
    return v


class OffsetStore:
    """Reads and writes source offsets.

    ``timeout_s`` bounds start-up work (creating the topic, reading it back);
    ``write_timeout_s`` bounds one write, which waits and retries through a
    broker outage as long as the data producer does (its records are kept for
    librdkafka's ``message.timeout.ms``, 300 s by default): a short broker
    restart must not stop a source whose data is still on its way.
    """

    def __init__(self, bootstrap_servers: str, topic: str, *,
                 settings: dict[str, Any] | None = None, replication_factor: int = 1,
                 timeout_s: float = 30.0, write_timeout_s: float = 300.0) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._settings = dict(settings or {})
        self._timeout = timeout_s
        self._write_timeout = write_timeout_s
        TopicManager(bootstrap_servers, self._settings, timeout_s=timeout_s).ensure(
            [topic], TopicSpec(partitions=1, replication_factor=replication_factor,
                               cleanup_policy="compact",
                               config={"min.compaction.lag.ms": "60000"}))
        self._producer = Producer({**self._settings, **FIXED_SETTINGS,
                                   "bootstrap.servers": bootstrap_servers, "linger.ms": 0,
                                   "logger": KAFKA_LOG})

    def load(self, name: str) -> SourceOffset | None:
        """The last offset written for ``name`` (reads the whole compacted topic).

        Transient broker states (a leader being elected for a topic just created,
        a broker restarting) are retried with backoff for up to the timeout.
        """
        deadline = time.monotonic() + self._timeout
        backoff = 0.25
        while True:
            try:
                return self._load(name)
            except _Transient as e:
                if time.monotonic() + backoff >= deadline:
                    raise UnreachableError(
                        f"could not read offsets topic {self._topic}: {e.error.str()}",
                        hint="is the broker up and the topic's partition led?") from None
                log.info("offsets topic %s not readable yet (%s); retrying in %.2fs",
                         self._topic, e.error.str(), backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _load(self, name: str) -> SourceOffset | None:
        consumer = Consumer({
            **self._settings,
            "bootstrap.servers": self._bootstrap,
            "group.id": f"cdc-offsets-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "logger": KAFKA_LOG,
        })
        try:
            md = consumer.list_topics(self._topic, timeout=self._timeout)
            parts = [TopicPartition(self._topic, p, OFFSET_BEGINNING)
                     for p in md.topics[self._topic].partitions]
            ends = {}
            for tp in parts:
                _, high = consumer.get_watermark_offsets(tp, timeout=self._timeout)
                ends[tp.partition] = high
            consumer.assign([tp for tp in parts if ends[tp.partition] > 0])
            latest: bytes | None = None
            pending = {p for p, h in ends.items() if h > 0}
            deadline = time.monotonic() + self._timeout
            while pending:
                if time.monotonic() > deadline:
                    raise UnreachableError(
                        f"could not read offsets topic {self._topic} from {self._bootstrap} "
                        f"within {self._timeout:.0f}s")
                msg = consumer.poll(0.5)
                if msg is None:
                    continue
                err = msg.error()
                partition = msg.partition() or 0
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(partition)
                        continue
                    raise UnreachableError(f"reading {self._topic}: {err.str()}")
                if msg.key() == name.encode():
                    latest = msg.value()  # None = tombstone (offsets reset on purpose)
                if (msg.offset() or 0) + 1 >= ends[partition]:
                    pending.discard(partition)
        except KafkaException as e:
            err = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
            if err is not None and (err.retriable() or err.code() in _READ_RETRY_CODES):
                raise _Transient(err) from e
            raise UnreachableError(f"could not read offsets topic {self._topic}: {e}") from e
        except Exception as e:
            if isinstance(e, (UnreachableError, PositionError)):
                raise
            raise UnreachableError(f"could not read offsets topic {self._topic}: {e}") from e
        finally:
            consumer.close()
        return SourceOffset.from_json(latest) if latest else None

    def save(self, name: str, offset: SourceOffset) -> None:
        """Write and wait for the broker's acknowledgement."""
        self._write(name, offset.to_json())

    def reset(self, name: str) -> None:
        """Forget a source's offsets (a tombstone): its next start snapshots anew."""
        self._write(name, None)

    def _write(self, name: str, value: bytes | None) -> None:
        """Produce the record and wait for its acknowledgement, through a broker outage.

        librdkafka keeps the record queued and retries while the broker is
        away; should it give the record up (its own message timeout), it is
        produced again after a bounded backoff. Past ``write_timeout_s`` the
        write fails with UnreachableError naming the broker.
        """
        start = time.monotonic()
        deadline = start + self._write_timeout
        backoff = 0.5
        while True:
            errors: list[KafkaError] = []

            def on_delivery(err: KafkaError | None, _msg: object,
                            errors: list[KafkaError] = errors) -> None:
                if err is not None:
                    errors.append(err)

            self._producer.produce(self._topic, key=name.encode(), value=value,
                                   on_delivery=on_delivery)
            while self._producer.flush(min(5.0, max(0.0, deadline - time.monotonic()))) != 0:
                if time.monotonic() >= deadline:
                    raise UnreachableError(
                        f"offsets for {name} not acknowledged by Kafka at {self._bootstrap} "
                        f"within {self._write_timeout:.0f}s",
                        hint="is the broker up? the source resumes from its last recorded "
                        "offsets when restarted")
                waiting = (f"offsets for {name} not acknowledged after "
                           f"{time.monotonic() - start:.0f}s; still waiting (up to "
                           f"{self._write_timeout:.0f}s)")
                if OUTAGE.active:  # the outage's one warning covers it
                    log.debug("%s", waiting)
                else:
                    log.warning("%s by Kafka at %s", waiting, self._bootstrap)
            if not errors:
                return
            err = errors[0]
            retriable = err.retriable() or err.code() in _RETRY_CODES
            if not retriable or time.monotonic() + backoff >= deadline:
                raise DeliveryError(f"could not write offsets for {name}: {err.str()}")
            if is_transient(err):
                OUTAGE.report(f"offsets for {name} not written: {err.str()}", self._bootstrap)
            else:
                log.warning("offsets for %s not written (%s); retrying in %.1fs", name,
                            err.str(), backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
