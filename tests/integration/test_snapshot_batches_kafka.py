"""Snapshot batches (EventProducer.send_many) against a real broker: they go through a
producer that reports failed deliveries only, so these check what the per-record
delivery callback used to guarantee: the durable position passes a batch only once
Kafka acknowledged every record of it, and a record Kafka refuses stops the source."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from cdc.errors import DeliveryError
from cdc.transport.producer import EventProducer
from connectors.postgres.position import Lsn, PgPosition

# Batches of the producer well below the topic's record limit.
SETTINGS = {"linger.ms": 5, "batch.size": 16_384}


@pytest.fixture()
def topic(kafka_bootstrap: str, unique_name: str) -> Iterator[str]:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    # A small record limit, so that one record of a batch can be refused by the broker.
    spec = NewTopic(unique_name, num_partitions=3, replication_factor=1,
                    config={"max.message.bytes": "65536"})
    admin.create_topics([spec])[unique_name].result(timeout=60)
    yield unique_name
    admin.delete_topics([unique_name])[unique_name].result(timeout=60)


def _count(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-count"})
    try:
        total = 0
        for p in range(3):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            total += high - low
        return total
    finally:
        consumer.close()


def _batch(start: int, n: int, size: int = 100) -> tuple[list[bytes | None], list[bytes]]:
    keys: list[bytes | None] = [b"k%d" % i for i in range(start, start + n)]
    return keys, [b"v" * size for _ in range(n)]


def test_the_durable_position_passes_batches_only_once_kafka_acknowledged_them(
        kafka_bootstrap: str, topic: str) -> None:
    # A small in-flight bound: the batches are drained (acknowledged together) on the way.
    producer = EventProducer(kafka_bootstrap, SETTINGS, max_in_flight=250)
    marks = []
    for b in range(10):
        keys, values = _batch(b * 100, 100)
        producer.send_many(topic, keys, values)
        assert producer.tracker.in_flight <= 250 + 100
        mark = PgPosition(Lsn(b + 1))
        producer.mark(mark)
        marks.append(mark)
        durable = producer.durable
        # Never ahead of the records Kafka holds: a mark is durable only after its batch.
        if durable is not None:
            assert _count(kafka_bootstrap, topic) >= 100 * marks.index(durable) + 100
    producer.flush(timeout=120)
    assert producer.durable == marks[-1]
    assert producer.tracker.in_flight == 0
    assert _count(kafka_bootstrap, topic) == 1000
    # The stream's records (one callback each) follow on the same producer.
    producer.send(topic, b"k", b"v", position=PgPosition(Lsn(100)), boundary=True)
    producer.flush(timeout=120)
    assert producer.durable == PgPosition(Lsn(100))
    producer.close()


def test_a_record_kafka_refuses_in_the_middle_of_a_batch_stops_the_source(
        kafka_bootstrap: str, topic: str) -> None:
    producer = EventProducer(kafka_bootstrap, {**SETTINGS, "compression.type": "none"})
    keys, values = _batch(0, 50)
    values[20] = b"x" * 200_000  # above the topic's max.message.bytes: the broker refuses it
    producer.send_many(topic, keys, values)
    producer.mark(PgPosition(Lsn(1)))
    with pytest.raises(DeliveryError, match="did not accept a record"):
        producer.flush(timeout=120)
    # The position after the batch never became durable, though its other records
    # may have been acknowledged.
    assert producer.durable is None
    with pytest.raises(DeliveryError):
        producer.send_many(topic, *_batch(50, 1))


def test_a_steady_stream_of_batches_makes_progress_durable_without_a_flush(
        kafka_bootstrap: str, topic: str) -> None:
    # The snapshot producer is never empty right after a batch: its batches still settle
    # (a drain at least every BULK_SETTLE_INTERVAL_S), so a snapshot's progress is saved.
    producer = EventProducer(kafka_bootstrap, SETTINGS)
    producer.send_many(topic, *_batch(0, 100))
    first = PgPosition(Lsn(1))
    producer.mark(first)
    deadline = time.monotonic() + 60
    b = 1
    while producer.durable is None:
        assert time.monotonic() < deadline, "the batches never settled"
        producer.send_many(topic, *_batch(b * 10, 10))
        producer.mark(PgPosition(Lsn(b + 1)))
        b += 1
    assert _count(kafka_bootstrap, topic) >= 100
    producer.flush(timeout=120)
    assert producer.durable == PgPosition(Lsn(b))


def test_single_records_between_batches_keep_their_place_in_the_partition(
        kafka_bootstrap: str, topic: str) -> None:
    # A snapshot reader yields a chunk's last row on its own between the batches: it
    # must not overtake them (a sink skips a record older than the last it applied).
    producer = EventProducer(kafka_bootstrap, SETTINGS)
    seq = 0
    for b in range(30):
        keys: list[bytes | None] = [b"k%d" % (seq + i) for i in range(49)]
        producer.send_many(topic, keys, [b"%d" % (seq + i) for i in range(49)])
        producer.send(topic, b"k%d" % (seq + 49), b"%d" % (seq + 49),
                      position=PgPosition(Lsn(b + 1)), boundary=True)
        seq += 50
    producer.flush(timeout=120)
    assert producer.durable == PgPosition(Lsn(30))
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"{topic}-order"})
    try:
        total = 0
        for p in range(3):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            consumer.assign([TopicPartition(topic, p, low)])
            last, seen = -1, low
            while seen < high:
                msg = consumer.poll(10)
                assert msg is not None and msg.error() is None
                value = int(msg.value() or b"")
                assert value > last, f"partition {p}: {value} after {last}"
                last, seen, total = value, (msg.offset() or 0) + 1, total + 1
        assert total == seq
    finally:
        consumer.close()


def _read_all(bootstrap: str, topic: str) -> dict[int, list[tuple[bytes | None, bytes]]]:
    """Each partition's records, in order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-read"})
    out: dict[int, list[tuple[bytes | None, bytes]]] = {}
    try:
        for p in range(3):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            consumer.assign([TopicPartition(topic, p, low)])
            out[p] = []
            seen = low
            while seen < high:
                msg = consumer.poll(10)
                assert msg is not None and msg.error() is None
                out[p].append((msg.key(), msg.value() or b""))
                seen = (msg.offset() or 0) + 1
    finally:
        consumer.close()
    return out


