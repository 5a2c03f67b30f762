"""MySQL/MariaDB column values: one codec per column, from either read path to the
canonical values of :mod:`cdc.events`.

Two paths see a column's values in different forms:

* the snapshot reads with PyMySQL *without decoders* (:func:`snapshot_conv`), so
  every value arrives as the server's text (``str``) or, for binary-charset
  columns, raw ``bytes``;
* the binlog reader gets what mysql-replication decoded from the row image
  (ints, ``Decimal``, naive datetimes, a ``set`` for SET, a bit string for BIT,
  the internal SRID-prefixed GEOMETRY...), or cdc's own row-image decoder
  (:mod:`connectors.mysql.source.rowimage`) the same values.

One :class:`ColumnCodec` per column (:func:`make_codec`, from the column's
neutral type and storage :class:`~connectors.mysql.types.Shape`) holds a
converter for each path, so the paths cannot drift (a parity test checks they
agree); :class:`TextRowDecoder` and :class:`BinlogRowDecoder` apply them to
whole rows. Which neutral type a column has is :mod:`connectors.mysql.types`;
reading the catalog is :mod:`connectors.mysql.catalog`.
"""

from __future__ import annotations

import codecs
import ipaddress
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

import pymysql.converters

from cdc.errors import SchemaError, SerializationError
from cdc.events import ColumnType, Kind
from cdc.serde.temporal import ZERO
from cdc.serde.value_codecs import shortest_float32
from connectors.mysql.types import INT_BITS, Shape

__all__ = [
    "ZERO_DATE_POLICIES",
    "BinlogRowDecoder",
    "ColumnCodec",
    "TextRowDecoder",
    "ZeroDatePolicy",
    "decode_time2",
    "make_codec",
    "snapshot_conv",
]

Converter = Callable[[Any], Any]

#: What a zero or partly-zero date (``0000-00-00``, ``2024-00-10``) becomes:
#: ``null`` - None, or the epoch (1970-01-01 [00:00:00]) for a NOT NULL column
#: (Debezium's rule); ``min`` - 0001-01-01 [00:00:00]; ``sentinel`` -
#: :data:`cdc.serde.temporal.ZERO`, which round-trips to a MySQL replica as the
#: zero date itself; ``error`` - stop with a SerializationError naming the column.
ZeroDatePolicy = Literal["null", "min", "error", "sentinel"]
ZERO_DATE_POLICIES: Final = ("null", "min", "error", "sentinel")

# mysql-replication's reasons for a None value (pymysqlreplication.constants.NONE_SOURCE).
NONE_NULL: Final = "null"
NONE_ZERO_DATE: Final = frozenset(
    {"out of date range", "out of datetime range", "out of datetime2 range"}
)
NONE_EMPTY_SET: Final = "empty set"
NONE_NOT_LOGGED: Final = "cols bitmap"
NONE_JSON_PARTIAL: Final = "same with before values"

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
    if f in INT_BITS:
        text = int
        binlog = _unsigned_fix(INT_BITS[f]) if shape.unsigned else None
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
