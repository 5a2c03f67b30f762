"""Applier pieces that need no database: transactional batch cuts, mutations of changes."""

from __future__ import annotations

from typing import Any

from cdc.events import Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.positions import Lsn, PgPosition
from cdc.serde import AvroSerde, DecodedChange, InMemorySchemaRegistry, Tombstone
from cdc.sink.applier import Applier, Record, SinkSettings
from cdc.sink.checkpoint import CheckpointStore
from cdc.sink.reduce import Delete, Move, Upsert
from cdc.sink.schema import ReplicaSchemas, TablePlan, TableSettings
from cdc.spi import ReplicaColumn, ReplicaTable, TableName

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


def test_a_table_without_primary_key_is_a_bad_record_naming_the_table() -> None:
    """Keyless tables are not applied (the sink upserts and deletes by key): each of their
    records is a bad record of kind 'schema' whose error says why and how to fix it;
    policy fail stops the partition just before it, dead_letter sets it aside."""
    from types import SimpleNamespace

    from cdc.sink.checkpoint import NOTHING

    session: Any = SimpleNamespace(dialect=None)  # the key check comes before any database work

    keyless = DecodedChange(op=Op.CREATE, table=KEYLESS.table, schema=KEYLESS, key=None,
                            before=None, after={"at": 1, "msg": "x"}, source={},
                            position=PgPosition(Lsn(5)), unchanged=frozenset(), origin=None,
                            transaction=None, ts_ms=0)
    batch = {("t", 0): [rec(0, change(Op.CREATE, {"id": 1, "v": "a", "big": "b"})),
                        rec(1, keyless)]}
    stops = applier(False)
    stops.schemas.plan = lambda session, topic, d: (  # type: ignore[method-assign]
        plan() if d.schema is SCHEMA else ReplicaSchemas._make(stops.schemas, session, topic,
                                                               d.schema, False))
    prep = stops._prepare(session, batch, {("t", 0): NOTHING})
    assert prep.failure is not None
    assert "public.log has no primary key" in str(prep.failure)
    assert "(schema)" in str(prep.failure)
    assert prep.consumed[("t", 0)] == 1  # the keyed record before it still applies
    assert len(prep.work) == 1

    letters = Applier(
        SinkSettings("s", "g", policy="dead_letter"), AvroSerde(InMemorySchemaRegistry()),
        ReplicaSchemas(TableSettings()), CheckpointStore(TableName(None, "cdc_offsets"), "g"),
        dead_letters=SimpleNamespace(),  # type: ignore[arg-type]  # (letters are only collected here)
    )
    letters.schemas.plan = stops.schemas.plan  # type: ignore[method-assign]
    prep = letters._prepare(session, batch, {("t", 0): NOTHING})
    assert prep.failure is None and prep.consumed[("t", 0)] == 2
    [letter] = prep.letters
    assert letter.kind == "schema" and letter.offset == 1
    assert "has no primary key" in letter.error and "replica identity" in letter.error
