"""The MySQL/MariaDB type table, shared by the snapshot and the binlog reader.

Two paths see a column's values in different forms:

* the snapshot reads with PyMySQL *without decoders* (``snapshot_conv()``), so
  every value arrives as the server's text (``str``) or, for binary-charset
  columns, raw ``bytes``;
* the binlog reader gets what mysql-replication decoded from the row image
  (ints, ``Decimal``, naive datetimes, a ``set`` for SET, a bit string for BIT,
  the internal SRID-prefixed GEOMETRY...).

One :class:`ColumnCodec` per column holds a converter for each path to the one
canonical value of :mod:`cdc.events`, so the paths cannot drift (a parity test
checks they agree). TYPES.md next to this file is the human-readable table.

A column's neutral type comes from ``information_schema.COLUMNS``
(:class:`CatalogColumn`) when that still describes the rows being read, or
from the binlog's own TableMap metadata (:class:`BinlogColumn`, complete with
``binlog_row_metadata=FULL``) when it does not - a reader resumed before an
``ALTER TABLE`` sees rows in their old layout. :class:`Shape` is what both
sources state about a column's *storage*; equal shapes mean the catalog
describes the binlog rows and its richer facts (MariaDB's JSON alias, the
exact ``COLUMN_TYPE``, defaults) apply.
"""

from __future__ import annotations

import codecs
import ipaddress
import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

import pymysql.charset
import pymysql.converters

from cdc.errors import SchemaError, SerializationError
from cdc.events import ColumnType, Kind
from cdc.serde.temporal import ZERO
from cdc.serde.value_codecs import shortest_float32

__all__ = [
    "ZERO_DATE_POLICIES",
    "BinlogColumn",
    "BinlogRowDecoder",
    "CatalogColumn",
    "ColumnCodec",
    "Shape",
    "TextRowDecoder",
    "ZeroDatePolicy",
    "catalog_columns",
    "catalog_primary_key",
    "column_type_from_binlog",
    "column_type_from_catalog",
    "decode_time2",
    "make_codec",
    "parse_enum_values",
    "snapshot_conv",
]

Converter = Callable[[Any], Any]

#: What a zero or partly-zero date (``0000-00-00``, ``2024-00-10``) becomes:
#: ``null`` - None, or the epoch (1970-01-01 [00:00:00]) for a NOT NULL column
#: (Debezium's rule); ``min`` - 0001-01-01 [00:00:00]; ``sentinel`` -
#: :data:`cdc.serde.types.ZERO`, which round-trips to a MySQL replica as the
#: zero date itself; ``error`` - stop with a SerializationError naming the column.
ZeroDatePolicy = Literal["null", "min", "error", "sentinel"]
ZERO_DATE_POLICIES: Final = ("null", "min", "error", "sentinel")

# mysql-replication column type codes (pymysqlreplication.constants.FIELD_TYPE);
# spelled out here so this module needs no replication import.
T_DECIMAL, T_TINY, T_SHORT, T_LONG, T_FLOAT, T_DOUBLE = 0, 1, 2, 3, 4, 5
T_TIMESTAMP, T_LONGLONG, T_INT24, T_DATE, T_TIME, T_DATETIME, T_YEAR = 7, 8, 9, 10, 11, 12, 13
T_NEWDATE, T_VARCHAR, T_BIT, T_TIMESTAMP2, T_DATETIME2, T_TIME2 = 14, 15, 16, 17, 18, 19
T_JSON, T_NEWDECIMAL, T_ENUM, T_SET = 245, 246, 247, 248
T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB, T_BLOB = 249, 250, 251, 252
T_VAR_STRING, T_STRING, T_GEOMETRY = 253, 254, 255

# mysql-replication's reasons for a None value (pymysqlreplication.constants.NONE_SOURCE).
NONE_NULL: Final = "null"
NONE_ZERO_DATE: Final = frozenset(
    {"out of date range", "out of datetime range", "out of datetime2 range"}
)
NONE_EMPTY_SET: Final = "empty set"
NONE_NOT_LOGGED: Final = "cols bitmap"
NONE_JSON_PARTIAL: Final = "same with before values"

