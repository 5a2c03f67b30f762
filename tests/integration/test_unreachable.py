"""An unreachable broker is a clear error, naming the address, within a bounded time."""

from __future__ import annotations

import time

import pytest

from cdc.errors import UnreachableError
from cdc.offsets.store import OffsetStore
from cdc.transport.producer import EventProducer
from cdc.transport.topics import TopicManager
from connectors.postgres.position import Lsn, PgPosition

DEAD = "127.0.0.1:1"


def test_topic_manager_names_the_broker() -> None:
    t0 = time.monotonic()
    with pytest.raises(UnreachableError, match=r"Kafka at 127\.0\.0\.1:1 did not answer"):
        TopicManager(DEAD, timeout_s=3).existing()
    assert time.monotonic() - t0 < 10


def test_offset_store_fails_fast_without_a_broker() -> None:
    t0 = time.monotonic()
    with pytest.raises(UnreachableError, match=r"127\.0\.0\.1:1"):
        OffsetStore(DEAD, "cdc.offsets", timeout_s=3)
    assert time.monotonic() - t0 < 10


def test_producer_flush_reports_unacknowledged_records() -> None:
    producer = EventProducer(DEAD, {"message.timeout.ms": 60_000})
    producer.send("t", b"k", b"v", position=PgPosition(Lsn(1)), boundary=True)
    t0 = time.monotonic()
    with pytest.raises(UnreachableError, match=r"1 records not acknowledged by Kafka at 127\.0\.0\.1:1"):
        producer.flush(timeout=3)
    assert time.monotonic() - t0 < 10
    assert producer.durable is None  # nothing was checkpointable
