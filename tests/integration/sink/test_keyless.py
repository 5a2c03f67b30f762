"""Tables without a primary key on real replicas (PostgreSQL and MariaDB), without Kafka.

Their rows are matched by the whole image and may be duplicates: every change
applies in source order to ONE matching row, nothing is reduced, a replayed
record is skipped by the checkpoint rule, and a sink restarted over the
existing replica table goes on. `cdc verify` compares such tables as multisets.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
import pymysql
import pytest

from cdc.events import ChangeEvent, Column, ColumnType, Kind, Op, SourceInfo, TableId, TableSchema
from cdc.serde import RegistryClient
from cdc.sink.applier import SinkFailure
from cdc.spi import TableName
from cdc.verify import verify_table
from connectors.mysql.config import MySqlConnection
from connectors.mysql.position import BinlogFile, MySqlPosition
from connectors.mysql.sink.dialect import MySqlDialect
from connectors.postgres.config import PostgresConnection
from connectors.postgres.position import Lsn, PgPosition
from connectors.postgres.sink.dialect import PostgresDialect
from tests.fixtures.services import mysql_kwargs
from tests.integration.sink.helpers import ApplierHarness, drop_tables

pytestmark = pytest.mark.integration

Row = tuple[Any, ...]
COLUMNS = ("at", "msg", "amount", "ratio")


def log_schema(table: str) -> TableSchema:
    return TableSchema(
        TableId("app", "public", table),
        (
            Column("at", ColumnType(Kind.INT64, "bigint")),
            Column("msg", ColumnType(Kind.STRING, "varchar(40)", length=40)),
            Column("amount", ColumnType(Kind.DECIMAL, "numeric(10,2)", precision=10, scale=2)),
            Column("ratio", ColumnType(Kind.FLOAT64, "double precision")),
        ),
        (),
    )


@dataclass
class KeylessEvents:
    """A keyless table's events with increasing positions (PostgreSQL or MySQL ones)."""

    schema: TableSchema
    connector: str = "postgresql"
    pos: int = 1000

    def _source(self) -> SourceInfo:
        self.pos += 10
        position: PgPosition | MySqlPosition
        if self.connector == "mysql":
            position = MySqlPosition(BinlogFile("mysql-bin.000001"), self.pos, 0, last_in_tx=True)
        else:
            position = PgPosition(Lsn(self.pos), 0, last_in_tx=True)
        return SourceInfo(self.connector, "src", "0.1", "18", position, 1_700_000_000_000,
                          tx_id=str(self.pos))

    def _event(self, op: Op, before: Row | None, after: Row | None) -> ChangeEvent:
        def image(r: Row | None) -> dict[str, Any] | None:
            return None if r is None else dict(zip(COLUMNS, r, strict=True))

        return ChangeEvent(op, self.schema, None, image(before), image(after), self._source(),
                           1_700_000_000_000)

    def insert(self, row: Row) -> ChangeEvent:
        return self._event(Op.CREATE, None, row)

    def update(self, old: Row, new: Row) -> ChangeEvent:
        return self._event(Op.UPDATE, old, new)

    def delete(self, old: Row) -> ChangeEvent:
        return self._event(Op.DELETE, old, None)

    def truncate(self) -> ChangeEvent:
        return ChangeEvent(Op.TRUNCATE, self.schema, None, None, None, self._source(),
                           1_700_000_000_000)


@dataclass
class Multiset:
    """What the replica must hold: a Counter of rows, and the events that made it."""

    rows: Counter[Row] = field(default_factory=Counter)
    events: list[ChangeEvent] = field(default_factory=list)

    def random_workload(self, f: KeylessEvents, n: int, rng: random.Random) -> None:
        # A small pool of rows, so duplicates are the rule; NULLs in every column.
        pool = [(rng.choice([1, 2, None]), rng.choice(["a", "é'\\", None]),
                 rng.choice([Decimal("1.50"), Decimal("-0.01"), None]),
                 rng.choice([0.1, -2.5e300, None])) for _ in range(8)]
        for _ in range(n):
            live = sorted(self.rows.elements(), key=repr)
            r = rng.random()
            if r < 0.45 or not live:
                row = rng.choice(pool)
                self.events.append(f.insert(row))
                self.rows[row] += 1
            elif r < 0.7:
                old, new = rng.choice(live), rng.choice(pool)
                self.events.append(f.update(old, new))
                self.rows[old] -= 1
                self.rows[new] += 1
            elif r < 0.98:
                old = rng.choice(live)
                self.events.append(f.delete(old))
                self.rows[old] -= 1
            else:
                self.events.append(f.truncate())
                self.rows.clear()
        self.rows = +self.rows