def test_runs_of_inserts_are_durable_at_their_last_record_only(
        kafka_bootstrap: str, topic: str) -> None:
    # send_run (a stream's run of inserts, cdc.spi.StreamRows): one token per record as
    # send() gives, the position on the last only; a small in-flight bound waits inside
    # a run. A run without keys (no primary key) stays in partition 0.
    producer = EventProducer(kafka_bootstrap, SETTINGS, max_in_flight=40)
    seq = 0
    for r in range(1, 11):
        n = 3 * r
        keys: list[bytes | None] = [b"k%d" % (seq + i) for i in range(n)]
        producer.send_run(topic, keys, [b"%d" % (seq + i) for i in range(n)],
                          position=PgPosition(Lsn(r)), boundary=r % 2 == 0)
        assert producer.tracker.in_flight <= 40 + 1
        durable = producer.durable
        assert durable is None or durable.lsn.value % 2 == 0  # type: ignore[attr-defined]
        seq += n
    producer.send_run(topic, [None, None], [b"n1", b"n2"], position=PgPosition(Lsn(11)),
                      boundary=True)
    producer.flush(timeout=120)
    assert producer.durable == PgPosition(Lsn(11))
    assert producer.tracker.in_flight == 0
    parts = _read_all(kafka_bootstrap, topic)
    assert sum(len(v) for v in parts.values()) == seq + 2
    assert [v for k, v in parts[0] if k is None] == [b"n1", b"n2"]
    for records in parts.values():
        values = [int(v) for k, v in records if k is not None]
        assert values == sorted(values)
        assert all(k == b"k%d" % int(v) for k, v in records if k is not None)
