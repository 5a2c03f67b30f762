"""The change-event model every source produces and every sink consumes.

Sources map their native column types onto the neutral :class:`ColumnType`
(one type table per database, in ``connectors/<db>/types.py``); the serde maps
that onto Avro, and sink dialects map it back onto their DDL. Row values are
plain Python values in the canonical form given per kind below, so the same
event encodes identically whichever database it came from.

Canonical Python values per :class:`Kind`:

=============  ===========================================================
BOOLEAN        bool
INT16/32/64    int (UINT64 too: BIGINT UNSIGNED up to 2**64-1)
FLOAT32/64     float (NaN and +-inf allowed)
DECIMAL        decimal.Decimal (NaN allowed only where the column says so)
STRING, JSON,  str (JSON text as the database printed it; ENUM the label;
ENUM, SET,     SET the comma-separated labels; TIMETZ ``HH:MM:SS[.f]+TZ``;
TIMETZ, TEXT   INTERVAL an ISO-8601 duration; any unmapped type its text)
INTERVAL
BYTES, BITS,   bytes (BITS big-endian, ``length`` bits; GEOMETRY as WKB)
GEOMETRY
UUID           uuid.UUID
DATE           datetime.date, or int days since epoch outside Python's range
TIME           datetime.timedelta (may be negative: MySQL TIME)
TIMESTAMP      datetime.datetime, naive (wall-clock, no zone)
TIMESTAMPTZ    datetime.datetime, aware (normalised to UTC on the wire)
ARRAY          list of the element kind's values (may nest, may hold None)
=============  ===========================================================

Infinite or out-of-range dates/timestamps (PostgreSQL ``infinity``, MySQL
zero dates) are represented by the sentinels in :mod:`cdc.serde.temporal`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cdc.positions import Position

Row = Mapping[str, Any]


class Op(StrEnum):
    """Debezium's operation codes."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"
    TRUNCATE = "t"


class Kind(StrEnum):
    """Neutral column kinds shared by all databases (see module docstring)."""

    BOOLEAN = "boolean"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    DECIMAL = "decimal"
    STRING = "string"
    JSON = "json"
    ENUM = "enum"
    SET = "set"
    BYTES = "bytes"
    BITS = "bits"
    UUID = "uuid"
    DATE = "date"
    TIME = "time"
    TIMETZ = "timetz"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    INTERVAL = "interval"
    GEOMETRY = "geometry"
    ARRAY = "array"


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A column's neutral type plus the facts a sink needs to recreate it.

    ``native`` keeps the source's own type name (``numeric(10,2)``,
    ``bigint unsigned``) so same-database replicas can reproduce it exactly.
    """

    kind: Kind
    native: str = ""
    precision: int | None = None  # DECIMAL digits; TIME/TIMESTAMP fractional digits
    scale: int | None = None
    length: int | None = None  # char/varchar/binary length, BITS width
    values: tuple[str, ...] = ()  # ENUM/SET labels
    element: ColumnType | None = None  # ARRAY element type
    nan: bool = False  # DECIMAL that may hold NaN/Infinity (PostgreSQL numeric)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = True
    default: str | None = None  # the source's default expression, informational


@dataclass(frozen=True, slots=True, order=True)
class TableId:
    """A captured table. ``schema`` is None for MySQL (database = schema there)."""

    database: str
    schema: str | None
    table: str

    @property
    def qualified(self) -> str:
        return f"{self.schema or self.database}.{self.table}"

    def __str__(self) -> str:
        return self.qualified


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A table's shape at one point in its history.

    Events carry the schema that was current when their row was written, so
    an ALTER TABLE changes the schema of later events only.
    """

    table: TableId
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    def __post_init__(self) -> None:
        names = {c.name for c in self.columns}
        missing = [k for k in self.primary_key if k not in names]
        if missing:
            raise ValueError(f"{self.table}: key columns {missing} are not columns")

    @property
    def key_columns(self) -> tuple[Column, ...]:
        by_name = {c.name: c for c in self.columns}
        return tuple(by_name[k] for k in self.primary_key)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.table} has no column {name!r}")


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Where an event came from; becomes the envelope's ``source`` block."""

    connector: str  # the source block's name (Debezium's connector name; cdc.spi.SourceBlock)
    name: str  # logical source name = topic prefix
    version: str  # cdc version
    db_version: str
    position: Position  # of the connector's own kind
    ts_ms: int  # commit time of the transaction (snapshot: read time)
    tx_id: str | None = None
    snapshot: str = "false"  # "true" | "last" | "false" | "incremental"
    origin: str | None = None  # replication origin, for loop prevention


@dataclass(frozen=True, slots=True)
class TransactionInfo:
    """Debezium's ``transaction`` block: id and order of the event in it."""

    id: str
    total_order: int
    data_collection_order: int


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """One row change (or a truncate) in a table.

    ``key`` holds the primary-key values (None for truncate). ``before`` is
    present for updates and deletes when the source has the old image;
    ``after`` for creates, reads and updates. ``ts_ms`` is the time the
    connector processed the event (Debezium's top-level ``ts_ms``); the
    event's own time is ``source.ts_ms``.
    """

    op: Op
    schema: TableSchema
    key: Row | None
    before: Row | None
    after: Row | None
    source: SourceInfo
    ts_ms: int
    transaction: TransactionInfo | None = None
    # Columns whose value the source did not send (PostgreSQL unchanged TOAST):
    # sinks must keep the replica's current value for them.
    unchanged: frozenset[str] = field(default_factory=frozenset)

    @property
    def table(self) -> TableId:
        return self.schema.table

    @property
    def position(self) -> Position:
        return self.source.position
