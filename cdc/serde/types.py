"""Neutral column types <-> Avro: the one type table of the serialization layer.

Encoding side: :func:`avro_type` turns a :class:`~cdc.events.ColumnType` into
an :class:`AvroType`: the Avro schema registered for it (Debezium's
``connect.name`` conventions plus Avro logical types where they hold every
value) and the functions that move a canonical Python value (see
:mod:`cdc.events`) to Avro bytes and back. The mapping must be lossless for
every canonical value, so a few values that have no Avro/Debezium spelling get
a documented wire form (``schemas/TYPES.md``):

* PostgreSQL ``infinity``/``-infinity`` dates and timestamps and MySQL zero
  dates are the :class:`TemporalSentinel` members; on the wire they are the
  extreme ints/longs (``DATE_WIRE``, ``TIMESTAMP_WIRE``) or the strings
  ``infinity``, ``-infinity``, ``0000-00-00T00:00:00Z`` (``TIMESTAMPTZ_WIRE``).
* A DECIMAL that may hold NaN/Infinity (``ColumnType.nan``, every PostgreSQL
  ``numeric``) keeps the decimal schema; a special value is written as null
  (the type's zero when NOT NULL), which is what Debezium's precise mode
  emits, and its exact text rides in the envelope's ``cdc_special_values``
  map (:attr:`AvroType.special`), from which our decoder restores it.
* A multi-dimensional array value (a list holding lists; PostgreSQL lets any
  array column hold any number of dimensions) does not fit the flat Avro
  array either: it is written the same way (null, or the empty array when
  NOT NULL) and travels in ``cdc_special_values`` as ``{"cdc.nested": ...}``,
  the nested lists with each element the base64 of its own Avro binary
  encoding, so every element type round-trips exactly.
* PostgreSQL ``numeric`` without precision (or with a negative scale or a
  scale above the precision) is Debezium's ``VariableScaleDecimal``.
* BIGINT UNSIGNED (UINT64) is ``decimal(20,0)``, as Debezium's precise mode.

Decoding side: :func:`column_decoding` reads a writer schema's field back into
a ``ColumnType`` and a converter. Fields we wrote carry a ``cdc.type``
property that names the exact neutral type; fields written by Debezium are
read from their ``connect.name``/``logicalType``/``connect.parameters`` hints,
so sinks can consume Debezium's topics too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, Inexact, InvalidOperation
from enum import Enum
from functools import lru_cache
from typing import Any, Final

from cdc.errors import SerializationError
from cdc.events import ColumnType, Kind
from cdc.serde import binary

log = logging.getLogger(__name__)

# An Avro schema in its JSON form: a type name, a type object or a union list.
AvroSchema = str | dict[str, Any] | list[Any]
Encoder = Callable[[Any], bytes]
Converter = Callable[[Any], Any]


# --------------------------------------------------------------------------- sentinels


class TemporalSentinel(Enum):
    """Date/time values outside what Python's ``date``/``datetime`` can hold.

    Sources put these in rows instead of a date or datetime; sink dialects
    turn them back into the database's own spelling (PostgreSQL
    ``'infinity'``, MySQL ``'0000-00-00'``).
    """

    POS_INFINITY = "infinity"
    NEG_INFINITY = "-infinity"
    ZERO = "0000-00-00"  # MySQL's zero date / zero datetime

    def __repr__(self) -> str:
        return f"TemporalSentinel.{self.name}"


POS_INFINITY: Final = TemporalSentinel.POS_INFINITY
NEG_INFINITY: Final = TemporalSentinel.NEG_INFINITY
ZERO: Final = TemporalSentinel.ZERO
POS_INFINITY_DATE: Final = POS_INFINITY
NEG_INFINITY_DATE: Final = NEG_INFINITY
POS_INFINITY_TS: Final = POS_INFINITY
NEG_INFINITY_TS: Final = NEG_INFINITY
ZERO_DATE: Final = ZERO
ZERO_DATETIME: Final = ZERO

# Wire forms. Dates are Avro ints (days since 1970-01-01): PostgreSQL itself
# uses INT32_MIN/INT32_MAX for -infinity/infinity and its finite range stops
# far from both, so INT32_MIN + 1 is free for the zero date. Timestamps are
# longs of microseconds since 1970-01-01, same idea one size up.
DATE_WIRE: Final[Mapping[TemporalSentinel, int]] = {
    POS_INFINITY: binary.INT32_MAX,
    NEG_INFINITY: binary.INT32_MIN,
    ZERO: binary.INT32_MIN + 1,
}
TIMESTAMP_WIRE: Final[Mapping[TemporalSentinel, int]] = {
    POS_INFINITY: binary.INT64_MAX,
    NEG_INFINITY: binary.INT64_MIN,
    ZERO: binary.INT64_MIN + 1,
}
TIMESTAMPTZ_WIRE: Final[Mapping[TemporalSentinel, str]] = {
    POS_INFINITY: "infinity",
    NEG_INFINITY: "-infinity",
    ZERO: "0000-00-00T00:00:00Z",
}
_DATE_FROM_WIRE = {v: k for k, v in DATE_WIRE.items()}
_TIMESTAMP_FROM_WIRE = {v: k for k, v in TIMESTAMP_WIRE.items()}
_TIMESTAMPTZ_FROM_WIRE = {v: k for k, v in TIMESTAMPTZ_WIRE.items()}

# Debezium's stand-in for a value the source did not send (unchanged TOAST).
UNAVAILABLE_VALUE: Final = "__debezium_unavailable_value"
_UNAVAILABLE_BYTES: Final = UNAVAILABLE_VALUE.encode()

# --------------------------------------------------------------------------- names

_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_]")


def avro_name(name: str) -> str:
    """The Avro-legal spelling of ``name`` (``[A-Za-z_][A-Za-z0-9_]*``).

    Illegal characters become ``_`` and a leading digit gets a ``_`` prefix,
    which is what Debezium's ``field.name.adjustment.mode=avro`` does, so
    both produce the same field names for the same columns.
    """
    if _AVRO_NAME.match(name):
        return name
    fixed = _NOT_NAME_CHAR.sub("_", name)
    if not fixed or fixed[0].isdigit():
        fixed = "_" + fixed
    return fixed


def avro_field_names(names: Sequence[str]) -> list[str]:
    """Avro field names for columns ``names``, unique within the record.

    Two columns can sanitise to the same name (``a-b`` and ``a_b``); the one
    whose name had to change gets a suffix from a hash of its original name,
    so the result depends only on the set of names, not on any state.
    """
    legal = {n for n in names if _AVRO_NAME.match(n)}
    out: list[str] = []
    used: set[str] = set()
    for n in names:
        f = avro_name(n)
        if f != n and (f in legal or f in used):
            f = f"{f}_{hashlib.sha1(n.encode()).hexdigest()[:8]}"
        if f in used:
            raise SerializationError(f"columns {names!r} give the Avro field name {f!r} twice")
        used.add(f)
        out.append(f)
    return out


# --------------------------------------------------------------------------- ColumnType JSON


def column_type_to_json(ct: ColumnType) -> dict[str, Any]:
    """The ``cdc.type`` field property: the exact neutral type, for sinks' DDL."""
    d: dict[str, Any] = {"kind": str(ct.kind)}
    if ct.native:
        d["native"] = ct.native
    if ct.precision is not None:
        d["precision"] = ct.precision
    if ct.scale is not None:
        d["scale"] = ct.scale
    if ct.length is not None:
        d["length"] = ct.length
    if ct.values:
        d["values"] = list(ct.values)
    if ct.element is not None:
        d["element"] = column_type_to_json(ct.element)
    if ct.nan:
        d["nan"] = True
    return d