def replica_rows(h: ApplierHarness, table: str) -> Counter[Row]:
    rows = h.session.query(
        f"SELECT at, msg, amount, ratio FROM {h.dialect.table_sql(TableName(None, table))}")
    h.session.rollback()
    return Counter((None if a is None else int(a), m, am, None if r is None else float(r))
                   for a, m, am, r in rows)


@pytest.fixture()
def table(replica: tuple[str, str], registry: RegistryClient,
          unique_name: str) -> Iterator[tuple[str, str, str]]:
    kind, dsn = replica
    h = ApplierHarness(kind, dsn, registry, unique_name, [f"src.public.{unique_name}"])
    drop_tables(h.session, unique_name)
    h.close()
    yield kind, dsn, unique_name
    h = ApplierHarness(kind, dsn, registry, unique_name, [f"src.public.{unique_name}"])
    drop_tables(h.session, unique_name)
    h.close()


def harness(table: tuple[str, str, str], registry: RegistryClient) -> ApplierHarness:
    kind, dsn, name = table
    return ApplierHarness(kind, dsn, registry, name, [f"src.public.{name}"])


def apply_in_batches(h: ApplierHarness, events: Sequence[ChangeEvent], rng: random.Random) -> None:
    i = 0
    while i < len(events):
        n = rng.choice([1, 2, 7, 40, 300])
        result = h.apply(events[i : i + n])
        assert result.failure is None, result.failure
        i += n


@pytest.mark.parametrize("connector", ["postgresql", "mysql"])
def test_duplicates_nulls_and_one_of_two_identical_rows(
    table: tuple[str, str, str], registry: RegistryClient, connector: str,
) -> None:
    """Two equal inserts are two rows; an update or delete of one of two identical rows
    touches exactly one; NULLs match NULLs; the replica table is created without a key."""
    f = KeylessEvents(log_schema(table[2]), connector)
    a = (1, "same", Decimal("1.50"), 0.1)
    b = (None, None, None, None)
    h = harness(table, registry)
    try:
        h.apply([f.insert(a), f.insert(a), f.insert(b), f.insert(b)])
        assert replica_rows(h, table[2]) == Counter({a: 2, b: 2})
        desc = h.session.describe(TableName(None, table[2]))
        assert desc is not None and desc.primary_key == ()
        # One batch: update one of the two a's, delete one of the two NULL rows.
        changed = (1, "changed", Decimal("1.50"), 0.1)
        h.apply([f.update(a, changed), f.delete(b)])
        assert replica_rows(h, table[2]) == Counter({a: 1, changed: 1, b: 1})
        # In separate batches: the other copies, then a delete of a row no longer there
        # (a diverged replica: skipped, as PostgreSQL's own replication does).
        h.apply([f.delete(a)])
        h.apply([f.update(b, a)])
        h.apply([f.delete(b)])
        assert replica_rows(h, table[2]) == Counter({changed: 1, a: 1})
    finally:
        h.close()


@pytest.mark.parametrize("connector", ["postgresql", "mysql"])
def test_randomized_workload_replay_and_restart_equal_the_multiset(
    table: tuple[str, str, str], registry: RegistryClient, connector: str,
) -> None:
    """A random workload of duplicate-heavy inserts, updates, deletes and truncates, in
    batches of varying size, equals a Counter model; records applied again (a consumer
    that re-reads after a crash) change nothing; a new sink over the existing table
    (a restart) applies the next changes and still equals the model."""
    rng = random.Random(11)
    f = KeylessEvents(log_schema(table[2]), connector)
    model = Multiset()
    model.random_workload(f, 400, rng)
    h = harness(table, registry)
    try:
        records = h.records(model.events)
        i = 0
        while i < len(records):
            n = rng.choice([1, 2, 7, 40, 300])
            assert h.apply_records(records[i : i + n]).failure is None
            i += n
        assert replica_rows(h, table[2]) == model.rows
        # Replay everything (same offsets): skipped by the checkpoint rule.
        replay = h.apply_records(records[-150:])
        assert replay.applied == 0 and replay.skipped == 150
        assert replica_rows(h, table[2]) == model.rows
    finally:
        h.close()
    # A restart: a new applier that finds the table and its checkpoint.
    h = harness(table, registry)
    try:
        h.offsets = {(records[0].topic, 0): len(records)}
        again = Multiset(rows=Counter(model.rows))
        again.random_workload(f, 200, rng)
        apply_in_batches(h, again.events, rng)
        assert replica_rows(h, table[2]) == again.rows
    finally:
        h.close()


