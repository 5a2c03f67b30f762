"""The PostgreSQL type table, shared by the snapshot and streaming paths.

Both paths see values as PostgreSQL's *text* output: pgoutput sends tuple
values as text and snapshots read with text-format queries or ``COPY TO
STDOUT``. So one table maps a column's type OID and ``atttypmod`` to a neutral
:class:`~cdc.events.ColumnType` and to a converter from that text to the
canonical Python value of :mod:`cdc.events` - and the two paths cannot drift.
TYPES.md next to this file is the human-readable form of the same table.

Built-in types are hard-coded by OID (they are fixed across versions). User
types (enums, domains, composites, arrays of them, extension types) are
resolved through a :class:`TypeCatalog`, typically loaded once per relation
with :func:`load_type_catalog`.

Converters are built once per column (:func:`resolve_type`) and then applied
per value or per row (:func:`make_row_converter`); the parsers they are made
of (one per built-in type family) are in :mod:`connectors.postgres.text_values`.
They assume the session settings in :data:`SESSION_SETTINGS`, which the
replication and snapshot connections must pin (``libpq_options()``): text
output depends on DateStyle, IntervalStyle, TimeZone, lc_monetary and
bytea_output.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Protocol

from cdc.errors import SerializationError
from cdc.events import ColumnType, Kind
from cdc.serde.temporal import NEG_INFINITY, POS_INFINITY, TemporalSentinel
from connectors.postgres.text_values import (
    array_parser,
    interval_to_iso,
    parse_bits,
    parse_bool,
    parse_bytea,
    parse_date,
    parse_money,
    parse_time,
    parse_timestamp,
    parse_timestamptz,
    parse_timetz,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "NEG_INFINITY",
    "POS_INFINITY",
    "SESSION_SETTINGS",
    "PgType",
    "PgTypeInfo",
    "StaticTypeCatalog",
    "TemporalSentinel",
    "TextConverter",
    "TypeCatalog",
    "libpq_options",
    "load_type_catalog",
    "make_row_converter",
    "resolve_type",
]

log = logging.getLogger(__name__)

TextConverter = Callable[[str], Any]


#: Session settings the converters expect. Set them on every connection whose
#: text output is converted here (replication and snapshot alike).
SESSION_SETTINGS: Final[Mapping[str, str]] = {
    "client_encoding": "UTF8",
    "DateStyle": "ISO",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
}


def libpq_options() -> str:
    """:data:`SESSION_SETTINGS` as a libpq ``options`` string (``-c k=v ...``)."""
    return " ".join(f"-c {k}={v}" for k, v in SESSION_SETTINGS.items())


# --- catalog ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PgTypeInfo:
    """What the type table needs to know about a non-built-in type (from pg_type)."""

    oid: int
    name: str
    namespace: str = "public"
    typtype: str = "b"  # b base, c composite, d domain, e enum, p pseudo, r range, m multirange
    category: str = "U"  # typcategory; 'A' = array
    elem: int = 0  # typelem: element type of an array
    base_type: int = 0  # typbasetype: a domain's underlying type
    base_typmod: int = -1  # typtypmod: a domain's typmod for its base type
    delimiter: str = ","  # typdelim: array element separator
    enum_labels: tuple[str, ...] = ()

    @property
    def qualified_name(self) -> str:
        if self.namespace == "pg_catalog":
            return _quote_ident(self.name)
        return f"{_quote_ident(self.namespace)}.{_quote_ident(self.name)}"


class TypeCatalog(Protocol):
    """Where user-defined types are looked up; ``None`` means unknown OID."""

    def lookup(self, oid: int) -> PgTypeInfo | None: ...


class StaticTypeCatalog:
    """A :class:`TypeCatalog` over a fixed set of :class:`PgTypeInfo`."""

    __slots__ = ("_types",)

    def __init__(self, types: Iterable[PgTypeInfo] = ()) -> None:
        self._types = {t.oid: t for t in types}

    def lookup(self, oid: int) -> PgTypeInfo | None:
        return self._types.get(oid)

    def __len__(self) -> int:
        return len(self._types)

    def __iter__(self) -> Iterator[PgTypeInfo]:
        return iter(self._types.values())

    def __repr__(self) -> str:
        return f"StaticTypeCatalog({sorted(self._types)})"


# Follows array elements and domain bases transitively, so a domain over an
# enum array resolves in one round trip. Built-ins are filtered client-side.
_CATALOG_SQL: Final = """
WITH RECURSIVE wanted(oid) AS (
    SELECT unnest(%s::oid[])
  UNION
    SELECT x.oid FROM wanted w
    JOIN pg_catalog.pg_type t ON t.oid = w.oid
    CROSS JOIN LATERAL (
        VALUES (CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE 0 END), (t.typbasetype)
    ) AS x(oid)
    WHERE x.oid <> 0
)
SELECT t.oid::int8, t.typname::text, n.nspname::text, t.typtype::text, t.typcategory::text,
       t.typelem::int8, t.typbasetype::int8, t.typtypmod, t.typdelim::text,
       ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e
             WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid IN (SELECT oid FROM wanted)
