"""The Avro serde against the real schema registry (Apicurio ccompat) and Kafka.

Each property example is encoded with schemas registered in the real
registry, produced to Kafka, consumed back and decoded with schemas fetched
from the registry by id (by a second serde with cold caches), and must equal
what went in. Examples have unrelated random tables, so each gets its own
subject (a unique topic name from the serde's topic naming) to keep BACKWARD
checks between unrelated schemas out of the way; the bytes all travel through
one physical test topic, since decoding needs only the schema ids.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from hypothesis import HealthCheck, given, settings

from cdc.errors import SchemaError, UnreachableError
from cdc.events import ChangeEvent, Column, ColumnType, Kind, TableId, TableSchema
from cdc.serde import AvroSerde, RegistryClient
from cdc.serde.decode import DecodedChange
from tests.unit.serde.strategies import change_events
from tests.unit.serde.test_codec_errors import event, orders, row
from tests.unit.serde.test_codec_roundtrip import assert_same_change

pytestmark = pytest.mark.integration


class _Pipe:
    """A single-partition topic with a producer and an assigned consumer."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[
            topic
        ].result(timeout=30)
        self.topic = topic
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0}
        )
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": topic,
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        self.consumer.assign([TopicPartition(topic, 0, 0)])

    def send(self, key: bytes | None, value: bytes | None) -> None:
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: object) -> None:
            if err is not None:
                errors.append(err)

        self.producer.produce(self.topic, key=key, value=value, on_delivery=delivered)
        assert self.producer.flush(30) == 0
        assert not errors, errors

    def receive(self) -> tuple[bytes | None, bytes | None]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise AssertionError(msg.error())
            return msg.key(), msg.value()
        raise AssertionError(f"nothing arrived on {self.topic} within 30s")

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture()
def pipe(kafka_bootstrap: str, unique_name: str) -> Iterator[_Pipe]:
    p = _Pipe(kafka_bootstrap, unique_name)
    try:
        yield p
    finally:
        p.close()


def test_every_kind_through_kafka_and_the_registry(
    pipe: _Pipe, schema_registry_url: str, unique_name: str
) -> None:
    counter = itertools.count()
    current: list[str] = [""]

    def naming(prefix: str, table: TableId) -> str:
        return current[0]

    registry = RegistryClient(schema_registry_url)

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(change_events())
    def round_trip(ev: ChangeEvent) -> None:
        current[0] = f"{unique_name}.ex{next(counter)}"
        producer_side = AvroSerde(registry, naming)  # its cache would reuse a table's topic
        encoded = producer_side.encode(ev)
        assert encoded.topic == current[0]
        pipe.send(encoded.key, encoded.value)
        key, value = pipe.receive()
        consumer_side = AvroSerde(RegistryClient(schema_registry_url))  # cold caches
        decoded = consumer_side.decode(key, value)
        assert isinstance(decoded, DecodedChange)
        assert_same_change(ev, decoded)

    round_trip()


def test_subjects_follow_the_topic_name_strategy(
    schema_registry_url: str, unique_name: str
) -> None:
    client = RegistryClient(schema_registry_url)
    src = replace(event().source, name=unique_name)
    serde = AvroSerde(client)
    out = serde.encode(event(source=src))
    assert out.topic == f"{unique_name}.public.orders"
    # Look the subjects up one by one: Apicurio's /subjects lists at most 1000.
    for subject in (f"{out.topic}-key", f"{out.topic}-value"):
        registered = client.latest(subject)
        assert registered is not None, subject
        assert registered.version == 1


def test_adding_a_nullable_column_registers_a_new_version(
    pipe: _Pipe, schema_registry_url: str, unique_name: str
) -> None:
    client = RegistryClient(schema_registry_url)
    serde = AvroSerde(client)
    src = replace(event().source, name=unique_name)
    v1 = serde.encode(event(source=src))
    subject = f"{v1.topic}-value"
    first = client.latest(subject)
    assert first is not None

    grown = TableSchema(
        orders().table, (*orders().columns, Column("extra", ColumnType(Kind.INT32))), ("id",)
    )
    v2 = serde.encode(event(row(extra=42), schema=grown, source=src))
    second = client.latest(subject)
    assert second is not None
    assert second.version == first.version + 1 and second.schema_id != first.schema_id

    for key, value in ((v1.key, v1.value), (v2.key, v2.value)):
        pipe.send(key, value)
    reader = AvroSerde(RegistryClient(schema_registry_url))
    old, new = (reader.decode(*pipe.receive()) for _ in range(2))
    assert isinstance(old, DecodedChange) and isinstance(new, DecodedChange)
    assert old.after == row()
    assert new.after == row(extra=42)
    assert [c.name for c in new.schema.columns][-1] == "extra"


def test_incompatible_change_is_a_schema_error_naming_the_field(
    schema_registry_url: str, unique_name: str
) -> None:
    serde = AvroSerde(RegistryClient(schema_registry_url))
    src = replace(event().source, name=unique_name)
    serde.encode(event(source=src))
    cols = list(orders().columns)
    cols[1] = Column("qty", ColumnType(Kind.STRING, "text"), nullable=False)  # int -> string
    changed = TableSchema(orders().table, tuple(cols), ("id",))
    with pytest.raises(SchemaError) as e:
        serde.encode(event(row(qty="two"), schema=changed, source=src))
    message = str(e.value)
    assert f"{unique_name}.public.orders-value" in message
    assert "qty" in message and "int is now string" in message


def test_unreachable_registry_fails_within_the_deadline() -> None:
    url = "http://127.0.0.1:9/apis/ccompat/v7"  # discard port: nothing listens
    serde = AvroSerde(RegistryClient(url))  # default deadline: 10 s
    start = time.monotonic()
    with pytest.raises(UnreachableError) as e:
        serde.encode(event())
    elapsed = time.monotonic() - start
    assert elapsed < 12, elapsed
    assert url in str(e.value)
