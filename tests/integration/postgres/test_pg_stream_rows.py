"""Runs of inserts as StreamRows (batch_stream) against the unbatched stream: the same events.

Two sources read the same WAL through their own slots, one yielding runs of inserts
(what the runtime asks for, cdc.spi.BatchesStream), one an event per change. Every
event of the runs (``StreamRows.event``) must equal the unbatched stream's, field for
field but the processing time: runs broken by updates, deletes, another table, a
keyless table, a column added inside the transaction, a NULL the catalog calls NOT
NULL, a truncate; a transaction spilled and streamed in chunks with an aborted
subtransaction; and a resume inside a transaction. That the records of a run are
those of its events is tests/unit/postgres/test_stream_rows.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cdc.events import ChangeEvent
from connectors.postgres.position import PgPosition
from tests.integration.postgres.conftest import Collected, PgEnv, count, drain

pytestmark = pytest.mark.integration


def _fields(e: ChangeEvent) -> tuple[Any, ...]:
    # Values by repr: Decimal('NaN') is not equal to itself.
    return (e.op, e.table, e.schema, repr(e.key), repr(e.before), repr(e.after), e.position,
            e.transaction,
            e.unchanged, dataclasses.replace(e.source, position=e.position))


def _same(got: list[ChangeEvent], want: list[ChangeEvent]) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        fg, fw = _fields(g), _fields(w)
        assert fg == fw, (i, [(j, x, y) for j, (x, y) in enumerate(zip(fg, fw, strict=True))
                         if x != y])


def _pair(pg: PgEnv, **overrides: Any) -> tuple[Any, Any, Any, Any]:
    plain = pg.source(slot_name=f"cdc_{pg.name}", **overrides)
    batched = pg.source(slot_name=f"cdc_{pg.name}_b", **overrides)
    batched.batch_stream()
    a, b = plain.stream(None), batched.stream(None)
    drain(a, plain, lambda c: bool(c.heartbeats))
    drain(b, batched, lambda c: bool(c.heartbeats))
    return plain, a, batched, b


def test_runs_of_inserts_are_the_unbatched_events(pg: PgEnv) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, v text NOT NULL, n numeric)")
    other = pg.table("CREATE TABLE {t} (id bigint PRIMARY KEY, at timestamptz)",
                     f"{pg.name}_o")
    nokey = pg.table("CREATE TABLE {t} (a int, b text)", f"{pg.name}_k")
    pg.sql(f"ALTER TABLE {nokey} REPLICA IDENTITY FULL")
    plain, a, batched, b = _pair(pg)

    with pg.conn.transaction():
        pg.sql(f"INSERT INTO {t} VALUES (1, 'a', 1.5), (2, 'b', NULL), (3, 'it''s', 'NaN')")
        pg.sql(f"INSERT INTO {other} VALUES (1, '2024-01-01 00:00:00+00'), (2, 'infinity')")
        pg.sql(f"INSERT INTO {t} VALUES (4, 'd', -0.001)")
        pg.sql(f"UPDATE {t} SET v = 'B' WHERE id = 2")
        pg.sql(f"INSERT INTO {t} VALUES (5, E'tab\\there', 1e20)")
        pg.sql(f"DELETE FROM {t} WHERE id = 1")
        pg.sql(f"INSERT INTO {nokey} VALUES (1, 'x'), (1, 'x')")
        pg.sql(f"INSERT INTO {t} VALUES (6, 'f', 6), (7, 'g', 7)")
        pg.sql(f"ALTER TABLE {t} ADD COLUMN extra int")  # a new Relation inside the run
        pg.sql(f"INSERT INTO {t} VALUES (8, 'h', 8, 80), (9, 'i', 9, 90)")
    pg.sql(f"INSERT INTO {t} VALUES (10, 'alone', 10, 100)")  # a run of one ending its tx
    with pg.conn.transaction():
        pg.sql(f"INSERT INTO {other} VALUES (3, now())")
        pg.sql(f"UPDATE {other} SET at = NULL WHERE id = 3")  # the tx ends with an event
    # A NULL in a column the catalog says NOT NULL by the time the stream reads it (the
    # row predates the constraint): the shape relaxes, on the event's own path.
    pg.sql(f"ALTER TABLE {t} ALTER COLUMN v DROP NOT NULL")
    with pg.conn.transaction():
        pg.sql(f"INSERT INTO {t} VALUES (11, 'k', 11, 1), (12, NULL, 12, 2), (13, 'm', 13, 3)")
    pg.sql(f"DELETE FROM {t} WHERE id = 12")
    pg.sql(f"ALTER TABLE {t} ALTER COLUMN v SET NOT NULL")
    pg.sql(f"TRUNCATE {t}, {other}")
    pg.sql(f"INSERT INTO {t} VALUES (20, 'after truncate', 0, 0)")
    n = 25
    want = drain(a, plain, count(n)).events
    got = drain(b, batched, count(n))
    assert len(want) == n and len(got.events) == n
    _same(got.events, want)
    assert got.runs >= 6  # the inserts did come as runs


@pytest.mark.parametrize("streaming", [False, True])
def test_a_spilled_and_streamed_transaction_in_runs(pg: PgEnv, streaming: bool) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    opts = {"proto_version": 2, "streaming": streaming,
            "connection": {"dsn": pg.dsn,
                           "options": {"options": "-c logical_decoding_work_mem=64kB"}}}
    plain, a, batched, b = _pair(pg, **opts)
    for src in (plain, batched):
        src.settings = dataclasses.replace(src.settings, spill_bytes=256 * 1024)
    n = 5_000
    with pg.conn.transaction():
        pg.sql(f"INSERT INTO {t} SELECT g, 'row ' || g FROM generate_series(1, %s::int) g", (n,))
        pg.sql("SAVEPOINT s1")
        pg.sql(f"INSERT INTO {t} SELECT g, 'aborted' FROM generate_series(%s::int, %s::int) g",
               (n + 1, n + 2000))
        pg.sql("ROLLBACK TO SAVEPOINT s1")
        pg.sql(f"UPDATE {t} SET v = 'updated' WHERE id = 7")
        pg.sql(f"INSERT INTO {t} VALUES (%s, 'after savepoint')", (n + 10_001,))
    want = drain(a, plain, count(n + 2), timeout=60).events
    got = drain(b, batched, count(n + 2), timeout=60)
    _same(got.events, want)
    assert got.runs == 2
    assert got.events[-1].position.last_in_tx


def test_resume_inside_a_transaction_yields_the_rest_of_its_run(pg: PgEnv) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY)")
    plain, a, batched, b = _pair(pg)
    pg.sql(f"INSERT INTO {t} SELECT generate_series(1, 10)")
    first = drain(b, None, count(10), acknowledge=False).events
    drain(a, None, count(10), acknowledge=False)
    plain.close()
    batched.close()
    mid = first[3].position  # the 4th insert: not the end of its transaction
    assert isinstance(mid, PgPosition) and not mid.last_in_tx

    results: list[Collected] = []
    for batch, slot in ((False, f"cdc_{pg.name}"), (True, f"cdc_{pg.name}_b")):
        again = pg.source(slot_name=slot)
        if batch:
            again.batch_stream()
        results.append(drain(again.stream(mid), again, count(6)))
    plain_rest, batched_rest = results
    assert [e.key for e in batched_rest.events] == [{"id": i} for i in range(5, 11)]
    _same(batched_rest.events, plain_rest.events)
    assert batched_rest.runs == 1
