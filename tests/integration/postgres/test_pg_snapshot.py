"""Snapshot + stream of a table that keeps changing: together they rebuild its final state."""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest

from cdc.events import Op
from connectors.postgres.position import PgPosition
from tests.integration.postgres.conftest import Background, PgEnv, apply, current_lsn, reached

pytestmark = pytest.mark.integration


def _writer(dsn: str, table: str, first_new: int, stop: threading.Event, done: list[int]) -> None:
    rnd = random.Random(7)
    next_id = first_new
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            with conn.transaction():
                for _ in range(rnd.randint(1, 5)):
                    op = rnd.random()
                    if op < 0.5:
                        conn.execute(f"UPDATE {table} SET v = v + 1, s = md5(random()::text) "
                                     "WHERE id = %s", (rnd.randrange(1, next_id),))
                    elif op < 0.8:
                        conn.execute(f"INSERT INTO {table} VALUES (%s, 0, 'new')", (next_id,))
                        next_id += 1
                    else:
                        conn.execute(f"DELETE FROM {table} WHERE id = %s",
                                     (rnd.randrange(1, next_id),))
            done[0] += 1


def _snapshot_while_writing(pg: PgEnv, rows: int) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, v int NOT NULL, s text)")
    pg.sql(f"INSERT INTO {t} SELECT g, 0, md5(g::text) FROM generate_series(1, %s::int) g",
           (rows,))
    pg.sql(f"ANALYZE {t}")
    src = pg.source(snapshot={"chunk_size": 5000})
    stop = threading.Event()
    done = [0]
    writer = threading.Thread(target=_writer, args=(pg.dsn, t, rows + 1, stop, done))
    writer.start()
    try:
        time.sleep(0.3)
        consistent, snap_it = src.snapshot(None)
        snap = list(snap_it)
        consumer = Background(src.stream(consistent), src)
        time.sleep(0.5)
    finally:
        stop.set()
        writer.join()
    end = current_lsn(pg.dsn)
    got = consumer.wait(reached(end), timeout=120)
    assert done[0] > 10, "the writer was busy during the snapshot"

    assert all(e.op is Op.READ for e in snap)
    positions = [e.position for e in snap]
    assert all(isinstance(p, PgPosition) and p.snapshot and p.lsn == consistent.lsn  # type: ignore[union-attr]
               for p in positions)
    assert [p.index for p in positions] == list(range(len(snap)))
    assert [p.last_in_tx for p in positions].count(True) == 1 and positions[-1].last_in_tx
    assert snap[-1].source.snapshot == "last" and snap[0].source.snapshot == "true"
    assert got.events and all(e.position > consistent for e in got.events)

    state: dict[object, dict[str, object]] = {}
    apply(state, snap)
    apply(state, got.events)
    final = {r[0]: {"id": r[0], "v": r[1], "s": r[2]} for r in pg.sql(f"SELECT id, v, s FROM {t}")}
    assert len(state) == len(final)
    assert state == final


def test_snapshot_of_100k_rows_then_stream_rebuilds_a_busy_table(pg: PgEnv) -> None:
    _snapshot_while_writing(pg, 100_000)  # about 5 s here: no need for a smaller variant


def test_snapshot_when_the_slot_exists_uses_a_temporary_export(pg: PgEnv) -> None:
    """Snapshot mode `always` (or a crash during the first snapshot): the slot is kept."""
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    pg.sql(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')")
    first = pg.source()
    c1, rows = first.snapshot(None)
    assert len(list(rows)) == 2
    first.close()
    slot = pg.slot(f"cdc_{pg.name}")
    assert slot is not None
    pg.sql(f"INSERT INTO {t} VALUES (3, 'c')")  # committed between the two snapshots
    again = pg.source()
    c2, rows2 = again.snapshot(None)
    snap = list(rows2)
    assert c2 > c1 and {e.key["id"] for e in snap} == {1, 2, 3}  # type: ignore[index]
    assert pg.slot(f"cdc_{pg.name}") == slot, "the permanent slot is untouched"
    consumer = Background(again.stream(c2), again)
    pg.sql(f"INSERT INTO {t} VALUES (4, 'd')")
    got = consumer.wait(lambda c: bool(c.events))
    assert [e.key for e in got.events] == [{"id": 4}], "row 3 is in the snapshot, not the stream"
    leftovers = pg.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE %s",
                       (f"cdc_{pg.name}_snap%",))
    assert leftovers == [(0,)], "the temporary export slot is gone"
