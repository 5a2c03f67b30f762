"""Partitioners match Kafka's, and keys re-encode to the producer's bytes."""

from __future__ import annotations

import pytest

from cdc.errors import SchemaError
from cdc.events import ChangeEvent, Column, ColumnType, Kind, Op, SourceInfo, TableId, TableSchema
from cdc.serde import AvroSerde, InMemorySchemaRegistry
from cdc.sink.partitioning import KeySample, crc32_partition, learn, murmur2, murmur2_partition
from connectors.postgres.position import Lsn, PgPosition


@pytest.mark.parametrize(("text", "expected"), [
    ("21", -973932308),
    ("foobar", -790332482),
    ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    ("abc", 479470107),
])
def test_murmur2_matches_kafka_test_vectors(text: str, expected: int) -> None:
    assert murmur2(text.encode()) == expected


def _keys(n: int) -> tuple[AvroSerde, InMemorySchemaRegistry, list[tuple[bytes, dict[str, object]]]]:
    ts = TableSchema(TableId("db", "public", "t"), (
        Column("id", ColumnType(Kind.INT64, "bigint"), False),
        Column("k", ColumnType(Kind.STRING, "text"), False),
        Column("v", ColumnType(Kind.STRING, "text")),
    ), ("id", "k"))
    reg = InMemorySchemaRegistry()
    serde = AvroSerde(reg)
    out = []
    for i in range(n):
        src = SourceInfo("postgresql", "pg", "1", "18", PgPosition(Lsn(100 + i)), 0)
        ev = ChangeEvent(Op.CREATE, ts, {"id": i, "k": f"k{i}"}, None,
                         {"id": i, "k": f"k{i}", "v": "x"}, src, 0)
        key = serde.encode(ev).key
        assert key is not None
        out.append((key, {"id": i, "k": f"k{i}"}))
    return serde, reg, out


@pytest.mark.parametrize("partitioner", [crc32_partition, murmur2_partition])
def test_learn_finds_the_partitioner_and_reencodes_keys(partitioner: object) -> None:
    _, reg, keys = _keys(8)
    samples = [KeySample(k, partitioner(k, 6), row) for k, row in keys]  # type: ignore[operator]
    codec, found = learn(samples, 6, reg)
    assert found is partitioner
    for k, row in keys:
        assert codec.encode(row) == k


def test_learn_refuses_an_unknown_partitioner() -> None:
    _, reg, keys = _keys(8)
    samples = [KeySample(k, i % 5, row) for i, (k, row) in enumerate(keys)]
    with pytest.raises(SchemaError, match="another partitioner"):
        learn(samples, 5, reg)
