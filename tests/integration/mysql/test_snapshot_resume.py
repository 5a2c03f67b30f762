"""The MySQL/MariaDB source's resumable snapshot: chunk marks, reading the rest after a key
in a new consistent read positioned at the first one, and a fresh snapshot when a captured
table is not read in key order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cdc.events import ChangeEvent
from cdc.spi import SnapshotChunk, SnapshotResume
from connectors.mysql.position import MySqlPosition
from connectors.mysql.source import MySqlSource
from connectors.mysql.source.snapshot import ATTEMPT_SHIFT

pytestmark = pytest.mark.integration


def test_marks_follow_each_chunk_and_a_resume_reads_the_rest(
    sql: Callable[..., Any], make_source: Callable[..., MySqlSource], unique_name: str,
) -> None:
    t = unique_name
    sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(20))")
    sql(f"INSERT INTO {t} SELECT seq, CONCAT('v', seq) FROM seq_1_to_95")
    start, items = make_source(include=[f"cdc_source.{t}"], chunk_size=20).resumable_snapshot(None)
    got = list(items)
    assert isinstance(start, MySqlPosition)
    marks = [i for i in got if isinstance(i, SnapshotChunk)]
    assert [m.after and [int(v) for v in m.after] for m in marks] == [[20], [40], [60], [80],
                                                                       [95], None]
    assert marks[-1].done and marks[-1].table == f"cdc_source.{t}"

    sql(f"DELETE FROM {t} WHERE id IN (41, 90)")
    sql(f"INSERT INTO {t} VALUES (96, 'new')")
    after = marks[1].after
    resume = SnapshotResume(start, (), f"cdc_source.{t}", after, 40, 1)
    again, items = make_source(include=[f"cdc_source.{t}"], chunk_size=20).resumable_snapshot(
        resume)
    rows = [i for i in items if isinstance(i, ChangeEvent)]
    assert again == start
    assert [r.after["id"] for r in rows if r.after] == [i for i in range(42, 97) if i != 90]
    positions = [r.position for r in rows]
    assert all(isinstance(p, MySqlPosition) and (p.file, p.pos) == (start.file, start.pos)
               for p in positions)
    assert all(p.index > 1 << ATTEMPT_SHIFT for p in positions)  # type: ignore[attr-defined]
    assert positions[-1].last_in_tx


def test_a_table_not_read_in_key_order_takes_a_fresh_snapshot(
    sql: Callable[..., Any], make_source: Callable[..., MySqlSource], unique_name: str,
) -> None:
    t = unique_name
    sql(f"CREATE TABLE {t}_a (id INT PRIMARY KEY)")
    sql(f"CREATE TABLE {t}_b (v INT)")
    sql(f"INSERT INTO {t}_a SELECT seq FROM seq_1_to_10")
    sql(f"INSERT INTO {t}_b SELECT seq FROM seq_1_to_10")
    include = [f"cdc_source.{t}_a", f"cdc_source.{t}_b"]
    start, items = make_source(include=include, chunk_size=4).resumable_snapshot(None)
    list(items)
    sql(f"INSERT INTO {t}_a VALUES (11)")
    again, items = make_source(include=include, chunk_size=4).resumable_snapshot(
        SnapshotResume(start, (), f"cdc_source.{t}_a", ("4",), 4, 1))
    rows = [i for i in items if isinstance(i, ChangeEvent)]
    assert again != start and again > start
    assert len(rows) == 21
