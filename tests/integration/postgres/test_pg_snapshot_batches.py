"""The batched snapshot (SnapshotRows) against the per-row one: the same records.

Two proofs that together say "byte for byte the same Kafka keys and values":
the batched reader yields, row for row, the events the per-row reader yields
(the typed table of every type family with its edge values, a keyless table,
chunks of one row and of several), and within a batch ``encode_rows`` writes
exactly what encoding each row's event writes. The two snapshots are taken at
different consistent points, so the first comparison leaves out the point and
the read time, the only fields that differ between runs.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from cdc.errors import SerializationError
from cdc.events import ChangeEvent
from cdc.serde import AvroSerde, InMemorySchemaRegistry
from cdc.spi import SnapshotChunk, SnapshotRows
from connectors.postgres.position import PgPosition
from tests.fixtures.pgoutput import typed_table
from tests.integration.postgres.conftest import PgEnv

pytestmark = pytest.mark.integration


def _fill(pg: PgEnv) -> str:
    schema = f"{pg.name}_s"
    pg.sql(f'CREATE SCHEMA "{schema}"')
    pg.schemas.append(schema)
    pg.sql(f'SET search_path = "{schema}"')
    pg.sql(typed_table.SETUP_SQL)
    pg.sql(typed_table.create_table_sql())
    for stmt in typed_table.insert_sql():
        pg.sql(stmt)
    # More typed rows than a chunk holds: copies of the three with new keys.
    pg.sql("INSERT INTO typed SELECT id + 10 * g, "
           + ", ".join(c.name for c in typed_table.COLUMNS)
           + " FROM typed, generate_series(1, 9) g")
    # Most copies of row 3 without its two values the encoder refuses (NaN in a
    # decimal(p,s), a timestamp past the long range), so most batches encode.
    pg.sql("UPDATE typed SET c_numeric = NULL, c_ts = NULL WHERE id % 10 = 3 AND id > 30")
    pg.sql("CREATE TABLE nokey (a int, b text, c numeric)")
    pg.sql("ALTER TABLE nokey REPLICA IDENTITY FULL")
    pg.sql("INSERT INTO nokey SELECT g % 3, CASE WHEN g % 2 = 0 THEN NULL ELSE "
           "E'tab\\there\\nline \\\\ back' END, 'NaN' FROM generate_series(1, 7) g")
    pg.sql("CREATE TABLE one (id bigint PRIMARY KEY, t timestamptz)")
    pg.sql("INSERT INTO one VALUES (9223372036854775807, 'infinity')")
    pg.sql("SET search_path = public")
    return schema


def _shape(e: ChangeEvent) -> tuple[Any, ...]:
    p = e.position
    assert isinstance(p, PgPosition)
    return (e.op, e.table, e.key, e.before, e.after, p.index, p.snapshot, p.last_in_tx,
            e.source.snapshot, e.source.name, e.source.db_version)


def _expand(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if type(item) is SnapshotRows:
            out += [item.event(i) for i in range(len(item))]
        else:
            out.append(item)
    return out


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
def test_batched_snapshot_gives_the_per_row_records(pg: PgEnv, chunk_size: int) -> None:
    schema = _fill(pg)
    config = {"tables": {"include": [f"{schema}.*"]}, "snapshot": {"chunk_size": chunk_size}}
    plain = pg.source(**config)
    _, items = plain.resumable_snapshot(None)
    per_row = list(items)
    plain.close()
    batched_src = pg.source(**config)
    batched_src.batch_snapshot()
    _, items = batched_src.resumable_snapshot(None)
    batched = list(items)
    batched_src.close()

    assert all(type(i) in (ChangeEvent, SnapshotChunk) for i in per_row)
    batches = [i for i in batched if type(i) is SnapshotRows]
    if chunk_size > 1:
        assert batches, "chunks of several rows come as batches"
    else:
        assert not batches, "a chunk of one row is its held-back last row"
    expanded = _expand(batched)
    assert len(expanded) == len(per_row) == 3 * 10 + 7 + 1 + sum(
        type(i) is SnapshotChunk for i in per_row)
    for a, b in zip(per_row, expanded, strict=True):
        if type(a) is SnapshotChunk:
            assert b == a
        else:
            assert type(b) is ChangeEvent and repr(_shape(a)) == repr(_shape(b))  # NaN != NaN
            assert a.schema == b.schema and a.ts_ms == a.source.ts_ms

    serde = AvroSerde(InMemorySchemaRegistry())
    encoded = refused = 0
    for batch in batches:
        events = [batch.event(i) for i in range(len(batch))]
        try:
            want = [serde.encode(e) for e in events]
        except SerializationError as e:
            # Edge values the encoder refuses (NaN in a decimal(p,s), a timestamp past
            # the long range): the batch is refused with the same error.
            with pytest.raises(SerializationError, match=re.escape(str(e))):
                serde.encode_rows(batch)
            refused += 1
            continue
        topic, keys, values = serde.encode_rows(batch)
        assert [topic] * len(events) == [w.topic for w in want]
        assert keys == [w.key for w in want]
        assert values == [w.value for w in want]
        encoded += len(events)
    if chunk_size > 1:
        assert encoded >= 10 and refused


def test_reading_ahead_gives_the_same_items_and_stops_with_its_reader(
    pg: PgEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk read ahead by a thread (snapshot.PREFETCH_CHUNKS) changes nothing in
    what the runner gets, and a snapshot abandoned mid-table leaves no reader behind."""
    import threading

    from connectors.postgres.source import snapshot

    schema = _fill(pg)
    config = {"tables": {"include": [f"{schema}.*"]}, "snapshot": {"chunk_size": 3}}
    got = []
    for depth in (0, 1, 2):
        monkeypatch.setattr(snapshot, "PREFETCH_CHUNKS", depth)
        src = pg.source(**config)
        src.batch_snapshot()
        _, items = src.resumable_snapshot(None)
        got.append(_expand(list(items)))
        src.close()
    for other in got[1:]:
        assert len(other) == len(got[0])
        for a, b in zip(got[0], other, strict=True):
            if type(a) is SnapshotChunk:
                assert b == a
            else:
                assert repr(_shape(a)) == repr(_shape(b))

    monkeypatch.setattr(snapshot, "PREFETCH_CHUNKS", 1)
    src = pg.source(**config)
    src.batch_snapshot()
    _, items = src.resumable_snapshot(None)
    first = next(i for i in items if type(i) is SnapshotRows)
    assert len(first)
    items.close()  # type: ignore[attr-defined]  # the runner stopping mid-snapshot
    assert not [t for t in threading.enumerate() if t.name.endswith("-snapshot-read")]
    src.close()
