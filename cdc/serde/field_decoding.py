"""Decode side: a writer schema's field -> its neutral column type and converter.

:func:`column_decoding` reads one record field of a writer schema (the one
the registry returns for a record's id) back into a
:class:`~cdc.events.ColumnType` and the converter from what the Avro reader
returns to the canonical value. Fields we wrote carry a ``cdc.type`` property
that names the exact neutral type and are read with the inverse of
:func:`cdc.serde.types.avro_type`; fields written by Debezium are read from
their ``connect.name``/``logicalType``/``connect.parameters`` hints
(:func:`infer_type`), so sinks can consume Debezium's topics too.

Called by :mod:`cdc.serde.rowdecode` when it compiles the reader of a writer
schema (once per schema id, not per record). Reading the Avro bytes is
:mod:`cdc.serde.reader`'s; the converters are those of
:mod:`cdc.serde.temporal` and :mod:`cdc.serde.value_codecs`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from cdc.events import ColumnType, Kind
from cdc.serde.temporal import (
    date_from_wire,
    millis_to_timedelta,
    nanos_to_timedelta,
    time_from_micros,
    ts_from_micros,
    ts_from_millis,
    ts_from_nanos,
    tstz_from_wire,
    utc_from_micros,
    utc_from_millis,
)
from cdc.serde.types import (
    UNAVAILABLE_BYTES,
    UNAVAILABLE_VALUE,
    avro_type,
    column_type_from_json,
    warn_once,
)
from cdc.serde.value_codecs import (
    Converter,
    array_decoder,
    fixed_decimal_codec,
    from_unscaled,
    geometry_from_wire,
    padded_bits,
    shortest_float32,
    vsd_from_wire,
)


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
    inverse of :func:`~cdc.serde.types.avro_type`; other writers' fields (Debezium's) are read
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
        unavailable = UNAVAILABLE_BYTES
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


# SQL type names whose modifiers Debezium sends apart from the name, in
# ``__debezium.source.column.length``/``.scale``, with the largest length each
# takes as a modifier (above it the source reports its "unbounded" length: the
# column was declared without one). Numerics take (length, scale), the others
# (length). Other types' lengths are display widths or byte sizes, not modifiers;
# a bit varying's is left out too: Debezium's Bits value does not carry the
# value's own length, so the replica keeps the fixed bit(n) the sink makes of it.
_NUMERIC_TYPES: Final = frozenset({"numeric", "decimal"})
_LENGTH_TYPES: Final[dict[str, int]] = {
    "numeric": 1000, "decimal": 1000,
    "varchar": 10_485_760, "character varying": 10_485_760, "char": 10_485_760,
    "character": 10_485_760, "bpchar": 10_485_760, "nvarchar": 10_485_760,
    "nchar": 10_485_760, "binary": 255, "varbinary": 65_535,
    "bit": 83_886_080,
    # Fractional-second digits: a length of 0..6 is the precision (``DATETIME(6)``);
    # a longer one is the printed width the source reports instead (``timestamp``: 29).
    "time": 6, "datetime": 6, "timestamp": 6,
}
_TYPE_SUFFIXES: Final = (" unsigned zerofill", " unsigned", " zerofill")


def full_native_type(name: str, length: int | None, scale: int | None) -> str:
    """The source type with its modifiers: ``NUMERIC``, 12, 3 -> ``NUMERIC(12,3)``.

    Debezium's ``column.propagate.source.type`` sends a column's type name and
    its length and scale apart; a replica made from the bare name would lose
    them (``numeric`` unconstrained, ``DECIMAL`` as ``DECIMAL(10,0)``).
    A name that already has modifiers, a type that takes none, or a length a
    declared column cannot have is returned as it is.
    """
    if "(" in name or length is None or length <= 0:
        return name
    base, suffix = name, ""
    for s in _TYPE_SUFFIXES:
        if name.lower().endswith(s):
            base, suffix = name[: -len(s)], name[-len(s):]
            break
    limit = _LENGTH_TYPES.get(base.strip().lower())
    if limit is None or length > limit:
        return name
    if base.strip().lower() in _NUMERIC_TYPES and scale is not None and 0 <= scale <= length:
        return f"{base}({length},{scale}){suffix}"
    return f"{base}({length}){suffix}"


def _source_facts(params: Mapping[str, str]) -> dict[str, Any]:
    """Debezium's ``column.propagate.source.type`` parameters, when present."""
    facts: dict[str, Any] = {}
    for key, name in (
        ("__debezium.source.column.length", "length"),
        ("__debezium.source.column.scale", "scale"),
    ):
        v = params.get(key)
        if v is not None and v.lstrip("-").isdigit():
            facts[name] = int(v)
    native = params.get("__debezium.source.column.type")
    if native:
        facts["native"] = full_native_type(native, facts.get("length"), facts.get("scale"))
    return facts


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
    "io.debezium.time.Date": (Kind.DATE, date_from_wire),
    "org.apache.kafka.connect.data.Date": (Kind.DATE, date_from_wire),
    "io.debezium.time.Time": (Kind.TIME, millis_to_timedelta),
    "org.apache.kafka.connect.data.Time": (Kind.TIME, millis_to_timedelta),
    "io.debezium.time.MicroTime": (Kind.TIME, time_from_micros),
    "io.debezium.time.NanoTime": (Kind.TIME, nanos_to_timedelta),
    "io.debezium.time.Timestamp": (Kind.TIMESTAMP, ts_from_millis),
    "org.apache.kafka.connect.data.Timestamp": (Kind.TIMESTAMP, ts_from_millis),
    "io.debezium.time.MicroTimestamp": (Kind.TIMESTAMP, ts_from_micros),
    "io.debezium.time.NanoTimestamp": (Kind.TIMESTAMP, ts_from_nanos),
    "io.debezium.time.ZonedTimestamp": (Kind.TIMESTAMPTZ, tstz_from_wire),
    "io.debezium.time.MicroDuration": (Kind.INTERVAL, _micro_duration),
}
_LOGICAL: Final[dict[str, tuple[Kind, Converter]]] = {
    "date": (Kind.DATE, date_from_wire),
    "time-millis": (Kind.TIME, millis_to_timedelta),
    "time-micros": (Kind.TIME, time_from_micros),
    "timestamp-millis": (Kind.TIMESTAMPTZ, utc_from_millis),
    "timestamp-micros": (Kind.TIMESTAMPTZ, utc_from_micros),
    "local-timestamp-millis": (Kind.TIMESTAMP, ts_from_millis),
    "local-timestamp-micros": (Kind.TIMESTAMP, ts_from_micros),
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
        return ColumnType(Kind.BITS, length=n, **facts), padded_bits(n)
    if name == "io.debezium.data.VariableScaleDecimal":
        return ColumnType(Kind.DECIMAL, **facts), vsd_from_wire
    if name == "org.apache.kafka.connect.data.Decimal" or logical == "decimal":
        scale = int(params.get("scale", t.get("scale", 0)))
        prec_text = params.get("connect.decimal.precision", t.get("precision"))
        precision = int(prec_text) if prec_text is not None else None
        native = str(facts.get("native", ""))
        if scale == 0 and "UNSIGNED" in native.upper() and "BIGINT" in native.upper():
            return ColumnType(Kind.UINT64, native=native), from_unscaled
        facts.pop("scale", None)
        facts.pop("length", None)
        if precision is None:
            _, conv = fixed_decimal_codec(1, scale)
            return ColumnType(Kind.DECIMAL, scale=scale, **facts), conv
        _, conv = fixed_decimal_codec(precision, scale)
        return ColumnType(Kind.DECIMAL, precision=precision, scale=scale, **facts), conv
    if name in _GEOMETRY_NAMES:
        return ColumnType(Kind.GEOMETRY, **facts), geometry_from_wire
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
        return ColumnType(Kind.ARRAY, element=el, **facts), array_decoder(el_conv)
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