"""


def load_type_catalog(conn: psycopg.Connection[Any], oids: Iterable[int]) -> StaticTypeCatalog:
    """Load the pg_type/pg_enum facts for ``oids`` (and what they refer to).

    One query on a normal (non-replication) connection. Enum labels change
    with ``ALTER TYPE ... ADD VALUE``: reload when a Relation message arrives.
    """
    wanted = sorted({o for o in oids if not _is_builtin(o)})
    if not wanted:
        return StaticTypeCatalog()
    rows = [r for r in conn.execute(_CATALOG_SQL, (wanted,)).fetchall() if not _is_builtin(r[0])]
    return StaticTypeCatalog(
        PgTypeInfo(
            oid=int(r[0]),
            name=r[1],
            namespace=r[2],
            typtype=r[3],
            category=r[4],
            elem=int(r[5]),
            base_type=int(r[6]),
            base_typmod=int(r[7]),
            delimiter=r[8],
            enum_labels=tuple(r[9] or ()),
        )
        for r in rows
    )


# --- resolved types ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PgType:
    """A column's resolved type: neutral type plus its text converter.

    ``from_text`` is the raw, fast converter (may raise ValueError etc. on
    input the server would never send); :meth:`convert` is the checked form.
    """

    oid: int
    typmod: int
    column_type: ColumnType
    from_text: TextConverter

    def convert(self, text: str | None) -> Any:
        if text is None:
            return None
        try:
            return self.from_text(text)
        except SerializationError:
            raise
        except Exception as e:
            raise _conversion_error(self, text, e) from None


def _conversion_error(t: PgType, text: str, e: Exception, column: str = "") -> SerializationError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    where = f"column {column!r} " if column else ""
    return SerializationError(
        f"cannot convert {where}value {shown!r} of PostgreSQL type {t.column_type.native} "
        f"(oid {t.oid}) to {t.column_type.kind}: {e}",
        hint="the session must use the settings in connectors.postgres.types.SESSION_SETTINGS",
    )


def make_row_converter(
    types: Sequence[PgType], names: Sequence[str] = ()
) -> Callable[[Sequence[Any]], list[Any]]:
    """Build a converter for whole rows of text values (a tuple or snapshot row).

    Only ``str`` values are converted; ``None`` (NULL) and anything else - the
    decoder's UNCHANGED_TOAST marker - pass through untouched. Errors name the
    column.

    This runs once per row change, so the converter is generated code: one
    unpack and one list display with each column's call inlined (text
    columns need none), about 30% faster than a loop over the columns. The
    source holds only column indices; converters are passed by name.
    """
    types = tuple(types)
    n = len(types)

    def diagnose(values: Sequence[Any], error: Exception) -> Exception:
        if len(values) != n:
            return SerializationError(f"row has {len(values)} values, the relation has {n} columns")
        for i, (t, v) in enumerate(zip(types, values, strict=True)):
            if v.__class__ is str:
                try:
                    t.from_text(v)
                except SerializationError as e:
                    return e
                except Exception as e:
                    col = names[i] if i < len(names) else f"#{i + 1}"
                    return _conversion_error(t, v, e, col)
        return error

    namespace: dict[str, Any] = {"diagnose": diagnose}
    exprs = []
    for i, t in enumerate(types):
        if t.from_text is str:
            exprs.append(f"v{i}")
        else:
            namespace[f"c{i}"] = t.from_text
            exprs.append(f"(c{i}(v{i}) if v{i}.__class__ is str else v{i})")
    unpack = "".join(f"v{i}, " for i in range(n)) if n else "()"
    source = (
        "def convert(values):\n"
        "    try:\n"
        f"        {unpack} = values\n"
        f"        return [{', '.join(exprs)}]\n"
        "    except Exception as e:\n"
        "        raise diagnose(values, e) from None\n"
    )
    exec(compile(source, f"<row converter: {n} columns>", "exec"), namespace)
    convert: Callable[[Sequence[Any]], list[Any]] = namespace["convert"]
    return convert


def resolve_type(oid: int, typmod: int = -1, catalog: TypeCatalog | None = None) -> PgType:
    """Map a column type (OID + atttypmod, as in a Relation message) to a :class:`PgType`.

    Never fails: an OID neither built in nor in ``catalog`` becomes STRING
    (its text kept as is) with one warning per OID.
    """
    builtin = _BUILTIN.get(oid)
    if builtin is not None:
        return builtin.make(oid, typmod)
    elem_oid = _BUILTIN_ARRAYS.get(oid)
    if elem_oid is not None:
        return _array(oid, typmod, resolve_type(elem_oid, typmod, catalog), _delimiter(elem_oid))
    info = catalog.lookup(oid) if catalog is not None else None
    if info is None:
        _warn_once(oid, f"unknown PostgreSQL type oid {oid}: replicated as its text (STRING)")
        return PgType(oid, typmod, ColumnType(Kind.STRING, native=f"oid {oid}"), str)
    if info.typtype == "d":
        base = resolve_type(info.base_type, typmod if typmod >= 0 else info.base_typmod, catalog)
        return PgType(oid, typmod, base.column_type, base.from_text)
    if info.typtype == "e":
        ct = ColumnType(Kind.ENUM, native=info.qualified_name, values=info.enum_labels)
        return PgType(oid, typmod, ct, str)
    if info.category == "A" and info.elem:
        elem_info = catalog.lookup(info.elem) if catalog is not None else None
        delim = elem_info.delimiter if elem_info is not None else _delimiter(info.elem)
        return _array(oid, typmod, resolve_type(info.elem, typmod, catalog), delim)
    if info.typtype not in ("c", "r", "m"):
        # Composites and ranges are knowingly kept as text; a base type from
        # an extension (citext, hstore, PostGIS...) has no mapping yet.
        _warn_once(
            oid, f"PostgreSQL type {info.qualified_name} (oid {oid}) is replicated as text (STRING)"
        )
    return PgType(oid, typmod, ColumnType(Kind.STRING, native=info.qualified_name), str)


def _is_builtin(oid: int) -> bool:
    return oid in _BUILTIN or oid in _BUILTIN_ARRAYS


_warned: set[int] = set()


def _warn_once(oid: int, message: str) -> None:
    if oid not in _warned:
        _warned.add(oid)
        log.warning(message)


def _quote_ident(name: str) -> str:
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _delimiter(oid: int) -> str:
    return ";" if oid == 603 else ","  # box is the only built-in with ';'


def _array(oid: int, typmod: int, elem: PgType, delim: str) -> PgType:
    et = elem.column_type
    ct = ColumnType(Kind.ARRAY, native=f"{et.native}[]", element=et)
    return PgType(oid, typmod, ct, array_parser(elem.from_text, delim))


# --- the built-in table --------------------------------------------------------


def _numeric_type(typmod: int) -> ColumnType:
    if typmod < 4:
        return ColumnType(Kind.DECIMAL, native="numeric", nan=True)
    t = typmod - 4
    precision = (t >> 16) & 0xFFFF
    scale = ((t & 0x7FF) ^ 0x400) - 0x400  # 11-bit signed (negative scale: PG 15+)
    return ColumnType(
        Kind.DECIMAL,
        native=f"numeric({precision},{scale})",
        precision=precision,
        scale=scale,
        nan=True,
    )


def _char_type(name: str, bare: str, typmod: int) -> ColumnType:
    if typmod >= 4:
        return ColumnType(Kind.STRING, native=f"{name}({typmod - 4})", length=typmod - 4)
    return ColumnType(Kind.STRING, native=bare)


def _time_type(kind: Kind, base: str, suffix: str, typmod: int) -> ColumnType:
    if typmod >= 0:
        return ColumnType(kind, native=f"{base}({typmod}) {suffix}", precision=typmod)
    return ColumnType(kind, native=f"{base} {suffix}")


_INTERVAL_FIELDS: Final = {
    1 << 2: " year",
    1 << 1: " month",
    1 << 3: " day",
    1 << 10: " hour",
    1 << 11: " minute",
    1 << 12: " second",
    (1 << 2) | (1 << 1): " year to month",
    (1 << 3) | (1 << 10): " day to hour",
    (1 << 3) | (1 << 10) | (1 << 11): " day to minute",
    (1 << 3) | (1 << 10) | (1 << 11) | (1 << 12): " day to second",
    (1 << 10) | (1 << 11): " hour to minute",
    (1 << 10) | (1 << 11) | (1 << 12): " hour to second",
    (1 << 11) | (1 << 12): " minute to second",
    0x7FFF: "",
}


def _interval_type(typmod: int) -> ColumnType:
    if typmod < 0:
        return ColumnType(Kind.INTERVAL, native="interval")
    fields = _INTERVAL_FIELDS.get((typmod >> 16) & 0x7FFF, "")
    precision = typmod & 0xFFFF
    if precision == 0xFFFF:
        return ColumnType(Kind.INTERVAL, native=f"interval{fields}")
    return ColumnType(Kind.INTERVAL, native=f"interval{fields}({precision})", precision=precision)


def _bit_type(name: str, kind: Kind, typmod: int) -> ColumnType:
    if typmod >= 0:
        return ColumnType(kind, native=f"{name}({typmod})", length=typmod)
    return ColumnType(kind, native=name)


@dataclass(frozen=True, slots=True)
class _Builtin:
    type_of: Callable[[int], ColumnType]
    from_text: TextConverter

    def make(self, oid: int, typmod: int) -> PgType:
        return PgType(oid, typmod, self.type_of(typmod), self.from_text)


def _fixed(kind: Kind, native: str, conv: TextConverter = str, **kw: Any) -> _Builtin:
    ct = ColumnType(kind, native=native, **kw)
    return _Builtin(lambda _typmod: ct, conv)


# Text kept verbatim: these have no neutral kind, and their text is lossless.
_STRING_BUILTINS: Final = {
    18: '"char"',
    19: "name",
    22: "int2vector",
    24: "regproc",
    25: "text",
    27: "tid",
    30: "oidvector",
    142: "xml",
    194: "pg_node_tree",
    600: "point",
    601: "lseg",
    602: "path",
    603: "box",
    604: "polygon",
    628: "line",
    650: "cidr",
    718: "circle",
    705: "unknown",
    774: "macaddr8",
    829: "macaddr",
    869: "inet",
    1033: "aclitem",
    1562: "bit varying",  # a byte string cannot carry a varying bit count; see TYPES.md
    1790: "refcursor",
    2202: "regprocedure",
    2203: "regoper",
    2204: "regoperator",
    2205: "regclass",
    2206: "regtype",
    2249: "record",
    2970: "txid_snapshot",
    3220: "pg_lsn",
    3614: "tsvector",
    3615: "tsquery",
    3642: "gtsvector",
    3734: "regconfig",
    3769: "regdictionary",
    3904: "int4range",
    3906: "numrange",
    3908: "tsrange",
    3910: "tstzrange",
    3912: "daterange",
    3926: "int8range",
    4072: "jsonpath",
    4089: "regnamespace",
    4096: "regrole",
    4191: "regcollation",
    4451: "int4multirange",
    4532: "nummultirange",
    4533: "tsmultirange",
    4534: "tstzmultirange",
    4535: "datemultirange",
    4536: "int8multirange",
    5038: "pg_snapshot",
}

_BUILTIN: Final[dict[int, _Builtin]] = {
    16: _fixed(Kind.BOOLEAN, "boolean", parse_bool),
    17: _fixed(Kind.BYTES, "bytea", parse_bytea),
    20: _fixed(Kind.INT64, "bigint", int),
    21: _fixed(Kind.INT16, "smallint", int),
    23: _fixed(Kind.INT32, "integer", int),
    26: _fixed(Kind.INT64, "oid", int),  # unsigned 32-bit
    28: _fixed(Kind.INT64, "xid", int),
    29: _fixed(Kind.INT64, "cid", int),
    5069: _fixed(Kind.UINT64, "xid8", int),
    114: _fixed(Kind.JSON, "json"),
    3802: _fixed(Kind.JSON, "jsonb"),
    700: _fixed(Kind.FLOAT32, "real", float),
    701: _fixed(Kind.FLOAT64, "double precision", float),
    790: _fixed(Kind.DECIMAL, "money", parse_money, precision=19, scale=2),
    1700: _Builtin(_numeric_type, Decimal),
    1042: _Builtin(lambda tm: _char_type("character", "bpchar", tm), str),
    1043: _Builtin(lambda tm: _char_type("character varying", "character varying", tm), str),
    1082: _fixed(Kind.DATE, "date", parse_date),
    1083: _Builtin(lambda tm: _time_type(Kind.TIME, "time", "without time zone", tm), parse_time),
    1266: _Builtin(lambda tm: _time_type(Kind.TIMETZ, "time", "with time zone", tm), parse_timetz),
    1114: _Builtin(
        lambda tm: _time_type(Kind.TIMESTAMP, "timestamp", "without time zone", tm), parse_timestamp
    ),
    1184: _Builtin(
        lambda tm: _time_type(Kind.TIMESTAMPTZ, "timestamp", "with time zone", tm), parse_timestamptz
    ),
    1186: _Builtin(_interval_type, interval_to_iso),
    1560: _Builtin(lambda tm: _bit_type("bit", Kind.BITS, tm), parse_bits),
    2950: _fixed(Kind.UUID, "uuid", uuid.UUID),
    **{
        oid: _Builtin(lambda tm: _bit_type("bit varying", Kind.STRING, tm), str)
        if oid == 1562
        else _fixed(Kind.STRING, name)
        for oid, name in _STRING_BUILTINS.items()
    },
}

# Built-in array type OID -> element type OID.
_BUILTIN_ARRAYS: Final = {
    1000: 16, 1001: 17, 1002: 18, 1003: 19, 1016: 20, 1005: 21, 1006: 22, 1007: 23,
    1008: 24, 1009: 25, 1028: 26, 1010: 27, 1011: 28, 1012: 29, 1013: 30, 199: 114,
    143: 142, 1017: 600, 1018: 601, 1019: 602, 1020: 603, 1027: 604, 629: 628, 651: 650,
    1021: 700, 1022: 701, 719: 718, 775: 774, 791: 790, 1040: 829, 1041: 869, 1034: 1033,
    1014: 1042, 1015: 1043, 1182: 1082, 1183: 1083, 1115: 1114, 1185: 1184, 1187: 1186,
    1270: 1266, 1561: 1560, 1563: 1562, 1231: 1700, 2201: 1790, 2207: 2202, 2208: 2203,
    2209: 2204, 2210: 2205, 2211: 2206, 2287: 2249, 2951: 2950, 2949: 2970, 3221: 3220,
    3643: 3614, 3645: 3615, 3644: 3642, 3735: 3734, 3770: 3769, 3807: 3802, 3905: 3904,
    3907: 3906, 3909: 3908, 3911: 3910, 3913: 3912, 3927: 3926, 4073: 4072, 4090: 4089,
    4097: 4096, 4192: 4191, 6150: 4451, 6151: 4532, 6152: 4533, 6153: 4534, 6155: 4535,
    6157: 4536, 5039: 5038, 271: 5069,
}  # fmt: skip
