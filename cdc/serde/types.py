"""Neutral column types -> Avro: the one type table of the serialization layer.

:func:`avro_type` turns a :class:`~cdc.events.ColumnType` into an
:class:`AvroType`: the Avro schema registered for it (Debezium's
``connect.name`` conventions plus Avro logical types where they hold every
value) and the functions that move a canonical Python value (see
:mod:`cdc.events`) to Avro bytes and back. The mapping must be lossless for
every canonical value, so a few values that have no Avro/Debezium spelling get
a documented wire form (``schemas/TYPES.md``):

* infinite dates and timestamps and zero dates are the
  :class:`~cdc.serde.temporal.TemporalSentinel` members, written as extreme
  ints/longs or strings (:mod:`cdc.serde.temporal`);
* a NaN/Infinity decimal (``ColumnType.nan``) and a multi-dimensional array
  keep their column's schema, and their text rides in the envelope's
  ``cdc_special_values`` map (:attr:`AvroType.special`,
  :mod:`cdc.serde.special_values`);
* a numeric without precision (or with a negative scale or a scale above the
  precision) is Debezium's ``VariableScaleDecimal``;
* UINT64 is ``decimal(20,0)``, as Debezium's precise mode.

Also here: the Avro spelling of column names (:func:`avro_field_names`) and
the ``cdc.type`` field property that names a field's exact neutral type.
Called by :mod:`cdc.serde.envelope` (schemas), :mod:`cdc.serde.encode` (row
encoders) and :mod:`cdc.serde.field_decoding` (reading our fields back). The
value codecs themselves are in :mod:`cdc.serde.value_codecs` and
:mod:`cdc.serde.temporal`; reading a writer schema's fields (ours and
Debezium's) is :mod:`cdc.serde.field_decoding`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any, Final

from cdc.errors import SerializationError
from cdc.events import ColumnType, Kind
from cdc.serde import binary
from cdc.serde.special_values import array_special, special_text
from cdc.serde.temporal import (
    date_from_wire,
    enc_date,
    enc_time,
    enc_timestamp,
    enc_timestamptz,
    time_from_micros,
    ts_from_micros,
    tstz_from_wire,
)
from cdc.serde.value_codecs import (
    Converter,
    Encoder,
    array_decoder,
    array_encoder,
    bits_from_wire,
    bits_to_wire,
    enc_boolean,
    enc_bytes,
    enc_double,
    enc_float,
    enc_geometry,
    enc_raw_bytes,
    enc_string,
    enc_string_wire,
    enc_uuid,
    enc_vsd,
    fixed_decimal_codec,
    from_unscaled,
    geometry_from_wire,
    int_encoder,
    shortest_float32,
    uint64_to_wire,
    vsd_from_wire,
)

log = logging.getLogger(__name__)

# An Avro schema in its JSON form: a type name, a type object or a union list.
AvroSchema = str | dict[str, Any] | list[Any]

_zz = binary.zigzag

# Debezium's stand-in for a value the source did not send (unchanged TOAST).
UNAVAILABLE_VALUE: Final = "__debezium_unavailable_value"
UNAVAILABLE_BYTES: Final = UNAVAILABLE_VALUE.encode()

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
    # the generated Python calls ``encode``.
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
    the source did not send. ``inline_params`` are the two ints the inline
    encoders take with ``inline``: the (lo, hi) bounds of an ``Inline.INT``,
    the (scale, precision) of an ``Inline.DECIMAL``; None for the others.
    """

    column_type: ColumnType
    schema: AvroSchema
    encode: Encoder
    decode: Converter | None
    default: Any
    placeholder: bytes
    inline: Inline | None = None
    inline_params: tuple[int, int] | None = None
    debezium_unavailable: bool = False  # placeholder is Debezium's marker
    # For types that can hold NaN/Infinity decimals: the value's JSON text when
    # it holds one (it then travels in cdc_special_values), else None.
    special: Callable[[Any], str | None] | None = None


def _debezium(connect_name: str, base: str, **extra: Any) -> dict[str, Any]:
    return {"type": base, "connect.version": 1, "connect.name": connect_name, **extra}


def _then(conv: Converter, enc: Encoder) -> Encoder:
    def composed(v: Any) -> bytes:
        return enc(conv(v))

    return composed


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
_UNAVAILABLE_STRING = enc_string_wire(UNAVAILABLE_VALUE)
_UNAVAILABLE_RAW = enc_raw_bytes(UNAVAILABLE_BYTES)

_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """Log a mapping problem once per process, not once per row."""
    if key not in _warned and len(_warned) < 10_000:
        _warned.add(key)
        log.warning(message)


# Debezium's semantic types (io.debezium.time.Date, MicroTimestamp, Uuid) carry only
# their connect.name, no Avro logicalType: Debezium 3.6 writes none, and a Kafka
# Connect converter maps a logicalType before the connect.name, so a schema with
# both reaches a Connect sink as Connect's own Date and fails ("Mismatched names",
# issue #15). Decimal keeps its logicalType, as Debezium's does. Schemas registered
# before still decode: readers take the type from cdc.type, connect.name or
# logicalType, whichever is there (tests/unit/compat/).


