"""PostgreSQL as a replica: type mapping, value conversion, SQL, and the session.

Type mapping (neutral kind -> PostgreSQL), used when the sink creates or
widens a table. Events from a PostgreSQL source recreate the source's exact
built-in type from ``ColumnType.native`` (``numeric(12,3)``, ``inet``,
``timestamp(3) with time zone``, arrays of them); user-defined types
(enums, domains, composites) become ``text`` because the replica does not
have them. Everything else follows the table below (docs/SINK.md repeats
it):

==============  =====================================  =======================
kind            PostgreSQL                             notes
==============  =====================================  =======================
BOOLEAN         boolean
INT16/32/64     smallint / integer / bigint
UINT64          numeric(20,0)                          BIGINT UNSIGNED
FLOAT32/64      real / double precision
DECIMAL         numeric(p,s), or numeric               NaN/Infinity kept
STRING          varchar(n), or text                    n = source length
JSON            jsonb
ENUM, SET       text                                   labels as text
BYTES           bytea
BITS            bit(n), or bit varying
UUID            uuid
DATE            date                                   infinity kept
TIME            interval                               MySQL TIME is a duration
                                                       (-838:59:59..838:59:59);
                                                       written as [-]H:MM:SS
TIMETZ          time(p) with time zone
TIMESTAMP       timestamp(p) without time zone
TIMESTAMPTZ     timestamp(p) with time zone
INTERVAL        interval                               ISO-8601 text in
GEOMETRY        bytea                                  WKB
ARRAY           <element>[]
==============  =====================================  =======================

A PostgreSQL source's ``time`` columns stay ``time`` (native). A replica
``time`` column that a MySQL/MariaDB source writes (a table made before
TIME became ``interval``, or by hand) is widened once to ``interval``
(``time`` casts to it losslessly); re-planning an existing table is
otherwise idempotent, so a restarted sink plans no DDL.

Writes: batches of fewer than :data:`COPY_THRESHOLD` rows use multi-row
``INSERT .. VALUES .. ON CONFLICT DO UPDATE`` and ``DELETE .. WHERE k IN``;
larger ones ``COPY`` into a per-session temporary staging table (``ON
COMMIT DELETE ROWS``) and then ``INSERT .. SELECT .. ON CONFLICT`` /
``DELETE .. USING``. Temporary tables need a session-pooling connection (no
PgBouncer transaction pooling between the sink and the replica).

Origin marking: each batch transaction starts with
``pg_logical_emit_message(true, 'cdc.origin', <origin>)``, which a
PostgreSQL source reading this database (pgoutput ``messages 'true'``)
sees inside the transaction, before its rows. Native replication origins
were not used: they need superuser and allow one session per origin at a
time, which would forbid several workers per sink.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

import psycopg
from psycopg.types.string import TextLoader

from cdc.errors import SchemaError
from cdc.events import ColumnType, Kind
from cdc.serde.temporal import TemporalSentinel
from cdc.sink.sql import delete_by_keys
from cdc.sink.values import (
    DoesNotFit,
    chain,
    decimal_check,
    fraction_check,
    identity_for,
    time_text,
)
from cdc.spi import (
    ErrorKind,
    KeyRange,
    ReplicaColumn,
    ReplicaTable,
    SinkDialect,
    TableName,
)

log = logging.getLogger(__name__)

COPY_THRESHOLD: Final = 1_000
_MAX_PARAMS: Final = 65_535
_EPOCH_JULIAN: Final = 2_440_588  # Julian day of 1970-01-01
_DAY: Final = timedelta(days=1)

# Source native type names a PostgreSQL replica can recreate as they are.
_NATIVE = re.compile(
    r"(smallint|integer|bigint|boolean|real|double precision|numeric(\(\d+,-?\d+\))?|text"
    r"|character varying(\(\d+\))?|character\(\d+\)|bpchar|bytea|date"
    r"|time(\(\d\))? with(out)? time zone|timestamp(\(\d\))? with(out)? time zone"
    r"|interval( (year|month|day|hour|minute|second)( to (month|hour|minute|second))?)?(\(\d\))?"
    r"|uuid|json|jsonb|bit(\(\d+\))?|bit varying(\(\d+\))?|xml|inet|cidr|macaddr8?"
    r"|tsvector|tsquery|point|line|lseg|box|path|polygon|circle"
    r"|int4range|int8range|numrange|tsrange|tstzrange|daterange|pg_lsn)(\[\])*"
)

_KIND_OF_TYPE: Final[dict[str, Kind]] = {
    "bool": Kind.BOOLEAN,
    "int2": Kind.INT16,
    "int4": Kind.INT32,
    "int8": Kind.INT64,
    "float4": Kind.FLOAT32,
    "float8": Kind.FLOAT64,
    "numeric": Kind.DECIMAL,
    "money": Kind.DECIMAL,
    "varchar": Kind.STRING,
    "text": Kind.STRING,
    "bpchar": Kind.STRING,
    "name": Kind.STRING,
    "citext": Kind.STRING,
    "json": Kind.JSON,
    "jsonb": Kind.JSON,
    "bytea": Kind.BYTES,
    "bit": Kind.BITS,
    "varbit": Kind.STRING,
    "uuid": Kind.UUID,
    "date": Kind.DATE,
    "time": Kind.TIME,
    "timetz": Kind.TIMETZ,
    "timestamp": Kind.TIMESTAMP,
    "timestamptz": Kind.TIMESTAMPTZ,
    "interval": Kind.INTERVAL,
}
_INT_RANK: Final = {"int2": 1, "int4": 2, "int8": 3, "numeric": 4}
_TRANSIENT_STATES: Final = {"40001", "40P01", "55P03", "57014", "25P03"}
_UNAVAILABLE_STATES: Final = {"57P01", "57P02", "57P03", "53300"}


def quote(identifier: str) -> str:
    """A double-quoted identifier; ``%`` doubled because statements take %s parameters
    (every statement is therefore run with a parameter list, even an empty one)."""
    return '"' + identifier.replace('"', '""').replace("%", "%%") + '"'


def _sentinel_text(v: TemporalSentinel) -> str:
    if v is TemporalSentinel.ZERO:
        raise DoesNotFit("MySQL's zero date has no PostgreSQL representation")
    return str(v.value)


@identity_for(date, datetime)
def _date_to_db(v: Any) -> Any:
    if isinstance(v, date):
        return v
    if isinstance(v, TemporalSentinel):
        return _sentinel_text(v)
    if isinstance(v, int):  # days since 1970 beyond Python's date range
        return f"J{_EPOCH_JULIAN + v}"
    return v


@identity_for(datetime)
def _ts_to_db(v: Any) -> Any:
    if isinstance(v, TemporalSentinel):
        return _sentinel_text(v)
    return v


def _time_to_db(v: Any) -> Any:
    if not isinstance(v, timedelta):
        return v
    if v == _DAY:
        return "24:00:00"
    if not timedelta(0) <= v < _DAY:
        raise DoesNotFit(
            f"TIME {time_text(v)} is outside the range 00:00:00..24:00:00 of the replica's "
            "time column (a replica interval column holds every MySQL TIME)"
        )
    us = v // timedelta(microseconds=1)
    return time(us // 3_600_000_000, us // 60_000_000 % 60, us // 1_000_000 % 60, us % 1_000_000)


def _interval_to_db(v: Any) -> Any:
    """A TIME duration into an interval column, as ``[-]H:MM:SS[.f]`` (no day part,
    so the replica prints it as MySQL does)."""
    return time_text(v) if isinstance(v, timedelta) else v


def _bits_to_db(width: int | None) -> Callable[[Any], Any]:
    def conv(v: Any) -> Any:
        if not isinstance(v, bytes | bytearray):
            return v
        n = width if width is not None else len(v) * 8
        value = int.from_bytes(v, "big")
        if value >> n:
            raise DoesNotFit(f"bit string of {len(v) * 8} bits does not fit bit({n})")
        return format(value, f"0{n}b") if n else ""

    return conv


def _array_to_db(element: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def each(v: list[Any]) -> list[Any]:
        return [None if x is None else each(x) if isinstance(x, list) else element(x) for x in v]

    def conv(v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = each(v)
        kinds = _leaf_types(out, set())
        if str in kinds and len(kinds) > 1:  # e.g. dates and 'infinity': psycopg dumps
            return _as_text(out)  # one element type per list, so all as text
        return out

    return conv


def _leaf_types(v: list[Any], seen: set[type]) -> set[type]:
    for x in v:
        if isinstance(x, list):
            _leaf_types(x, seen)
        elif x is not None:
            seen.add(type(x))
    return seen


def _as_text(v: list[Any]) -> list[Any]:
    return [
        None if x is None
        else _as_text(x) if isinstance(x, list)
        else x.isoformat() if isinstance(x, date | datetime)
        else str(x)
        for x in v
    ]  # fmt: skip


def _time_from_db(v: Any) -> Any:
    if isinstance(v, time):
        return timedelta(hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond)
    return v


_ISO_TIME: Final = re.compile(
    r"(-)?P(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?\d+)(?:\.(\d{1,6}))?S)?)?"
)


def _interval_from_db(v: Any) -> Any:
    """An interval column's value (ISO 8601 text: sessions load intervals as the text
    IntervalStyle iso_8601 prints) as the TIME duration it holds."""
    if not isinstance(v, str):
        return v
    m = _ISO_TIME.fullmatch(v)
    if m is None or v in ("P", "PT"):
        return v  # months or years: not a TIME
    sign, d, h, mi, sec, frac = m.groups()
    seconds = int(sec or 0)
    us = int((frac or "0").ljust(6, "0"))
    out = timedelta(days=int(d or 0), hours=int(h or 0), minutes=int(mi or 0), seconds=seconds,
                    microseconds=-us if sec is not None and sec.startswith("-") else us)
    return -out if sign else out


def _utc(v: Any) -> Any:
    return v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo is not None else v


def _bits_from_db(v: Any) -> Any:
    if isinstance(v, str):
        n = len(v)
        return int(v, 2).to_bytes((n + 7) // 8, "big") if n else b""
    return v


def _uint_from_db(v: Any) -> Any:
    return int(v) if isinstance(v, Decimal) else v


class PostgresDialect:
    """The PostgreSQL replica dialect (immutable; one per process is enough)."""

    kind = "postgres"

    # -- names

    def quote(self, identifier: str) -> str:
        return quote(identifier)

    def table_sql(self, table: TableName) -> str:
        return f"{quote(table.schema)}.{quote(table.name)}" if table.schema else quote(table.name)

    def native_applies(self, connector: str) -> bool:
        return connector == "postgresql"

    def default_schema(self, config: Any) -> str | None:
        schema = getattr(config, "target_schema", None)
        return str(schema) if schema else "public"

    # -- types

    def column_ddl(self, column_type: ColumnType, *, native: bool = False, key: bool = False) -> str:
        ct = column_type
        if native and ct.native and _NATIVE.fullmatch(ct.native.lower()):
            return ct.native.lower()
        k = ct.kind
        if k is Kind.BOOLEAN:
            return "boolean"
        if k is Kind.INT16:
            return "smallint"
        if k is Kind.INT32:
            return "integer"
        if k is Kind.INT64:
            return "bigint"
        if k is Kind.UINT64:
            return "numeric(20,0)"
        if k is Kind.FLOAT32:
            return "real"
        if k is Kind.FLOAT64:
            return "double precision"
        if k is Kind.DECIMAL:
            p, s = ct.precision, ct.scale or 0
            if p is not None and 1 <= p <= 1000 and -1000 <= s <= 1000:
                return f"numeric({p},{s})"
            return "numeric"
        if k is Kind.STRING:
            if ct.length is not None and 1 <= ct.length <= 10_485_760:
                return f"varchar({ct.length})"
            return "text"
        if k is Kind.JSON:
            return "jsonb"
        if k in (Kind.ENUM, Kind.SET):
            return "text"
        if k in (Kind.BYTES, Kind.GEOMETRY):
            return "bytea"
        if k is Kind.BITS:
            return f"bit({ct.length})" if ct.length else "bit varying"
        if k is Kind.UUID:
            return "uuid"
        if k is Kind.DATE:
            return "date"
        if k is Kind.TIME:
            return "interval"  # not time: MySQL TIME spans -838:59:59..838:59:59
        if k in (Kind.TIMETZ, Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
            base = "timestamp" if k in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ) else "time"
            zone = "with" if k in (Kind.TIMETZ, Kind.TIMESTAMPTZ) else "without"
            p = ct.precision
            digits = f"({p})" if p is not None and 0 <= p < 6 else ""
            return f"{base}{digits} {zone} time zone"
        if k is Kind.INTERVAL:
            return "interval"
        if k is Kind.ARRAY:
            if ct.element is None:
                raise SchemaError(f"array type {ct.native or ct} has no element type")
            return self.column_ddl(ct.element, native=native) + "[]"
        raise SchemaError(f"no PostgreSQL type for {k}")

    def widen(
        self, existing: ReplicaColumn, column_type: ColumnType, *, native: bool, key: bool = False
    ) -> str | None:
        # (key: every type this dialect chooses can be part of a primary key)
        want = self.column_ddl(column_type, native=native, key=key)
        if want == existing.type_text:
            return None
        have = existing.data_type
        k = column_type.kind
        if have == "time" and k is Kind.TIME and want == "interval":
            return want  # a MySQL TIME: time holds only 00:00..24:00
        if have in _INT_RANK and k in (Kind.INT16, Kind.INT32, Kind.INT64, Kind.UINT64):
            target = {Kind.INT16: "int2", Kind.INT32: "int4", Kind.INT64: "int8", Kind.UINT64: "numeric"}[k]
            return want if _INT_RANK[target] > _INT_RANK[have] else None
        if have == "float4" and k is Kind.FLOAT64:
            return want
        if have == "varchar" and k is Kind.STRING and existing.length is not None:
            if column_type.length is None or column_type.length > existing.length:
                return "text" if column_type.length is None else f"varchar({column_type.length})"
            return None
        if have == "numeric" and k is Kind.DECIMAL and existing.precision is not None:
            p, s = column_type.precision, column_type.scale or 0
            es = existing.scale or 0
            if p is None:
                return "numeric"
            if s >= es and p - s >= existing.precision - es and (p, s) != (existing.precision, es):
                return f"numeric({max(p, existing.precision)},{s})"
            return None
        if have in ("time", "timetz", "timestamp", "timestamptz") and existing.fraction is not None:
            p = 6 if column_type.precision is None else column_type.precision
            if k in (Kind.TIME, Kind.TIMETZ, Kind.TIMESTAMP, Kind.TIMESTAMPTZ) and p > existing.fraction:
                return existing.type_text.replace(f"({existing.fraction})", f"({p})" if p < 6 else "")
        return None

    # -- DDL

    def create_table(
        self, table: TableName, columns: Sequence[tuple[str, str, bool]], primary_key: Sequence[str]
    ) -> list[str]:
        cols = [f"{quote(n)} {t}{'' if nullable else ' NOT NULL'}" for n, t, nullable in columns]
        if primary_key:  # (a table without one is applied by full-row match)
            cols.append(f"PRIMARY KEY ({', '.join(quote(k) for k in primary_key)})")
        out = []
        if table.schema and table.schema != "public":  # (needs CREATE on the database)
            out.append(f"CREATE SCHEMA IF NOT EXISTS {quote(table.schema)}")
        out.append(f"CREATE TABLE IF NOT EXISTS {self.table_sql(table)} ({', '.join(cols)})")
        return out

    def add_columns(self, table: TableName, columns: Sequence[tuple[str, str]]) -> list[str]:
        adds = ", ".join(f"ADD COLUMN IF NOT EXISTS {quote(n)} {t}" for n, t in columns)
        return [f"ALTER TABLE {self.table_sql(table)} {adds}"]

    def alter_column(
        self, table: TableName, column: ReplicaColumn, type_ddl: str | None, nullable: bool
    ) -> list[str]:
        parts = []
        if type_ddl is not None:
            parts.append(f"ALTER COLUMN {quote(column.name)} TYPE {type_ddl}")
        if nullable and not column.nullable:
            parts.append(f"ALTER COLUMN {quote(column.name)} DROP NOT NULL")
        return [f"ALTER TABLE {self.table_sql(table)} {', '.join(parts)}"] if parts else []

    def checkpoint_ddl(self, table: TableName) -> list[str]:
        schema = []
        if table.schema and table.schema != "public":
            schema = [f"CREATE SCHEMA IF NOT EXISTS {quote(table.schema)}"]
        return [
            *schema,
            f"CREATE TABLE IF NOT EXISTS {self.table_sql(table)} ("
            "consumer_group text NOT NULL, topic text NOT NULL, \"partition\" integer NOT NULL, "
            "kafka_offset bigint NOT NULL, source_position text, "
            "updated_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (consumer_group, topic, \"partition\"))"
        ]

    # -- DML

    def _conflict(self, columns: Sequence[str], key: Sequence[str]) -> str:
        if not key:  # a table without a primary key: a plain insert
            return ""
        keyset = set(key)
        sets = [f"{quote(c)} = EXCLUDED.{quote(c)}" for c in columns if c not in keyset]
        target = ", ".join(quote(k) for k in key)
        if not sets:
            return f" ON CONFLICT ({target}) DO NOTHING"
        return f" ON CONFLICT ({target}) DO UPDATE SET {', '.join(sets)}"

    def upsert(self, table: TableName, columns: Sequence[str], key: Sequence[str], rows: int) -> str:
        one = "(" + ", ".join(["%s"] * len(columns)) + ")"
        return (
            f"INSERT INTO {self.table_sql(table)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES {', '.join([one] * rows)}" + self._conflict(columns, key)
        )

    def delete(self, table: TableName, key: Sequence[str], rows: int) -> str:
        return delete_by_keys(self.table_sql(table), key, rows, quote)

    def truncate(self, table: TableName) -> str:
        return f"TRUNCATE TABLE {self.table_sql(table)}"

    # -- values

    def to_db(self, column_type: ColumnType, target: ReplicaColumn | None) -> Callable[[Any], Any] | None:
        k = column_type.kind
        fraction = None if target is None else fraction_check(target.fraction, column_type.precision)
        if k is Kind.DECIMAL or k is Kind.UINT64:
            if target is not None and target.precision is not None and target.data_type == "numeric":
                sp, ss = (20, 0) if k is Kind.UINT64 else (column_type.precision, column_type.scale)
                return decimal_check(
                    target.precision, target.scale, special=True, source_precision=sp,
                    source_scale=ss,
                )
            return None
        if k is Kind.DATE:
            return _date_to_db
        if k in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
            return chain(fraction, _ts_to_db)
        if k is Kind.TIME:
            if target is not None and target.data_type == "interval":
                return chain(fraction, _interval_to_db)
            return chain(fraction, _time_to_db)
        if k is Kind.BITS:
            return _bits_to_db(target.length if target is not None and target.data_type == "bit" else None)
        if k is Kind.ARRAY and column_type.element is not None:
            inner = self.to_db(column_type.element, None)
            return None if inner is None else _array_to_db(inner)
        return None

    def from_db(self, column_type: ColumnType, target: ReplicaColumn | None) -> Callable[[Any], Any] | None:
        k = column_type.kind
        if k is Kind.TIME:
            if target is not None and target.data_type == "interval":
                return _interval_from_db
            return _time_from_db
        if k is Kind.TIMESTAMPTZ:
            return _utc
        if k is Kind.BITS:
            return _bits_from_db
        if k is Kind.UINT64:
            return _uint_from_db
        return None

    # -- errors

    def classify(self, error: BaseException) -> ErrorKind:
        if isinstance(error, DoesNotFit):
            return ErrorKind.DATA
        if isinstance(error, psycopg.Error):
            state = error.sqlstate
            if state is None:
                if isinstance(error, psycopg.OperationalError | psycopg.InterfaceError):
                    return ErrorKind.UNAVAILABLE
                return ErrorKind.FATAL
            if state.startswith("08") or state in _UNAVAILABLE_STATES:
                return ErrorKind.UNAVAILABLE
            if state in _TRANSIENT_STATES or state.startswith("53"):
                return ErrorKind.TRANSIENT
            if state.startswith(("22", "23")):
                return ErrorKind.DATA
            return ErrorKind.FATAL
        if isinstance(error, ConnectionError | TimeoutError):
            return ErrorKind.UNAVAILABLE
        return ErrorKind.FATAL

    # -- sessions

    def connect(self, config: Any) -> PostgresSession:
        extra = {} if config.target.application_name else {"application_name": f"cdc-sink-{config.name}"}
        kwargs = dict(config.target.connect_kwargs(**extra))
        conninfo = kwargs.pop("conninfo")
        conn = psycopg.connect(conninfo, **kwargs)
        # Intervals load as the ISO 8601 text the session prints (psycopg cannot parse
        # that style); it is the canonical form of INTERVAL (from_db parses a TIME's).
        conn.adapters.register_loader("interval", TextLoader)
        return PostgresSession(self, conn, self.default_schema(config))

    def open_reader(self, connection: Any) -> PostgresSession:
        extra = {} if connection.application_name else {"application_name": "cdc-verify"}
        kwargs = dict(connection.connect_kwargs(**extra))
        conninfo = kwargs.pop("conninfo")
        conn = psycopg.connect(conninfo, **kwargs)
        # Verify compares text forms: these load as PostgreSQL prints them (ISO, UTC),
        # which also carries infinity and BC dates that Python's types cannot hold.
        for name in _TEXT_TYPES:
            conn.adapters.register_loader(name, TextLoader)  # (arrays follow their elements)
        return PostgresSession(self, conn, None, read_only=True)


_TEXT_TYPES: Final = ("date", "timestamp", "timestamptz", "time", "timetz", "interval", "bit", "varbit")


def _typmod_facts(typname: str, typmod: int) -> tuple[int | None, int | None, int | None, int | None]:
    """(length, precision, scale, fraction) from a type's atttypmod."""
    if typmod < 0:
        if typname in ("time", "timetz", "timestamp", "timestamptz", "interval"):
            return None, None, None, 6
        return None, None, None, None
    if typname in ("varchar", "bpchar"):
        return typmod - 4, None, None, None
    if typname == "numeric":
        t = typmod - 4
        return None, (t >> 16) & 0xFFFF, ((t & 0x7FF) ^ 0x400) - 0x400, None
    if typname in ("time", "timetz", "timestamp", "timestamptz"):
        return None, None, None, typmod
    if typname in ("bit", "varbit"):
        return typmod, None, None, None
    return None, None, None, None


