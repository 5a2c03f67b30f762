"""SQL rendering and type mapping of the PostgreSQL and MariaDB/MySQL sink dialects."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest

from cdc.errors import SchemaError
from cdc.events import ColumnType, Kind
from cdc.serde import NEG_INFINITY, POS_INFINITY, ZERO
from cdc.sink.values import DoesNotFit
from cdc.spi import ErrorKind, ReplicaColumn, SinkDialect, TableName
from connectors.mysql.sink.dialect import MySqlDialect
from connectors.postgres.sink.dialect import PostgresDialect

PG = PostgresDialect()
MY = MySqlDialect()
TABLE_S_T = TableName("s", "t")  # renders as "s"."t" (PostgreSQL) and `s`.`t` (MySQL)


def test_both_dialects_implement_the_protocol() -> None:
    assert isinstance(PG, SinkDialect)
    assert isinstance(MY, SinkDialect)


# -- SQL -------------------------------------------------------------------------------------


def test_postgres_upsert_and_delete_sql() -> None:
    assert PG.upsert(TABLE_S_T, ["id", "a", "b"], ["id"], 2) == (
        'INSERT INTO "s"."t" ("id", "a", "b") VALUES (%s, %s, %s), (%s, %s, %s) '
        'ON CONFLICT ("id") DO UPDATE SET "a" = EXCLUDED."a", "b" = EXCLUDED."b"'
    )
    assert PG.upsert(TABLE_S_T, ["k1", "k2"], ["k1", "k2"], 1).endswith('ON CONFLICT ("k1", "k2") DO NOTHING')
    assert PG.delete(TABLE_S_T, ["id"], 3) == 'DELETE FROM "s"."t" WHERE "id" IN (%s, %s, %s)'
    assert PG.delete(TABLE_S_T, ["a", "b"], 2) == 'DELETE FROM "s"."t" WHERE ("a", "b") IN ((%s, %s), (%s, %s))'
    assert PG.truncate(TABLE_S_T) == 'TRUNCATE TABLE "s"."t"'


def test_mysql_upsert_and_delete_sql() -> None:
    assert MY.upsert(TABLE_S_T, ["id", "a"], ["id"], 2) == (
        "INSERT INTO `s`.`t` (`id`, `a`) VALUES (%s, %s), (%s, %s) "
        "ON DUPLICATE KEY UPDATE `a` = VALUES(`a`)"
    )
    # A key-only table: a duplicate must not fail, and nothing changes.
    assert MY.upsert(TABLE_S_T, ["id"], ["id"], 1).endswith("ON DUPLICATE KEY UPDATE `id` = VALUES(`id`)")
    assert MY.delete(TABLE_S_T, ["a", "b"], 1) == "DELETE FROM `s`.`t` WHERE (`a`, `b`) IN ((%s, %s))"
    assert MY.truncate(TABLE_S_T) == "DELETE FROM `s`.`t`"  # TRUNCATE TABLE would commit implicitly


def test_identifiers_are_quoted_and_percent_signs_doubled() -> None:
    assert PG.quote('we"ird%col') == '"we""ird%%col"'
    assert MY.quote("we`ird%col") == "`we``ird%%col`"
    assert PG.table_sql(TableName(None, "t")) == '"t"'


def test_ddl() -> None:
    assert PG.create_table(TableName("x", "t"), [("id", "bigint", False), ("v", "text", True)],
                           ["id"]) == [
        'CREATE SCHEMA IF NOT EXISTS "x"',
        'CREATE TABLE IF NOT EXISTS "x"."t" ("id" bigint NOT NULL, "v" text, PRIMARY KEY ("id"))',
    ]
    (sql,) = MY.create_table(TableName(None, "t"), [("id", "bigint", False)], ["id"])
    assert sql.endswith("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin")
    assert PG.add_columns(TABLE_S_T, [("c", "text")]) == ['ALTER TABLE "s"."t" ADD COLUMN IF NOT EXISTS "c" text']
    col = ReplicaColumn("c", "varchar(5)", "varchar", nullable=False, length=5)
    assert PG.alter_column(TABLE_S_T, col, "varchar(9)", nullable=True) == [
        'ALTER TABLE "s"."t" ALTER COLUMN "c" TYPE varchar(9), ALTER COLUMN "c" DROP NOT NULL']
    assert MY.alter_column(TABLE_S_T, col, None, nullable=True) == [
        "ALTER TABLE `s`.`t` MODIFY COLUMN `c` varchar(5) NULL"]
    assert MY.alter_column(TABLE_S_T, col, None, nullable=False) == []


# -- type mapping ------------------------------------------------------------------------------

C = ColumnType


@pytest.mark.parametrize(("ct", "pg", "my"), [
    (C(Kind.BOOLEAN), "boolean", "tinyint(1)"),
    (C(Kind.INT16), "smallint", "smallint"),
    (C(Kind.INT32), "integer", "int"),
    (C(Kind.INT64), "bigint", "bigint"),
    (C(Kind.UINT64), "numeric(20,0)", "bigint unsigned"),
    (C(Kind.FLOAT32), "real", "float"),
    (C(Kind.FLOAT64), "double precision", "double"),
    (C(Kind.DECIMAL, precision=10, scale=2), "numeric(10,2)", "decimal(10,2)"),
    (C(Kind.DECIMAL, nan=True), "numeric", "decimal(65,30)"),
    (C(Kind.DECIMAL, precision=100, scale=40), "numeric(100,40)", "decimal(65,30)"),
    (C(Kind.DECIMAL, precision=3, scale=-2), "numeric(3,-2)", "decimal(5,0)"),
    (C(Kind.STRING, length=20), "varchar(20)", "varchar(20)"),
    (C(Kind.STRING, length=1000), "varchar(1000)", "text"),
    (C(Kind.STRING), "text", "longtext"),
    (C(Kind.JSON), "jsonb", "json"),
    (C(Kind.ENUM, values=("a", "b")), "text", "varchar(255)"),
    (C(Kind.SET, values=("a", "b")), "text", "text"),
    (C(Kind.BYTES), "bytea", "longblob"),
    (C(Kind.BYTES, length=16), "bytea", "varbinary(16)"),
    (C(Kind.BITS, length=10), "bit(10)", "bit(10)"),
    (C(Kind.BITS, length=100), "bit(100)", "varbinary(13)"),
    (C(Kind.UUID), "uuid", "char(36)"),
    (C(Kind.DATE), "date", "date"),
    (C(Kind.TIME, precision=3), "interval", "time(3)"),
    (C(Kind.TIMETZ), "time with time zone", "varchar(32)"),
    (C(Kind.TIMESTAMP), "timestamp without time zone", "datetime(6)"),
    (C(Kind.TIMESTAMPTZ, precision=0), "timestamp(0) with time zone", "datetime(0)"),
    (C(Kind.INTERVAL), "interval", "varchar(64)"),
    (C(Kind.GEOMETRY), "bytea", "longblob"),
    (C(Kind.ARRAY, element=C(Kind.INT32)), "integer[]", "json"),
])
def test_neutral_type_mapping(ct: ColumnType, pg: str, my: str) -> None:
    assert PG.column_ddl(ct) == pg
    assert MY.column_ddl(ct) == my


def test_same_kind_replicas_recreate_native_types() -> None:
    pg = C(Kind.DECIMAL, "numeric(12,3)", precision=12, scale=3)
    assert PG.column_ddl(pg, native=True) == "numeric(12,3)"
    assert PG.column_ddl(C(Kind.STRING, "inet"), native=True) == "inet"
    assert PG.column_ddl(C(Kind.STRING, "inet"), native=False) == "text"
    # User-defined types do not exist on the replica.
    assert PG.column_ddl(C(Kind.ENUM, "public.mood", values=("a",)), native=True) == "text"
    assert MY.column_ddl(C(Kind.ENUM, "enum('a','b')", values=("a", "b")), native=True) == "enum('a','b')"
    assert MY.column_ddl(C(Kind.UINT64, "bigint(20) unsigned"), native=True) == "bigint(20) unsigned"
    # MySQL cannot index TEXT: a text key gets a varchar.
    assert MY.column_ddl(C(Kind.STRING, "text"), native=True, key=True) == "varchar(255)"
    assert MySqlDialect("mysql").column_ddl(C(Kind.UUID)) == "char(36)"
    assert PG.native_applies("postgresql") and not PG.native_applies("mysql")
    assert MY.native_applies("mysql") and MY.native_applies("mariadb")


def test_array_keys_are_refused_by_mysql() -> None:
    with pytest.raises(SchemaError):
        MY.column_ddl(C(Kind.ARRAY, element=C(Kind.INT32)), key=True)


def test_widening() -> None:
    vc = ReplicaColumn("c", "character varying(5)", "varchar", length=5)
    assert PG.widen(vc, C(Kind.STRING, length=9), native=False) == "varchar(9)"
    assert PG.widen(vc, C(Kind.STRING, length=3), native=False) is None
    assert PG.widen(vc, C(Kind.STRING), native=False) == "text"
    i4 = ReplicaColumn("c", "integer", "int4")
    assert PG.widen(i4, C(Kind.INT64), native=False) == "bigint"
    assert PG.widen(i4, C(Kind.INT16), native=False) is None
    num = ReplicaColumn("c", "numeric(8,2)", "numeric", precision=8, scale=2)
    assert PG.widen(num, C(Kind.DECIMAL, precision=12, scale=3), native=False) == "numeric(12,3)"
    assert PG.widen(num, C(Kind.DECIMAL, precision=8, scale=3), native=False) is None  # would lose
    my_int = ReplicaColumn("c", "int(11)", "int")
    assert MY.widen(my_int, C(Kind.INT64), native=False) == "bigint"
    my_vc = ReplicaColumn("c", "varchar(5)", "varchar", length=5)
    assert MY.widen(my_vc, C(Kind.STRING, length=50), native=False) == "varchar(50)"
    assert MY.widen(my_vc, C(Kind.STRING), native=False) == "longtext"
    my_dt = ReplicaColumn("c", "datetime(3)", "datetime", fraction=3)
    assert MY.widen(my_dt, C(Kind.TIMESTAMP, precision=6), native=False) == "datetime(6)"


def test_key_columns_are_never_widened_to_text() -> None:
    # Issue #10: a restarted sink planned `MODIFY COLUMN b longtext` for a varchar key.
    key255 = ReplicaColumn("b", "varchar(255)", "varchar", length=255)
    assert MY.widen(key255, C(Kind.STRING, "text"), native=False, key=True) is None
    key300 = ReplicaColumn("b", "varchar(300)", "varchar", length=300)
    assert MY.widen(key300, C(Kind.STRING, "character varying(300)", length=300), native=False,
                    key=True) is None
    key100 = ReplicaColumn("b", "varchar(100)", "varchar", length=100)  # made by hand
    assert MY.widen(key100, C(Kind.STRING, length=300), native=False, key=True) == "varchar(300)"
    assert MY.widen(key100, C(Kind.STRING, length=5000), native=False, key=True) == "varchar(768)"
    assert MY.widen(key100, C(Kind.STRING), native=False, key=False) == "longtext"
    assert MY.widen(key255, C(Kind.STRING, "text"), native=True, key=True) is None


def test_uuid_and_time_columns_made_before_are_widened_once() -> None:
    my_uuid = ReplicaColumn("u", "uuid", "uuid")
    assert MY.widen(my_uuid, C(Kind.UUID, "uuid"), native=False, key=True) == "char(36)"
    assert MY.widen(my_uuid, C(Kind.UUID, "uuid"), native=True) is None  # a MariaDB source
    assert MY.widen(ReplicaColumn("u", "char(36)", "char", length=36), C(Kind.UUID, "uuid"),
                    native=False, key=True) is None
    pg_time = ReplicaColumn("t", "time without time zone", "time", fraction=6)
    assert PG.widen(pg_time, C(Kind.TIME, "time(6)", precision=6), native=False) == "interval"
    assert PG.widen(pg_time, C(Kind.TIME, "time without time zone"), native=True) is None
    assert PG.widen(ReplicaColumn("t", "interval", "interval", fraction=6),
                    C(Kind.TIME, "time(6)", precision=6), native=False) is None


# -- values -----------------------------------------------------------------------------------


def _conv(d: SinkDialect, ct: ColumnType, target: ReplicaColumn | None = None):  # type: ignore[no-untyped-def]
    f = d.to_db(ct, target)
    return (lambda v: v) if f is None else f


def test_postgres_values() -> None:
    assert _conv(PG, C(Kind.DATE))(POS_INFINITY) == "infinity"
    assert _conv(PG, C(Kind.DATE))(-800_000) == f"J{2_440_588 - 800_000}"
    with pytest.raises(DoesNotFit):
        _conv(PG, C(Kind.DATE))(ZERO)
    assert _conv(PG, C(Kind.TIMESTAMPTZ))(NEG_INFINITY) == "-infinity"
    assert _conv(PG, C(Kind.TIME))(timedelta(hours=1, microseconds=5)) == time(1, 0, 0, 5)
    assert _conv(PG, C(Kind.TIME))(timedelta(hours=24)) == "24:00:00"
    with pytest.raises(DoesNotFit):
        _conv(PG, C(Kind.TIME))(timedelta(hours=-1))  # MySQL TIME
    bit10 = ReplicaColumn("b", "bit(10)", "bit", length=10)
    assert _conv(PG, C(Kind.BITS, length=10), bit10)(b"\x02\x05") == "1000000101"
    arr = C(Kind.ARRAY, element=C(Kind.DATE))
    # psycopg dumps one element type per list: dates mixed with 'infinity' go as text.
    assert _conv(PG, arr)([date(2020, 1, 1), POS_INFINITY, None]) == ["2020-01-01", "infinity", None]
    assert _conv(PG, arr)([[date(2020, 1, 1)], [None]]) == [[date(2020, 1, 1)], [None]]
    assert _conv(PG, arr)([[[date(2020, 1, 1)]], [[NEG_INFINITY]]]) == [[["2020-01-01"]], [["-infinity"]]]
    tsa = _conv(PG, C(Kind.ARRAY, element=C(Kind.TIMESTAMPTZ)))
    assert tsa([[datetime(2020, 1, 1, tzinfo=UTC), POS_INFINITY]]) == [
        ["2020-01-01T00:00:00+00:00", "infinity"]
    ]
    num = ReplicaColumn("n", "numeric(5,2)", "numeric", precision=5, scale=2)
    conv = _conv(PG, C(Kind.DECIMAL, nan=True), num)
    assert conv(Decimal("1.50")) == Decimal("1.50")
    assert conv(Decimal("1.2300")) == Decimal("1.2300")  # trailing zeros fit
    with pytest.raises(DoesNotFit, match="fractional digits"):
        conv(Decimal("1.234"))  # PostgreSQL would round it silently
    with pytest.raises(DoesNotFit, match="integer digits"):
        conv(Decimal("1234.5"))
    ts0 = ReplicaColumn("t", "timestamp(0) without time zone", "timestamp", fraction=0)
    with pytest.raises(DoesNotFit, match="fractional-second"):
        _conv(PG, C(Kind.TIMESTAMP), ts0)(datetime(2020, 1, 1, 0, 0, 0, 500_000))
    # A source column with no more digits than the target needs no check at all.
    unchecked = _conv(PG, C(Kind.TIMESTAMP, precision=0), ts0)
    assert unchecked(datetime(2020, 1, 1, 0, 0, 0, 500_000)) == datetime(2020, 1, 1, 0, 0, 0, 500_000)


def test_mysql_values() -> None:
    assert _conv(MY, C(Kind.UUID))(__import__("uuid").UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    utc = _conv(MY, C(Kind.TIMESTAMPTZ))(datetime(2020, 1, 1, 12, tzinfo=UTC))
    assert utc == datetime(2020, 1, 1, 12)
    ts_col = ReplicaColumn("t", "timestamp(6)", "timestamp", fraction=6)
    with pytest.raises(DoesNotFit, match=r"1970\.\.2038"):
        _conv(MY, C(Kind.TIMESTAMPTZ), ts_col)(datetime(1960, 1, 1, tzinfo=UTC))
    for bad in (POS_INFINITY, 3_000_000):
        with pytest.raises(DoesNotFit):
            _conv(MY, C(Kind.DATE))(bad)
    assert _conv(MY, C(Kind.DATE))(ZERO) == "0000-00-00"
    with pytest.raises(DoesNotFit):
        _conv(MY, C(Kind.FLOAT64))(float("nan"))
    with pytest.raises(DoesNotFit):
        _conv(MY, C(Kind.DECIMAL, nan=True))(Decimal("NaN"))
    with pytest.raises(DoesNotFit):
        _conv(MY, C(Kind.TIME))(timedelta(hours=900))
    dec = ReplicaColumn("n", "decimal(8,2)", "decimal", precision=8, scale=2)
    with pytest.raises(DoesNotFit):  # MariaDB would round it with only a note
        _conv(MY, C(Kind.DECIMAL, precision=10, scale=4), dec)(Decimal("1.2345"))
    assert _conv(MY, C(Kind.ARRAY, element=C(Kind.DECIMAL)))([Decimal("1.50"), None]) == '["1.50",null]'
    nested = _conv(MY, C(Kind.ARRAY, element=C(Kind.DECIMAL, nan=True)))
    assert nested([[Decimal("NaN"), None], [Decimal("2")]]) == '[["NaN",null],["2"]]'


def test_error_classification() -> None:
    import psycopg
    import pymysql

    assert PG.classify(psycopg.errors.SerializationFailure()) is ErrorKind.TRANSIENT
    assert PG.classify(psycopg.errors.DeadlockDetected()) is ErrorKind.TRANSIENT
    assert PG.classify(psycopg.errors.UniqueViolation()) is ErrorKind.DATA
    assert PG.classify(psycopg.errors.StringDataRightTruncation()) is ErrorKind.DATA
    assert PG.classify(psycopg.errors.AdminShutdown()) is ErrorKind.UNAVAILABLE
    assert PG.classify(psycopg.OperationalError("connection refused")) is ErrorKind.UNAVAILABLE
    assert PG.classify(psycopg.errors.UndefinedColumn()) is ErrorKind.FATAL
    assert PG.classify(DoesNotFit("x")) is ErrorKind.DATA
    assert MY.classify(pymysql.err.OperationalError(2013, "Lost connection")) is ErrorKind.UNAVAILABLE
    assert MY.classify(pymysql.err.OperationalError(1213, "Deadlock")) is ErrorKind.TRANSIENT
    assert MY.classify(pymysql.err.DataError(1406, "Data too long")) is ErrorKind.DATA
    assert MY.classify(pymysql.err.IntegrityError(1062, "Duplicate")) is ErrorKind.DATA
    assert MY.classify(pymysql.err.ProgrammingError(1146, "no table")) is ErrorKind.FATAL
    assert MY.classify(pymysql.err.InterfaceError(0, "")) is ErrorKind.UNAVAILABLE