def column_type_from_json(d: Any) -> ColumnType | None:
    """Inverse of :func:`column_type_to_json`; None when written by a newer cdc."""
    if not isinstance(d, dict):
        return None
    try:
        kind = Kind(d["kind"])
    except (KeyError, ValueError):
        return None
    element = None
    if "element" in d:
        element = column_type_from_json(d["element"])
        if element is None:
            return None
    return ColumnType(
        kind=kind,
        native=str(d.get("native", "")),
        precision=_opt_int(d.get("precision")),
        scale=_opt_int(d.get("scale")),
        length=_opt_int(d.get("length")),
        values=tuple(str(v) for v in d.get("values", ())),
        element=element,
        nan=bool(d.get("nan", False)),
    )


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


# --------------------------------------------------------------------------- conversions

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MIN_ORDINAL: Final = date.min.toordinal()
_MAX_ORDINAL: Final = date.max.toordinal()
_EPOCH: Final = datetime(1970, 1, 1)
_ONE_US: Final = timedelta(microseconds=1)
_MIN_MICROS: Final = (datetime.min - _EPOCH) // _ONE_US
_MAX_MICROS: Final = (datetime.max - _EPOCH) // _ONE_US

# Exact decimal arithmetic: scaling never rounds and a lost digit is an error.
_DEC_CTX: Final = Context(
    prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Inexact]
)
_f32 = struct.Struct("<f")


def _type_error(what: str, v: Any) -> SerializationError:
    return SerializationError(f"expected {what}, got {type(v).__name__} {v!r:.80}")


def _date_to_wire(v: Any) -> int:
    if isinstance(v, date) and not isinstance(v, datetime):
        return v.toordinal() - _EPOCH_ORDINAL
    if isinstance(v, TemporalSentinel):
        return DATE_WIRE[v]
    if isinstance(v, int) and not isinstance(v, bool):
        # Days outside Python's date range (PostgreSQL goes to 4713 BC / 5874897 AD).
        if not binary.INT32_MIN < v < binary.INT32_MAX or v in _DATE_FROM_WIRE:
            raise SerializationError(f"date {v} days since 1970 is outside the DATE range")
        return v
    raise _type_error("a date, int days or a TemporalSentinel", v)


def _date_from_wire(n: int) -> date | int | TemporalSentinel:
    s = _DATE_FROM_WIRE.get(n)
    if s is not None:
        return s
    o = n + _EPOCH_ORDINAL
    if _MIN_ORDINAL <= o <= _MAX_ORDINAL:
        return date.fromordinal(o)
    return n


def _ts_to_wire(v: Any) -> int:
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            raise SerializationError(f"TIMESTAMP needs a naive datetime, got aware {v!r}")
        return (v - _EPOCH) // _ONE_US
    if isinstance(v, TemporalSentinel):
        return TIMESTAMP_WIRE[v]
    if isinstance(v, int) and not isinstance(v, bool):
        return _out_of_range_micros(v)
    raise _type_error("a naive datetime, int microseconds or a TemporalSentinel", v)


def _out_of_range_micros(v: int) -> int:
    # Microseconds since 1970 outside Python's datetime range (PostgreSQL goes
    # from 4713 BC to 294276 AD). An Avro long holds up to ~292277 AD.
    if not binary.INT64_MIN < v < binary.INT64_MAX or v in _TIMESTAMP_FROM_WIRE:
        raise SerializationError(f"timestamp {v} us since 1970 does not fit a TIMESTAMP long")
    return v


