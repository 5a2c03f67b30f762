"""Values at the edges of the other database's types cross the sink intact.

Issue #10: MariaDB's ``uuid`` type refused about a quarter of PostgreSQL uuids,
and MySQL TIME values outside PostgreSQL's ``time`` range were dead-lettered.
Every 128-bit uuid (as key and value) and every MySQL TIME (-838:59:59 ..
838:59:59, as key and value) must reach both replicas and read back equal;
``cdc verify`` must find real source tables holding the edge values equal to
their replicas. Values with no representation on the other side (float
Infinity/NaN into MariaDB) are dead letters whose text uses database notation.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pymysql
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cdc.events import Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.serde import RegistryClient
from cdc.spi import TableName
from cdc.verify import normalizer, verify_table
from connectors.mysql.config import MySqlConnection
from connectors.mysql.sink.dialect import MySqlDialect
from connectors.postgres.config import PostgresConnection
from connectors.postgres.sink.dialect import PostgresDialect
from tests.fixtures.services import mysql_kwargs
from tests.integration.sink.helpers import (
    ApplierHarness,
    EventFactory,
    FakeDeadLetters,
    drop_tables,
    sink_name,
)

pytestmark = pytest.mark.integration

C = ColumnType
_TIME_MAX_US = 3_020_399_999_999  # 838:59:59.999999
_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow,
                                            HealthCheck.function_scoped_fixture])

uuids = st.integers(0, 2**128 - 1).map(lambda i: uuid.UUID(int=i))
times = st.integers(-_TIME_MAX_US, _TIME_MAX_US).map(lambda us: timedelta(microseconds=us))


def _schema(table: str, kind: Kind, native: str, precision: int | None = None,
            schema: str | None = "public") -> TableSchema:
    ct = C(kind, native, precision=precision)
    return TableSchema(TableId("app", schema, table),
                       (Column("k", ct, nullable=False), Column("v", ct)), ("k",))


class RoundTrip:
    """A replica table keyed and valued by one type; rows go in and are read back."""

    def __init__(self, replica: tuple[str, str], registry: RegistryClient, table: str,
                 schema: TableSchema, connector: str) -> None:
        kind, dsn = replica
        self.h = ApplierHarness(kind, dsn, registry, sink_name(f"rt_{table}"), ["src.rt"])
        self.table = table
        drop_tables(self.h.session, table)
        self.f = EventFactory(schema, connector=connector)
        self.norm = normalizer(schema.columns[0].type.kind)

    def check(self, values: list[Any]) -> None:
        """Insert rows k=values[i], v=values[-1-i]; read back; delete them again."""
        rows = [{"k": k, "v": v} for k, v in zip(values, reversed(values), strict=True)]
        res = self.h.apply([self.f.event(Op.CREATE, after=r) for r in rows], topic="src.rt")
        assert res.failure is None and res.dead_letters == 0 and res.applied == len(rows)
        assert self.read() == {(self.norm(r["k"]), self.norm(r["v"])) for r in rows}
        res = self.h.apply([self.f.event(Op.DELETE, before=r) for r in rows], topic="src.rt")
        assert res.failure is None and res.applied == len(rows)
        assert self.read() == set()

    def read(self) -> set[tuple[str | None, str | None]]:
        reader = self.h.dialect.open_reader(self.h.config.target)
        try:
            name = TableName(self.h.dialect.default_schema(self.h.config), self.table)
            return {(self.norm(k), self.norm(v)) for k, v in reader.scan(name, ["k", "v"])}
        finally:
            reader.close()

    def close(self) -> None:
        drop_tables(self.h.session, self.table)
        self.h.close()


@pytest.fixture()
def uuid_trip(replica: tuple[str, str], registry: RegistryClient,
              unique_name: str) -> Iterator[RoundTrip]:
    table = unique_name[:40]
    trip = RoundTrip(replica, registry, table, _schema(table, Kind.UUID, "uuid"), "postgresql")
    yield trip
    trip.close()


@pytest.fixture()
def time_trip(replica: tuple[str, str], registry: RegistryClient,
              unique_name: str) -> Iterator[RoundTrip]:
    table = unique_name[:40]
    trip = RoundTrip(replica, registry, table,
                     _schema(table, Kind.TIME, "time(6)", precision=6, schema=None), "mariadb")
    yield trip
    trip.close()


@_SETTINGS
@given(st.lists(uuids, min_size=1, max_size=20, unique=True))
@example([uuid.UUID("0123e567-e89b-f2d3-0456-426614174000"), uuid.UUID(int=0),
          uuid.UUID(int=2**128 - 1), uuid.UUID("ffffffff-ffff-0fff-0fff-ffffffffffff")])
def test_any_128_bit_postgresql_uuid_reaches_each_replica(uuid_trip: RoundTrip,
                                                          values: list[uuid.UUID]) -> None:
    uuid_trip.check(values)


@_SETTINGS
@given(st.lists(times, min_size=1, max_size=20, unique=True))
@example([timedelta(hours=-838, minutes=-59, seconds=-59), timedelta(microseconds=_TIME_MAX_US),
          timedelta(microseconds=-1), timedelta(0), timedelta(hours=24), timedelta(days=-35, seconds=3601)
          + timedelta(microseconds=1), timedelta(hours=23, minutes=59, seconds=59, microseconds=999_999)])
def test_any_mysql_time_reaches_each_replica(time_trip: RoundTrip,
                                             values: list[timedelta]) -> None:
    time_trip.check(values)


def test_a_large_batch_of_times_takes_the_bulk_path(time_trip: RoundTrip) -> None:
    """1,500 rows in one batch: PostgreSQL applies them through COPY and a staging table."""
    time_trip.check([timedelta(seconds=s * 2011 - 1_500_000) for s in range(1_500)])


def test_verify_finds_edge_uuids_and_times_equal_across_dialects(
        registry: RegistryClient, unique_name: str, pg_source_dsn: str, mysql_source_url: str,
        pg_replica_dsn: str, mysql_replica_url: str) -> None:
    """Real source tables with the edge values, replicated to the other dialect."""
    table = unique_name[:40]
    edge_uuids = [uuid.UUID("0123e567-e89b-f2d3-0456-426614174000"), uuid.UUID(int=0),
                  uuid.UUID(int=2**128 - 1), uuid.UUID("00000000-0000-f000-0000-000000000001")]
    edge_times = [timedelta(hours=-838, minutes=-59, seconds=-59), timedelta(hours=838, minutes=59,
                  seconds=59), timedelta(microseconds=-1), timedelta(hours=24), timedelta(0),
                  timedelta(hours=100, microseconds=500_000)]
    pg = psycopg.connect(pg_source_dsn, autocommit=True)
    my = pymysql.connect(**mysql_kwargs(mysql_source_url))  # type: ignore[arg-type]
    try:
        pg.execute(f"DROP TABLE IF EXISTS {table}")
        pg.execute(f"CREATE TABLE {table} (k uuid PRIMARY KEY, v uuid)")
        for k, v in zip(edge_uuids, reversed(edge_uuids), strict=True):
            pg.execute(f"INSERT INTO {table} VALUES (%s, %s)", (k, v))
        with my.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} (k time(6) PRIMARY KEY, v time(6))")
            cur.executemany(f"INSERT INTO {table} VALUES (%s, %s)",
                            list(zip(edge_times, reversed(edge_times), strict=True)))
        cases = [
            ("mysql", mysql_replica_url, PostgresDialect().open_reader(
                PostgresConnection(dsn=pg_source_dsn)), TableName("public", table),
             _schema(table, Kind.UUID, "uuid"), "postgresql", edge_uuids),
            ("postgres", pg_replica_dsn, MySqlDialect().open_reader(
                MySqlConnection(dsn=mysql_source_url)), TableName("cdc_source", table),
             _schema(table, Kind.TIME, "time(6)", 6, schema=None), "mariadb", edge_times),
        ]
        for kind, dsn, source, source_table, schema, connector, values in cases:
            h = ApplierHarness(kind, dsn, registry, sink_name(f"v_{table}_{kind}"), ["src.v"])
            drop_tables(h.session, table)
            replica = h.dialect.open_reader(h.config.target)
            try:
                f = EventFactory(schema, connector=connector)
                res = h.apply([f.event(Op.READ, after={"k": k, "v": v}) for k, v in
                               zip(values, reversed(values), strict=True)], topic="src.v")
                assert res.failure is None and res.applied == len(values)
                target = TableName(h.dialect.default_schema(h.config), table)
                report = verify_table(source, source_table, replica, target)
                assert report.ok, report
                h.session.execute_ddl([f"DELETE FROM {h.dialect.table_sql(target)}"])
                report = verify_table(source, source_table, replica, target)
                assert not report.ok and len(report.missing) == len(values)
            finally:
                replica.close()
                source.close()
                drop_tables(h.session, table)
                h.close()
    finally:
        pg.execute(f"DROP TABLE IF EXISTS {table}")
        pg.close()
        with my.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        my.close()


def test_values_without_a_representation_are_dead_letters_in_database_notation(
        registry: RegistryClient, unique_name: str, mysql_replica_url: str,
        pg_replica_dsn: str) -> None:
    """Float Infinity/NaN into MariaDB, and a TIME beyond 24:00 into a PostgreSQL
    replica time column a person made: dead letters that say why, in SQL notation."""
    table = unique_name[:40]
    cases = [
        ("mysql", mysql_replica_url, TableSchema(TableId("app", "public", table), (
            Column("k", C(Kind.INT32, "integer"), nullable=False),
            Column("f", C(Kind.FLOAT64, "double precision"))), ("k",)),
         "postgresql", [float("inf"), float("-inf"), float("nan")], None,
         ["Infinity has no", "-Infinity has no", "NaN has no"]),
        ("postgres", pg_replica_dsn, TableSchema(TableId("app", None, table), (
            Column("k", C(Kind.INT32, "int"), nullable=False),
            Column("f", C(Kind.TIME, "time(6)", precision=6))), ("k",)),
         "mariadb", [timedelta(days=-35, seconds=3601), timedelta(hours=24, microseconds=1)],
         f"CREATE TABLE {table} (k integer PRIMARY KEY, f time)",
         ["TIME -838:59:59 is outside", "TIME 24:00:00.000001 is outside"]),
        ("mysql", mysql_replica_url, TableSchema(TableId("app", "public", table[:36] + "_s"), (
            Column("k", C(Kind.INT32, "integer"), nullable=False),
            Column("f", C(Kind.STRING, "character varying(10)", length=10))), ("k",)),
         "postgresql", ["much too long"],
         f"CREATE TABLE {table[:36]}_s (k int PRIMARY KEY, f varchar(3))",
         ["Data too long"]),
    ]
    for n, (kind, dsn, schema, connector, values, ddl, texts) in enumerate(cases):
        letters = FakeDeadLetters()
        # (a hand-made time column is widened to interval unless auto_evolve is off)
        extra = {} if ddl is None else {"tables": {"auto_evolve": False}}
        h = ApplierHarness(kind, dsn, registry, sink_name(f"d{n}_{table}"), ["src.d"],
                           policy="dead_letter", dead_letters=letters, **extra)
        try:
            drop_tables(h.session, schema.table.table)
            if ddl is not None:  # a time column made by hand (or before TIME became interval)
                h.session.execute_ddl([ddl])
            f = EventFactory(schema, connector=connector)
            events = [f.event(Op.CREATE, after={"k": i, "f": v}) for i, v in enumerate(values)]
            events.append(f.event(Op.CREATE, after={"k": 99, "f": None}))
            res = h.apply(events, topic="src.d")
            assert res.failure is None and res.applied == 1 and res.dead_letters == len(values)
            reasons = [x.error for x in letters.letters]
            for text, reason in zip(texts, reasons, strict=True):
                assert text in reason, reason
                label = "refused by the replica" if text == "Data too long" else "does not fit"
                assert reason.startswith(f"{label}: replica table "), reason
                assert "days" not in reason and "_InTable" not in reason and "inf," not in reason
        finally:
            drop_tables(h.session, schema.table.table)
            h.close()
