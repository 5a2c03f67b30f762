"""The PostgreSQL stream reader against a real server: every change, exactly as committed."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdc.events import Kind, Op
from connectors.postgres.position import PgPosition
from connectors.postgres.source.changes import TransactionMarker
from tests.fixtures.pgoutput import typed_table
from tests.integration.postgres.conftest import (
    Background,
    PgEnv,
    count,
    current_lsn,
    drain,
    reached,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def _typed_env(pg: PgEnv) -> str:
    """A schema of its own with the every-type-family table (its types are per schema)."""
    schema = pg.name
    pg.schemas.append(schema)
    pg.sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    pg.sql(f'CREATE SCHEMA "{schema}"')
    pg.sql(f'SET search_path TO "{schema}"')
    pg.sql(typed_table.SETUP_SQL)
    pg.sql(typed_table.create_table_sql("typed"))
    return schema


def _assert_row(row: dict[str, Any] | None, expected: list[Any]) -> None:
    assert row is not None
    names = ["id", *(c.name for c in typed_table.COLUMNS)]
    assert list(row) == names
    for name, want in zip(names, expected, strict=True):
        assert typed_table.same(row[name], want), f"{name}: {row[name]!r} != {want!r}"


@pytest.mark.parametrize("identity", ["default", "full"])
def test_every_type_family_in_every_operation(pg: PgEnv, identity: str) -> None:
    schema = _typed_env(pg)
    if identity == "full":
        pg.sql("ALTER TABLE typed REPLICA IDENTITY FULL")
    # Snapshot the first row, stream the rest: both paths must give the same values.
    pg.sql(typed_table.insert_sql("typed")[0])
    src = pg.source(tables={"include": [f"{schema}.*"]})
    consistent, rows = src.snapshot(None)
    snap = list(rows)
    expected = typed_table.expected_rows()
    assert [e.op for e in snap] == [Op.READ]
    _assert_row(dict(snap[0].after or {}), expected[1])
    assert snap[0].source.snapshot == "last" and snap[0].position.last_in_tx
    items = src.stream(consistent)

    for stmt in typed_table.insert_sql("typed")[1:]:
        pg.sql(stmt)
    pg.sql("UPDATE typed SET c_text = 'changed' WHERE id = 1")
    pg.sql("UPDATE typed SET id = 30 WHERE id = 3")
    pg.sql("DELETE FROM typed WHERE id = 2")
    got = drain(items, src, count(6)).events
    # The key change 3 -> 30 is a delete of the old key and a create of the new one.
    assert [e.op for e in got] == [Op.CREATE, Op.CREATE, Op.UPDATE, Op.DELETE, Op.CREATE,
                                   Op.DELETE]
    assert got[0].schema == snap[0].schema, "snapshot and stream describe the table identically"
    assert got[0].schema.primary_key == ("id",)
    _assert_row(dict(got[0].after or {}), expected[3])
    _assert_row(dict(got[1].after or {}), expected[2])

    row1 = list(expected[1])
    row1[1 + [c.name for c in typed_table.COLUMNS].index("c_text")] = "changed"
    _assert_row(dict(got[2].after or {}), row1)
    assert got[2].key == {"id": 1}
    assert got[3].key == {"id": 3} and got[3].after is None
    row3 = list(expected[3])
    row3[0] = 30
    _assert_row(dict(got[4].after or {}), row3)
    assert got[4].key == {"id": 30} and got[4].before is None
    if identity == "default":
        assert got[2].before is None, "DEFAULT identity: no before image when the key is unchanged"
        assert got[3].before == {"id": 3}, "DEFAULT identity: the old key when it changed"
        assert got[5].before == {"id": 2}
    else:
        _assert_row(dict(got[2].before or {}), expected[1])
        _assert_row(dict(got[3].before or {}), expected[3])
        _assert_row(dict(got[5].before or {}), expected[2])
    assert got[5].key == {"id": 2} and got[5].after is None
    assert got[3].position < got[4].position and not got[3].position.last_in_tx
    for e in got:
        src_info = e.source
        assert src_info.connector == "postgresql" and src_info.name == pg.name
        assert src_info.snapshot == "false" and src_info.tx_id is not None
        assert e.transaction is not None and e.transaction.id == src_info.tx_id
        assert e.position.last_in_tx or e is got[3]
        assert e.position > consistent


def test_transactions_positions_truncate_and_rollback(pg: PgEnv) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    other = pg.table("CREATE TABLE {t} (id int PRIMARY KEY)", f"{pg.name}_b")
    src = pg.source()
    markers: list[TransactionMarker] = []
    src.on_transaction = markers.append
    items = src.stream(None)
    drain(items, src, lambda c: bool(c.heartbeats))  # streaming has started

    with pg.conn.transaction():
        pg.sql(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')")
        pg.sql(f"INSERT INTO {other} VALUES (1)")
    with pytest.raises(RuntimeError), pg.conn.transaction():
        pg.sql(f"INSERT INTO {t} VALUES (99, 'rolled back')")
        raise RuntimeError("roll back")
    # Logical decoding messages are not row changes: skipped (SOURCE.md).
    pg.sql("SELECT pg_logical_emit_message(false, 'cdc_test', 'not a change')")
    with pg.conn.transaction():
        pg.sql("SELECT pg_logical_emit_message(true, 'cdc_test', 'in a tx')")
    pg.sql(f"TRUNCATE {t}, {other}")
    pg.sql(f"INSERT INTO {t} VALUES (3, 'c')")
    got = drain(items, src, count(6)).events
    assert [(e.op, e.table.table) for e in got] == [
        (Op.CREATE, t), (Op.CREATE, t), (Op.CREATE, other), (Op.TRUNCATE, t), (Op.TRUNCATE, other),
        (Op.CREATE, t)]
    assert all(e.key != {"id": 99} for e in got), "a rolled-back transaction emits nothing"
    positions = [e.position for e in got]
    assert positions == sorted(positions)
    assert [(p.index, p.last_in_tx) for p in positions] == [
        (0, False), (1, False), (2, True), (0, False), (1, True), (0, True)]
    assert len({p.lsn for p in positions}) == 3  # type: ignore[union-attr]
    tx = [e.transaction for e in got]
    assert [(x.total_order, x.data_collection_order) for x in tx if x] == [
        (1, 1), (2, 2), (3, 1), (1, 1), (2, 1), (1, 1)]
    trunc = got[3]
    assert trunc.key is None and trunc.before is None and trunc.after is None
    assert got[0].source.ts_ms == got[2].source.ts_ms, "commit time of the transaction"
    drain(items, src, lambda c: bool(c.heartbeats))  # the END of the last transaction
    assert [(m.status, m.id) for m in markers] == [
        (status, e.transaction.id) for e in (got[0], got[3], got[5]) if e.transaction
        for status in ("BEGIN", "END")]
    first_end = markers[1]
    assert first_end.event_count == 3 and first_end.position == got[2].position
    assert dict(first_end.data_collections) == {f"public.{t}": 2, f"public.{other}": 1}


def test_unchanged_toast_columns(pg: PgEnv) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, big text, n int)")
    pg.sql(f"ALTER TABLE {t} ALTER COLUMN big SET STORAGE EXTERNAL")  # out of line, uncompressed
    big = "x" * 20_000
    src = pg.source()
    items = src.stream(None)
    drain(items, src, lambda c: bool(c.heartbeats))
    pg.sql(f"INSERT INTO {t} VALUES (1, %s, 1)", (big,))
    pg.sql(f"UPDATE {t} SET n = 2 WHERE id = 1")
    pg.sql(f"ALTER TABLE {t} REPLICA IDENTITY FULL")
    pg.sql(f"UPDATE {t} SET n = 3 WHERE id = 1")
    got = drain(items, src, count(3)).events
    assert got[0].after == {"id": 1, "big": big, "n": 1}
    default_update = got[1]
    assert default_update.after == {"id": 1, "n": 2}, "the unchanged TOAST column is left out"
    assert default_update.unchanged == frozenset({"big"})
    full_update = got[2]
    assert full_update.after == {"id": 1, "big": big, "n": 3}, "FULL: filled from the old row"
    assert full_update.before == {"id": 1, "big": big, "n": 2}
    assert not full_update.unchanged


def test_key_change_with_unchanged_toast_is_a_delete_and_a_whole_create(pg: PgEnv) -> None:
    """The new key's row carries the TOASTed value, read back from the table."""
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, big text, n int)")
    pg.sql(f"ALTER TABLE {t} ALTER COLUMN big SET STORAGE EXTERNAL")
    big = "y" * 20_000
    src = pg.source()
    items = src.stream(None)
    drain(items, src, lambda c: bool(c.heartbeats))
    pg.sql(f"INSERT INTO {t} VALUES (1, %s, 1), (3, %s, 3)", (big, big + "3"))
    pg.sql(f"UPDATE {t} SET id = 2 WHERE id = 1")
    got = drain(items, src, count(4)).events
    assert [(e.op, e.key) for e in got[2:]] == [(Op.DELETE, {"id": 1}), (Op.CREATE, {"id": 2})]
    create = got[3]
    assert create.after == {"id": 2, "big": big, "n": 1}
    assert not create.unchanged
    # The new key's row is gone by the time the stream reads the change: the
    # old key is deleted, the new key's slot is a delete of the new key (no
    # values invented), and the later delete of the new key follows.
    pg.sql(f"UPDATE {t} SET id = 4, n = 4 WHERE id = 3")
    pg.sql(f"DELETE FROM {t} WHERE id = 4")
    got = drain(items, src, count(3)).events
    assert [(e.op, e.key) for e in got] == [
        (Op.DELETE, {"id": 3}), (Op.DELETE, {"id": 4}), (Op.DELETE, {"id": 4})]
    assert [e.position.index for e in got] == [0, 1, 0]  # type: ignore[attr-defined]