def _ts_from_micros(n: int) -> datetime | int | TemporalSentinel:
    s = _TIMESTAMP_FROM_WIRE.get(n)
    if s is not None:
        return s
    if _MIN_MICROS <= n <= _MAX_MICROS:
        return _EPOCH + timedelta(microseconds=n)
    return n  # outside Python's range: the canonical int


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) of a day number (0 = 1970-01-01).

    Astronomical years (0 is 1 BC), as ISO 8601 and Java print them: Python's
    date stops at years 1..9999, PostgreSQL does not.
    """
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _days_from_civil(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _micros_to_iso(n: int) -> str:
    """ISO 8601 in UTC for any microsecond count, Java-style years outside 0..9999."""
    days, rem = divmod(n, 86_400_000_000)
    y, m, d = _civil_from_days(days)
    secs, us = divmod(rem, 1_000_000)
    hh, secs = divmod(secs, 3600)
    mm, ss = divmod(secs, 60)
    year = f"{y:04d}" if 0 <= y <= 9999 else f"{'+' if y > 0 else '-'}{abs(y):04d}"
    frac = f".{us:06d}" if us else ""
    return f"{year}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}{frac}Z"


_ISO_ANY_YEAR = re.compile(
    r"([+-]?\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z"
)


def _iso_to_micros(s: str) -> int | None:
    m = _ISO_ANY_YEAR.match(s)
    if m is None:
        return None
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    micros = (
        _days_from_civil(int(year), int(month), int(day)) * 86_400_000_000
        + (int(hh) * 3600 + int(mm) * 60 + int(ss)) * 1_000_000
        + (int(frac[:6].ljust(6, "0")) if frac else 0)
    )
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        micros -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * 1_000_000
    return micros


def _tstz_to_wire(v: Any) -> str:
    if isinstance(v, datetime):
        if v.utcoffset() is None:
            raise SerializationError(f"TIMESTAMPTZ needs an aware datetime, got naive {v!r}")
        try:
            s = v.astimezone(UTC).isoformat()
        except OverflowError as e:
            raise SerializationError(
                f"{v!r} is outside datetime's range in UTC (pass int microseconds)"
            ) from e
        return s[:-6] + "Z"  # isoformat ends in "+00:00"; Debezium writes "Z"
    if isinstance(v, TemporalSentinel):
        return TIMESTAMPTZ_WIRE[v]
    if isinstance(v, int) and not isinstance(v, bool):
        return _micros_to_iso(v)  # outside Python's range (PostgreSQL BC, year > 9999)
    raise _type_error("an aware datetime, int microseconds or a TemporalSentinel", v)


def _tstz_from_wire(s: str) -> datetime | int | TemporalSentinel:
    special = _TIMESTAMPTZ_FROM_WIRE.get(s)
    if special is not None:
        return special
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        micros = _iso_to_micros(s)  # a year Python cannot hold
        if micros is None:
            raise SerializationError(f"not an ISO-8601 timestamp with zone: {s!r}") from None
        return _utc_from_micros(micros)
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    if dt.tzinfo is UTC:
        return dt
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        micros = _iso_to_micros(s)
        assert micros is not None  # fromisoformat accepted it, so the pattern does too
        return micros


def _time_to_wire(v: Any) -> int:
    if isinstance(v, timedelta):
        return v // _ONE_US
    raise _type_error("a timedelta", v)


def _time_from_micros(n: int) -> timedelta:
    return timedelta(microseconds=n)


def _uuid_to_wire(v: Any) -> str:
    if isinstance(v, uuid.UUID):
        return str(v)
    raise _type_error("a uuid.UUID", v)


def _unscaled_bytes(n: int) -> bytes:
    # Two's complement, big-endian, as Avro's decimal and Java's BigInteger.
    return n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)


def _from_unscaled(b: bytes) -> int:
    return int.from_bytes(b, "big", signed=True)


def _finite_decimal(v: Any, column: str) -> Decimal:
    """``v`` (an int or Decimal) as a finite Decimal, or the error naming ``column``."""
    d: Decimal
    if isinstance(v, int) and not isinstance(v, bool):
        d = Decimal(v)
    elif isinstance(v, Decimal):
        d = v
    else:
        raise _type_error("a Decimal", v)
    if not d.is_finite():
        raise SerializationError(
            f"{d} in a {column} column mapped without NaN/Infinity "
            "support (set ColumnType.nan for columns that can hold them)"
        )
    return d


def _fixed_decimal_codec(precision: int, scale: int) -> tuple[Encoder, Converter]:
    """(encoder of a canonical value to Avro bytes, converter of wire bytes back)."""
    limit = 10**precision

    def encode(v: Any) -> bytes:
        v = _finite_decimal(v, f"decimal({precision},{scale})")
        x = v.scaleb(scale, _DEC_CTX)
        n = int(x)
        if x != n:
            raise SerializationError(f"{v} has more than {scale} fractional digits")
        if not -limit < n < limit:
            raise SerializationError(f"{v} has more than {precision} digits")
        b = _unscaled_bytes(n)
        return _zz(len(b)) + b

    def from_wire(b: bytes) -> Decimal:
        return Decimal(_from_unscaled(b)).scaleb(-scale, _DEC_CTX)

    return encode, from_wire


def _vsd_parts(v: Any) -> tuple[int, bytes]:
    v = _finite_decimal(v, "numeric")
    exp = v.as_tuple().exponent
    assert isinstance(exp, int)  # finite
    return -exp, _unscaled_bytes(int(v.scaleb(-exp, _DEC_CTX)))


def _vsd_from_wire(rec: Mapping[str, Any]) -> Decimal:
    return Decimal(_from_unscaled(rec["value"])).scaleb(-int(rec["scale"]), _DEC_CTX)


def _has_special(v: Any) -> bool:
    if isinstance(v, Decimal):
        return not v.is_finite()
    if isinstance(v, list | tuple):
        return any(_has_special(x) for x in v)
    return False


def _special_text(v: Any) -> str | None:
    """JSON of a value holding NaN/Infinity decimals (Decimals as their text), else None."""
    if not _has_special(v):
        return None
    return json.dumps(v, default=str, ensure_ascii=False)


# The one key of the multi-dimensional array form in cdc_special_values. The
# decimal form is a JSON string or list, so a JSON object is this form.
NESTED_ARRAY_KEY: Final = "cdc.nested"


def _array_special(el: AvroType) -> Callable[[Any], str | None]:
    """``AvroType.special`` of an array of ``el``: the nested form of a
    multi-dimensional value (or of one holding an element with a special value
    of its own, when the element is itself an array), the decimal form of a
    flat array holding NaN, else None."""
    element_special = el.special
    # A list inside the array is another dimension, unless the element type is
    # itself an array (a list is then one element).
    lists_nest = el.column_type.kind is not Kind.ARRAY

    def leaves(v: Sequence[Any]) -> list[Any]:
        out: list[Any] = []
        for x in v:
            if x is None:
                out.append(None)
            elif lists_nest and isinstance(x, list | tuple):
                out.append(leaves(x))
            else:
                text = None if element_special is None else element_special(x)
                if text is not None:  # e.g. a NaN decimal: its own special text
                    out.append({"special": text})
                else:
                    out.append(base64.b64encode(el.encode(x)).decode("ascii"))
        return out

    def nested(v: Sequence[Any]) -> str:
        return json.dumps({NESTED_ARRAY_KEY: leaves(v)}, separators=(",", ":"))

    def special(v: Any) -> str | None:
        if not isinstance(v, list | tuple):
            return None
        if lists_nest:
            if any(isinstance(x, list | tuple) for x in v):
                return nested(v)
            return None if element_special is None else _special_text(v)
        if element_special is not None and any(
            x is not None and element_special(x) is not None for x in v
        ):
            return nested(v)
        return None

    return special


def special_value(text: str, ct: ColumnType) -> Any:
    """Inverse of the ``cdc_special_values`` JSON: the canonical value again."""
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            if ct.kind is not Kind.ARRAY or set(data) != {NESTED_ARRAY_KEY}:
                raise ValueError(f"a JSON object is the nested-array form ({NESTED_ARRAY_KEY!r})")
            element = _array_element(ct)
            return _nested_from_json(data[NESTED_ARRAY_KEY], element, _element_reader(element))
        return _decimals_from_json(data)
    except (ValueError, TypeError, InvalidOperation, SerializationError, RecursionError) as e:
        raise SerializationError(
            f"unreadable special value {text!r:.200} for {ct.kind}: {e}"
        ) from e


def _array_element(ct: ColumnType) -> ColumnType:
    return ct.element if ct.element is not None else ColumnType(Kind.STRING, native="text")


@lru_cache(maxsize=256)
def _element_reader(element: ColumnType) -> Callable[[bytes], Any]:
    """Avro binary of one ``element`` value -> its canonical value."""
    from cdc.serde.reader import compile_reader  # here: reader -> envelope -> this module

    el = avro_type(element)
    read, _ = compile_reader(el.schema, {})
    convert = el.decode

    def value(b: bytes) -> Any:
        v = read(b)
        return v if convert is None else convert(v)

    return value


def _nested_from_json(v: Any, element: ColumnType, value: Callable[[bytes], Any]) -> list[Any]:
    if not isinstance(v, list):
        raise ValueError(f"expected a JSON list, got {type(v).__name__}")
    out: list[Any] = []
    for x in v:
        if x is None:
            out.append(None)
        elif isinstance(x, list) and element.kind is not Kind.ARRAY:
            out.append(_nested_from_json(x, element, value))
        elif isinstance(x, str):
            out.append(value(base64.b64decode(x, validate=True)))
        elif isinstance(x, dict) and set(x) == {"special"} and isinstance(x["special"], str):
            out.append(special_value(x["special"], element))
        else:
            raise ValueError(f"unexpected element {x!r:.80} in a nested array")
    return out


def _decimals_from_json(v: Any) -> Any:
    if isinstance(v, str):
        return Decimal(v)
    if isinstance(v, list):
        return [_decimals_from_json(x) for x in v]
    return v


def _uint64_to_wire(v: Any) -> bytes:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 64:
        return _unscaled_bytes(v)
    raise _type_error("an int in 0..2**64-1", v)


def shortest_float32(x: float) -> float:
    """The float of the shortest decimal that identifies single ``x``.

    Databases print a REAL as that decimal (PostgreSQL >= 12, MySQL), and
    sources parse that text, so this is the canonical FLOAT32 value: an Avro
    float read back as a double (1.100000023841858) becomes 1.1 again.
    """
    if not math.isfinite(x) or x == 0.0:
        return x
    want = _f32.pack(x)
    for digits in range(6, 10):
        y = float(f"{x:.{digits}g}")
        if _f32.pack(y) == want:
            return y
    return x


def _bits_to_wire(v: Any) -> bytes:
    if isinstance(v, bytes | bytearray):
        return bytes(v[::-1])  # Debezium's Bits are little-endian
    raise _type_error("bytes", v)


def _bits_from_wire(b: bytes) -> bytes:
    return b[::-1]


def _padded_bits(length: int | None) -> Converter:
    # Debezium drops high zero bytes (BitSet.toByteArray); restore the width.
    width = (length + 7) // 8 if length else 0

    def from_wire(b: bytes) -> bytes:
        return b[::-1].rjust(width, b"\x00")

    return from_wire


# --------------------------------------------------------------------------- encoders

_zz = binary.zigzag


def _enc_boolean(v: Any) -> bytes:
    if v is True:
        return binary.TRUE
    if v is False:
        return binary.FALSE
    raise _type_error("a bool", v)


def _int_encoder(lo: int, hi: int) -> Encoder:
    def enc(v: Any) -> bytes:
        if not isinstance(v, int) or not lo <= v <= hi:
            raise _type_error(f"an int in {lo}..{hi}", v)
        return _zz(v)

    return enc


def _enc_float(v: Any) -> bytes:
    if not isinstance(v, float | int):
        raise _type_error("a float", v)
    return binary.pack_float(v)


def _enc_double(v: Any) -> bytes:
    if not isinstance(v, float | int):
        raise _type_error("a float", v)
    return binary.pack_double(v)


def _enc_string(v: Any) -> bytes:
    if not isinstance(v, str):
        raise _type_error("a str", v)
    b = v.encode("utf-8")
    return _zz(len(b)) + b


def _enc_bytes(v: Any) -> bytes:
    if not isinstance(v, bytes | bytearray | memoryview):
        raise _type_error("bytes", v)
    b = bytes(v)
    return _zz(len(b)) + b


def _then(conv: Converter, enc: Encoder) -> Encoder:
    def composed(v: Any) -> bytes:
        return enc(conv(v))

    return composed


def _enc_date(v: Any) -> bytes:
    if v.__class__ is date:
        return _zz(v.toordinal() - _EPOCH_ORDINAL)
    return _zz(_date_to_wire(v))


def _enc_time(v: Any) -> bytes:
    return _zz(_time_to_wire(v))


def _enc_timestamp(v: Any) -> bytes:
    return _zz(_ts_to_wire(v))


def _enc_timestamptz(v: Any) -> bytes:
    b = _tstz_to_wire(v).encode()
    return _zz(len(b)) + b


def _enc_uuid(v: Any) -> bytes:
    b = _uuid_to_wire(v).encode()
    return _zz(len(b)) + b


def _enc_raw_bytes(b: bytes) -> bytes:
    return _zz(len(b)) + b


def _enc_string_wire(s: str) -> bytes:
    b = s.encode("utf-8")
    return _zz(len(b)) + b


def _enc_vsd(v: Any) -> bytes:
    scale, b = _vsd_parts(v)
    return _zz(scale) + _zz(len(b)) + b


def _enc_geometry(v: Any) -> bytes:
    if not isinstance(v, bytes | bytearray | memoryview):
        raise _type_error("WKB bytes", v)
    b = bytes(v)
    return _zz(len(b)) + b + binary.NULL_BRANCH  # srid: null


def _geometry_from_wire(rec: Mapping[str, Any]) -> bytes:
    return bytes(rec["wkb"])


def _array_encoder(element: Encoder, lists_nest: bool = True) -> Encoder:
    """Encoder of a flat array; with ``lists_nest`` (the element is not itself an
    array) a list element is another dimension, which only the special form holds."""

    def enc(v: Any) -> bytes:
        if not isinstance(v, list | tuple):
            raise _type_error("a list", v)
        if not v:
            return binary.EMPTY_ARRAY
        parts = [_zz(len(v))]
        for x in v:
            if x is None:
                parts.append(binary.NULL_BRANCH)
            elif lists_nest and isinstance(x, list | tuple):  # multi-dimensional: a special
                raise _type_error("an array element (nested lists travel in cdc_special_values)", x)
            else:
                parts.append(binary.VALUE_BRANCH)
                parts.append(element(x))
        parts.append(binary.EMPTY_ARRAY)
        return b"".join(parts)

    return enc


def _array_decoder(element: Converter | None) -> Converter:
    if element is None:

        def plain(v: list[Any]) -> list[Any]:
            return list(v)

        return plain

    def convert(v: list[Any]) -> list[Any]:
        return [None if x is None else element(x) for x in v]

    return convert


# --------------------------------------------------------------------------- mapping


class Inline(Enum):
    """Primitives the row encoder writes inline instead of calling ``encode``."""

    BOOLEAN = "boolean"
    INT = "int"
    STRING = "string"
    BYTES = "bytes"
    DOUBLE = "double"
    # These three inline their common case (a date, a naive datetime, a UTC
    # datetime) and call ``encode`` for anything else.
    DATE = "date"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    # Only the C encoder inlines it (a plain Decimal of a fixed-scale column);
    # the generated Python calls ``encode``. ``int_range`` holds (scale, precision).
    DECIMAL = "decimal"


@dataclass(frozen=True, slots=True, eq=False)
class AvroType:
    """How values of one neutral column type travel in Avro.

    ``encode`` takes a canonical value and returns the Avro binary of the
    (non-null) type; ``decode`` takes what a schema-driven Avro reader returns
    for that type with logical types ignored (ints, bytes, dicts) and gives
    the canonical value back (None: it is already canonical). ``default`` is
    a JSON default that keeps required fields addable without breaking
    BACKWARD compatibility; ``placeholder`` is the binary written for a value
    the source did not send.
    """

    column_type: ColumnType
    schema: AvroSchema
    encode: Encoder
    decode: Converter | None
    default: Any
    placeholder: bytes
    inline: Inline | None = None
    int_range: tuple[int, int] | None = None
    debezium_unavailable: bool = False  # placeholder is Debezium's marker
    # For types that can hold NaN/Infinity decimals: the value's JSON text when
    # it holds one (it then travels in cdc_special_values), else None.
    special: Callable[[Any], str | None] | None = None


def _debezium(connect_name: str, base: str, **extra: Any) -> dict[str, Any]:
    return {"type": base, "connect.version": 1, "connect.name": connect_name, **extra}


_INT16 = (-(1 << 15), (1 << 15) - 1)
_INT32 = (binary.INT32_MIN, binary.INT32_MAX)
_INT64 = (binary.INT64_MIN, binary.INT64_MAX)
_VSD_SCHEMA: Final[dict[str, Any]] = {
    "type": "record",
    "name": "VariableScaleDecimal",
    "namespace": "io.debezium.data",
    "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
    "connect.doc": "Variable scaled decimal",
    "connect.version": 1,
    "connect.name": "io.debezium.data.VariableScaleDecimal",
}
_GEOMETRY_SCHEMA: Final[dict[str, Any]] = {
    "type": "record",
    "name": "Geometry",
    "namespace": "io.debezium.data.geometry",
    "fields": [
        {"name": "wkb", "type": "bytes"},
        {"name": "srid", "type": ["null", "int"], "default": None},
    ],
    "connect.doc": "Geometry",
    "connect.version": 1,
    "connect.name": "io.debezium.data.geometry.Geometry",
}
_UNAVAILABLE_STRING = _enc_string_wire(UNAVAILABLE_VALUE)
_UNAVAILABLE_RAW = _enc_raw_bytes(_UNAVAILABLE_BYTES)

_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Log a mapping problem once per process, not once per row."""
    if key not in _warned and len(_warned) < 10_000:
        _warned.add(key)
        log.warning(message)