@pytest.mark.parametrize("connector", ["postgresql", "mysql"])
def test_single_precision_and_edge_values_match_exactly(
    table: tuple[str, str, str], registry: RegistryClient, connector: str,
) -> None:
    """A single-precision column holds the value rounded to float32 (PostgreSQL's text
    0.1 arrives as the double 0.1): matching rounds alike, so an update and a delete
    find their row; also the float extremes, an empty string and hostile text."""
    schema = TableSchema(
        TableId("app", "public", table[2]),
        (Column("r", ColumnType(Kind.FLOAT32, "real")),
         Column("d", ColumnType(Kind.FLOAT64, "double precision")),
         Column("s", ColumnType(Kind.STRING, "text"))),
        (),
    )
    f = KeylessEvents(schema, connector)
    rows = [(0.1, 0.1, "é'\\\" 🙂"), (3e38, 1.7976931348623157e308, ""),
            (-1.401298464324817e-45, 5e-324, "%s")]

    def ev(op: Op, before: Row | None, after: Row | None) -> ChangeEvent:
        def image(r: Row | None) -> dict[str, Any] | None:
            return None if r is None else dict(zip(("r", "d", "s"), r, strict=True))

        return ChangeEvent(op, schema, None, image(before), image(after), f._source(),
                           1_700_000_000_000)

    h = harness(table, registry)
    try:
        h.apply([ev(Op.CREATE, None, r) for r in rows + rows])
        h.apply([ev(Op.UPDATE, r, (1.5, 2.5, "u")) for r in rows])
        h.apply([ev(Op.DELETE, r, None) for r in rows])
        got = h.session.query(f"SELECT r, d, s FROM {h.dialect.table_sql(TableName(None, table[2]))}")
        h.session.rollback()
        assert sorted(tuple(g) for g in got) == [(1.5, 2.5, "u")] * 3
    finally:
        h.close()


def test_values_without_plain_equality_match_on_both_replicas(
    table: tuple[str, str, str], registry: RegistryClient,
) -> None:
    """PostgreSQL-typed rows (json, jsonb, an integer array, timestamps, uuid, bytes,
    time) into either replica: updates and deletes of one of two identical rows find
    it (json has no equality operator in PostgreSQL; MySQL compares JSON by value)."""
    import uuid
    from datetime import UTC, datetime, timedelta

    names = ("j", "jb", "arr", "ts", "tstz", "u", "b", "t")
    schema = TableSchema(
        TableId("app", "public", table[2]),
        (Column("j", ColumnType(Kind.JSON, "json")),
         Column("jb", ColumnType(Kind.JSON, "jsonb")),
         Column("arr", ColumnType(Kind.ARRAY, "integer[]", element=ColumnType(Kind.INT32, "integer"))),
         Column("ts", ColumnType(Kind.TIMESTAMP, "timestamp(6) without time zone", precision=6)),
         Column("tstz", ColumnType(Kind.TIMESTAMPTZ, "timestamp(6) with time zone", precision=6)),
         Column("u", ColumnType(Kind.UUID, "uuid")),
         Column("b", ColumnType(Kind.BYTES, "bytea")),
         Column("t", ColumnType(Kind.TIME, "time(6) without time zone", precision=6))),
        (),
    )
    f = KeylessEvents(schema)
    a: Row = ('{"b": 1,  "a": [true, null]}', '{"b": 1, "a": [true, null]}', [1, None, -3],
              datetime(2024, 2, 29, 23, 59, 59, 999999), datetime(1970, 1, 1, tzinfo=UTC),
              uuid.UUID("12345678-1234-5678-1234-567812345678"), b"\x00'\\",
              timedelta(hours=23, minutes=59, seconds=59, microseconds=1))
    b: Row = ("[]", "{}", [], datetime(2000, 1, 1), datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
              uuid.UUID(int=1), b"", timedelta(0))

    def ev(op: Op, before: Row | None, after: Row | None) -> ChangeEvent:
        def image(r: Row | None) -> dict[str, Any] | None:
            return None if r is None else dict(zip(names, r, strict=True))

        return ChangeEvent(op, schema, None, image(before), image(after), f._source(),
                           1_700_000_000_000)

    h = harness(table, registry)
    try:
        assert h.apply([ev(Op.CREATE, None, a), ev(Op.CREATE, None, a),
                        ev(Op.CREATE, None, b)]).failure is None
        assert h.apply([ev(Op.UPDATE, a, b)]).failure is None
        assert h.apply([ev(Op.DELETE, b, None), ev(Op.DELETE, a, None)]).failure is None
        t = h.dialect.table_sql(TableName(None, table[2]))
        got = h.session.query(f"SELECT count(*), count(DISTINCT u) FROM {t}")
        h.session.rollback()
        assert tuple(got[0]) == (1, 1)  # one b left: of the two a's one became b, one deleted
        left = h.session.query(f"SELECT b FROM {t}")
        h.session.rollback()
        assert bytes(left[0][0]) == b""
    finally:
        h.close()