_INT_BITS: Final = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}
_BINLOG_INT: Final = {
    T_TINY: "tinyint",
    T_SHORT: "smallint",
    T_INT24: "mediumint",
    T_LONG: "int",
    T_LONGLONG: "bigint",
}
_BLOB_PREFIX: Final = {  # data type -> bytes of the length prefix in the row image
    "tinytext": 1,
    "tinyblob": 1,
    "text": 2,
    "blob": 2,
    "mediumtext": 3,
    "mediumblob": 3,
    "longtext": 4,
    "longblob": 4,
}
_TEXT_NAMES: Final = {1: "tinytext", 2: "text", 3: "mediumtext", 4: "longtext"}
_BLOB_NAMES: Final = {1: "tinyblob", 2: "blob", 3: "mediumblob", 4: "longblob"}
_GEOMETRY_TYPES: Final = frozenset(
    {
        "geometry",
        "point",
        "linestring",
        "polygon",
        "multipoint",
        "multilinestring",
        "multipolygon",
        "geometrycollection",
        "geomcollection",
    }
)
# Bytes per character, to turn a TableMap's byte length back into characters.
_MBMAXLEN: Final = {
    "binary": 1,
    "latin1": 1,
    "latin2": 1,
    "ascii": 1,
    "cp1250": 1,
    "cp1251": 1,
    "cp1256": 1,
    "cp1257": 1,
    "cp850": 1,
    "cp852": 1,
    "cp866": 1,
    "dec8": 1,
    "greek": 1,
    "hebrew": 1,
    "hp8": 1,
    "keybcs2": 1,
    "koi8r": 1,
    "koi8u": 1,
    "latin5": 1,
    "latin7": 1,
    "macce": 1,
    "macroman": 1,
    "swe7": 1,
    "tis620": 1,
    "armscii8": 1,
    "geostd8": 1,
    "big5": 2,
    "cp932": 2,
    "euckr": 2,
    "gb2312": 2,
    "gbk": 2,
    "sjis": 2,
    "ucs2": 2,
    "ujis": 3,
    "eucjpms": 3,
    "utf8": 3,
    "utf8mb3": 3,
    "utf8mb4": 4,
    "utf16": 4,
    "utf16le": 4,
    "utf32": 4,
    "gb18030": 4,
}

_EPOCH_DATE: Final = date(1970, 1, 1)
_EPOCH_TS: Final = datetime(1970, 1, 1)
_EPOCH_TSTZ: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_DATE: Final = date(1, 1, 1)
_MIN_TS: Final = datetime(1, 1, 1)
_MIN_TSTZ: Final = datetime(1, 1, 1, tzinfo=UTC)


def snapshot_conv() -> dict[Any, Any]:
    """PyMySQL ``conv`` for snapshot connections: parameter encoders, no decoders.

    Without decoders PyMySQL hands over the server's text (or bytes for binary
    columns), which the codecs convert; its own decoders would turn zero dates
    into strings, SET into Python sets and lose TIME signs' context.
    """
    return {k: v for k, v in pymysql.converters.encoders.items() if not isinstance(k, int)}


# --------------------------------------------------------------------------- column facts


@dataclass(frozen=True, slots=True)
class Shape:
    """How a column is stored in a row image: what the binlog's TableMap and
    information_schema both state. Equal shapes mean a catalog column still
    describes the rows of a TableMap (see the module docstring)."""

    name: str
    family: str  # tinyint..bigint float double decimal bit char varchar blob enum set json
    #              date time datetime timestamp year geometry
    unsigned: bool = False
    binary: bool = False  # char/varchar/blob with the binary charset
    precision: int | None = None  # decimal digits, fractional-second digits, BIT width
    scale: int | None = None
    octets: int | None = None  # char/varchar: max bytes; blob: bytes of the length prefix
    values: tuple[str, ...] = ()  # ENUM/SET labels


