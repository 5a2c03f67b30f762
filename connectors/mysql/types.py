"""The MySQL/MariaDB type table: a column's neutral type from the server's column facts.

A column's neutral type comes from ``information_schema.COLUMNS``
(:class:`CatalogColumn`) when that still describes the rows being read, or
from the binlog's own TableMap metadata (:class:`BinlogColumn`, complete with
``binlog_row_metadata=FULL``) when it does not - a reader resumed before an
``ALTER TABLE`` sees rows in their old layout. :class:`Shape` is what both
sources state about a column's *storage*; equal shapes mean the catalog
describes the binlog rows and its richer facts (MariaDB's JSON alias, the
exact ``COLUMN_TYPE``, defaults) apply. TYPES.md next to this file is the
human-readable table.

Shared by the snapshot and the binlog reader. Converting values of a column
to canonical values is :mod:`connectors.mysql.values`; reading the catalog is
:mod:`connectors.mysql.catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from cdc.errors import SchemaError
from cdc.events import ColumnType, Kind

__all__ = [
    "INT_BITS",
    "BinlogColumn",
    "CatalogColumn",
    "Shape",
    "column_type_from_binlog",
    "column_type_from_catalog",
    "parse_enum_values",
]

# mysql-replication column type codes (pymysqlreplication.constants.FIELD_TYPE);
# spelled out here so this module needs no replication import.
T_DECIMAL, T_TINY, T_SHORT, T_LONG, T_FLOAT, T_DOUBLE = 0, 1, 2, 3, 4, 5
T_TIMESTAMP, T_LONGLONG, T_INT24, T_DATE, T_TIME, T_DATETIME, T_YEAR = 7, 8, 9, 10, 11, 12, 13
T_NEWDATE, T_VARCHAR, T_BIT, T_TIMESTAMP2, T_DATETIME2, T_TIME2 = 14, 15, 16, 17, 18, 19
T_JSON, T_NEWDECIMAL, T_ENUM, T_SET = 245, 246, 247, 248
T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB, T_BLOB = 249, 250, 251, 252
T_VAR_STRING, T_STRING, T_GEOMETRY = 253, 254, 255

INT_BITS: Final = {"tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "bigint": 64}
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
        if dt in INT_BITS or dt in ("float", "double", "decimal"):
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
    if f in INT_BITS or f in ("float", "double"):
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
