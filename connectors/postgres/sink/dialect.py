"""PostgreSQL as a replica: the dialect (type mapping, SQL text, error classes).

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

Writes (:mod:`.session`): batches of fewer than
:data:`~connectors.postgres.sink.session.COPY_THRESHOLD` rows use multi-row
``INSERT .. VALUES .. ON CONFLICT DO UPDATE`` and ``DELETE .. WHERE k IN``;
larger ones ``COPY`` into a per-session temporary staging table (``ON
COMMIT DELETE ROWS``) and then ``INSERT .. SELECT .. ON CONFLICT`` /
``DELETE .. USING``; source inserts above the checkpoint are copied straight
into the table (an upsert when a key exists after all), and a ``COPY`` is
binary where the column types allow (:mod:`.binary`). Temporary tables need a session-pooling connection (no
PgBouncer transaction pooling between the sink and the replica).

Origin marking: a sink with ``origin`` binds each replica session to the
replication origin ``cdc_<origin>`` (:mod:`connectors.postgres.origin`), so
every transaction it commits carries that origin, which pgoutput reports and
filters on.

This module is the :class:`~cdc.spi.SinkDialect` (statement texts, column
types, which converter each column needs, error classification). The
converters themselves are in :mod:`.values`, the connection and the batch
writes in :mod:`.session`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg.types.string import TextLoader

from cdc.errors import SchemaError
from cdc.events import ColumnType, Kind
from cdc.sink.sql import delete_by_keys
from cdc.sink.values import DoesNotFit, chain, decimal_check, fraction_check
from cdc.spi import ErrorKind, ReplicaColumn, TableName
from connectors.postgres.sink.swap import PostgresSwaps
from connectors.postgres.sink.values import (
    array_to_db,
    bits_from_db,
    bits_to_db,
    date_to_db,
    interval_from_db,
    interval_to_db,
    time_from_db,
    time_to_db,
    ts_to_db,
    uint_from_db,
    utc,
)

if TYPE_CHECKING:
    from connectors.postgres.sink.session import PostgresSession

# Source native type names a PostgreSQL replica can recreate as they are.
_NATIVE = re.compile(
    r"(smallint|integer|bigint|boolean|real|double precision|numeric(\(\d+,-?\d+\))?|text"
    r"|character varying(\(\d+\))?|varchar(\(\d+\))?|character\(\d+\)|bpchar(\(\d+\))?|bytea|date"
    r"|time(\(\d\))? with(out)? time zone|timestamp(\(\d\))? with(out)? time zone"
    r"|interval( (year|month|day|hour|minute|second)( to (month|hour|minute|second))?)?(\(\d\))?"
    r"|uuid|json|jsonb|bit(\(\d+\))?|bit varying(\(\d+\))?|xml|inet|cidr|macaddr8?"
    r"|tsvector|tsquery|point|line|lseg|box|path|polygon|circle"
    r"|int4range|int8range|numrange|tsrange|tstzrange|daterange|pg_lsn)(\[\])*"
)

_INT_RANK: Final = {"int2": 1, "int4": 2, "int8": 3, "numeric": 4}
_TRANSIENT_STATES: Final = {"40001", "40P01", "55P03", "57014", "25P03"}
_UNAVAILABLE_STATES: Final = {"57P01", "57P02", "57P03", "53300"}


def quote(identifier: str) -> str:
    """A double-quoted identifier; ``%`` doubled because statements take %s parameters
    (every statement is therefore run with a parameter list, even an empty one)."""
    return '"' + identifier.replace('"', '""').replace("%", "%%") + '"'


class PostgresDialect(PostgresSwaps):
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

    def _schema_ddl(self, table: TableName) -> list[str]:
        if table.schema and table.schema != "public":
            return [f"CREATE SCHEMA IF NOT EXISTS {quote(table.schema)}"]
        return []

    def row_versions_ddl(self, table: TableName) -> list[str]:
        return [
            *self._schema_ddl(table),
            f"CREATE TABLE IF NOT EXISTS {self.table_sql(table)} ("
            "entry_id char(64) PRIMARY KEY, table_name text NOT NULL, row_key text NOT NULL, "
            "ts_ms bigint NOT NULL, node varchar(64) NOT NULL, position text NOT NULL, "
            "deleted boolean NOT NULL, row_hash char(32), row_image text, "
            "updated_at timestamptz NOT NULL DEFAULT now())",
        ]

    def conflicts_ddl(self, table: TableName) -> list[str]:
        return [
            *self._schema_ddl(table),
            f"CREATE TABLE IF NOT EXISTS {self.table_sql(table)} ("
            "id char(64) PRIMARY KEY, detected_at timestamptz NOT NULL, sink text NOT NULL, "
            "table_name text NOT NULL, row_key text NOT NULL, conflict_type varchar(32) NOT NULL, "
            "resolution varchar(32) NOT NULL, decision varchar(32) NOT NULL, "
            "local_origin varchar(64), local_ts_ms bigint, local_position text, "
            "remote_origin varchar(64), remote_ts_ms bigint, remote_position text, "
            "local_image text, remote_image text, published boolean NOT NULL DEFAULT false)",
            f"CREATE INDEX IF NOT EXISTS {quote(table.name + '_detected_at')} "
            f"ON {self.table_sql(table)} (detected_at)",
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
            return date_to_db
        if k in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
            return chain(fraction, ts_to_db)
        if k is Kind.TIME:
            if target is not None and target.data_type == "interval":
                return chain(fraction, interval_to_db)
            return chain(fraction, time_to_db)
        if k is Kind.BITS:
            return bits_to_db(target.length if target is not None and target.data_type == "bit" else None)
        if k is Kind.ARRAY and column_type.element is not None:
            inner = self.to_db(column_type.element, None)
            return None if inner is None else array_to_db(inner)
        return None

    def from_db(self, column_type: ColumnType, target: ReplicaColumn | None) -> Callable[[Any], Any] | None:
        k = column_type.kind
        if k is Kind.TIME:
            if target is not None and target.data_type == "interval":
                return interval_from_db
            return time_from_db
        if k is Kind.TIMESTAMPTZ:
            return utc
        if k is Kind.BITS:
            return bits_from_db
        if k is Kind.UINT64:
            return uint_from_db
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
        from connectors.postgres.sink.session import PostgresSession  # (it imports this module)

        session = PostgresSession(self, conn, self.default_schema(config))
        if config.synchronous_commit is not None:
            session.set_synchronous_commit(config.synchronous_commit)
        return session

    def open_reader(self, connection: Any) -> PostgresSession:
        extra = {} if connection.application_name else {"application_name": "cdc-verify"}
        kwargs = dict(connection.connect_kwargs(**extra))
        conninfo = kwargs.pop("conninfo")
        conn = psycopg.connect(conninfo, **kwargs)
        # Verify compares text forms: these load as PostgreSQL prints them (ISO, UTC),
        # which also carries infinity and BC dates that Python's types cannot hold.
        for name in _TEXT_TYPES:
            conn.adapters.register_loader(name, TextLoader)  # (arrays follow their elements)
        from connectors.postgres.sink.session import PostgresSession  # (it imports this module)

        return PostgresSession(self, conn, None, read_only=True)


_TEXT_TYPES: Final = ("date", "timestamp", "timestamptz", "time", "timetz", "interval", "bit", "varbit")


def create_dialect() -> PostgresDialect:
    return PostgresDialect()