@dataclass(frozen=True, slots=True)
class CatalogColumn:
    """One row of ``information_schema.COLUMNS`` (the current definition)."""

    name: str
    data_type: str  # DATA_TYPE, lower case
    column_type: str  # COLUMN_TYPE, e.g. "int(10) unsigned", "enum('a','b')"
    nullable: bool = True
    default: str | None = None
    char_length: int | None = None  # CHARACTER_MAXIMUM_LENGTH
    octet_length: int | None = None  # CHARACTER_OCTET_LENGTH
    precision: int | None = None  # NUMERIC_PRECISION (BIT: the width)
    scale: int | None = None  # NUMERIC_SCALE
    fsp: int | None = None  # DATETIME_PRECISION
    charset: str | None = None
    json: bool = False  # MariaDB's JSON alias: LONGTEXT with a json_valid() CHECK

    @property
    def unsigned(self) -> bool:
        return " unsigned" in self.column_type or " zerofill" in self.column_type

    def shape(self) -> Shape:
        dt = self.data_type
        if dt in _INT_BITS or dt in ("float", "double", "decimal"):
            if dt == "decimal":
                return Shape(
                    self.name, dt, self.unsigned, precision=self.precision, scale=self.scale
                )
            return Shape(self.name, dt, self.unsigned)
        if dt in ("char", "binary", "varchar", "varbinary"):
            binary = dt in ("binary", "varbinary")
            octets = self.char_length if binary else self.octet_length
            family = "char" if dt in ("char", "binary") else "varchar"
            return Shape(self.name, family, binary=binary, octets=octets)
        if dt in ("uuid", "inet6"):  # MariaDB: BINARY(16) in the row image
            return Shape(self.name, "char", binary=True, octets=16)
        if dt == "inet4":
            return Shape(self.name, "char", binary=True, octets=4)
        if dt in _BLOB_PREFIX:
            return Shape(self.name, "blob", binary=dt.endswith("blob"), octets=_BLOB_PREFIX[dt])
        if dt == "json":
            return Shape(self.name, "json")
        if dt in ("enum", "set"):
            return Shape(self.name, dt, values=parse_enum_values(self.column_type))
        if dt == "bit":
            return Shape(self.name, "bit", precision=self.precision)
        if dt in ("time", "datetime", "timestamp"):
            return Shape(self.name, dt, precision=self.fsp or 0)
        if dt in ("date", "year"):
            return Shape(self.name, dt)
        if dt in _GEOMETRY_TYPES:
            return Shape(self.name, "geometry")
        return Shape(self.name, f"unknown:{dt}")


@dataclass(frozen=True, slots=True)
class BinlogColumn:
    """What a TableMap event says about a column (``binlog_row_metadata=FULL``)."""

    name: str
    type_code: int
    unsigned: bool = False
    nullable: bool = True
    collation: str | None = None  # e.g. utf8mb4_general_ci, binary
    max_length: int | None = None  # CHAR/VARCHAR bytes
    length_size: int | None = None  # BLOB/TEXT/JSON/GEOMETRY length prefix bytes
    precision: int | None = None  # DECIMAL
    scale: int | None = None
    fsp: int | None = None
    bits: int | None = None
    enum_values: tuple[str, ...] = ()
    set_values: tuple[str, ...] = ()
    pack_size: int | None = None  # ENUM/SET: bytes of the index/bitmask in the row image

    @classmethod
    def from_replication(cls, col: Any, nullable: bool) -> BinlogColumn:
        """From a ``pymysqlreplication.column.Column`` of a TableMap event."""
        enum_values = tuple(col.enum_values or ())
        if enum_values[:1] == ("",):  # the library prepends the invalid-value label
            enum_values = enum_values[1:]
        return cls(
            name=col.name,
            type_code=col.type,
            unsigned=bool(col.unsigned),
            nullable=nullable,
            collation=col.collation_name,
            max_length=getattr(col, "max_length", None),
            length_size=getattr(col, "length_size", None),
            precision=getattr(col, "precision", None),
            scale=getattr(col, "decimals", None),
            fsp=getattr(col, "fsp", None),
            bits=getattr(col, "bits", None),
            enum_values=enum_values,
            set_values=tuple(col.set_values or ()),
            pack_size=getattr(col, "size", None) if col.type in (T_ENUM, T_SET) else None,
        )

    @property
    def charset(self) -> str | None:
        return self.collation.split("_", 1)[0] if self.collation else None

    @property
    def binary(self) -> bool:
        return self.collation == "binary"

    def shape(self) -> Shape:
        t = self.type_code
        if t in _BINLOG_INT:
            return Shape(self.name, _BINLOG_INT[t], self.unsigned)
        if t == T_FLOAT:
            return Shape(self.name, "float", self.unsigned)
        if t == T_DOUBLE:
            return Shape(self.name, "double", self.unsigned)
        if t in (T_NEWDECIMAL, T_DECIMAL):
            return Shape(
                self.name, "decimal", self.unsigned, precision=self.precision, scale=self.scale
            )
        if t == T_STRING:
            return Shape(self.name, "char", binary=self.binary, octets=self.max_length)
        if t in (T_VARCHAR, T_VAR_STRING):
            return Shape(self.name, "varchar", binary=self.binary, octets=self.max_length)
        if t in (T_BLOB, T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB):
            return Shape(self.name, "blob", binary=self.binary, octets=self.length_size)
        if t == T_JSON:
            return Shape(self.name, "json")
        if t == T_ENUM:
            return Shape(self.name, "enum", values=self.enum_values)
        if t == T_SET:
            return Shape(self.name, "set", values=self.set_values)
        if t == T_BIT:
            return Shape(self.name, "bit", precision=self.bits)
        if t in (T_TIME, T_TIME2):
            return Shape(self.name, "time", precision=self.fsp or 0)
        if t in (T_DATETIME, T_DATETIME2):
            return Shape(self.name, "datetime", precision=self.fsp or 0)
        if t in (T_TIMESTAMP, T_TIMESTAMP2):
            return Shape(self.name, "timestamp", precision=self.fsp or 0)
        if t in (T_DATE, T_NEWDATE):
            return Shape(self.name, "date")
        if t == T_YEAR:
            return Shape(self.name, "year")
        if t == T_GEOMETRY:
            return Shape(self.name, "geometry")
        raise SchemaError(f"column {self.name!r}: binlog column type {t} is not supported")