def test_key_change_with_unchanged_toast_replays_the_same_positions(pg: PgEnv) -> None:
    """A transaction decoded again after its moved row is gone yields the same positions.

    Resume (``skip_through``) and the sinks' replay check identify an event by
    its position, so a replay must give every event the index it had: the
    number of events of the key change must not depend on what the re-read
    of the TOASTed row finds.
    """
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, big text NOT NULL, n int)")
    pg.sql(f"ALTER TABLE {t} ALTER COLUMN big SET STORAGE EXTERNAL")
    big = "".join(chr(0x41 + (i * 7919) % 26) for i in range(5_000))
    pg.sql(f"INSERT INTO {t} VALUES (1, %s, 1), (5, 'five', 5)", (big,))
    src = pg.source()
    items = src.stream(None)
    before_tx = drain(items, None, lambda c: bool(c.heartbeats)).heartbeats[-1]
    with pg.conn.transaction():
        pg.sql(f"UPDATE {t} SET id = 2 WHERE id = 1")  # big unchanged: not sent
        pg.sql(f"INSERT INTO {t} VALUES (7, 'seven', 7)")
        pg.sql(f"UPDATE {t} SET n = 50 WHERE id = 5")
    first = drain(items, None, count(4), acknowledge=False).events
    expected = [(Op.DELETE, {"id": 1}), (Op.CREATE, {"id": 2}), (Op.CREATE, {"id": 7}),
                (Op.UPDATE, {"id": 5})]
    assert [(e.op, e.key) for e in first] == expected
    assert first[1].after == {"id": 2, "big": big, "n": 1}
    positions = [e.position for e in first]
    assert [p.index for p in positions] == [0, 1, 2, 3]  # type: ignore[attr-defined]
    src.close()
    # The row is gone before the transaction is decoded again (a restart).
    pg.sql(f"DELETE FROM {t} WHERE id = 2")
    end = current_lsn(pg.dsn)
    replays = []
    for k, stored in enumerate([before_tx, *positions[:-1]]):
        again = pg.source()
        replay = drain(again.stream(stored), None, reached(end), acknowledge=False).events
        again.close()
        replays.append(replay)
        assert [e.position for e in replay[:-1]] == positions[k:], f"resumed after event {k}"
        assert [(e.op, e.key) for e in replay[:-1]] == [
            (op, key) if (op, key) != (Op.CREATE, {"id": 2}) else (Op.DELETE, {"id": 2})
            for op, key in expected[k:]], f"resumed after event {k}"
        assert [(e.op, e.key) for e in replay[-1:]] == [(Op.DELETE, {"id": 2})]
    # Nothing invented: the new key's slot carries no row the source no longer has.
    assert replays[0][1].after is None and not replays[0][1].unchanged


