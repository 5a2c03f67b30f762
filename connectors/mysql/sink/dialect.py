"""MySQL/MariaDB as a replica: the dialect - type mapping, value conversion, SQL text.

What the generic applier (:mod:`cdc.sink`) asks of a MariaDB/MySQL replica that is
not I/O: column DDL and widening, the text of upserts/deletes/truncates, value
converters to and from the driver, and error classification. The connection that
runs that SQL is :class:`~connectors.mysql.sink.session.MySqlSession`; the SQL
literals it writes rows with are :mod:`connectors.mysql.sink.literals`.

Type mapping (neutral kind -> MariaDB/MySQL), used when the sink creates or
widens a table. Events from a MySQL/MariaDB source recreate the source's
type from ``ColumnType.native`` (``bigint(20) unsigned``, ``enum('a','b')``,
``datetime(3)``) when it is a plain built-in type; everything else follows
the table below (docs/SINK.md repeats it). Tables are created ``ENGINE=InnoDB
DEFAULT CHARSET=utf8mb4`` with a binary, no-pad collation, so keys that
differ in case, accents or trailing spaces stay distinct rows as they are
at a PostgreSQL source.

==============  ====================================  ==========================
kind            MariaDB / MySQL                       notes
==============  ====================================  ==========================
BOOLEAN         tinyint(1)
INT16/32/64     smallint / int / bigint
UINT64          bigint unsigned
FLOAT32/64      float / double                        NaN, +-inf: error
DECIMAL         decimal(p,s); unconstrained numeric:  NaN/Infinity: error; more
                decimal(65,30); p capped at 65,       digits than the column: error
                s at 30
STRING          varchar(n) (n <= 255), else text /    key without length:
                mediumtext / longtext                 varchar(255)
JSON            json
ENUM            varchar(255)                          (same-kind: enum(...))
SET             text
BYTES           varbinary(n) (n <= 255), else         key: varbinary(255)
                longblob
BITS            bit(n) (n <= 64), else varbinary
UUID            char(36), lowercase hyphenated     any 128-bit value (MariaDB's
                text; a MariaDB source's uuid         uuid type refuses some that
                column stays uuid                     PostgreSQL accepts)
DATE            date                                  infinity: error
TIME            time(p)                               outside -838:59:59..
                                                      838:59:59: error
TIMETZ          varchar(32)                           its text
TIMESTAMP       datetime(p)
TIMESTAMPTZ     datetime(p), in UTC                   (an existing TIMESTAMP
                                                      column: 1970..2038 only)
INTERVAL        varchar(64)                           ISO-8601 text
GEOMETRY        longblob                              WKB
ARRAY           json                                  elements as JSON (values.py)
==============  ====================================  ==========================

Re-planning an existing table is idempotent (:meth:`MySqlDialect.widen` of a
column the sink made returns None), and a key column is never widened to a
type that cannot be a key (TEXT/BLOB need a key length): a restarted sink
plans no DDL. An existing ``uuid`` column that a non-MariaDB source writes
is widened once to ``char(36)``.

Sessions run with ``sql_mode = STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,
NO_AUTO_VALUE_ON_ZERO`` (too-long strings and out-of-range values are
errors, a 0 key is not replaced by an AUTO_INCREMENT value), ``time_zone =
'+00:00'``, READ COMMITTED, and the ``FOUND_ROWS`` client flag (row counts
mean matched rows). Truncates are ``DELETE FROM``: TRUNCATE TABLE would
commit the batch transaction implicitly.

Origin marking: a sink with ``origin`` runs ``SET SESSION skip_replication
= 1`` (no privilege needed), so every event it writes carries MariaDB's
``LOG_EVENT_SKIP_REPLICATION_F`` header flag, which a source with
``skip_replicated_changes`` drops (SOURCE.md, "Loop prevention").
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from math import isfinite
from typing import TYPE_CHECKING, Any, Final

import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT

from cdc.errors import SchemaError
from cdc.events import ColumnType, Kind
from cdc.serde.temporal import TemporalSentinel
from cdc.sink.sql import delete_by_keys
from cdc.sink.values import (
    DoesNotFit,
    chain,
    decimal_check,
    float_text,
    fraction_check,
    identity_for,
    json_value,
    time_text,
)
from cdc.spi import (
    ErrorKind,
    ReplicaColumn,
    TableName,
)
from connectors.mysql.sink.swap import MySqlSwaps

if TYPE_CHECKING:
    from connectors.mysql.sink.session import MySqlSession

log = logging.getLogger(__name__)

SQL_MODE: Final = "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO"
_TIME_MAX: Final = timedelta(hours=838, minutes=59, seconds=59, microseconds=999_999)
_TS_MIN: Final = datetime(1970, 1, 1, 0, 0, 1)
_TS_MAX: Final = datetime(2038, 1, 19, 3, 14, 7, 999_999)

_NATIVE = re.compile(
    r"((tinyint|smallint|mediumint|int|integer|bigint)(\(\d+\))?( unsigned)?( zerofill)?"
    r"|(decimal|numeric)(\(\d+(,\d+)?\))?( unsigned)?( zerofill)?"
    r"|(float|double|real)(\(\d+,\d+\))?( unsigned)?"
    r"|bit(\(\d+\))?|(char|varchar|binary|varbinary)\(\d+\)"
    r"|(tiny|medium|long)?(text|blob)|date|(datetime|timestamp|time)(\(\d\))?|year(\(4\))?"
    r"|json|enum\(.*\)|set\(.*\)|uuid|inet4|inet6)"
)
_NOT_A_KEY = re.compile(r"(tiny|medium|long)?(text|blob)|json")

_INT_RANK: Final = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "bigint": 5}
_TEXT_RANK: Final = {"varchar": 1, "tinytext": 1, "text": 2, "mediumtext": 3, "longtext": 4}

_UNAVAILABLE: Final = {0, 1040, 1053, 1927, 2002, 2003, 2006, 2013, 2026, 2055, 4031}
_TRANSIENT: Final = {1205, 1213, 1637}
_DATA: Final = {
    1048, 1062, 1136, 1216, 1217, 1263, 1264, 1265, 1292, 1366, 1367, 1406, 1411, 1451,
    1452, 1690, 3140, 3819, 4025, 4078,
}  # fmt: skip


def quote(identifier: str) -> str:
    """A backquoted identifier; ``%`` doubled because statements take %s parameters."""
    return "`" + identifier.replace("`", "``").replace("%", "%%") + "`"


def _float_to_db(v: Any) -> Any:
    if isinstance(v, float) and not isfinite(v):
        raise DoesNotFit(f"{float_text(v)} has no MariaDB/MySQL FLOAT/DOUBLE representation")
    return v


@identity_for(date)
def _date_to_db(v: Any) -> Any:
    if isinstance(v, TemporalSentinel):
        if v is TemporalSentinel.ZERO:
            return "0000-00-00"
        raise DoesNotFit(f"date {v.value} has no MariaDB/MySQL representation")
    if isinstance(v, int) and not isinstance(v, bool):
        raise DoesNotFit(f"date {v} days from 1970 is outside MariaDB/MySQL's DATE range")
    return v


def _ts_to_db(timestamp_column: bool) -> Callable[[Any], Any]:
    def conv(v: Any) -> Any:
        if v.__class__ is datetime and v.tzinfo is None:  # the common case, first
            if timestamp_column and not _TS_MIN <= v <= _TS_MAX:
                raise DoesNotFit(f"{v} (UTC) is outside a TIMESTAMP column's range 1970..2038")
            return v
        if isinstance(v, TemporalSentinel):
            if v is TemporalSentinel.ZERO:
                return "0000-00-00 00:00:00"
            raise DoesNotFit(f"timestamp {v.value} has no MariaDB/MySQL representation")
        if isinstance(v, datetime):
            if v.tzinfo is not None:
                v = v.astimezone(UTC).replace(tzinfo=None)
            if timestamp_column and not _TS_MIN <= v <= _TS_MAX:
                raise DoesNotFit(f"{v} (UTC) is outside a TIMESTAMP column's range 1970..2038")
        return v

    return conv


def _time_to_db(v: Any) -> Any:
    if isinstance(v, timedelta) and not -_TIME_MAX <= v <= _TIME_MAX:
        raise DoesNotFit(
            f"TIME {time_text(v)} is outside MariaDB/MySQL's range -838:59:59..838:59:59"
        )
    return v


def _uuid_to_db(v: Any) -> Any:
    return str(v) if isinstance(v, uuid.UUID) else v


def _bits_to_db(width: int | None) -> Callable[[Any], Any]:
    def conv(v: Any) -> Any:
        if width is not None and isinstance(v, bytes | bytearray) and int.from_bytes(v, "big") >> width:
            raise DoesNotFit(f"bit string of {len(v) * 8} bits does not fit bit({width})")
        return v

    return conv


def _array_to_db(v: Any) -> Any:
    if isinstance(v, list):
        return json.dumps(json_value(v), separators=(",", ":"), ensure_ascii=False)
    return v


def _bool_from_db(v: Any) -> Any:
    return bool(v) if isinstance(v, int) else v


def _uuid_from_db(v: Any) -> Any:
    return uuid.UUID(v) if isinstance(v, str) else v


def _utc_from_db(v: Any) -> Any:
    return v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v


def _int_from_db(v: Any) -> Any:
    return int(v) if isinstance(v, Decimal) else v


def kind_of(data_type: str, column_type: str) -> Kind | None:
    dt = data_type.lower()
    ct = column_type.lower()
    if dt == "tinyint" and ct.startswith("tinyint(1)"):
        return Kind.BOOLEAN
    unsigned = "unsigned" in ct
    if dt in ("tinyint", "smallint", "year"):
        return Kind.INT16 if not (dt == "smallint" and unsigned) else Kind.INT32
    if dt in ("mediumint", "int"):
        return Kind.INT64 if unsigned and dt == "int" else Kind.INT32
    if dt == "bigint":
        return Kind.UINT64 if unsigned else Kind.INT64
    return {
        "decimal": Kind.DECIMAL,
        "float": Kind.FLOAT32,
        "double": Kind.FLOAT64,
        "char": Kind.STRING,
        "varchar": Kind.STRING,
        "tinytext": Kind.STRING,
        "text": Kind.STRING,
        "mediumtext": Kind.STRING,
        "longtext": Kind.STRING,
        "json": Kind.JSON,
        "enum": Kind.ENUM,
        "set": Kind.SET,
        "binary": Kind.BYTES,
        "varbinary": Kind.BYTES,
        "tinyblob": Kind.BYTES,
        "blob": Kind.BYTES,
        "mediumblob": Kind.BYTES,
        "longblob": Kind.BYTES,
        "bit": Kind.BITS,
        "uuid": Kind.UUID,
        "date": Kind.DATE,
        "time": Kind.TIME,
        "datetime": Kind.TIMESTAMP,
        "timestamp": Kind.TIMESTAMPTZ,
        "geometry": Kind.GEOMETRY,
        "point": Kind.GEOMETRY,
        "linestring": Kind.GEOMETRY,
        "polygon": Kind.GEOMETRY,
        "inet4": Kind.STRING,
        "inet6": Kind.STRING,
    }.get(dt)


class MySqlDialect(MySqlSwaps):
    """The MariaDB/MySQL replica dialect. ``flavor`` picks MariaDB- or MySQL-only types."""

    kind = "mysql"

    def __init__(self, flavor: str = "mariadb") -> None:
        if flavor not in ("mariadb", "mysql"):
            raise ValueError(f"unknown flavor {flavor!r}")
        self.flavor = flavor
        self.collation = "utf8mb4_nopad_bin" if flavor == "mariadb" else "utf8mb4_0900_bin"

    # -- names

    def quote(self, identifier: str) -> str:
        return quote(identifier)

    def table_sql(self, table: TableName) -> str:
        return f"{quote(table.schema)}.{quote(table.name)}" if table.schema else quote(table.name)

    def native_applies(self, connector: str) -> bool:
        return connector in ("mysql", "mariadb")

    def default_schema(self, config: Any) -> str | None:
        return None  # the connection's database

    # -- types

    def column_ddl(self, column_type: ColumnType, *, native: bool = False, key: bool = False) -> str:
        ct = column_type
        n = ct.native.lower()
        usable = native and n and _NATIVE.fullmatch(n) and not (key and _NOT_A_KEY.fullmatch(n))
        if usable and (n != "uuid" or self.flavor == "mariadb"):  # (a MariaDB source's uuid)
            return n
        k = ct.kind
        if k is Kind.BOOLEAN:
            return "tinyint(1)"
        if k is Kind.INT16:
            return "smallint"
        if k is Kind.INT32:
            return "int"
        if k is Kind.INT64:
            return "bigint"
        if k is Kind.UINT64:
            return "bigint unsigned"
        if k is Kind.FLOAT32:
            return "float"
        if k is Kind.FLOAT64:
            return "double"
        if k is Kind.DECIMAL:
            if ct.precision is None:
                return "decimal(65,30)"
            p, s = ct.precision, ct.scale or 0
            if s < 0:  # PostgreSQL numeric(3,-2): integers with 5 digits
                p, s = p - s, 0
            s = min(s, 30)
            return f"decimal({min(max(p, s, 1), 65)},{s})"
        if k is Kind.STRING:
            length = ct.length
            if key:
                return f"varchar({min(length or 255, 768)})"
            if length is not None and length <= 255:
                return f"varchar({max(length, 1)})"
            return self._text(length)
        if k is Kind.JSON:
            return "varchar(768)" if key else "json"
        if k is Kind.ENUM:
            return "varchar(255)"
        if k is Kind.SET:
            return "varchar(768)" if key else "text"
        if k in (Kind.BYTES, Kind.GEOMETRY):
            length = ct.length if k is Kind.BYTES else None
            if key:
                return f"varbinary({min(length or 255, 3072)})"
            if length is not None and length <= 255:
                return f"varbinary({max(length, 1)})"
            return "longblob"
        if k is Kind.BITS:
            width = ct.length or 1
            return f"bit({width})" if width <= 64 else f"varbinary({(width + 7) // 8})"
        if k is Kind.UUID:
            # Not MariaDB's uuid type: it refuses some 128-bit values PostgreSQL accepts.
            return "char(36)"
        if k is Kind.DATE:
            return "date"
        if k in (Kind.TIME, Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
            p = 6 if ct.precision is None else max(0, min(ct.precision, 6))
            return f"{'time' if k is Kind.TIME else 'datetime'}({p})"
        if k is Kind.TIMETZ:
            return "varchar(32)"
        if k is Kind.INTERVAL:
            return "varchar(64)"
        if k is Kind.ARRAY:
            if key:
                raise SchemaError("an array column cannot be part of a MariaDB/MySQL primary key")
            return "json"
        raise SchemaError(f"no MariaDB/MySQL type for {k}")

    @staticmethod
    def _text(length: int | None) -> str:
        if length is not None and length * 4 <= 65_535:
            return "text"
        if length is not None and length * 4 <= 16_777_215:
            return "mediumtext"
        return "longtext"

    def widen(
        self, existing: ReplicaColumn, column_type: ColumnType, *, native: bool, key: bool = False
    ) -> str | None:
        want = self.column_ddl(column_type, native=native, key=key)
        have = existing.data_type
        if want == existing.type_text:
            return None
        if key and _NOT_A_KEY.fullmatch(want.split("(")[0]):
            return None  # (column_ddl gives key types; a native one could still be TEXT)
        k = column_type.kind
        want_base = want.split("(")[0].split(" ")[0]
        if have == "uuid" and k is Kind.UUID and want == "char(36)":
            return want  # MariaDB's uuid type refuses some values a PostgreSQL uuid holds
        if have in _INT_RANK and k in (Kind.INT16, Kind.INT32, Kind.INT64) and want_base in _INT_RANK:
            unsigned = "unsigned" in existing.type_text
            if _INT_RANK[want_base] > _INT_RANK[have] and not unsigned:
                return want
            return None
        if have == "float" and k is Kind.FLOAT64:
            return "double"
        if have in _TEXT_RANK and k is Kind.STRING and want_base in _TEXT_RANK:
            if have == "varchar" and want_base == "varchar":
                m = re.fullmatch(r"varchar\((\d+)\)", want)
                longer = existing.length is not None and m is not None and int(m.group(1)) > existing.length
                return want if longer else None
            if key:
                return None  # a key stays varchar: TEXT cannot be a key without a length
            return want if _TEXT_RANK[want_base] > _TEXT_RANK[have] else None
        if have == "decimal" and k is Kind.DECIMAL and existing.precision is not None:
            m = re.fullmatch(r"decimal\((\d+),(\d+)\)", want)
            if m is None:
                return None
            p, s = int(m.group(1)), int(m.group(2))
            es = existing.scale or 0
            if s >= es and p - s >= existing.precision - es and (p, s) != (existing.precision, es):
                return want
            return None
        if have in ("datetime", "time", "timestamp") and existing.fraction is not None:
            p = 6 if column_type.precision is None else min(column_type.precision, 6)
            if k in (Kind.TIME, Kind.TIMESTAMP, Kind.TIMESTAMPTZ) and p > existing.fraction:
                return f"{have}({p})"
        return None

    # -- DDL

    def create_table(
        self, table: TableName, columns: Sequence[tuple[str, str, bool]], primary_key: Sequence[str]
    ) -> list[str]:
        cols = [f"{quote(n)} {t}{' NULL' if nullable else ' NOT NULL'}" for n, t, nullable in columns]
        if primary_key:  # (a table without one is applied by full-row match)
            cols.append(f"PRIMARY KEY ({', '.join(quote(k) for k in primary_key)})")
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table_sql(table)} ({', '.join(cols)}) "
            f"ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={self.collation}"
        ]

    def add_columns(self, table: TableName, columns: Sequence[tuple[str, str]]) -> list[str]:
        adds = ", ".join(f"ADD COLUMN IF NOT EXISTS {quote(n)} {t} NULL" for n, t in columns)
        if self.flavor == "mysql":  # MySQL has no IF NOT EXISTS here; the sink checked first
            adds = adds.replace("ADD COLUMN IF NOT EXISTS", "ADD COLUMN")
        return [f"ALTER TABLE {self.table_sql(table)} {adds}"]

    def alter_column(
        self, table: TableName, column: ReplicaColumn, type_ddl: str | None, nullable: bool
    ) -> list[str]:
        if type_ddl is None and (column.nullable or not nullable):
            return []
        null = "NULL" if nullable or column.nullable else "NOT NULL"
        return [
            f"ALTER TABLE {self.table_sql(table)} MODIFY COLUMN {quote(column.name)} "
            f"{type_ddl or column.type_text} {null}"
        ]

    def checkpoint_ddl(self, table: TableName) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table_sql(table)} ("
            "consumer_group varchar(255) NOT NULL, topic varchar(249) NOT NULL, "
            "`partition` int NOT NULL, kafka_offset bigint NOT NULL, source_position text NULL, "
            "updated_at datetime(6) NOT NULL, PRIMARY KEY (consumer_group, topic, `partition`)) "
            f"ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={self.collation}"
        ]

    def row_versions_ddl(self, table: TableName) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table_sql(table)} ("
            "entry_id char(64) NOT NULL PRIMARY KEY, table_name text NOT NULL, "
            "row_key text NOT NULL, ts_ms bigint NOT NULL, node varchar(64) NOT NULL, "
            "position text NOT NULL, deleted boolean NOT NULL, row_hash char(32) NULL, "
            "row_image longtext NULL, updated_at datetime(6) NOT NULL) "
            f"ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={self.collation}"
        ]

    def conflicts_ddl(self, table: TableName) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table_sql(table)} ("
            "id char(64) NOT NULL PRIMARY KEY, detected_at datetime(6) NOT NULL, "
            "sink varchar(255) NOT NULL, table_name text NOT NULL, row_key text NOT NULL, "
            "conflict_type varchar(32) NOT NULL, resolution varchar(32) NOT NULL, "
            "decision varchar(32) NOT NULL, local_origin varchar(64) NULL, "
            "local_ts_ms bigint NULL, local_position text NULL, remote_origin varchar(64) NULL, "
            "remote_ts_ms bigint NULL, remote_position text NULL, local_image longtext NULL, "
            "remote_image longtext NULL, published boolean NOT NULL DEFAULT false, "
            "KEY detected_at (detected_at)) "
            f"ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={self.collation}"
        ]

    # -- DML

    def upsert(self, table: TableName, columns: Sequence[str], key: Sequence[str], rows: int) -> str:
        one = "(" + ", ".join(["%s"] * len(columns)) + ")"
        if not key:  # a table without a primary key: a plain insert
            return (
                f"INSERT INTO {self.table_sql(table)} ({', '.join(quote(c) for c in columns)}) "
                f"VALUES {', '.join([one] * rows)}"
            )
        keyset = set(key)
        sets = [f"{quote(c)} = VALUES({quote(c)})" for c in columns if c not in keyset]
        if not sets:  # every column is key: nothing to update, but a duplicate is no error
            sets = [f"{quote(key[0])} = VALUES({quote(key[0])})"]
        return (
            f"INSERT INTO {self.table_sql(table)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES {', '.join([one] * rows)} ON DUPLICATE KEY UPDATE {', '.join(sets)}"
        )

    def delete(self, table: TableName, key: Sequence[str], rows: int) -> str:
        return delete_by_keys(self.table_sql(table), key, rows, quote)

    def truncate(self, table: TableName) -> str:
        return f"DELETE FROM {self.table_sql(table)}"

    # -- values

    def to_db(self, column_type: ColumnType, target: ReplicaColumn | None) -> Callable[[Any], Any] | None:
        k = column_type.kind
        fraction = None if target is None else fraction_check(target.fraction, column_type.precision)
        if k in (Kind.FLOAT32, Kind.FLOAT64):
            return _float_to_db
        if k in (Kind.DECIMAL, Kind.UINT64):
            if k is Kind.UINT64 and (target is None or target.data_type != "decimal"):
                return None
            sp, ss = (20, 0) if k is Kind.UINT64 else (column_type.precision, column_type.scale)
            if target is not None and target.data_type == "decimal":
                return decimal_check(
                    target.precision, target.scale, special=False, source_precision=sp,
                    source_scale=ss,
                )
            return decimal_check(None, None, special=False, source_precision=sp, source_scale=ss)
        if k is Kind.UUID:
            return _uuid_to_db
        if k is Kind.DATE:
            return _date_to_db
        if k in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
            return chain(_ts_to_db(target is not None and target.data_type == "timestamp"), fraction)
        if k is Kind.TIME:
            return chain(fraction, _time_to_db)
        if k is Kind.BITS:
            return _bits_to_db(target.length if target is not None and target.data_type == "bit" else None)
        if k is Kind.ARRAY:
            return _array_to_db
        return None

    def from_db(self, column_type: ColumnType, target: ReplicaColumn | None) -> Callable[[Any], Any] | None:
        k = column_type.kind
        if k is Kind.BOOLEAN:
            return _bool_from_db
        if k is Kind.UUID:
            return _uuid_from_db
        if k is Kind.TIMESTAMPTZ:
            return _utc_from_db
        if k in (Kind.INT16, Kind.INT32, Kind.INT64, Kind.UINT64):
            return _int_from_db
        return None

    # -- errors

    def classify(self, error: BaseException) -> ErrorKind:
        if isinstance(error, DoesNotFit):
            return ErrorKind.DATA
        if isinstance(error, pymysql.err.InterfaceError):
            return ErrorKind.UNAVAILABLE
        if isinstance(error, pymysql.err.MySQLError):
            code = error.args[0] if error.args and isinstance(error.args[0], int) else None
            if code in _UNAVAILABLE:
                return ErrorKind.UNAVAILABLE
            if code in _TRANSIENT:
                return ErrorKind.TRANSIENT
            if code in _DATA or isinstance(error, pymysql.err.IntegrityError | pymysql.err.DataError):
                return ErrorKind.DATA
            if isinstance(error, pymysql.err.OperationalError) and code is not None and code >= 2000:
                return ErrorKind.UNAVAILABLE  # client-side (CR_*) errors: the connection is gone
            return ErrorKind.FATAL
        if isinstance(error, ConnectionError | TimeoutError | BrokenPipeError):
            return ErrorKind.UNAVAILABLE
        return ErrorKind.FATAL

    # -- sessions

    def _connect(self, connection: Any) -> tuple[MySqlDialect, Any]:
        conn = pymysql.connect(
            **connection.pymysql_kwargs(autocommit=False, client_flag=CLIENT.FOUND_ROWS)
        )
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            version = str(cur.fetchone()[0])
        return MySqlDialect("mariadb" if "mariadb" in version.lower() else "mysql"), conn

    def connect(self, config: Any) -> MySqlSession:
        from connectors.mysql.sink.session import MySqlSession  # (imports this module)

        dialect, conn = self._connect(config.target)
        return MySqlSession(dialect, conn)

    def open_reader(self, connection: Any) -> MySqlSession:
        from connectors.mysql.sink.session import MySqlSession  # (imports this module)

        dialect, conn = self._connect(connection)
        return MySqlSession(dialect, conn, read_only=True)


def create_dialect() -> MySqlDialect:
    return MySqlDialect()


__all__ = ["MySqlDialect", "create_dialect", "kind_of", "quote"]
