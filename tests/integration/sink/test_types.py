"""Every type family reaches the replica intact, same-kind and cross-dialect.

A "source" table is created in the source database with native types and
filled directly; the same rows are turned into the events a source would
emit (canonical values, native type names) and applied to each replica.
``cdc verify`` (``verify_table``) must then find source and replica equal,
which checks the sink's type mapping and the verifier's normalisation at
once; then a replica row is changed and deleted, and verify must say so.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pymysql
import pytest

from cdc.events import Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.serde import RegistryClient
from cdc.spi import TableName, TableReader
from cdc.verify import verify_table
from connectors.mysql.config import MySqlConnection
from connectors.mysql.sink.dialect import MySqlDialect
from connectors.postgres.config import PostgresConnection
from connectors.postgres.sink.dialect import PostgresDialect
from tests.fixtures.services import mysql_kwargs
from tests.integration.sink.helpers import ApplierHarness, EventFactory, drop_tables

pytestmark = pytest.mark.integration

C = ColumnType
U = uuid.UUID("12345678-1234-5678-1234-567812345678")


def pg_source_table(name: str) -> tuple[list[str], TableSchema, list[dict[str, Any]], list[tuple[Any, ...]]]:
    ddl = [
        f"CREATE TYPE {name}_mood AS ENUM ('sad', 'happy')",
        f"""CREATE TABLE {name} (id bigint PRIMARY KEY, b boolean, i2 smallint, i4 integer,
            i8 bigint, f4 real, f8 double precision, n numeric(12,3), nn numeric,
            s varchar(20), t text, j jsonb, e {name}_mood, by bytea, bt bit(10), u uuid,
            d date, tm time(6), tz time with time zone, ts timestamp(6), tstz timestamptz,
            iv interval, arr integer[], tarr text[])""",
    ]
    columns = (
        Column("id", C(Kind.INT64, "bigint"), nullable=False),
        Column("b", C(Kind.BOOLEAN, "boolean")),
        Column("i2", C(Kind.INT16, "smallint")),
        Column("i4", C(Kind.INT32, "integer")),
        Column("i8", C(Kind.INT64, "bigint")),
        Column("f4", C(Kind.FLOAT32, "real")),
        Column("f8", C(Kind.FLOAT64, "double precision")),
        Column("n", C(Kind.DECIMAL, "numeric(12,3)", precision=12, scale=3, nan=True)),
        Column("nn", C(Kind.DECIMAL, "numeric", nan=True)),
        Column("s", C(Kind.STRING, "character varying(20)", length=20)),
        Column("t", C(Kind.STRING, "text")),
        Column("j", C(Kind.JSON, "jsonb")),
        Column("e", C(Kind.ENUM, f"public.{name}_mood", values=("sad", "happy"))),
        Column("by", C(Kind.BYTES, "bytea")),
        Column("bt", C(Kind.BITS, "bit(10)", length=10)),
        Column("u", C(Kind.UUID, "uuid")),
        Column("d", C(Kind.DATE, "date")),
        Column("tm", C(Kind.TIME, "time(6) without time zone", precision=6)),
        Column("tz", C(Kind.TIMETZ, "time with time zone")),
        Column("ts", C(Kind.TIMESTAMP, "timestamp(6) without time zone", precision=6)),
        Column("tstz", C(Kind.TIMESTAMPTZ, "timestamp with time zone")),
        Column("iv", C(Kind.INTERVAL, "interval")),
        Column("arr", C(Kind.ARRAY, "integer[]", element=C(Kind.INT32, "integer"))),
        Column("tarr", C(Kind.ARRAY, "text[]", element=C(Kind.STRING, "text"))),
    )
    schema = TableSchema(TableId("cdc_source", "public", name), columns, ("id",))
    canonical = {
        "id": 1, "b": True, "i2": -2, "i4": 3, "i8": 4_000_000_000, "f4": 1.5, "f8": 2.25,
        "n": Decimal("123.456"), "nn": Decimal("1.5"), "s": "héllo", "t": "long text",
        "j": '{"a": 1, "b": [1, 2]}', "e": "happy", "by": b"\x00\xff", "bt": b"\x02\x05",
        "u": U, "d": date(2024, 2, 29), "tm": timedelta(hours=12, minutes=34, seconds=56, microseconds=789),
        "tz": "12:34:56+02:00", "ts": datetime(2024, 1, 2, 3, 4, 5, 6),
        "tstz": datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC), "iv": "P1Y2M3DT4H5M6S",
        "arr": [1, 2, None], "tarr": ["a", "b"],
    }
    db_row = (1, True, -2, 3, 4_000_000_000, 1.5, 2.25, Decimal("123.456"), Decimal("1.5"),
              "héllo", "long text", '{"a": 1, "b": [1, 2]}', "happy", b"\x00\xff", "1000000101", U,
              date(2024, 2, 29), time(12, 34, 56, 789), "12:34:56+02", datetime(2024, 1, 2, 3, 4, 5, 6),
              datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC), "P1Y2M3DT4H5M6S", [1, 2, None], ["a", "b"])
    nulls = {c.name: None for c in columns} | {"id": 2}
    return ddl, schema, [canonical, nulls], [db_row, (2,) + (None,) * (len(columns) - 1)]


def my_source_table(name: str) -> tuple[list[str], TableSchema, list[dict[str, Any]], list[tuple[Any, ...]]]:
    ddl = [f"""CREATE TABLE {name} (id bigint PRIMARY KEY, b tinyint(1), i2 smallint, i4 int,
            i8 bigint, u8 bigint unsigned, f4 float, f8 double, n decimal(12,3), s varchar(20),
            t text, j json, e enum('sad','happy'), st set('x','y'), `by` varbinary(16), bl blob,
            bt bit(10), d date, tm time(6), dt datetime(6), ts timestamp(6) NULL, y year)
            DEFAULT CHARSET=utf8mb4"""]
    columns = (
        Column("id", C(Kind.INT64, "bigint"), nullable=False),
        Column("b", C(Kind.BOOLEAN, "tinyint(1)")),
        Column("i2", C(Kind.INT16, "smallint")),
        Column("i4", C(Kind.INT32, "int")),
        Column("i8", C(Kind.INT64, "bigint")),
        Column("u8", C(Kind.UINT64, "bigint unsigned")),
        Column("f4", C(Kind.FLOAT32, "float")),
        Column("f8", C(Kind.FLOAT64, "double")),
        Column("n", C(Kind.DECIMAL, "decimal(12,3)", precision=12, scale=3)),
        Column("s", C(Kind.STRING, "varchar(20)", length=20)),
        Column("t", C(Kind.STRING, "text", length=65535)),
        Column("j", C(Kind.JSON, "json")),
        Column("e", C(Kind.ENUM, "enum('sad','happy')", values=("sad", "happy"))),
        Column("st", C(Kind.SET, "set('x','y')", values=("x", "y"))),
        Column("by", C(Kind.BYTES, "varbinary(16)", length=16)),
        Column("bl", C(Kind.BYTES, "blob", length=65535)),
        Column("bt", C(Kind.BITS, "bit(10)", length=10)),
        Column("d", C(Kind.DATE, "date")),
        Column("tm", C(Kind.TIME, "time(6)", precision=6)),
        Column("dt", C(Kind.TIMESTAMP, "datetime(6)", precision=6)),
        Column("ts", C(Kind.TIMESTAMPTZ, "timestamp(6)", precision=6)),
        Column("y", C(Kind.INT16, "year")),
    )
    schema = TableSchema(TableId("cdc_source", None, name), columns, ("id",))
    canonical = {
        "id": 1, "b": True, "i2": -2, "i4": 3, "i8": 4_000_000_000, "u8": 2**64 - 1, "f4": 1.5,
        "f8": 2.25, "n": Decimal("123.456"), "s": "héllo", "t": "long text", "j": '{"a": 1}',
        "e": "happy", "st": "x,y", "by": b"\x00\xff", "bl": b"blob", "bt": b"\x02\x05",
        "d": date(2024, 2, 29), "tm": timedelta(hours=12, minutes=34, seconds=56, microseconds=789),
        "dt": datetime(2024, 1, 2, 3, 4, 5, 6), "ts": datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
        "y": 2024,
    }
    db_row = (1, 1, -2, 3, 4_000_000_000, 2**64 - 1, 1.5, 2.25, Decimal("123.456"), "héllo",
              "long text", '{"a": 1}', "happy", "x,y", b"\x00\xff", b"blob", b"\x02\x05",
              date(2024, 2, 29), timedelta(hours=12, minutes=34, seconds=56, microseconds=789),
              datetime(2024, 1, 2, 3, 4, 5, 6), datetime(2024, 5, 6, 7, 8, 9, 123000), 2024)
    nulls = {c.name: None for c in columns} | {"id": 2}
    return ddl, schema, [canonical, nulls], [db_row, (2,) + (None,) * (len(columns) - 1)]


@pytest.fixture()
def pg_source(pg_source_dsn: str, unique_name: str) -> Iterator[tuple[TableReader, TableSchema, list[dict[str, Any]]]]:
    ddl, schema, rows, db_rows = pg_source_table(unique_name)
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        for sql in ddl:
            conn.execute(sql)
        marks = ", ".join(["%s"] * len(db_rows[0]))
        for r in db_rows:
            conn.execute(f"INSERT INTO {unique_name} VALUES ({marks})", r)
    reader = PostgresDialect().open_reader(PostgresConnection(dsn=pg_source_dsn))
    yield reader, schema, rows
    reader.close()
    with psycopg.connect(pg_source_dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {unique_name}")
        conn.execute(f"DROP TYPE IF EXISTS {unique_name}_mood")


@pytest.fixture()
def my_source(mysql_source_url: str, unique_name: str) -> Iterator[tuple[TableReader, TableSchema, list[dict[str, Any]]]]:
    ddl, schema, rows, db_rows = my_source_table(unique_name)
    conn = pymysql.connect(**mysql_kwargs(mysql_source_url))  # type: ignore[arg-type]
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        for sql in ddl:
            cur.execute(sql)
        marks = ", ".join(["%s"] * len(db_rows[0]))
        cur.executemany(f"INSERT INTO {unique_name} VALUES ({marks})", db_rows)
    reader = MySqlDialect().open_reader(MySqlConnection(dsn=mysql_source_url))
    yield reader, schema, rows
    reader.close()
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {unique_name}")
    conn.close()


def _replicate_and_verify(kind: str, dsn: str, registry: RegistryClient, unique_name: str,
                          source: TableReader, source_table: TableName, schema: TableSchema,
                          rows: list[dict[str, Any]], connector: str) -> dict[str, str]:
    h = ApplierHarness(kind, dsn, registry, unique_name, [f"src.{source_table}"])
    drop_tables(h.session, unique_name)
    try:
        f = EventFactory(schema, connector=connector)
        res = h.apply([f.event(Op.READ, after=r) for r in rows])
        assert res.applied == 2 and res.failure is None
        replica = h.dialect.open_reader(h.config.target)
        target = TableName(h.dialect.default_schema(h.config), unique_name)
        try:
            report = verify_table(source, source_table, replica, target)
            assert report.ok, report
            # Divergence is found and named: a changed value and a missing row.
            t = h.dialect.table_sql(target)
            h.session.execute_ddl([f"UPDATE {t} SET i4 = 99 WHERE id = 1", f"DELETE FROM {t} WHERE id = 2"])
            report = verify_table(source, source_table, replica, target)
            assert not report.ok
            assert report.different == [("1",)] and report.missing == [("2",)]
            desc = replica.describe(target)
            assert desc is not None
            return {c.name: c.type_text for c in desc.columns}
        finally:
            replica.close()
    finally:
        drop_tables(h.session, unique_name)
        h.close()


def test_postgres_source_types_into_each_replica(
        replica: tuple[str, str], registry: RegistryClient, unique_name: str,
        pg_source: tuple[TableReader, TableSchema, list[dict[str, Any]]]) -> None:
    kind, dsn = replica
    reader, schema, rows = pg_source
    types = _replicate_and_verify(kind, dsn, registry, unique_name, reader,
                                  TableName("public", unique_name), schema, rows, "postgresql")
    if kind == "postgres":  # same kind: the source's own types
        assert types["n"] == "numeric(12,3)" and types["s"] == "character varying(20)"
        assert types["j"] == "jsonb" and types["tarr"] == "text[]" and types["e"] == "text"
    else:
        assert types["n"] == "decimal(12,3)" and types["arr"] == "longtext"  # MariaDB json
        assert types["u"] == "char(36)"  # MariaDB's uuid type refuses some PostgreSQL uuids


def test_mariadb_source_types_into_each_replica(
        replica: tuple[str, str], registry: RegistryClient, unique_name: str,
        my_source: tuple[TableReader, TableSchema, list[dict[str, Any]]]) -> None:
    kind, dsn = replica
    reader, schema, rows = my_source
    types = _replicate_and_verify(kind, dsn, registry, unique_name, reader,
                                  TableName("cdc_source", unique_name), schema, rows, "mysql")
    if kind == "mysql":  # same kind: the source's own types
        assert types["e"] == "enum('sad','happy')" and types["u8"] == "bigint(20) unsigned"
        assert types["ts"] == "timestamp(6)"
    else:
        assert types["u8"] == "numeric(20,0)" and types["j"] == "jsonb"
        assert types["tm"] == "interval"  # MySQL TIME is a duration