def test_schema_changes_mid_stream_give_new_table_schemas(pg: PgEnv) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, a text, b int NOT NULL DEFAULT 0)")
    src = pg.source()
    items = src.stream(None)
    drain(items, src, lambda c: bool(c.heartbeats))
    pg.sql(f"INSERT INTO {t} VALUES (1, 'one', 1)")
    pg.sql(f"ALTER TABLE {t} ADD COLUMN c numeric(5,2)")
    pg.sql(f"INSERT INTO {t} VALUES (2, 'two', 2, 2.5)")
    pg.sql(f"ALTER TABLE {t} DROP COLUMN a")
    pg.sql(f"INSERT INTO {t} VALUES (3, 3, 3.5)")
    pg.sql(f"ALTER TABLE {t} RENAME COLUMN b TO bb")
    pg.sql(f"UPDATE {t} SET bb = 33 WHERE id = 3")
    pg.sql(f"ALTER TABLE {t} ALTER COLUMN bb TYPE bigint")
    pg.sql(f"INSERT INTO {t} VALUES (4, 4, 4.5)")
    got = drain(items, src, count(5)).events
    schemas = [e.schema for e in got]
    assert [[c.name for c in s.columns] for s in schemas] == [
        ["id", "a", "b"], ["id", "a", "b", "c"], ["id", "b", "c"], ["id", "bb", "c"],
        ["id", "bb", "c"]]
    assert len({id(s) for s in schemas}) == 5, "each version is a new TableSchema object"
    # Nullability and defaults come from today's catalog: "b" no longer exists by
    # the time its old Relation message is read, so that version says nullable.
    assert schemas[4].column("bb").nullable is False and schemas[4].column("bb").default == "0"
    assert schemas[0].column("b").nullable is True
    assert schemas[1].column("c").type.kind is Kind.DECIMAL
    assert schemas[1].column("c").type.scale == 2
    assert schemas[3].column("bb").type.kind is Kind.INT32
    assert schemas[4].column("bb").type.kind is Kind.INT64
    assert got[1].after == {"id": 2, "a": "two", "b": 2, "c": Decimal("2.50")}
    assert got[3].after == {"id": 3, "bb": 33, "c": Decimal("3.50")}
    assert got[4].after == {"id": 4, "bb": 4, "c": Decimal("4.50")}

    # A new session resends Relation messages: an unchanged table keeps its schema object.
    src.close()
    src2 = pg.source()
    items2 = src2.stream(got[-1].position)
    pg.sql(f"INSERT INTO {t} VALUES (5, 5, 5.5)")
    pg.sql(f"INSERT INTO {t} VALUES (6, 6, 6.5)")
    more = drain(items2, src2, count(2)).events
    assert more[0].schema == schemas[4]
    assert more[0].schema is more[1].schema