@lru_cache(maxsize=4096)
def avro_type(ct: ColumnType) -> AvroType:
    """The Avro mapping of a neutral column type (cached: ColumnType is a value)."""
    k: Kind | str = ct.kind  # a str when a newer connector hands us a kind we lack
    if k is Kind.BOOLEAN:
        return AvroType(ct, "boolean", _enc_boolean, None, False, binary.FALSE, Inline.BOOLEAN)
    if k is Kind.INT16 or k is Kind.INT32 or k is Kind.INT64:
        rng = {Kind.INT16: _INT16, Kind.INT32: _INT32, Kind.INT64: _INT64}[k]
        schema: AvroSchema
        if k is Kind.INT64:
            schema = "long"
        elif ct.native.lower().startswith("year"):
            schema = _debezium("io.debezium.time.Year", "int")
        elif k is Kind.INT16:
            schema = {"type": "int", "connect.type": "int16"}
        else:
            schema = "int"
        return AvroType(ct, schema, _int_encoder(*rng), None, 0, _zz(0), Inline.INT, rng)
    if k is Kind.UINT64:
        return AvroType(
            ct,
            _decimal_schema(20, 0),
            _then(_uint64_to_wire, _enc_raw_bytes),
            _from_unscaled,
            "\u0000",
            _enc_raw_bytes(b"\x00"),
        )
    if k is Kind.FLOAT32:
        return AvroType(ct, "float", _enc_float, shortest_float32, 0.0, binary.pack_float(0.0))
    if k is Kind.FLOAT64:
        return AvroType(
            ct, "double", _enc_double, None, 0.0, binary.pack_double(0.0), Inline.DOUBLE
        )
    if k is Kind.DECIMAL:
        return _decimal_type(ct)
    if k in (Kind.STRING, Kind.TIMETZ, Kind.INTERVAL, Kind.JSON, Kind.ENUM, Kind.SET):
        return _string_type(ct)
    if k is Kind.BYTES:
        return AvroType(
            ct, "bytes", _enc_bytes, None, "", _UNAVAILABLE_RAW, Inline.BYTES,
            debezium_unavailable=True,
        )  # fmt: skip
    if k is Kind.BITS:
        params = {"length": str(ct.length)} if ct.length is not None else {}
        schema = _debezium("io.debezium.data.Bits", "bytes", **{"connect.parameters": params})
        if not params:
            del schema["connect.parameters"]
        return AvroType(
            ct,
            schema,
            _then(_bits_to_wire, _enc_raw_bytes),
            _bits_from_wire,
            "",
            _enc_raw_bytes(b""),
        )
    if k is Kind.UUID:
        return AvroType(
            ct,
            _debezium("io.debezium.data.Uuid", "string", logicalType="uuid"),
            _enc_uuid,
            uuid.UUID,
            "00000000-0000-0000-0000-000000000000",
            _enc_string_wire("00000000-0000-0000-0000-000000000000"),
        )
    if k is Kind.DATE:
        return AvroType(
            ct,
            _debezium("io.debezium.time.Date", "int", logicalType="date"),
            _enc_date,
            _date_from_wire,
            0,
            _zz(0),
            Inline.DATE,
        )
    if k is Kind.TIME:
        # No time-micros logicalType: MySQL TIME is -838:59:59..838:59:59 and
        # PostgreSQL allows 24:00:00, both outside a time of day; readers that
        # apply time-micros (Java's LocalTime, fastavro's time) would fail on them.
        return AvroType(
            ct,
            _debezium("io.debezium.time.MicroTime", "long"),
            _enc_time,
            _time_from_micros,
            0,
            _zz(0),
        )
    if k is Kind.TIMESTAMP:
        return AvroType(
            ct,
            _debezium(
                "io.debezium.time.MicroTimestamp", "long", logicalType="local-timestamp-micros"
            ),
            _enc_timestamp,
            _ts_from_micros,
            0,
            _zz(0),
            Inline.TIMESTAMP,
        )
    if k is Kind.TIMESTAMPTZ:
        zero = "1970-01-01T00:00:00Z"
        return AvroType(
            ct,
            _debezium("io.debezium.time.ZonedTimestamp", "string"),
            _enc_timestamptz,
            _tstz_from_wire,
            zero,
            _enc_string_wire(zero),
            Inline.TIMESTAMPTZ,
        )
    if k is Kind.GEOMETRY:
        return AvroType(
            ct,
            _GEOMETRY_SCHEMA,
            _enc_geometry,
            _geometry_from_wire,
            {"wkb": "", "srid": None},
            _enc_raw_bytes(b"") + binary.NULL_BRANCH,
        )
    if k is Kind.ARRAY:
        element = ct.element
        if element is None:
            warn_once(
                f"array-element:{ct.native}",
                f"array column type {ct.native or '?'} has no element type; "
                "its elements are carried as strings",
            )
            element = ColumnType(Kind.STRING, native="text")
        el = avro_type(element)
        return AvroType(
            ct,
            {"type": "array", "items": ["null", el.schema]},
            _array_encoder(el.encode, element.kind is not Kind.ARRAY),
            _array_decoder(el.decode),
            [],
            binary.EMPTY_ARRAY,
            special=_array_special(el),
        )
    warn_once(
        f"kind:{k}",
        f"no Avro mapping for column kind {k!r} (native {ct.native!r}); carried as a string",
    )
    return AvroType(ct, "string", _enc_string, None, "", _enc_string_wire(""), Inline.STRING)


