"""The applier against real replicas (PostgreSQL and MariaDB), without Kafka.

Records are encoded with the real serde and registry and applied batch by
batch as the worker would; these tests cover what happens *in the database*
(reduction, key changes, TOAST, truncates, errors, fencing, origin, DDL).
The Kafka-facing behaviour is in test_worker.py.
"""

from __future__ import annotations

import random
import zlib
from decimal import Decimal

import pytest

from cdc.events import Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.serde import POS_INFINITY, RegistryClient
from cdc.sink.applier import SinkFailure
from cdc.sink.checkpoint import Checkpoint, FencedError
from cdc.spi import TableName
from tests.integration.sink.helpers import (
    ApplierHarness,
    EventFactory,
    FakeDeadLetters,
    Model,
    drop_tables,
    items_schema,
    read_rows,
)

pytestmark = pytest.mark.integration


@pytest.fixture()
def harness(replica: tuple[str, str], registry: RegistryClient, unique_name: str):  # type: ignore[no-untyped-def]
    kind, dsn = replica
    h = ApplierHarness(kind, dsn, registry, unique_name, [f"src.public.{unique_name}"])
    drop_tables(h.session, unique_name)
    yield h
    drop_tables(h.session, unique_name)
    h.close()


def test_randomized_workload_equals_the_model(harness: ApplierHarness, unique_name: str) -> None:
    rng = random.Random(7)
    f = EventFactory(items_schema(unique_name))
    model = Model()
    model.random_workload(f, 800, rng)
    events = model.events
    i = 0
    while i < len(events):  # batches of varying size, as max_rows/max_wait cut them
        n = rng.choice([1, 3, 17, 64, 250])
        harness.apply(events[i : i + n])
        i += n
    assert read_rows(harness.session, unique_name) == model.rows


def test_large_batches_take_the_bulk_path(harness: ApplierHarness, unique_name: str) -> None:
    f = EventFactory(items_schema(unique_name))
    rows = [{"id": i, "v": i, "label": "a", "big": "b"} for i in range(3000)]
    harness.apply([f.event(Op.READ, after=r) for r in rows])
    upd = [{**r, "v": -r["v"]} for r in rows]
    res = harness.apply([f.event(Op.UPDATE, after=r) for r in upd]
                        + [f.event(Op.DELETE, before=r) for r in rows[:1500]])
    assert res.applied == 4500
    got = read_rows(harness.session, unique_name)
    assert got == {r["id"]: r for r in upd[1500:]}


def test_replays_at_new_offsets_are_skipped(harness: ApplierHarness, unique_name: str) -> None:
    f = EventFactory(items_schema(unique_name))
    events = [f.event(Op.CREATE, after={"id": i, "v": 1, "label": "a", "big": "b"}) for i in range(5)]
    events += [f.event(Op.UPDATE, after={"id": i, "v": 2, "label": "a", "big": "b"}) for i in range(5)]
    harness.apply(events)
    # The source restarts and re-publishes from an older position: same positions, new offsets.
    res = harness.apply(events[:7])
    assert res.applied == 0 and res.skipped == 7
    assert {r["v"] for r in read_rows(harness.session, unique_name).values()} == {2}
    # A genuinely new event after the replay still applies.
    res = harness.apply([f.event(Op.UPDATE, after={"id": 0, "v": 3, "label": "a", "big": "b"})])
    assert res.applied == 1
    assert read_rows(harness.session, unique_name)[0]["v"] == 3


