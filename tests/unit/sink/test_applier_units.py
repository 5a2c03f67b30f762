"""Applier pieces that need no database: transactional batch cuts, mutations of changes."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.events import Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.serde import AvroSerde, DecodedChange, InMemorySchemaRegistry, Tombstone
from cdc.sink.applier import Applier, Record, SinkSettings
from cdc.sink.checkpoint import CheckpointStore
from cdc.sink.reduce import (
    Delete,
    DeleteRow,
    KeylessReducer,
    Move,
    Segment,
    Truncate,
    UpdateRow,
    Upsert,
)
from cdc.sink.schema import ReplicaSchemas, TablePlan, TableSettings
from cdc.spi import ReplicaColumn, ReplicaTable, TableName
from connectors.postgres.position import Lsn, PgPosition

SCHEMA = TableSchema(TableId("d", "public", "t"), (
    Column("id", ColumnType(Kind.INT64), nullable=False),
    Column("v", ColumnType(Kind.STRING)),
    Column("big", ColumnType(Kind.STRING)),
), ("id",))


def change(op: Op, after: dict[str, Any] | None, before: dict[str, Any] | None = None,
           last: bool = True, unchanged: frozenset[str] = frozenset()) -> DecodedChange:
    return DecodedChange(op=op, table=SCHEMA.table, schema=SCHEMA, key=None, before=before,
                         after=after, source={}, position=PgPosition(Lsn(1), last_in_tx=last),
                         unchanged=unchanged, origin=None, transaction=None, ts_ms=0)


def applier(transactional: bool) -> Applier:
    return Applier(SinkSettings("s", "g", transactional=transactional),
                   AvroSerde(InMemorySchemaRegistry()), ReplicaSchemas(TableSettings()),
                   CheckpointStore(TableName(None, "cdc_offsets"), "g"))


def rec(offset: int, decoded: Any) -> Record:
    return Record("t", 0, offset, None, b"", decoded=decoded)


def test_transactional_cut_ends_batches_only_after_a_transaction() -> None:
    records = [rec(0, change(Op.CREATE, {"id": 1}, last=False)),
               rec(1, change(Op.CREATE, {"id": 2}, last=True)),
               rec(2, change(Op.CREATE, {"id": 3}, last=False)),
               rec(3, change(Op.CREATE, {"id": 4}, last=False))]
    assert applier(True).cut(records) == 2
    assert applier(False).cut(records) == 4
    assert applier(True).cut(records[2:]) == 0  # an open transaction: wait for more
    assert applier(True).cut([rec(0, Tombstone(None, None))]) == 1


def plan() -> TablePlan:
    cols = tuple(ReplicaColumn(c.name, "text", "text") for c in SCHEMA.columns)
    replica = ReplicaTable(TableName(None, "t"), cols, ("id",))
    return TablePlan("t", SCHEMA, replica, ["id", "v", "big"], [None, None, None], [None])


def test_mutations_of_each_kind_of_change() -> None:
    p = plan()
    full = {"id": 1, "v": "a", "big": "B"}
    assert p.mutations(change(Op.CREATE, full)) == [Upsert((1,), p.columns, (1, "a", "B"))]
    assert p.mutations(change(Op.DELETE, None, before=full)) == [Delete((1,))]
    # Unchanged TOAST: a partial upsert.
    assert p.mutations(change(Op.UPDATE, {"id": 1, "v": "b"}, unchanged=frozenset({"big"}))) == [
        Upsert((1,), ("id", "v"), (1, "b"))]
    # A key change: delete + upsert, or a move when columns were not sent.
    assert p.mutations(change(Op.UPDATE, {**full, "id": 2}, before={"id": 1})) == [
        Delete((1,)), Upsert((2,), p.columns, (2, "a", "B"))]
    assert p.mutations(change(Op.UPDATE, {"id": 2, "v": "c"}, before={"id": 1},
                              unchanged=frozenset({"big"}))) == [
        Move((1,), (2,), ("id", "v"), (2, "c"))]
    # An update whose before image has the same key is a plain upsert.
    assert p.mutations(change(Op.UPDATE, full, before=full)) == [Upsert((1,), p.columns, (1, "a", "B"))]


KEYLESS = TableSchema(TableId("d", "public", "log"), (
    Column("at", ColumnType(Kind.INT64), nullable=False),
    Column("msg", ColumnType(Kind.STRING)),
), ())


def keyless_plan() -> TablePlan:
    cols = (ReplicaColumn("at", "bigint", "int8"), ReplicaColumn("msg", "text", "text"))
    replica = ReplicaTable(TableName(None, "log"), cols, ())
    return TablePlan("log", KEYLESS, replica, ["at", "msg"], [None, None], [])


def keyless_change(op: Op, after: dict[str, Any] | None,
                   before: dict[str, Any] | None = None, lsn: int = 5) -> DecodedChange:
    return DecodedChange(op=op, table=KEYLESS.table, schema=KEYLESS, key=None, before=before,
                         after=after, source={}, position=PgPosition(Lsn(lsn)),
                         unchanged=frozenset(), origin=None, transaction=None, ts_ms=0)


def test_mutations_of_a_table_without_primary_key_match_whole_rows() -> None:
    p = keyless_plan()
    assert p.keyless
    a, b = {"at": 1, "msg": "x"}, {"at": 1, "msg": None}
    assert p.mutations(keyless_change(Op.CREATE, a)) == [Upsert((), ("at", "msg"), (1, "x"))]
    assert p.mutations(keyless_change(Op.READ, b)) == [Upsert((), ("at", "msg"), (1, None))]
    assert p.mutations(keyless_change(Op.DELETE, None, before=b)) == [
        DeleteRow(("at", "msg"), (1, None))]
    assert p.mutations(keyless_change(Op.UPDATE, a, before=b)) == [
        UpdateRow(("at", "msg"), (1, None), ("at", "msg"), (1, "x"))]


def test_keyless_reducer_keeps_every_change_in_order() -> None:
    """No reduction: two identical inserts stay two rows, deletes and updates are steps
    of their own between the runs of inserts, a truncate starts a new segment."""
    r = KeylessReducer()
    row = (("at", "msg"), (1, "x"))
    t = Truncate("log", None, 3)
    r.add_all([Upsert((), *row), Upsert((), *row), DeleteRow(*row), Upsert((), *row),
               UpdateRow(*row, ("at", "msg"), (2, "y")), t, Upsert((), *row)])
    steps = r.steps()
    assert [type(s).__name__ for s in steps] == [
        "Segment", "DeleteRow", "Segment", "UpdateRow", "Segment"]
    first, _, third, _, last = steps
    assert isinstance(first, Segment) and first.upserts == {row[0]: [row[1], row[1]]}
    assert isinstance(third, Segment) and third.upserts == {row[0]: [row[1]]}
    assert isinstance(last, Segment) and last.truncates == [t] and last.rows == 1
    assert r.changes == 7 and r.steps() == []
    with pytest.raises(TypeError):
        r.add(Delete((1,)))


def test_keyless_change_without_whole_old_row_is_a_bad_record_naming_the_fix() -> None:
    """A keyless table's update or delete without the whole before image (PostgreSQL
    REPLICA IDENTITY DEFAULT, a MySQL minimal row image) cannot be matched: a bad record
    of kind 'schema'; policy fail stops the partition just before it, dead_letter sets it
    aside and applies the rest."""
    from types import SimpleNamespace

    from cdc.sink.checkpoint import NOTHING

    session: Any = SimpleNamespace(dialect=None)  # the plans are given: no database work
    batch = {("t", 0): [rec(0, keyless_change(Op.CREATE, {"at": 1, "msg": "x"}, lsn=5)),
                        rec(1, keyless_change(Op.DELETE, None, lsn=6)),
                        rec(2, keyless_change(Op.UPDATE, {"at": 1, "msg": "y"},
                                              before={"at": 1}, lsn=7)),
                        rec(3, keyless_change(Op.CREATE, {"at": 2, "msg": "z"}, lsn=8))]}
    p = keyless_plan()
    stops = applier(False)
    stops.schemas.plan = lambda session, topic, d: p  # type: ignore[method-assign]
    prep = stops._prepare(session, batch, {("t", 0): NOTHING})
    assert prep.failure is not None
    assert "public.log" in str(prep.failure) and "no before image" in str(prep.failure)
    assert "REPLICA IDENTITY FULL" in str(prep.failure) and "(schema)" in str(prep.failure)
    assert prep.consumed[("t", 0)] == 1 and len(prep.work) == 1

    letters = Applier(
        SinkSettings("s", "g", policy="dead_letter"), AvroSerde(InMemorySchemaRegistry()),
        ReplicaSchemas(TableSettings()), CheckpointStore(TableName(None, "cdc_offsets"), "g"),
        dead_letters=SimpleNamespace(),  # type: ignore[arg-type]  # (letters are only collected here)
    )
    letters.schemas.plan = stops.schemas.plan  # type: ignore[method-assign]
    prep = letters._prepare(session, batch, {("t", 0): NOTHING})
    assert prep.failure is None and prep.consumed[("t", 0)] == 4
    assert [w.record.offset for w in prep.work] == [0, 3]
    first, second = prep.letters
    assert first.kind == "schema" and first.offset == 1
    assert second.offset == 2 and "lacks columns ['msg']" in second.error


def test_a_new_snapshot_of_a_keyless_table_replaces_its_rows() -> None:
    """Snapshot reads of a keyless table cannot be told from rows already applied: the
    first read of each snapshot (the record before it is no read of the same snapshot)
    truncates the replica table first; the later reads of that snapshot do not."""
    from types import SimpleNamespace

    from cdc.sink.checkpoint import NOTHING, Checkpoint

    def read(lsn: int, index: int, snapshot: bool = True, op: Op = Op.READ) -> DecodedChange:
        return DecodedChange(op=op, table=KEYLESS.table, schema=KEYLESS, key=None, before=None,
                             after={"at": index, "msg": "x"}, source={},
                             position=PgPosition(Lsn(lsn), index, snapshot=snapshot),
                             unchanged=frozenset(), origin=None, transaction=None, ts_ms=0)

    p = keyless_plan()
    a = applier(False)
    a.schemas.plan = lambda session, topic, d: p  # type: ignore[method-assign]
    session: Any = SimpleNamespace(dialect=None)
    batch = {("t", 0): [rec(0, read(5, 0)), rec(1, read(5, 1)),
                        rec(2, read(7, 0, snapshot=False, op=Op.CREATE)),
                        rec(3, read(9, 0)), rec(4, read(9, 1))]}
    prep = a._prepare(session, batch, {("t", 0): NOTHING})
    starts = [any(type(m) is Truncate for m in w.mutations) for w in prep.work]
    assert starts == [True, False, False, True, False]
    # Resuming inside a snapshot (the checkpoint is a read of it): no truncate.
    resumed = {("t", 0): [rec(5, read(9, 2))]}
    prep = a._prepare(session, resumed, {("t", 0): Checkpoint(4, PgPosition(Lsn(9), 1, snapshot=True))})
    assert not any(type(m) is Truncate for m in prep.work[0].mutations)