def _decimal_schema(precision: int, scale: int) -> dict[str, Any]:
    return {
        "type": "bytes",
        "scale": scale,
        "precision": precision,
        "connect.version": 1,
        "connect.parameters": {"scale": str(scale), "connect.decimal.precision": str(precision)},
        "connect.name": "org.apache.kafka.connect.data.Decimal",
        "logicalType": "decimal",
    }


def _decimal_type(ct: ColumnType) -> AvroType:
    special = _special_text if ct.nan else None
    p, s = ct.precision, ct.scale if ct.scale is not None else 0
    if p is not None and p > 0 and 0 <= s <= p:
        encode, from_wire = _fixed_decimal_codec(p, s)
        return AvroType(
            ct,
            _decimal_schema(p, s),
            encode,
            from_wire,
            "\u0000",
            _enc_raw_bytes(b"\x00"),
            Inline.DECIMAL,
            (s, p),
            special=special,
        )
    # Unconstrained numeric, or a scale Avro's decimal cannot express (PostgreSQL
    # 15 allows negative scales and scales above the precision).
    return AvroType(
        ct,
        _VSD_SCHEMA,
        _enc_vsd,
        _vsd_from_wire,
        {"scale": 0, "value": "\u0000"},
        _zz(0) + _enc_raw_bytes(b"\x00"),
        special=special,
    )