def test_unchanged_toast_columns_keep_the_replica_value(harness: ApplierHarness,
                                                        unique_name: str) -> None:
    f = EventFactory(items_schema(unique_name))
    harness.apply([f.event(Op.CREATE, after={"id": 1, "v": 1, "label": "a", "big": "BIG"})])
    # In a later batch: the replica must keep 'big'.
    harness.apply([f.event(Op.UPDATE, after={"id": 1, "v": 2, "label": "b"}, unchanged=["big"])])
    # In one batch with the insert: merged in memory.
    harness.apply([
        f.event(Op.CREATE, after={"id": 2, "v": 1, "label": "a", "big": "BIG2"}),
        f.event(Op.UPDATE, after={"id": 2, "v": 5, "label": "c"}, unchanged=["big"]),
        # A key change that keeps the unsent column from the replica's row.
        f.event(Op.UPDATE, after={"id": 3, "v": 9, "label": "m"}, before={"id": 1},
                unchanged=["big"]),
    ])
    rows = read_rows(harness.session, unique_name)
    assert rows == {
        2: {"id": 2, "v": 5, "label": "c", "big": "BIG2"},
        3: {"id": 3, "v": 9, "label": "m", "big": "BIG"},
    }


def test_truncate_with_one_partition_empties_the_table(harness: ApplierHarness,
                                                       unique_name: str) -> None:
    f = EventFactory(items_schema(unique_name))
    harness.apply([f.event(Op.CREATE, after={"id": i, "v": i, "label": "a", "big": "b"})
                   for i in range(10)])
    harness.apply([
        f.event(Op.CREATE, after={"id": 100, "v": 0, "label": "a", "big": "b"}),
        f.event(Op.TRUNCATE),
        f.event(Op.CREATE, after={"id": 200, "v": 0, "label": "a", "big": "b"}),
    ])
    assert set(read_rows(harness.session, unique_name)) == {200}


def test_truncate_per_partition_removes_only_that_partitions_rows(
        replica: tuple[str, str], registry: RegistryClient, unique_name: str) -> None:
    kind, dsn = replica
    parts = 3
    h = ApplierHarness(kind, dsn, registry, unique_name, [f"src.public.{unique_name}"],
                       partitions=parts)
    drop_tables(h.session, unique_name)
    try:
        f = EventFactory(items_schema(unique_name))
        by_part: dict[int, list[int]] = {p: [] for p in range(parts)}
        for i in range(60):
            ev = f.event(Op.CREATE, after={"id": i, "v": i, "label": "a", "big": "b"})
            key = h.serde.encode(ev).key
            assert key is not None
            p = zlib.crc32(key) % parts  # where librdkafka's producer puts it
            by_part[p].append(i)
            h.apply([ev], partition=p)
        # The source's truncate reaches every partition; partition 1's comes first.
        trunc = f.event(Op.TRUNCATE)
        h.apply([trunc], partition=1)
        assert set(read_rows(h.session, unique_name)) == set(by_part[0] + by_part[2])
        h.apply([trunc], partition=0)
        h.apply([trunc], partition=2)
        assert read_rows(h.session, unique_name) == {}
    finally:
        drop_tables(h.session, unique_name)
        h.close()


