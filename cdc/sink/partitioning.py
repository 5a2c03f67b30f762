"""Which partition a key lands on, so a truncate can be applied per partition.

A source sends a TRUNCATE to every partition of the table's topic, in order
with that partition's rows. With one partition the sink simply empties the
table. With more, each partition's truncate may only remove the rows *that
partition* carries, or it would also remove rows another partition inserted
after the truncate and that another worker (or a later batch) already
applied. So the sink re-encodes each replica row's key exactly as the
producer did (Confluent framing + Avro with the key schema) and deletes the
rows whose key maps to the truncated partition under the producer's
partitioner:

* librdkafka's default ``consistent_random``: ``crc32(key) % partitions``
  (what cdc's own producer uses);
* Java's / ``murmur2_random``: ``(murmur2(key) & 0x7fffffff) % partitions``
  (Debezium on Kafka Connect).

The partitioner and the key encoding are checked against a record actually
consumed from the topic (:meth:`KeySample`) before they are trusted.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdc.errors import SchemaError
from cdc.serde import SchemaRegistry, WriterSchema, frame_prefix, unframe
from cdc.serde.encode import RowEncoder
from cdc.serde.envelope import FieldSpec
from cdc.serde.rowdecode import KeyReader
from cdc.serde.types import avro_type

Partitioner = Callable[[bytes, int], int]


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka ``consistent``/``consistent_random`` for a non-null key."""
    return zlib.crc32(key) % partitions


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (seed 0x9747b28c), as a signed 32-bit int like Java's."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[i * 4 : i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length & 3
    tail = n4 * 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2_partition(key: bytes, partitions: int) -> int:
    """Java's default partitioner / librdkafka ``murmur2_random`` for a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


PARTITIONERS: Mapping[str, Partitioner] = {
    "consistent_random": crc32_partition,
    "murmur2_random": murmur2_partition,
}


@dataclass(frozen=True, slots=True)
class KeySample:
    """A keyed record consumed from a topic: its key bytes, partition and decoded key."""

    key: bytes
    partition: int
    row: Mapping[str, Any]


class KeyCodec:
    """Re-encodes canonical key rows into the framed bytes a producer wrote."""

    def __init__(self, schema_id: int, writer: WriterSchema) -> None:
        reader = KeyReader(writer)
        fields = writer.schema.get("fields", []) if isinstance(writer.schema, dict) else []
        names = [str(f["name"]) for f in fields]
        self.columns = reader.rows.columns
        specs = [
            FieldSpec(column, name, avro_type(column.type))
            for column, name in zip(self.columns, names, strict=True)
        ]
        self._encoder = RowEncoder(specs, f"key schema {schema_id}")
        self._prefix = frame_prefix(schema_id)

    def encode(self, row: Mapping[str, Any]) -> bytes:
        return self._prefix + self._encoder.encode(row)


def key_codec(registry: SchemaRegistry, schema_id: int) -> KeyCodec:
    return KeyCodec(schema_id, WriterSchema.parse(registry.get_schema(schema_id)))


def learn(
    samples: Sequence[KeySample], partitions: int, registry: SchemaRegistry
) -> tuple[KeyCodec, Partitioner]:
    """The key codec and partitioner that reproduce consumed ``samples`` exactly.

    SchemaError when none does: then per-partition truncates cannot be
    applied safely, and the error says so instead of deleting wrong rows.
    """
    if not samples:
        raise SchemaError("no consumed key to learn the topic's key encoding from")
    schema_id, _ = unframe(samples[-1].key)
    codec = key_codec(registry, schema_id)
    same = [s for s in samples if unframe(s.key)[0] == schema_id]
    for s in same:
        if codec.encode(s.row) != s.key:
            raise SchemaError(
                f"re-encoding a consumed key with schema id {schema_id} does not give the "
                "producer's bytes, so the partition of replica rows cannot be computed for a "
                "per-partition truncate",
                hint="use one partition for topics whose tables are truncated, or produce keys "
                "with cdc's serializer",
            )
    for partitioner in PARTITIONERS.values():
        if all(partitioner(s.key, partitions) == s.partition for s in same):
            return codec, partitioner
    raise SchemaError(
        f"neither crc32 (librdkafka) nor murmur2 (Java) maps the consumed keys to their "
        f"partitions (of {partitions}): the producer used another partitioner",
        hint="use one partition for topics whose tables are truncated",
    )