def _string_type(ct: ColumnType) -> AvroType:
    k = ct.kind
    schema: AvroSchema = "string"
    marker = False
    if k is Kind.JSON:
        schema = _debezium("io.debezium.data.Json", "string")
        marker = True
    elif k is Kind.ENUM or k is Kind.SET:
        name = "io.debezium.data.Enum" if k is Kind.ENUM else "io.debezium.data.EnumSet"
        schema = _debezium(
            name, "string", **{"connect.parameters": {"allowed": ",".join(ct.values)}}
        )
    elif k is Kind.TIMETZ:
        schema = _debezium("io.debezium.time.ZonedTime", "string")
    elif k is Kind.INTERVAL:
        schema = _debezium("io.debezium.time.Interval", "string")
    else:
        marker = True
    placeholder = _UNAVAILABLE_STRING if marker else _enc_string_wire("")
    return AvroType(
        ct, schema, _enc_string, None, "", placeholder, Inline.STRING,
        debezium_unavailable=marker,
    )  # fmt: skip


# --------------------------------------------------------------------------- decoding side


@dataclass(frozen=True, slots=True, eq=False)
class ColumnDecoding:
    """How to read one field of a writer schema back into a canonical value."""

    column_type: ColumnType
    nullable: bool
    decode: Converter | None
    # The wire value Debezium writes for "not sent" in this field, if any.
    unavailable: Any = None