def parse_enum_values(column_type: str) -> tuple[str, ...]:
    """The labels of ``enum('a','it''s')`` / ``set(...)`` as COLUMN_TYPE prints them."""
    start = column_type.find("(")
    if start < 0:
        return ()
    labels: list[str] = []
    i, n = start + 1, len(column_type)
    while i < n:
        ch = column_type[i]
        if ch == "'":
            buf: list[str] = []
            i += 1
            while i < n:
                ch = column_type[i]
                if ch == "'":
                    if i + 1 < n and column_type[i + 1] == "'":
                        buf.append("'")
                        i += 2
                        continue
                    break
                if ch == "\\" and i + 1 < n:  # MySQL may print backslash escapes
                    buf.append(column_type[i + 1])
                    i += 2
                    continue
                buf.append(ch)
                i += 1
            labels.append("".join(buf))
        elif ch == ")":
            break
        i += 1
    return tuple(labels)


# --------------------------------------------------------------------------- neutral types


def column_type_from_catalog(c: CatalogColumn) -> ColumnType:
    """The neutral type of a column as information_schema describes it."""
    dt, native = c.data_type, c.column_type
    if c.json or dt == "json":
        return ColumnType(Kind.JSON, native="json")
    return _neutral(c.shape(), native, c.char_length)


def column_type_from_binlog(b: BinlogColumn) -> ColumnType:
    """The neutral type from TableMap metadata alone (the catalog no longer matches).

    ``native`` is rebuilt in a canonical spelling (``int unsigned``,
    ``varchar(10)``); MariaDB's JSON alias cannot be told from LONGTEXT here.
    """
    s = b.shape()
    f = s.family
    chars: int | None = None
    if f in ("char", "varchar") and s.octets is not None:
        per = 1 if s.binary else _MBMAXLEN.get(b.charset or "", 0)
        chars = s.octets // per if per else None
    if f in _INT_BITS or f in ("float", "double"):
        native = f + (" unsigned" if s.unsigned else "")
    elif f == "decimal":
        native = f"decimal({s.precision},{s.scale})" + (" unsigned" if s.unsigned else "")
    elif f in ("char", "varchar"):
        base = ("binary" if f == "char" else "varbinary") if s.binary else f
        native = f"{base}({chars})" if chars is not None else base
    elif f == "blob":
        native = (_BLOB_NAMES if s.binary else _TEXT_NAMES).get(s.octets or 4, "longblob")
    elif f in ("enum", "set"):
        native = f + "(" + ",".join(_sql_quote(v) for v in s.values) + ")"
    elif f == "bit":
        native = f"bit({s.precision})"
    elif f in ("time", "datetime", "timestamp"):
        native = f"{f}({s.precision})" if s.precision else f
    else:
        native = f
    return _neutral(s, native, chars)


def _sql_quote(label: str) -> str:
    return "'" + label.replace("'", "''") + "'"