@pytest.mark.parametrize("streaming", [True, False], ids=["streamed", "at-commit"])
def test_large_transaction_with_aborted_subtransaction_spills_and_arrives_whole(
    pg: PgEnv, streaming: bool
) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY, v text)")
    # A small logical_decoding_work_mem for this walsender only makes the
    # server stream the transaction in chunks (a role or ALTER SYSTEM setting
    # would affect everyone on the shared server).
    src = pg.source(proto_version=2, streaming=streaming,
                    connection={"dsn": pg.dsn,
                                "options": {"options": "-c logical_decoding_work_mem=64kB"}})
    src.settings = dataclasses.replace(src.settings, spill_bytes=256 * 1024)
    items = src.stream(None)
    drain(items, src, lambda c: bool(c.heartbeats))
    n = 20_000
    with pg.conn.transaction():
        pg.sql(f"INSERT INTO {t} SELECT g, 'row ' || g FROM generate_series(1, %s::int) g", (n,))
        pg.sql("SAVEPOINT s1")
        pg.sql(f"INSERT INTO {t} SELECT g, 'aborted' FROM generate_series(%s::int, %s::int) g",
               (n + 1, n + 5000))
        pg.sql("ROLLBACK TO SAVEPOINT s1")
        pg.sql(f"INSERT INTO {t} VALUES (%s, 'after savepoint')", (n + 10_001,))
    # A transaction that aborts as a whole emits nothing (streamed or not).
    with pytest.raises(RuntimeError), pg.conn.transaction():
        pg.sql(f"INSERT INTO {t} SELECT g, 'gone' FROM generate_series(%s::int, %s::int) g",
               (n + 20_001, n + 30_000))
        raise RuntimeError("roll back")
    pg.sql(f"INSERT INTO {t} VALUES (0, 'last')")
    got = drain(items, src, count(n + 2), timeout=60).events
    reader = src._reader
    assert reader is not None
    assert reader.stats["spilled_transactions"] >= 1
    assert (reader.stats["streamed_transactions"] >= 1) is streaming
    big = got[: n + 1]
    assert [e.key["id"] for e in big] == [*range(1, n + 1), n + 10_001]  # type: ignore[index]
    assert [e.position.index for e in big] == list(range(n + 1))
    assert [e.position.last_in_tx for e in big] == [False] * n + [True]
    assert len({e.position.lsn for e in big}) == 1  # type: ignore[union-attr]
    assert got[n + 1].key == {"id": 0}
    assert len(got) == n + 2