def unwrap_nullable(t: Any) -> tuple[Any, bool]:
    """``["null", T]`` (either order) -> (T, True); anything else -> (t, False)."""
    if isinstance(t, list) and len(t) == 2 and "null" in t:
        other = t[1] if t[0] == "null" else t[0]
        return other, True
    return t, False


def column_decoding(
    field: Mapping[str, Any],
    named: Mapping[str, Any],
    *,
    namespace: str | None = None,
    context: str = "",
) -> ColumnDecoding:
    """The neutral type and converter of one record field of a writer schema.

    ``named`` resolves references to named types defined elsewhere in the
    schema. Our own fields carry ``cdc.type`` and are read with the exact
    inverse of :func:`avro_type`; other writers' fields (Debezium's) are read
    from their schema hints.
    """
    t, nullable = unwrap_nullable(field["type"])
    ct = column_type_from_json(field.get("cdc.type"))
    if ct is not None:
        return ColumnDecoding(ct, nullable, avro_type(ct).decode)
    ct, conv = infer_type(t, named, namespace=namespace, context=context or str(field.get("name")))
    unavailable: Any = None
    resolved = _resolve(t, named, namespace)
    base = resolved.get("type") if isinstance(resolved, dict) else resolved
    if base == "string":
        unavailable = UNAVAILABLE_VALUE
    elif base == "bytes" and ct.kind is Kind.BYTES:
        unavailable = _UNAVAILABLE_BYTES
    return ColumnDecoding(ct, nullable, conv, unavailable)


def _resolve(t: Any, named: Mapping[str, Any], namespace: str | None) -> Any:
    if isinstance(t, str):
        if namespace and "." not in t and f"{namespace}.{t}" in named:
            return named[f"{namespace}.{t}"]
        if t in named:
            return named[t]
    return t


def _params(t: Mapping[str, Any]) -> dict[str, str]:
    p = t.get("connect.parameters")
    return dict(p) if isinstance(p, dict) else {}


def _source_facts(params: Mapping[str, str]) -> dict[str, Any]:
    """Debezium's ``column.propagate.source.type`` parameters, when present."""
    facts: dict[str, Any] = {}
    native = params.get("__debezium.source.column.type")
    if native:
        facts["native"] = native
    for key, name in (
        ("__debezium.source.column.length", "length"),
        ("__debezium.source.column.scale", "scale"),
    ):
        v = params.get(key)
        if v is not None and v.lstrip("-").isdigit():
            facts[name] = int(v)
    return facts


def _millis_to_timedelta(n: int) -> timedelta:
    return timedelta(milliseconds=n)