def _neutral(s: Shape, native: str, chars: int | None) -> ColumnType:
    f = s.family
    if f == "tinyint":
        return ColumnType(Kind.INT16, native=native)
    if f == "smallint":
        return ColumnType(Kind.INT32 if s.unsigned else Kind.INT16, native=native)
    if f == "mediumint":
        return ColumnType(Kind.INT32, native=native)
    if f == "int":
        return ColumnType(Kind.INT64 if s.unsigned else Kind.INT32, native=native)
    if f == "bigint":
        return ColumnType(Kind.UINT64 if s.unsigned else Kind.INT64, native=native)
    if f == "float":
        return ColumnType(Kind.FLOAT32, native=native)
    if f == "double":
        return ColumnType(Kind.FLOAT64, native=native)
    if f == "decimal":
        return ColumnType(Kind.DECIMAL, native=native, precision=s.precision, scale=s.scale)
    if f == "bit":
        return ColumnType(Kind.BITS, native=native, length=s.precision)
    if f in ("char", "varchar"):
        if native.startswith("uuid"):
            return ColumnType(Kind.UUID, native=native)
        if native.startswith("inet"):
            return ColumnType(Kind.STRING, native=native)
        return ColumnType(Kind.BYTES if s.binary else Kind.STRING, native=native, length=chars)
    if f == "blob":
        return ColumnType(Kind.BYTES if s.binary else Kind.STRING, native=native)
    if f == "json":
        return ColumnType(Kind.JSON, native=native)
    if f == "enum":
        return ColumnType(Kind.ENUM, native=native, values=s.values)
    if f == "set":
        return ColumnType(Kind.SET, native=native, values=s.values)
    if f == "date":
        return ColumnType(Kind.DATE, native=native)
    if f == "time":
        return ColumnType(Kind.TIME, native=native, precision=s.precision)
    if f == "datetime":
        return ColumnType(Kind.TIMESTAMP, native=native, precision=s.precision)
    if f == "timestamp":
        return ColumnType(Kind.TIMESTAMPTZ, native=native, precision=s.precision)
    if f == "year":
        return ColumnType(Kind.INT32, native=native)
    if f == "geometry":
        return ColumnType(Kind.GEOMETRY, native=native)
    # Types this table does not know travel as the server's text (snapshot only).
    return ColumnType(Kind.STRING, native=native)


# --------------------------------------------------------------------------- converters


def _zero_factory(
    kind: Kind, nullable: bool, policy: ZeroDatePolicy, where: str
) -> Callable[[], Any]:
    if policy == "sentinel":
        return lambda: ZERO
    if policy == "error":

        def fail() -> Any:
            raise SerializationError(
                f"{where}: zero or partly-zero date ('0000-00-00', '2024-00-10'...) has no "
                "calendar value",
                hint="fix the row, or set zero_date to null, min or sentinel",
            )

        return fail
    if policy == "min":
        value: Any = {Kind.DATE: _MIN_DATE, Kind.TIMESTAMP: _MIN_TS}.get(kind, _MIN_TSTZ)
    elif policy == "null":
        value = (
            None
            if nullable
            else {Kind.DATE: _EPOCH_DATE, Kind.TIMESTAMP: _EPOCH_TS}.get(kind, _EPOCH_TSTZ)
        )
    else:
        raise ValueError(f"zero_date must be one of {ZERO_DATE_POLICIES}, not {policy!r}")
    return lambda: value


def decode_time2(raw: bytes, fsp: int) -> timedelta:
    """MySQL/MariaDB TIME2 row-image bytes to a (possibly negative) timedelta.

    mysql-replication 1.0.17 negates only the integer part of a negative
    TIME with fractional seconds (``-01:02:03.125`` came back as
    ``-01:02:03.875``, ``-838:59:59.000000`` as ``-837:59:59``); this follows
    the server's ``my_time_packed_from_binary`` instead.
    """
    n = int.from_bytes(raw, "big")
    if fsp >= 5:
        packed = n - 0x800000000000
    else:
        if fsp >= 3:
            intpart, frac = (n >> 16) - 0x800000, n & 0xFFFF
            if intpart < 0 and frac:
                intpart, frac = intpart + 1, frac - 0x10000
            frac *= 100
        elif fsp >= 1:
            intpart, frac = (n >> 8) - 0x800000, n & 0xFF
            if intpart < 0 and frac:
                intpart, frac = intpart + 1, frac - 0x100
            frac *= 10000
        else:
            intpart, frac = n - 0x800000, 0
        packed = (intpart << 24) + frac
    neg = packed < 0
    if neg:
        packed = -packed
    hms, micros = packed >> 24, packed & 0xFFFFFF
    td = timedelta(
        hours=(hms >> 12) & 0x3FF,
        minutes=(hms >> 6) & 0x3F,
        seconds=hms & 0x3F,
        microseconds=micros,
    )
    return -td if neg else td


