"""The PostgreSQL source's resumable snapshot: chunk marks, reading the rest after a key in
a new exported snapshot, and a fresh snapshot when a captured table has no key."""

from __future__ import annotations

import pytest

from cdc.events import ChangeEvent
from cdc.spi import SnapshotChunk, SnapshotResume
from connectors.postgres.position import PgPosition
from connectors.postgres.source.snapshot import ATTEMPT_SHIFT
from tests.integration.postgres.conftest import PgEnv

pytestmark = pytest.mark.integration


def test_marks_follow_each_chunk_and_a_resume_reads_the_rest(pg: PgEnv) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    pg.sql(f"INSERT INTO {t} SELECT g, 'v' || g FROM generate_series(1, 95) g")
    src = pg.source(snapshot={"chunk_size": 20})
    try:
        start, items = src.resumable_snapshot(None)
        got = list(items)
    finally:
        src.close()
    assert isinstance(start, PgPosition)
    marks = [i for i in got if isinstance(i, SnapshotChunk)]
    assert [m.after for m in marks] == [("20",), ("40",), ("60",), ("80",), ("95",), None]
    assert marks[-1].done and marks[-1].table == f"public.{t}"
    # Each mark comes right after the last row of its chunk.
    for n, item in enumerate(got):
        if isinstance(item, SnapshotChunk) and item.after is not None:
            row = got[n - 1]
            assert isinstance(row, ChangeEvent) and row.after is not None
            assert str(row.after["id"]) == item.after[0]

    pg.sql(f"DELETE FROM {t} WHERE id IN (41, 90)")
    pg.sql(f"INSERT INTO {t} VALUES (96, 'new')")
    resume = SnapshotResume(start, (), f"public.{t}", ("40",), 40, 1)
    src = pg.source(snapshot={"chunk_size": 20})
    try:
        again, items = src.resumable_snapshot(resume)
        rows = [i for i in items if isinstance(i, ChangeEvent)]
    finally:
        src.close()
    assert again == start  # the stream starts at the first attempt's point
    assert [r.after["id"] for r in rows if r.after] == [i for i in range(42, 97) if i != 90]
    positions = [r.position for r in rows]
    assert all(isinstance(p, PgPosition) and p.lsn == start.lsn and p.snapshot
               for p in positions)
    assert [p.index for p in positions] == [(1 << ATTEMPT_SHIFT) + i for i in range(len(rows))]  # type: ignore[attr-defined]
    assert positions[-1].last_in_tx and rows[-1].source.snapshot == "last"


def test_a_captured_table_without_a_key_takes_a_fresh_snapshot(pg: PgEnv) -> None:
    keyed = pg.table("CREATE TABLE {t} (id int PRIMARY KEY)", f"{pg.name}_a")
    keyless = pg.table("CREATE TABLE {t} (v int)", f"{pg.name}_b")
    pg.sql(f"ALTER TABLE {keyless} REPLICA IDENTITY FULL")
    pg.sql(f"INSERT INTO {keyed} SELECT generate_series(1, 10)")
    pg.sql(f"INSERT INTO {keyless} SELECT generate_series(1, 10)")
    src = pg.source(snapshot={"chunk_size": 4})
    try:
        start, items = src.resumable_snapshot(None)
        list(items)
    finally:
        src.close()
    pg.sql(f"INSERT INTO {keyed} VALUES (11)")
    src = pg.source(snapshot={"chunk_size": 4})
    try:
        again, items = src.resumable_snapshot(
            SnapshotResume(start, (), f"public.{keyed}", ("4",), 4, 1))
        rows = [i for i in items if isinstance(i, ChangeEvent)]
    finally:
        src.close()
    assert again != start and isinstance(again, PgPosition) and again.lsn > start.lsn
    assert len(rows) == 21  # everything, at the new point
    assert rows[0].position.index == 0  # type: ignore[attr-defined]