def _nanos_to_timedelta(n: int) -> timedelta:
    return timedelta(microseconds=n // 1000)


def _ts_from_millis(n: int) -> datetime | int | TemporalSentinel:
    return _ts_from_micros(n * 1000)


def _ts_from_nanos(n: int) -> datetime | int | TemporalSentinel:
    return _ts_from_micros(n // 1000)


def _utc_from_micros(n: int) -> datetime | int | TemporalSentinel:
    v = _ts_from_micros(n)
    return v.replace(tzinfo=UTC) if isinstance(v, datetime) else v


def _utc_from_millis(n: int) -> datetime | int | TemporalSentinel:
    return _utc_from_micros(n * 1000)


def _micro_duration(us: float) -> str:
    # Debezium's MicroDuration is approximate (months are 30 days); carry it
    # as an ISO-8601 duration of seconds, which PostgreSQL and MySQL accept.
    return f"PT{Decimal(repr(us)) / 1_000_000:f}S"


def _json_text(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, bytes):
        return o.hex()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _as_read(v: Any) -> Any:
    return v


_TIME_NAMES: Final[dict[str, tuple[Kind, Converter]]] = {
    "io.debezium.time.Date": (Kind.DATE, _date_from_wire),
    "org.apache.kafka.connect.data.Date": (Kind.DATE, _date_from_wire),
    "io.debezium.time.Time": (Kind.TIME, _millis_to_timedelta),
    "org.apache.kafka.connect.data.Time": (Kind.TIME, _millis_to_timedelta),
    "io.debezium.time.MicroTime": (Kind.TIME, _time_from_micros),
    "io.debezium.time.NanoTime": (Kind.TIME, _nanos_to_timedelta),
    "io.debezium.time.Timestamp": (Kind.TIMESTAMP, _ts_from_millis),
    "org.apache.kafka.connect.data.Timestamp": (Kind.TIMESTAMP, _ts_from_millis),
    "io.debezium.time.MicroTimestamp": (Kind.TIMESTAMP, _ts_from_micros),
    "io.debezium.time.NanoTimestamp": (Kind.TIMESTAMP, _ts_from_nanos),
    "io.debezium.time.ZonedTimestamp": (Kind.TIMESTAMPTZ, _tstz_from_wire),
    "io.debezium.time.MicroDuration": (Kind.INTERVAL, _micro_duration),
}
_LOGICAL: Final[dict[str, tuple[Kind, Converter]]] = {
    "date": (Kind.DATE, _date_from_wire),
    "time-millis": (Kind.TIME, _millis_to_timedelta),
    "time-micros": (Kind.TIME, _time_from_micros),
    "timestamp-millis": (Kind.TIMESTAMPTZ, _utc_from_millis),
    "timestamp-micros": (Kind.TIMESTAMPTZ, _utc_from_micros),
    "local-timestamp-millis": (Kind.TIMESTAMP, _ts_from_millis),
    "local-timestamp-micros": (Kind.TIMESTAMP, _ts_from_micros),
}
_STRING_NAMES: Final[dict[str, Kind]] = {
    "io.debezium.data.Json": Kind.JSON,
    "io.debezium.data.Enum": Kind.ENUM,
    "io.debezium.data.EnumSet": Kind.SET,
    "io.debezium.time.ZonedTime": Kind.TIMETZ,
    "io.debezium.time.Interval": Kind.INTERVAL,
}
_GEOMETRY_NAMES: Final = {
    "io.debezium.data.geometry.Geometry",
    "io.debezium.data.geometry.Geography",
    "io.debezium.data.geometry.Point",
}


def infer_type(
    t: Any, named: Mapping[str, Any], *, namespace: str | None = None, context: str = ""
) -> tuple[ColumnType, Converter | None]:
    """Neutral type and converter for a non-null Avro type without ``cdc.type``."""
    t = _resolve(t, named, namespace)
    if isinstance(t, str):
        t = {"type": t}
    if isinstance(t, list):
        warn_once(
            f"union:{context}",
            f"field {context}: union {t} has no neutral mapping; values passed through as read",
        )
        return ColumnType(Kind.STRING, native="union"), None
    base = t.get("type")
    if isinstance(base, dict | list) or (isinstance(base, str) and base in named):
        return infer_type(base, named, namespace=namespace, context=context)
    name = t.get("connect.name")
    logical = t.get("logicalType")
    params = _params(t)
    facts = _source_facts(params)
    if name in _TIME_NAMES:
        kind, conv = _TIME_NAMES[name]
        return ColumnType(kind, **facts), conv
    if name == "io.debezium.time.Year":
        return ColumnType(Kind.INT32, **{"native": "year", **facts}), None
    if name in _STRING_NAMES:
        kind = _STRING_NAMES[name]
        allowed = params.get("allowed")
        values = tuple(allowed.split(",")) if allowed and kind in (Kind.ENUM, Kind.SET) else ()
        return ColumnType(kind, values=values, **facts), None
    if name == "io.debezium.data.Uuid" or logical == "uuid":
        return ColumnType(Kind.UUID, **facts), uuid.UUID
    if name == "io.debezium.data.Bits":
        length = params.get("length")
        n = int(length) if length and length.isdigit() else None
        facts.pop("length", None)
        return ColumnType(Kind.BITS, length=n, **facts), _padded_bits(n)
    if name == "io.debezium.data.VariableScaleDecimal":
        return ColumnType(Kind.DECIMAL, **facts), _vsd_from_wire
    if name == "org.apache.kafka.connect.data.Decimal" or logical == "decimal":
        scale = int(params.get("scale", t.get("scale", 0)))
        prec_text = params.get("connect.decimal.precision", t.get("precision"))
        precision = int(prec_text) if prec_text is not None else None
        native = str(facts.get("native", ""))
        if scale == 0 and "UNSIGNED" in native.upper() and "BIGINT" in native.upper():
            return ColumnType(Kind.UINT64, native=native), _from_unscaled
        facts.pop("scale", None)
        facts.pop("length", None)
        if precision is None:
            _, conv = _fixed_decimal_codec(1, scale)
            return ColumnType(Kind.DECIMAL, scale=scale, **facts), conv
        _, conv = _fixed_decimal_codec(precision, scale)
        return ColumnType(Kind.DECIMAL, precision=precision, scale=scale, **facts), conv
    if name in _GEOMETRY_NAMES:
        return ColumnType(Kind.GEOMETRY, **facts), _geometry_from_wire
    if isinstance(logical, str) and logical in _LOGICAL:
        kind, conv = _LOGICAL[logical]
        return ColumnType(kind, **facts), conv
    if base == "boolean":
        return ColumnType(Kind.BOOLEAN, **facts), None
    if base == "int":
        kind = Kind.INT16 if t.get("connect.type") in ("int8", "int16") else Kind.INT32
        return ColumnType(kind, **facts), None
    if base == "long":
        return ColumnType(Kind.INT64, **facts), None
    if base == "float":
        return ColumnType(Kind.FLOAT32, **facts), shortest_float32
    if base == "double":
        return ColumnType(Kind.FLOAT64, **facts), None
    if base == "string":
        return ColumnType(Kind.STRING, **facts), None
    if base in ("bytes", "fixed"):
        return ColumnType(Kind.BYTES, **facts), bytes if base == "fixed" else None
    if base == "enum":
        return ColumnType(Kind.ENUM, values=tuple(t.get("symbols", ())), **facts), None
    if base == "array":
        items, _ = unwrap_nullable(t.get("items"))
        el, el_conv = infer_type(items, named, namespace=namespace, context=f"{context}[]")
        return ColumnType(Kind.ARRAY, element=el, **facts), _array_decoder(el_conv)
    if base == "map":
        return ColumnType(Kind.JSON, **facts), _json_text
    hint = f" ({name})" if name else ""
    warn_once(
        f"type:{context}:{base}:{name}",
        f"field {context}: Avro type {base}{hint} has no neutral mapping; carried as its JSON text",
    )
    if base == "record":
        return ColumnType(Kind.JSON, native=str(name or t.get("name", ""))), _json_text
    return ColumnType(Kind.STRING, native=str(base)), _as_read