def test_bad_rows_are_dead_lettered_and_good_rows_apply(
        replica: tuple[str, str], registry: RegistryClient, unique_name: str) -> None:
    kind, dsn = replica
    dlq = FakeDeadLetters()
    h = ApplierHarness(kind, dsn, registry, unique_name, [f"src.public.{unique_name}"],
                       policy="dead_letter", dead_letters=dlq)
    drop_tables(h.session, unique_name)
    try:
        schema = TableSchema(TableId("app", "public", unique_name), (
            Column("id", ColumnType(Kind.INT64, "bigint"), nullable=False),
            Column("s", ColumnType(Kind.STRING, "varchar(5)", length=5)),
            Column("n", ColumnType(Kind.DECIMAL, "numeric", nan=True)),
            Column("d", ColumnType(Kind.DATE, "date")),
        ), ("id",))
        f = EventFactory(schema)
        good = {"id": 1, "s": "ok", "n": Decimal("1.5"), "d": None}
        events = [
            f.event(Op.CREATE, after=good),
            # The replica's varchar(5) refuses it: found by the row-by-row retry.
            f.event(Op.CREATE, after={"id": 2, "s": "too long", "n": None, "d": None}),
            f.event(Op.CREATE, after={"id": 3, "s": "ok3", "n": None, "d": None}),
        ]
        if kind == "mysql":  # values MariaDB cannot hold: refused before the database
            events.append(f.event(Op.CREATE, after={"id": 4, "s": "x", "n": Decimal("NaN"), "d": None}))
            events.append(f.event(Op.CREATE, after={"id": 5, "s": "x", "n": None, "d": POS_INFINITY}))
        else:  # PostgreSQL holds NaN and infinity
            events.append(f.event(Op.CREATE, after={"id": 4, "s": "x", "n": Decimal("NaN"), "d": POS_INFINITY}))
        events.append(f.event(Op.CREATE, after={"id": 6, "s": "ok6", "n": None, "d": None}))
        res = h.apply(events)
        bad = {letter.offset for letter in dlq.letters}
        if kind == "mysql":
            assert bad == {1, 3, 4}
            assert {letter.kind for letter in dlq.letters} == {"apply", "value"}
            expected_ids = {1, 3, 6}
        else:
            assert bad == {1}
            expected_ids = {1, 3, 4, 6}
        assert res.dead_letters == len(bad)
        ids = {r[0] for r in h.session.query(
            f"SELECT id FROM {h.dialect.table_sql(TableName(None, unique_name))}")}
        h.session.rollback()
        assert ids == expected_ids
        assert h.checkpoints[(f"src.public.{unique_name}", 0)].offset == len(events) - 1
        letter = dlq.letters[0]
        assert letter.value is not None and unique_name in letter.error
    finally:
        drop_tables(h.session, unique_name)
        h.close()


def test_fail_policy_applies_up_to_the_bad_record_then_stops(
        harness: ApplierHarness, unique_name: str) -> None:
    h = harness
    schema = TableSchema(TableId("app", "public", unique_name), (
        Column("id", ColumnType(Kind.INT64, "bigint"), nullable=False),
        Column("s", ColumnType(Kind.STRING, "varchar(3)", length=3)),
    ), ("id",))
    f = EventFactory(schema)
    events = [f.event(Op.CREATE, after={"id": i, "s": "abcd" if i == 3 else "ab"}) for i in range(6)]
    with pytest.raises(SinkFailure, match=r"@3 cannot be applied"):
        res = h.apply(events)
        assert res.failure is not None
        raise res.failure
    ids = {r[0] for r in h.session.query(
        f"SELECT id FROM {h.dialect.table_sql(TableName(None, unique_name))}")}
    h.session.rollback()
    assert ids == {0, 1, 2}
    assert h.checkpoints[(f"src.public.{unique_name}", 0)].offset == 2


def test_a_stale_worker_is_fenced(replica: tuple[str, str], registry: RegistryClient,
                                  unique_name: str) -> None:
    kind, dsn = replica
    a = ApplierHarness(kind, dsn, registry, unique_name, [f"src.public.{unique_name}"])
    drop_tables(a.session, unique_name)
    b = ApplierHarness(kind, dsn, registry, unique_name, [f"src.public.{unique_name}"])
    try:
        f = EventFactory(items_schema(unique_name))
        recs = a.records([f.event(Op.CREATE, after={"id": i, "v": 0, "label": "a", "big": "b"})
                          for i in range(4)])
        tp = (recs[0].topic, 0)
        b.checkpoints[tp] = Checkpoint()
        a.apply_records(recs[:2])  # a owns the partition and moves it to offset 1
        with pytest.raises(FencedError) as e:  # b still thinks nothing was applied
            b.apply_records(recs)
        assert e.value.stored[tp].offset == 1
        assert set(read_rows(a.session, unique_name)) == {0, 1}
    finally:
        drop_tables(a.session, unique_name)
        a.close()
        b.close()