def _time_from_text(s: str) -> timedelta:
    neg = s.startswith("-")
    hms, _, frac = s[1:].partition(".") if neg else s.partition(".")
    h, m, sec = hms.split(":")
    micros = int(frac.ljust(6, "0")[:6]) if frac else 0
    td = timedelta(hours=int(h), minutes=int(m), seconds=int(sec), microseconds=micros)
    return -td if neg else td


def _bits_from_string(width: int) -> Converter:
    size = (width + 7) // 8

    def conv(v: Any) -> bytes:
        if isinstance(v, str):  # mysql-replication: "0101..." most significant bit first
            return int(v, 2).to_bytes(size, "big") if v else bytes(size)
        if isinstance(v, int):
            return v.to_bytes(size, "big")
        return _as_bytes(v).rjust(size, b"\x00")

    return conv


def _as_bytes(v: Any) -> bytes:
    # mysql-replication "decodes" binary-charset values with a codec named
    # "binary" that does not exist, which fails (leaving bytes) except for the
    # empty value: b"".decode(anything) is "" without a codec lookup.
    if isinstance(v, str):
        if v:
            raise SerializationError(f"binary column value arrived as text: {v[:40]!r}")
        return b""
    return bytes(v)


def _pad(width: int) -> Converter:
    # BINARY(n) keeps its trailing zero bytes on SELECT; the row image drops them.
    def conv(v: Any) -> bytes:
        return _as_bytes(v).ljust(width, b"\x00")

    return conv


def _strip_srid(v: Any) -> bytes:
    # MySQL's internal GEOMETRY is a 4-byte little-endian SRID, then WKB.
    b = _as_bytes(v)
    if len(b) < 5:
        raise SerializationError(f"GEOMETRY value of {len(b)} bytes is not SRID + WKB")
    return b[4:]


def _json_text(v: Any) -> str:
    """JSON text from what mysql-replication makes of MySQL's binary JSON."""
    if isinstance(v, str):
        return v
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8")
    return json.dumps(_json_plain(v), ensure_ascii=False, separators=(", ", ": "))


def _json_plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {_json_key(k): _json_plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_plain(x) for x in v]
    if isinstance(v, bytes | bytearray):
        return bytes(v).decode("utf-8")
    if isinstance(v, Decimal):
        return float(v) if v != v.to_integral_value() else int(v)
    if isinstance(v, datetime | date):
        return v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat()
    if isinstance(v, timedelta):
        return str(v)
    return v


def _json_key(k: Any) -> str:
    return bytes(k).decode("utf-8") if isinstance(k, bytes | bytearray) else str(k)


def _unsigned_fix(bits: int) -> Converter:
    wrap = 1 << bits

    def conv(v: int) -> int:  # a signed reading of an unsigned column
        return v + wrap if v < 0 else v

    return conv


def _set_from_binlog(labels: Sequence[str]) -> Converter:
    order = {label: i for i, label in enumerate(labels)}

    def conv(v: Any) -> str:
        if isinstance(v, str):
            return v
        return ",".join(sorted(v, key=lambda x: order.get(x, len(order))))

    return conv


def _date_from_text(zero: Callable[[], Any]) -> Converter:
    def conv(s: str) -> Any:
        try:
            return date(int(s[0:4]), int(s[5:7]), int(s[8:10]))
        except ValueError:
            return zero()

    return conv


def _datetime_from_text(zero: Callable[[], Any], aware: bool) -> Converter:
    def conv(s: str) -> Any:
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            return zero()
        return dt.replace(tzinfo=UTC) if aware else dt

    return conv


def _timestamp_from_binlog(zero: Callable[[], Any]) -> Converter:
    def conv(v: datetime) -> Any:
        # TIMESTAMP is seconds since the epoch in the row image; 0 is the zero
        # timestamp ('1970-01-01 00:00:00' UTC itself is outside its range).
        if v == _EPOCH_TS:
            return zero()
        return v.replace(tzinfo=UTC)

    return conv


def _uuid_from_text(v: Any) -> uuid.UUID:
    return uuid.UUID(v.decode() if isinstance(v, bytes) else v)


def _uuid_from_binlog(v: Any) -> uuid.UUID:
    return uuid.UUID(bytes=_as_bytes(v).ljust(16, b"\x00"))