def test_resume_skips_acknowledged_and_stored_transactions(pg: PgEnv) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY)")
    src = pg.source()
    items = src.stream(None)
    drain(items, src, lambda c: bool(c.heartbeats))
    for i in (1, 2, 3):
        pg.sql(f"INSERT INTO {t} VALUES ({i})")
    got = drain(items, src, count(3), acknowledge=False).events
    # The runtime made tx 1 durable and told the server; tx 2 is durable in its
    # offsets but the acknowledgement never reached the server (a crash).
    src.acknowledge(got[0].position)
    drain(items, None, lambda c: len(c.heartbeats) >= 3)
    src.close()
    slot = pg.slot(f"cdc_{pg.name}")
    assert slot is not None and slot["confirmed_flush"] == got[0].position.lsn  # type: ignore[union-attr]

    again = pg.source()
    stored = got[1].position
    assert isinstance(stored, PgPosition)
    items2 = again.stream(stored)
    pg.sql(f"INSERT INTO {t} VALUES (4)")
    more = drain(items2, again, count(2)).events
    assert [e.key for e in more] == [{"id": 3}, {"id": 4}], "tx 2 resent by the server, skipped"


def test_idle_source_advances_the_slot_while_the_server_is_busy(pg: PgEnv) -> None:
    pg.table("CREATE TABLE {t} (id int PRIMARY KEY)")
    busy = pg.table("CREATE TABLE {t} (id serial PRIMARY KEY, v text)", f"busy_{pg.name}")
    src = pg.source(heartbeat_interval_s=0.5)
    slot = f"cdc_{pg.name}"
    items = src.stream(None)
    drain(items, src, lambda c: bool(c.heartbeats))
    start = pg.slot(slot)
    assert start is not None
    stop = threading.Event()

    def write() -> None:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute(f"INSERT INTO {busy} (v) VALUES ('x')")
                time.sleep(0.02)

    writer = threading.Thread(target=write)
    writer.start()
    seen = [start["confirmed_flush"]]
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.5:
            c = drain(items, src, lambda c: len(c.heartbeats) >= 1)
            assert not c.events
            now = pg.slot(slot)
            assert now is not None
            seen.append(now["confirmed_flush"])
    finally:
        stop.set()
        writer.join()
    assert seen == sorted(seen)
    assert len(set(seen)) >= 4, f"confirmed_flush_lsn advanced only to {seen}"
    assert seen[-1] > start["confirmed_flush"]
    retained = src.retained_wal_bytes()
    assert retained is not None and 0 <= retained < 64 * 2**20


def test_publication_missing_a_table_is_a_clear_error(pg: PgEnv) -> None:
    a = pg.table("CREATE TABLE {t} (id int PRIMARY KEY)", f"{pg.name}_a")
    pg.table("CREATE TABLE {t} (id int PRIMARY KEY)", f"{pg.name}_b")
    pub = f"cdc_{pg.name}"
    pg.publications.add(pub)
    pg.sql(f"CREATE PUBLICATION {pub} FOR TABLE {a}")
    src = pg.source(create_publication=False)
    problems = src.check()
    missing = [p for p in problems if "lacks captured tables" in p.what]
    assert missing and missing[0].fatal
    assert f"ALTER PUBLICATION \"{pub}\" ADD TABLE \"public\".\"{pg.name}_b\"" in missing[0].fix
    from cdc.errors import PrerequisiteError

    with pytest.raises(PrerequisiteError, match=f"{pg.name}_b") as e:
        next(src.stream(None))
    assert "ALTER PUBLICATION" in str(e.value)
    # With create_publication the source extends the publication itself.
    src2 = pg.source()
    items = src2.stream(None)
    drain(items, src2, lambda c: bool(c.heartbeats))
    assert pg.sql("SELECT count(*) FROM pg_publication_tables WHERE pubname = %s", (pub,)) == [(2,)]