def test_auto_evolve_name_map_and_column_filter(replica: tuple[str, str], registry: RegistryClient,
                                                unique_name: str) -> None:
    kind, dsn = replica
    topic = f"src.public.{unique_name}"
    target = f"{unique_name}_copy"
    h = ApplierHarness(kind, dsn, registry, unique_name, [topic],
                       tables={"name_map": {topic: target},
                               "columns": {topic: {"exclude": ["secret"]}}})
    drop_tables(h.session, target)
    try:
        v1 = TableSchema(TableId("app", "public", unique_name), (
            Column("id", ColumnType(Kind.INT32, "integer"), nullable=False),
            Column("name", ColumnType(Kind.STRING, "varchar(5)", length=5), nullable=False),
            Column("secret", ColumnType(Kind.STRING, "text")),
        ), ("id",))
        f1 = EventFactory(v1)
        h.apply([f1.event(Op.CREATE, after={"id": 1, "name": "abc", "secret": "pw"})])
        v2 = TableSchema(v1.table, (
            Column("id", ColumnType(Kind.INT32, "integer"), nullable=False),
            Column("name", ColumnType(Kind.STRING, "varchar(50)", length=50), nullable=False),
            Column("secret", ColumnType(Kind.STRING, "text")),
            Column("score", ColumnType(Kind.DECIMAL, "numeric(8,2)", precision=8, scale=2)),
        ), ("id",))
        f2 = EventFactory(v2, lsn=f1.lsn)
        h.apply([f2.event(Op.CREATE, after={"id": 2, "name": "a much longer name",
                                            "secret": "pw", "score": Decimal("12.50")})])
        desc = h.session.describe(TableName(None, target))
        assert desc is not None
        assert [c.name for c in desc.columns] == ["id", "name", "score"]
        name_col = desc.column("name")
        assert name_col is not None and name_col.length == 50
        rows = sorted(h.session.query(
            f"SELECT id, name, score FROM {h.dialect.table_sql(TableName(None, target))}"))
        h.session.rollback()
        assert rows == [(1, "abc", None), (2, "a much longer name", Decimal("12.50"))]
    finally:
        drop_tables(h.session, target)
        h.close()


def test_events_of_the_sinks_own_origin_are_skipped(replica: tuple[str, str],
                                                    registry: RegistryClient,
                                                    unique_name: str) -> None:
    kind, dsn = replica
    h = ApplierHarness(kind, dsn, registry, unique_name, [f"src.public.{unique_name}"],
                       origin="replica_x")
    drop_tables(h.session, unique_name)
    slot = f"{unique_name}_slot"[:63]
    try:
        if kind == "postgres":
            h.session.execute_ddl([f"SELECT pg_create_logical_replication_slot('{slot}', 'test_decoding')"])
        f = EventFactory(items_schema(unique_name))
        looped = f.event(Op.CREATE, after={"id": 1, "v": 0, "label": "loop", "big": "b"})
        looped = type(looped)(**{**{k: getattr(looped, k) for k in looped.__dataclass_fields__},
                                 "source": type(looped.source)(**{
                                     **{k: getattr(looped.source, k)
                                        for k in looped.source.__dataclass_fields__},
                                     "origin": "replica_x"})})
        res = h.apply([looped, f.event(Op.CREATE, after={"id": 2, "v": 0, "label": "a", "big": "b"})])
        assert res.skipped == 1 and res.applied == 1
        assert set(read_rows(h.session, unique_name)) == {2}
        if kind == "postgres":
            changes = h.session.query(
                "SELECT data FROM pg_logical_slot_peek_changes(%s, NULL, NULL)", [slot])
            local = h.session.query(
                "SELECT data FROM pg_logical_slot_peek_changes(%s, NULL, NULL, 'only-local', '1')",
                [slot])
            (bound,) = h.session.query("SELECT pg_replication_origin_session_is_setup()")[0]
            h.session.rollback()
            # the sink's transaction carries its replication origin: only-local leaves it out
            assert any("INSERT" in d for (d,) in changes)
            assert not any("INSERT" in d for (d,) in local)
            assert bound
        else:
            (skip,) = h.session.query("SELECT @@skip_replication")[0]
            h.session.rollback()
            assert skip == 1  # every event of the session carries the skip_replication flag
    finally:
        if kind == "postgres":
            h.session.execute_ddl([f"SELECT pg_drop_replication_slot('{slot}')"])
        drop_tables(h.session, unique_name)
        h.close()
