"""The downstream backlog that paces incremental snapshots, read from a real broker.

A group counts only when it is stable, assigned the topic and has committed on
it (as cdc sinks do after each applied batch); a group that reads without
committing is left out, so it cannot stall a snapshot.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as KafkaPartition

from cdc.transport.backlog import ConsumerBacklog
from cdc.transport.topics import TopicManager, TopicSpec

pytestmark = pytest.mark.integration


def _consumer(bootstrap: str, group: str, topic: str) -> Consumer:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    return c


def test_backlog_of_committing_groups_only(kafka_bootstrap: str, unique_name: str) -> None:
    topic = f"{unique_name}.backlog"
    TopicManager(kafka_bootstrap).ensure([topic], TopicSpec(partitions=2))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):
        producer.produce(topic, str(i).encode(), str(i).encode(), partition=i % 2)
    assert producer.flush(30) == 0
    backlog = ConsumerBacklog(kafka_bootstrap)
    assert backlog.behind(topic) == {}  # nobody consumes it
    sink = _consumer(kafka_bootstrap, f"{unique_name}-sink", topic)
    reader = _consumer(kafka_bootstrap, f"{unique_name}-reader", topic)  # never commits
    try:
        got: list[object] = []
        deadline = time.monotonic() + 60
        while len(got) < 4 and time.monotonic() < deadline:
            for c in (sink, reader):
                msg = c.poll(0.2)
                if c is sink and msg is not None and msg.error() is None:
                    got.append(msg)
        assert len(got) >= 4
        sink.commit(offsets=[KafkaPartition(topic, p, 2) for p in (0, 1)], asynchronous=False)
        seen: dict[str, int] = {}
        while time.monotonic() < deadline:  # until both groups are stable with assignments
            reader.poll(0.1)
            sink.poll(0.1)
            seen = backlog.behind(topic)
            if seen:
                break
        assert seen == {f"{unique_name}-sink": 6}  # 10 produced, 2 + 2 committed
    finally:
        sink.close()
        reader.close()