@lru_cache(maxsize=4096)
def avro_type(ct: ColumnType) -> AvroType:
    """The Avro mapping of a neutral column type (cached: ColumnType is a value)."""
    k: Kind | str = ct.kind  # a str when a newer connector hands us a kind we lack
    if k is Kind.BOOLEAN:
        return AvroType(ct, "boolean", enc_boolean, None, False, binary.FALSE, Inline.BOOLEAN)
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
        return AvroType(ct, schema, int_encoder(*rng), None, 0, _zz(0), Inline.INT, rng)
    if k is Kind.UINT64:
        return AvroType(
            ct,
            _decimal_schema(20, 0),
            _then(uint64_to_wire, enc_raw_bytes),
            from_unscaled,
            "\u0000",
            enc_raw_bytes(b"\x00"),
        )
    if k is Kind.FLOAT32:
        return AvroType(ct, "float", enc_float, shortest_float32, 0.0, binary.pack_float(0.0))
    if k is Kind.FLOAT64:
        return AvroType(ct, "double", enc_double, None, 0.0, binary.pack_double(0.0), Inline.DOUBLE)
    if k is Kind.DECIMAL:
        return _decimal_type(ct)
    if k in (Kind.STRING, Kind.TIMETZ, Kind.INTERVAL, Kind.JSON, Kind.ENUM, Kind.SET):
        return _string_type(ct)
    if k is Kind.BYTES:
        return AvroType(
            ct, "bytes", enc_bytes, None, "", _UNAVAILABLE_RAW, Inline.BYTES,
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
            _then(bits_to_wire, enc_raw_bytes),
            bits_from_wire,
            "",
            enc_raw_bytes(b""),
        )
    if k is Kind.UUID:
        return AvroType(
            ct,
            _debezium("io.debezium.data.Uuid", "string"),
            enc_uuid,
            uuid.UUID,
            "00000000-0000-0000-0000-000000000000",
            enc_string_wire("00000000-0000-0000-0000-000000000000"),
        )
    if k is Kind.DATE:
        return AvroType(
            ct,
            _debezium("io.debezium.time.Date", "int"),
            enc_date,
            date_from_wire,
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
            enc_time,
            time_from_micros,
            0,
            _zz(0),
        )
    if k is Kind.TIMESTAMP:
        return AvroType(
            ct,
            _debezium("io.debezium.time.MicroTimestamp", "long"),
            enc_timestamp,
            ts_from_micros,
            0,
            _zz(0),
            Inline.TIMESTAMP,
        )
    if k is Kind.TIMESTAMPTZ:
        zero = "1970-01-01T00:00:00Z"
        return AvroType(
            ct,
            _debezium("io.debezium.time.ZonedTimestamp", "string"),
            enc_timestamptz,
            tstz_from_wire,
            zero,
            enc_string_wire(zero),
            Inline.TIMESTAMPTZ,
        )
    if k is Kind.GEOMETRY:
        return AvroType(
            ct,
            _GEOMETRY_SCHEMA,
            enc_geometry,
            geometry_from_wire,
            {"wkb": "", "srid": None},
            enc_raw_bytes(b"") + binary.NULL_BRANCH,
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
            array_encoder(el.encode, element.kind is not Kind.ARRAY),
            array_decoder(el.decode),
            [],
            binary.EMPTY_ARRAY,
            special=array_special(el),
        )
    warn_once(
        f"kind:{k}",
        f"no Avro mapping for column kind {k!r} (native {ct.native!r}); carried as a string",
    )
    return AvroType(ct, "string", enc_string, None, "", enc_string_wire(""), Inline.STRING)


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
    special = special_text if ct.nan else None
    p, s = ct.precision, ct.scale if ct.scale is not None else 0
    if p is not None and p > 0 and 0 <= s <= p:
        encode, from_wire = fixed_decimal_codec(p, s)
        return AvroType(
            ct,
            _decimal_schema(p, s),
            encode,
            from_wire,
            "\u0000",
            enc_raw_bytes(b"\x00"),
            Inline.DECIMAL,
            (s, p),
            special=special,
        )
    # Unconstrained numeric, or a scale Avro's decimal cannot express (PostgreSQL
    # 15 allows negative scales and scales above the precision).
    return AvroType(
        ct,
        _VSD_SCHEMA,
        enc_vsd,
        vsd_from_wire,
        {"scale": 0, "value": "\u0000"},
        _zz(0) + enc_raw_bytes(b"\x00"),
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
    placeholder = _UNAVAILABLE_STRING if marker else enc_string_wire("")
    return AvroType(
        ct, schema, enc_string, None, "", placeholder, Inline.STRING,
        debezium_unavailable=marker,
    )  # fmt: skip