_DESCRIBE: Final = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, NOT a.attnotnull,
       a.atttypmod, t.typtype, et.typname,
       (SELECT array_agg(ka.attname ORDER BY array_position(i.indkey::int2[], ka.attnum))
          FROM pg_index i JOIN pg_attribute ka
            ON ka.attrelid = i.indrelid AND ka.attnum = ANY (i.indkey::int2[])
         WHERE i.indrelid = c.oid AND i.indisprimary)
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
 WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
 ORDER BY a.attnum
"""


class PostgresSession:
    """A connection to a PostgreSQL replica (or, read-only, to any PostgreSQL for verify)."""

    def __init__(
        self,
        dialect: PostgresDialect,
        conn: psycopg.Connection[tuple[Any, ...]],
        default_schema: str | None,
        *,
        read_only: bool = False,
    ) -> None:
        self.dialect: SinkDialect = dialect
        self._d = dialect
        self._conn = conn
        self._default_schema = default_schema
        self._in_tx = False
        self._origin: str | None = None
        self._stages: dict[tuple[TableName, tuple[str, ...]], str] = {}
        self._dirty: set[str] = set()
        self._scan_no = 0
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            cur.execute("SET DateStyle = 'ISO, YMD'")
            cur.execute("SET IntervalStyle = 'iso_8601'")
            if read_only:
                cur.execute("SET default_transaction_read_only = on")
        conn.commit()

    def _qualify(self, table: TableName) -> TableName:
        if table.schema is None and self._default_schema is not None:
            return TableName(self._default_schema, table.name)
        return table

    def _end_read(self) -> None:
        if not self._in_tx:
            self._conn.rollback()

    # -- reading

    def list_tables(self) -> list[TableName]:
        rows = self._conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_temp%%' AND n.nspname NOT LIKE 'pg_toast%%' "
            "ORDER BY 1, 2",
            [],
        ).fetchall()
        self._end_read()
        return [TableName(s, t) for s, t in rows]

    def describe(self, table: TableName) -> ReplicaTable | None:
        table = self._qualify(table)
        rows = self._conn.execute(_DESCRIBE, [table.schema or "public", table.name]).fetchall()
        self._end_read()
        if not rows:
            return None
        columns = []
        for name, type_text, typname, nullable, typmod, typtype, elem, _ in rows:
            length, precision, scale, fraction = _typmod_facts(typname, typmod)
            if elem is not None:
                kind: Kind | None = Kind.ARRAY
            elif typtype == "e":
                kind = Kind.ENUM
            else:
                kind = _KIND_OF_TYPE.get(typname)
            columns.append(
                ReplicaColumn(
                    name=name,
                    type_text=type_text,
                    data_type=typname,
                    nullable=bool(nullable),
                    length=length,
                    precision=precision,
                    scale=scale,
                    fraction=fraction,
                    kind=kind,
                    element=None if elem is None else _KIND_OF_TYPE.get(elem, Kind.STRING),
                )
            )
        pk = tuple(rows[0][7] or ())
        return ReplicaTable(table, tuple(columns), pk)

    def count(self, table: TableName) -> int:
        row = self._conn.execute(
            f"SELECT count(*) FROM {self._d.table_sql(self._qualify(table))}", []
        ).fetchone()
        self._end_read()
        return int(row[0]) if row else 0

    def key_bounds(self, table: TableName, column: str) -> tuple[Any, Any]:
        c = quote(column)
        row = self._conn.execute(
            f"SELECT min({c}), max({c}) FROM {self._d.table_sql(self._qualify(table))}", []
        ).fetchone()
        self._end_read()
        return (row[0], row[1]) if row else (None, None)

    def scan(
        self, table: TableName, columns: Sequence[str], *, key_range: KeyRange | None = None
    ) -> Iterator[tuple[Any, ...]]:
        sql = f"SELECT {', '.join(quote(c) for c in columns)} FROM {self._d.table_sql(self._qualify(table))}"
        params: list[Any] = []
        if key_range is not None:
            col, lo, hi = key_range
            sql += f" WHERE {quote(col)} >= %s AND {quote(col)} < %s"
            params = [lo, hi]
        self._scan_no += 1
        with self._conn.cursor(name=f"cdc_scan_{self._scan_no}") as cur:
            cur.itersize = 10_000
            cur.execute(sql, params)
            yield from cur
        self._end_read()

    # -- schema changes

    def execute_ddl(self, statements: Sequence[str]) -> None:
        if self._in_tx:
            raise RuntimeError("DDL inside a data transaction")
        try:
            with self._conn.cursor() as cur:
                for sql in statements:
                    log.info("replica DDL: %s", sql)
                    cur.execute(sql, [])
            self._conn.commit()
        except BaseException:
            self._conn.rollback()
            raise

    def invalidate(self, table: TableName) -> None:
        table = self._qualify(table)
        for k in [k for k in self._stages if k[0] == table]:
            del self._stages[k]

    # -- transactions

    def begin(self) -> None:
        self._conn.rollback()  # end any implicit read transaction
        self._in_tx = True
        if self._origin is not None:
            self._conn.execute("SELECT pg_logical_emit_message(true, 'cdc.origin', %s)", [self._origin])

    def commit(self) -> None:
        self._conn.commit()
        self._in_tx = False
        self._dirty.clear()

    def rollback(self) -> None:
        self._in_tx = False
        self._dirty.clear()
        self._stages.clear()  # temp tables created in the rolled back transaction are gone
        if not self._conn.closed:
            self._conn.rollback()

    def savepoint(self) -> None:
        self._conn.execute("SAVEPOINT cdc_change")

    def rollback_to_savepoint(self) -> None:
        self._conn.execute("ROLLBACK TO SAVEPOINT cdc_change")
        self._dirty.clear()

    def release_savepoint(self) -> None:
        self._conn.execute("RELEASE SAVEPOINT cdc_change")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.rowcount

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def set_origin(self, origin: str) -> None:
        self._origin = origin

    # -- writing

    def _stage(self, table: ReplicaTable, columns: tuple[str, ...]) -> str:
        """A temporary table with ``columns`` of ``table`` (their exact types), empty."""
        key = (table.name, columns)
        name = self._stages.get(key)
        if name is None:
            name = f"cdc_stage_{len(self._stages) + 1}_{abs(hash(key)) % 1_000_000}"
            self._conn.execute(
                f"CREATE TEMPORARY TABLE {quote(name)} ON COMMIT DELETE ROWS AS "
                f"SELECT {', '.join(quote(c) for c in columns)} FROM {self._d.table_sql(table.name)} "
                "WITH NO DATA",
                [],
            )
            self._stages[key] = name
        elif name in self._dirty:
            self._conn.execute(f"TRUNCATE {quote(name)}", [])
        self._dirty.add(name)
        return name

    def _copy(self, stage: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur, cur.copy(
            f"COPY {quote(stage)} ({', '.join(quote(c) for c in columns)}) FROM STDIN", []
        ) as copy:
            write = copy.write_row
            for row in rows:
                write(row)

    def upsert(self, table: ReplicaTable, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        cols = tuple(columns)
        key = table.primary_key
        if len(rows) >= COPY_THRESHOLD:
            stage = self._stage(table, cols)
            self._copy(stage, cols, rows)
            names = ", ".join(quote(c) for c in cols)
            self._conn.execute(
                f"INSERT INTO {self._d.table_sql(table.name)} ({names}) "
                f"SELECT {names} FROM {quote(stage)}" + self._d._conflict(cols, key),
                [],
            )
            return
        per = max(1, min(len(rows), _MAX_PARAMS // max(1, len(cols)), 500))
        with self._conn.cursor() as cur:
            for i in range(0, len(rows), per):
                chunk = rows[i : i + per]
                params = [v for row in chunk for v in row]
                cur.execute(self._d.upsert(table.name, cols, key, len(chunk)), params)

    def delete(self, table: ReplicaTable, keys: Sequence[Sequence[Any]]) -> None:
        if not keys:
            return
        key = table.primary_key
        if len(keys) >= COPY_THRESHOLD:
            stage = self._stage(table, key)
            self._copy(stage, key, keys)
            cond = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in key)
            self._conn.execute(
                f"DELETE FROM {self._d.table_sql(table.name)} t USING {quote(stage)} s WHERE {cond}",
                [],
            )
            return
        per = max(1, min(len(keys), _MAX_PARAMS // len(key), 1000))
        with self._conn.cursor() as cur:
            for i in range(0, len(keys), per):
                chunk = keys[i : i + per]
                cur.execute(self._d.delete(table.name, key, len(chunk)), [v for k in chunk for v in k])

    def truncate(self, table: ReplicaTable) -> None:
        self._conn.execute(self._d.truncate(table.name), [])

    def move(
        self, table: ReplicaTable, old_key: Sequence[Any], columns: Sequence[str], row: Sequence[Any]
    ) -> bool:
        sets = ", ".join(f"{quote(c)} = %s" for c in columns)
        where = " AND ".join(f"{quote(k)} = %s" for k in table.primary_key)
        n = self.execute(
            f"UPDATE {self._d.table_sql(table.name)} SET {sets} WHERE {where}", [*row, *old_key]
        )
        return n > 0

    def _match(
        self, table: ReplicaTable, columns: Sequence[str], row: Sequence[Any]
    ) -> tuple[str, list[Any]]:
        """``WHERE`` text and parameters matching a whole row, NULL-safe."""
        conds = []
        params: list[Any] = []
        for name, v in zip(columns, row, strict=True):
            c = quote(name)
            if v is None:
                conds.append(f"{c} IS NULL")
                continue
            rc = table.column(name)
            typname = rc.data_type if rc is not None else "text"
            if typname in _MATCH_AS_TEXT:
                cast = rc.type_text if rc is not None else "text"
                conds.append(f"{c}::text = CAST(%s AS {cast})::text")
            elif typname == "json":  # json has no equality; jsonb's is by value
                conds.append(f"{c}::jsonb = CAST(%s AS jsonb)")
            elif typname in _MATCH_AS_IS or rc is None:
                conds.append(f"{c} = %s")  # (a string literal takes the column's type)
            else:
                conds.append(f"{c} = CAST(%s AS {rc.type_text})")
            params.append(v)
        return " AND ".join(conds) or "true", params

    def delete_row(self, table: ReplicaTable, columns: Sequence[str], row: Sequence[Any]) -> bool:
        where, params = self._match(table, columns, row)
        t = self._d.table_sql(table.name)
        return self.execute(
            f"DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE {where} LIMIT 1)", params
        ) > 0

    def update_row(
        self,
        table: ReplicaTable,
        columns: Sequence[str],
        row: Sequence[Any],
        set_columns: Sequence[str],
        values: Sequence[Any],
    ) -> bool:
        where, params = self._match(table, columns, row)
        t = self._d.table_sql(table.name)
        sets = ", ".join(f"{quote(c)} = %s" for c in set_columns)
        return self.execute(
            f"UPDATE {t} SET {sets} WHERE ctid = (SELECT ctid FROM {t} WHERE {where} LIMIT 1)",
            [*values, *params],
        ) > 0

    def close(self) -> None:
        try:
            self._conn.close()
        except psycopg.Error as e:  # closing a broken connection: nothing left to release
            log.debug("closing the replica connection: %s", e)


# Full-row match (tables without a primary key): types without an equality operator,
# or whose one is not identity (box and circle compare areas), and arrays of them
# compare as text (json as jsonb); string
# types take the parameter as a literal of their own type (no cast that could cut it).
_NO_IDENTITY_EQ: Final = ("json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle")
_MATCH_AS_TEXT: Final = frozenset((*_NO_IDENTITY_EQ[1:], *(f"_{t}" for t in _NO_IDENTITY_EQ)))
_MATCH_AS_IS: Final = frozenset(("text", "varchar", "bpchar", "name", "citext"))


def create_dialect() -> PostgresDialect:
    return PostgresDialect()