def _inet_from_binlog(width: int) -> Converter:
    def conv(v: Any) -> str:
        return str(ipaddress.ip_address(_as_bytes(v).ljust(width, b"\x00")))

    return conv


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(frozen=True, slots=True)
class ColumnCodec:
    """A column's neutral type and its converters to the canonical value.

    A converter of None means the value already is canonical. ``zero`` is the
    zero-date replacement of temporal columns (it raises under ``error``).
    """

    name: str
    type: ColumnType
    nullable: bool
    from_text: Converter | None
    from_binlog: Converter | None
    zero: Callable[[], Any] | None = None


def _has_python_codec(charset: str) -> bool:
    """Whether mysql-replication can decode this charset (else it returns bytes)."""
    cs = pymysql.charset.charset_by_name(charset)
    try:
        codecs.lookup(cs.encoding if cs is not None else charset)
    except LookupError:
        return False
    return True


def _undecodable(where: str, charset: str) -> Converter:
    def conv(v: Any) -> Any:
        if isinstance(v, bytes | bytearray):
            raise SerializationError(
                f"{where}: character set {charset} has no Python codec; the binlog value "
                "cannot be decoded",
                hint="convert the column to utf8mb4, or exclude the table",
            )
        return v

    return conv


def make_codec(
    shape: Shape,
    ctype: ColumnType,
    *,
    nullable: bool,
    table: str,
    zero_date: ZeroDatePolicy,
    charset: str | None = None,
) -> ColumnCodec:
    """Converters for one column, chosen by its storage shape and neutral type."""
    f, name = shape.family, shape.name
    where = f"{table}.{name}"
    text: Converter | None = None
    binlog: Converter | None = None
    zero: Callable[[], Any] | None = None
    if f in _INT_BITS:
        text = int
        binlog = _unsigned_fix(_INT_BITS[f]) if shape.unsigned else None
    elif f == "float":
        text = _float32_from_text
        binlog = shortest_float32
    elif f == "double":
        text = float
    elif f == "decimal":
        text = Decimal
    elif f == "bit":
        width = shape.precision or 1
        text = binlog = _bits_from_string(width)
    elif f in ("char", "varchar", "blob"):
        if ctype.kind is Kind.UUID:
            text, binlog = _uuid_from_text, _uuid_from_binlog
        elif ctype.native.startswith("inet"):
            text, binlog = _text, _inet_from_binlog(shape.octets or 16)
        elif shape.binary:
            binlog = _pad(shape.octets) if f == "char" and shape.octets else _as_bytes
        elif ctype.kind is Kind.JSON:
            text = binlog = _json_text
        elif charset is not None and not _has_python_codec(charset):
            # mysql-replication hands over bytes when Python has no codec of that name.
            binlog = _undecodable(where, charset)
    elif f == "json":
        text = binlog = _json_text
    elif f == "enum":
        pass
    elif f == "set":
        binlog = _set_from_binlog(shape.values)
    elif f == "date":
        zero = _zero_factory(Kind.DATE, nullable, zero_date, where)
        text = _date_from_text(zero)
    elif f == "time":
        text = _time_from_text
    elif f == "datetime":
        zero = _zero_factory(Kind.TIMESTAMP, nullable, zero_date, where)
        text = _datetime_from_text(zero, aware=False)
    elif f == "timestamp":
        zero = _zero_factory(Kind.TIMESTAMPTZ, nullable, zero_date, where)
        text = _datetime_from_text(zero, aware=True)
        binlog = _timestamp_from_binlog(zero)
    elif f == "year":
        text = int
        binlog = _year_from_binlog
    elif f == "geometry":
        text = binlog = _strip_srid
    else:
        text = _text
    return ColumnCodec(name, ctype, nullable, text, binlog, zero)


def _float32_from_text(s: str) -> float:
    return shortest_float32(float(s))


def _year_from_binlog(v: int) -> int:
    # The row image stores YEAR as value - 1900 with 0 meaning the year 0000;
    # mysql-replication adds 1900 unconditionally.
    return 0 if v == 1900 else v


# --------------------------------------------------------------------------- row decoders