def test_check_reports_tables_without_identity(pg: PgEnv) -> None:
    t = pg.table("CREATE TABLE {t} (id int, v text)")
    problems = pg.source().check()
    found = [p for p in problems if t in p.what]
    assert found and found[0].fatal and "REPLICA IDENTITY FULL" in found[0].fix
    pg.sql(f"ALTER TABLE {t} REPLICA IDENTITY FULL")
    assert not [p for p in pg.source().check() if p.fatal], "nothing else is missing"


def test_dropped_slot_is_fatal(pg: PgEnv) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY)")
    src = pg.source()
    slot = f"cdc_{pg.name}"
    items = src.stream(None)
    drain(items, src, lambda c: bool(c.heartbeats))
    pg.sql(f"INSERT INTO {t} VALUES (1)")
    drain(items, src, count(1))
    # Someone drops the slot behind the connector's back.
    deadline = time.monotonic() + 10
    while pg.slot(slot) is not None:
        assert time.monotonic() < deadline
        pg.sql("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
               "WHERE slot_name = %s AND active_pid IS NOT NULL", (slot,))
        try:
            pg.sql("SELECT pg_drop_replication_slot(%s)", (slot,))
        except psycopg.Error:
            time.sleep(0.05)
    from cdc.errors import PrerequisiteError

    with pytest.raises(PrerequisiteError, match=f"slot {slot} does not exist"):
        drain(items, src, count(1), timeout=30)
    # A new source with stored offsets refuses too, instead of creating a fresh slot.
    with pytest.raises(PrerequisiteError, match="does not exist"):
        next(pg.source().stream(PgPosition(current_lsn(pg.dsn))))
    assert pg.slot(slot) is None


def test_server_restart_mid_stream_loses_nothing(pg: PgEnv) -> None:
    t = pg.table("CREATE TABLE {t} (id int PRIMARY KEY)")
    src = pg.source()
    items = src.stream(None)
    drain(items, src, lambda c: bool(c.heartbeats))
    for i in range(1, 51):
        pg.sql(f"INSERT INTO {t} VALUES ({i})")
    # The runtime keeps pulling and acknowledging while the server restarts (a
    # shutting-down walsender waits for the client to confirm what it sent).
    consumer = Background(items, src)
    subprocess.run([sys.executable, str(ROOT / "deploy/local/stack.py"), "restart", "pg-source"],
                   check=True, capture_output=True, timeout=120)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        for i in range(51, 101):
            conn.execute(f"INSERT INTO {t} VALUES ({i})")
    pg.conn = psycopg.connect(pg.dsn, autocommit=True)
    end = current_lsn(pg.dsn)
    got = consumer.wait(lambda c: reached(end)(c) and len(c.events) >= 100, timeout=90)
    ids = [e.key["id"] for e in got.events]  # type: ignore[index]
    assert sorted(set(ids)) == list(range(1, 101)), "every committed change arrives"
    assert len(ids) == len(set(ids)), "a reconnect re-emits nothing already yielded"
    reader = src._reader
    assert reader is not None and reader.stats["reconnects"] >= 1


def test_wait_visible_waits_for_an_open_transaction(pg: PgEnv) -> None:
    """The re-select of a key change never mistakes 'not visible yet' for 'gone'."""
    from cdc.errors import RetriableError
    from connectors.postgres.source.changes import _wait_visible

    with psycopg.connect(pg.dsn, autocommit=True) as reader, psycopg.connect(pg.dsn) as writer:
        row = writer.execute("SELECT pg_current_xact_id()::text").fetchone()
        assert row is not None
        xid = int(row[0]) & 0xFFFFFFFF  # as pgoutput sends it
        with pytest.raises(RetriableError, match="not visible"):
            _wait_visible(reader, xid, timeout_s=0.2)
        writer.commit()
        _wait_visible(reader, xid, timeout_s=5)
        _wait_visible(reader, xid - 1, timeout_s=5)