def test_change_without_whole_old_row_stops_with_the_fix(
    table: tuple[str, str, str], registry: RegistryClient,
) -> None:
    """An update without the whole before image (a source that does not log old rows in
    full) cannot be matched: policy fail stops just before it, naming the fix."""
    f = KeylessEvents(log_schema(table[2]))
    row = (1, "x", Decimal("1.00"), 1.0)
    h = harness(table, registry)
    try:
        for before in (None, {"at": 1}):
            first = f.insert(row)
            bad = ChangeEvent(Op.UPDATE, f.schema, None, before,
                              dict(zip(COLUMNS, row, strict=True)), f._source(), 1_700_000_000_000)
            result = h.apply([first, bad, f.insert(row)])
            assert isinstance(result.failure, SinkFailure)
            assert "before image" in str(result.failure)
            assert "REPLICA IDENTITY FULL" in str(result.failure)
            h.checkpoints.clear()  # the worker reloads them after a failure
        assert replica_rows(h, table[2]) == Counter({row: 2})
    finally:
        h.close()


def test_verify_compares_keyless_tables_as_multisets(
    pg_source_dsn: str, mysql_replica_url: str, unique_name: str,
) -> None:
    """A PostgreSQL keyless table and a MariaDB one: equal as multisets (duplicates
    counted, NULLs, values normalised across dialects), then one copy of a duplicate
    missing, then one extra copy, each reported as the row."""
    t = TableName(None, unique_name)
    rows = [(1, "dup", Decimal("2.50"), 0.5), (1, "dup", Decimal("2.50"), 0.5),
            (None, None, None, None), (2, "é", Decimal("-1.00"), -1e-300)]
    ins = f"INSERT INTO {unique_name} VALUES (%s, %s, %s, %s)"
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {unique_name} (a int, s text, n numeric(6,2), f float8)")
        for r in rows:
            conn.execute(ins, r)
    my = pymysql.connect(**mysql_kwargs(mysql_replica_url))  # type: ignore[arg-type]
    with my.cursor() as cur:
        cur.execute(f"CREATE TABLE {unique_name} (a int, s text, n decimal(6,2), f double) "
                    "DEFAULT CHARSET=utf8mb4")
        cur.executemany(ins, rows)
    my.commit()
    pg_reader = PostgresDialect().open_reader(PostgresConnection(dsn=pg_source_dsn))
    my_reader = MySqlDialect().open_reader(MySqlConnection(dsn=mysql_replica_url))
    try:
        assert verify_table(pg_reader, t, my_reader, t).ok
        with my.cursor() as cur:
            cur.execute(f"DELETE FROM {unique_name} WHERE s = 'dup' LIMIT 1")
        my.commit()
        report = verify_table(pg_reader, t, my_reader, t, chunk_rows=2)
        assert not report.ok and report.missing == [("1", "dup", "2.5", "0.5")]
        assert report.extra == [] and report.different == []
        with my.cursor() as cur:
            cur.execute(f"INSERT INTO {unique_name} VALUES (1, 'dup', 2.5, 0.5), (1, 'dup', 2.5, 0.5)")
        my.commit()
        report = verify_table(pg_reader, t, my_reader, t)
        assert not report.ok and report.extra == [("1", "dup", "2.5", "0.5")]
        assert report.missing == []
    finally:
        pg_reader.close()
        my_reader.close()
        with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {unique_name}")
        with my.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {unique_name}")
        my.close()