class TextRowDecoder:
    """Snapshot rows (tuples from a decoder-less PyMySQL cursor) to canonical dicts."""

    __slots__ = ("_columns", "names")

    def __init__(self, codecs: Sequence[ColumnCodec]) -> None:
        self.names = tuple(c.name for c in codecs)
        self._columns = tuple((c.name, c.from_text) for c in codecs)

    def __call__(self, row: Sequence[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (name, conv), v in zip(self._columns, row, strict=True):
            out[name] = v if v is None or conv is None else conv(v)
        return out


class BinlogRowDecoder:
    """mysql-replication row dicts to canonical dicts (converted in place)."""

    __slots__ = ("_convs", "_names", "_sets", "_table", "_zero")

    def __init__(self, codecs: Sequence[ColumnCodec], table: str) -> None:
        self._convs = tuple((c.name, c.from_binlog) for c in codecs if c.from_binlog is not None)
        self._zero = {c.name: c.zero for c in codecs if c.zero is not None}
        self._sets = frozenset(c.name for c in codecs if c.type.kind is Kind.SET)
        self._names = frozenset(c.name for c in codecs)
        self._table = table

    def __call__(self, values: dict[str, Any], none_sources: Mapping[str, str]) -> dict[str, Any]:
        for name, conv in self._convs:
            v = values[name]
            if v is not None:
                values[name] = conv(v)
        if none_sources:
            for name, why in none_sources.items():
                if why == NONE_NULL:
                    continue
                if why in NONE_ZERO_DATE:
                    zero = self._zero.get(name)
                    values[name] = zero() if zero is not None else None
                elif why == NONE_EMPTY_SET and name in self._sets:
                    values[name] = ""
                elif why == NONE_NOT_LOGGED:
                    raise SchemaError(
                        f"{self._table}.{name}: the binlog row image lacks this column",
                        hint="set binlog_row_image=FULL on the server",
                    )
                elif why == NONE_JSON_PARTIAL:
                    raise SchemaError(
                        f"{self._table}.{name}: partial JSON update in the binlog",
                        hint="set binlog_row_value_options='' (no PARTIAL_JSON) on the server",
                    )
        return values


# --------------------------------------------------------------------------- catalog queries

_COLUMNS_SQL: Final = """
SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT,
       CHARACTER_MAXIMUM_LENGTH, CHARACTER_OCTET_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE,
       DATETIME_PRECISION, CHARACTER_SET_NAME
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s
ORDER BY ORDINAL_POSITION
"""
_JSON_CHECKS_SQL: Final = """
SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s
"""
_PK_SQL: Final = """
SELECT COLUMN_NAME FROM information_schema.STATISTICS
WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY'
ORDER BY SEQ_IN_INDEX
"""
_JSON_VALID: Final = re.compile(r"json_valid\(`((?:[^`]|``)+)`\)", re.IGNORECASE)


def _s(v: Any) -> str | None:
    if v is None:
        return None
    return v.decode() if isinstance(v, bytes | bytearray) else str(v)


def _i(v: Any) -> int | None:
    return None if v is None else int(v)


def catalog_columns(
    cursor: Any, database: str, table: str, *, mariadb: bool
) -> list[CatalogColumn]:
    """A table's columns from information_schema (empty if the table is gone).

    ``cursor`` is a PyMySQL cursor of any connection (text or decoded values).
    On MariaDB, JSON is an alias of LONGTEXT recognisable only by its
    ``json_valid()`` CHECK constraint, read from CHECK_CONSTRAINTS.
    """
    json_columns: set[str] = set()
    if mariadb:
        cursor.execute(_JSON_CHECKS_SQL, (database, table))
        for (clause,) in cursor.fetchall():
            for m in _JSON_VALID.finditer(_s(clause) or ""):
                json_columns.add(m.group(1).replace("``", "`"))
    cursor.execute(_COLUMNS_SQL, (database, table))
    out: list[CatalogColumn] = []
    for row in cursor.fetchall():
        name = _s(row[0]) or ""
        data_type = (_s(row[1]) or "").lower()
        out.append(
            CatalogColumn(
                name=name,
                data_type=data_type,
                column_type=(_s(row[2]) or "").lower(),
                nullable=_s(row[3]) == "YES",
                default=_s(row[4]),
                char_length=_i(row[5]),
                octet_length=_i(row[6]),
                precision=_i(row[7]),
                scale=_i(row[8]),
                fsp=_i(row[9]),
                charset=_s(row[10]),
                json=name in json_columns and data_type == "longtext",
            )
        )
    return out


def catalog_primary_key(cursor: Any, database: str, table: str) -> tuple[str, ...]:
    cursor.execute(_PK_SQL, (database, table))
    return tuple(_s(r[0]) or "" for r in cursor.fetchall())
