"""The MySQL/MariaDB batched snapshot (SnapshotRows) against the per-row one: the same records.

As for PostgreSQL (tests/integration/postgres/test_pg_snapshot_batches.py): the
batched reader yields, row for row, the events the per-row reader yields (a keyed
table of several types with NULLs and edge values, a keyless table read in one
query, chunks of one row and of several, a resume), and ``encode_rows`` of each
batch writes exactly what encoding its rows' events writes. Two snapshots are
two consistent reads, so the comparison leaves out their binlog point and read
times, the only fields that may differ between them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cdc.events import ChangeEvent
from cdc.serde import AvroSerde, InMemorySchemaRegistry
from cdc.spi import SnapshotChunk, SnapshotResume, SnapshotRows
from connectors.mysql.position import MySqlPosition
from connectors.mysql.source import MySqlSource

pytestmark = pytest.mark.integration


def _fill(sql: Callable[..., Any], t: str) -> list[str]:
    sql(f"CREATE TABLE {t}_k (id BIGINT PRIMARY KEY, i INT, d DECIMAL(12,3), dt DATETIME(6), "
        "da DATE, f DOUBLE, b TINYINT(1), s VARCHAR(40), j JSON, bl VARBINARY(8)) "
        "DEFAULT CHARSET=utf8mb4")
    sql(f"INSERT INTO {t}_k SELECT seq, IF(seq % 4 = 0, NULL, CAST(seq AS SIGNED) - 5), seq / 7, "
        "TIMESTAMP '2024-02-29 23:59:59.999999' - INTERVAL seq SECOND, "
        "IF(seq % 5 = 0, NULL, DATE '1970-01-01' + INTERVAL seq DAY), seq * 1.5e300, seq % 2, "
        "CONCAT('tab\\there ', seq, ' é'), JSON_OBJECT('n', seq), UNHEX('00FF') "
        "FROM seq_1_to_23")
    sql(f"INSERT INTO {t}_k VALUES (9223372036854775807, -2147483648, -999999999.999, "
        "'9999-12-31 23:59:59.999999', '1000-01-01', -0.0, 0, '', NULL, '')")
    sql(f"CREATE TABLE {t}_n (a INT, b VARCHAR(10)) DEFAULT CHARSET=utf8mb4")
    sql(f"INSERT INTO {t}_n SELECT seq % 3, IF(seq % 2 = 0, NULL, 'x') FROM seq_1_to_7")
    sql(f"CREATE TABLE {t}_o (id INT PRIMARY KEY)")
    sql(f"INSERT INTO {t}_o VALUES (1)")
    return [f"cdc_source.{t}_k", f"cdc_source.{t}_n", f"cdc_source.{t}_o"]


def _items(src: MySqlSource, batched: bool, resume: SnapshotResume | None = None) -> list[Any]:
    return _run(src, batched, resume)[1]


def _run(src: MySqlSource, batched: bool,
         resume: SnapshotResume | None = None) -> tuple[Any, list[Any]]:
    if batched:
        src.batch_snapshot()
    start, items = src.resumable_snapshot(resume)
    return start, list(items)


def _expand(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if type(item) is SnapshotRows:
            out += [item.event(i) for i in range(len(item))]
        else:
            out.append(item)
    return out


def _shape(e: ChangeEvent) -> tuple[Any, ...]:
    p = e.position
    assert isinstance(p, MySqlPosition)
    return (e.op, e.table, e.key, e.before, e.after, p.index, p.snapshot, p.last_in_tx,
            e.source.snapshot, e.source.name, e.source.db_version, e.schema)


@pytest.mark.parametrize("chunk_size", [1, 3, 10])
def test_batched_snapshot_gives_the_per_row_records(
    sql: Callable[..., Any], make_source: Callable[..., MySqlSource], unique_name: str,
    chunk_size: int,
) -> None:
    include = _fill(sql, unique_name)
    per_row = _items(make_source(include=include, chunk_size=chunk_size), False)
    batched = _items(make_source(include=include, chunk_size=chunk_size), True)

    assert all(type(i) in (ChangeEvent, SnapshotChunk) for i in per_row)
    batches = [i for i in batched if type(i) is SnapshotRows]
    if chunk_size > 1:
        assert batches, "chunks of several rows come as batches"
        assert any(b.keys[0] is None for b in batches), "the keyless table is batched too"
    else:
        assert not batches, "a chunk of one row is its held-back last row"
    expanded = _expand(batched)
    assert sum(type(i) is ChangeEvent for i in expanded) == 24 + 7 + 1
    assert len(expanded) == len(per_row)
    for a, b in zip(per_row, expanded, strict=True):
        if type(a) is SnapshotChunk:
            assert b == a
        else:
            assert type(b) is ChangeEvent and repr(_shape(a)) == repr(_shape(b))

    serde = AvroSerde(InMemorySchemaRegistry())
    for batch in batches:
        want = [serde.encode(batch.event(i)) for i in range(len(batch))]
        topic, keys, values = serde.encode_rows(batch)
        assert [topic] * len(want) == [w.topic for w in want]
        assert keys == [w.key for w in want]
        assert values == [w.value for w in want]


def test_a_resumed_batched_snapshot_gives_the_per_row_records(
    sql: Callable[..., Any], make_source: Callable[..., MySqlSource], unique_name: str,
) -> None:
    include = _fill(sql, unique_name)[:1]
    start, first = _run(make_source(include=include, chunk_size=5), False)
    mark = [i for i in first if type(i) is SnapshotChunk][1]
    resume = SnapshotResume(start, (), mark.table, mark.after, 10, 1)
    per_row = _items(make_source(include=include, chunk_size=5), False, resume)
    batched = _expand(_items(make_source(include=include, chunk_size=5), True, resume))
    assert [repr(_shape(e)) if type(e) is ChangeEvent else e for e in per_row] == \
        [repr(_shape(e)) if type(e) is ChangeEvent else e for e in batched]
    assert sum(type(e) is ChangeEvent for e in batched) == 24 - 10
