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
per value or per row (:func:`make_row_converter`); they assume the session
settings in :data:`SESSION_SETTINGS`, which the replication and snapshot
connections must pin (``libpq_options()``): text output depends on DateStyle,
IntervalStyle, TimeZone, lc_monetary and bytea_output.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Protocol

from cdc.errors import SerializationError
from cdc.events import ColumnType, Kind
from cdc.serde.temporal import NEG_INFINITY, POS_INFINITY, TemporalSentinel

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
    "interval_to_iso",
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


# --- converters: numbers, text, bytes ----------------------------------------

_BOOL: Final = {"t": True, "f": False}


def _bool(s: str) -> bool:
    return _BOOL[s]


def _bytea(s: str) -> bytes:
    if s.startswith("\\x"):
        return bytes.fromhex(s[2:])
    # bytea_output = 'escape': printable ASCII as is, \\ and \ooo octal escapes.
    raw = s.encode("ascii")
    if b"\\" not in raw:
        return raw
    return re.sub(rb"\\(\\|[0-3][0-7]{2})", _unescape_octal, raw)


def _unescape_octal(m: re.Match[bytes]) -> bytes:
    g = m.group(1)
    return b"\\" if g == b"\\" else bytes((int(g, 8),))


_MONEY_JUNK: Final = re.compile(r"[^0-9.,]")


def _money(s: str) -> Decimal:
    """Parse money text robustly across lc_monetary locales with 2 fraction digits.

    Currency symbols, spaces and grouping are dropped; the fraction is the
    two digits after the last '.' or ','; '-' or '(' anywhere means negative.
    """
    neg = "-" in s or "(" in s
    digits = _MONEY_JUNK.sub("", s)
    cut = max(digits.rfind("."), digits.rfind(","))
    if cut < 0 or len(digits) - cut != 3:
        raise ValueError("expected exactly 2 fraction digits (set lc_monetary=C)")
    whole = digits[:cut].replace(".", "").replace(",", "") or "0"
    return Decimal(f"{'-' if neg else ''}{whole}.{digits[cut + 1 :]}")


def _bits(s: str) -> bytes:
    return int(s, 2).to_bytes((len(s) + 7) // 8, "big") if s else b""


# --- converters: dates and times ---------------------------------------------

_UTC: Final = UTC
_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_AWARE: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_RE: Final = re.compile(r"(\d{4,})-(\d\d)-(\d\d)( BC)?")
_TS_RE: Final = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
    r"(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?"
)
_TIME_RE: Final = re.compile(r"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
_TIMETZ_RE: Final = re.compile(
    r"(\d\d:\d\d:\d\d(?:\.\d{1,6})?)([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?"
)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar, any year.

    ``year`` is astronomical (0 = 1 BC), as PostgreSQL counts internally.
    """
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise ValueError(f"invalid date {year}-{month}-{day}")
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _year(text: str, bc: str | None) -> int:
    y = int(text)
    return 1 - y if bc else y


def _date(s: str) -> date | int | TemporalSentinel:
    if len(s) == 10:
        return date.fromisoformat(s)
    if s == "infinity":
        return POS_INFINITY
    if s == "-infinity":
        return NEG_INFINITY
    m = _DATE_RE.fullmatch(s)
    if m is None:
        raise ValueError("not an ISO date (set DateStyle=ISO)")
    y, mo, d = _year(m[1], m[4]), int(m[2]), int(m[3])
    if 1 <= y <= 9999:
        return date(y, mo, d)
    return _days_from_civil(y, mo, d)  # outside Python's range: days since epoch


def _fraction_us(f: str | None) -> int:
    return int(f.ljust(6, "0")) if f else 0


def _ts_slow(s: str, aware: bool) -> datetime | int | TemporalSentinel:
    """Infinity, BC and year > 9999 timestamps; out of Python's range -> epoch µs."""
    if s == "infinity":
        return POS_INFINITY
    if s == "-infinity":
        return NEG_INFINITY
    m = _TS_RE.fullmatch(s)
    if m is None or (m[8] is not None) != aware:
        raise ValueError("not an ISO timestamp (set DateStyle=ISO)")
    y = _year(m[1], m[12])
    us = (
        (_days_from_civil(y, int(m[2]), int(m[3])) * 86400 + int(m[4]) * 3600 + int(m[5]) * 60)
        + int(m[6])
    ) * 1_000_000 + _fraction_us(m[7])
    if aware:
        offset = int(m[9]) * 3600 + int(m[10] or 0) * 60 + int(m[11] or 0)
        us -= (offset if m[8] == "+" else -offset) * 1_000_000
    try:
        return (
            _EPOCH_AWARE + timedelta(microseconds=us)
            if aware
            else _EPOCH + timedelta(microseconds=us)
        )
    except OverflowError:
        return us  # outside Python's datetime range: µs since the unix epoch


def _timestamp(s: str) -> datetime | int | TemporalSentinel:
    if len(s) >= 19 and s[4] == "-" and s[-1] != "C":
        return datetime.fromisoformat(s)
    return _ts_slow(s, False)


def _timestamptz(s: str) -> datetime | int | TemporalSentinel:
    if len(s) >= 22 and s[4] == "-" and s[-1] != "C":
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is _UTC:
            return dt
        try:
            return dt.astimezone(_UTC)
        except OverflowError:
            pass  # e.g. 9999-12-31 23:00-05: representable only as epoch µs
    return _ts_slow(s, True)


def _time(s: str) -> timedelta:
    m = _TIME_RE.fullmatch(s)
    if m is None:
        raise ValueError("not a time of day")
    return timedelta(
        hours=int(m[1]), minutes=int(m[2]), seconds=int(m[3]), microseconds=_fraction_us(m[4])
    )


def _timetz(s: str) -> str:
    """``HH:MM:SS[.f]+HH:MM[:SS]``: PostgreSQL's text with the offset written in full."""
    m = _TIMETZ_RE.fullmatch(s)
    if m is None:
        raise ValueError("not a time with time zone")
    tail = f":{m[5]}" if m[5] else ""
    return f"{m[1]}{m[2]}{m[3]}:{m[4] or '00'}{tail}"


_INTERVAL_RE: Final = re.compile(
    r"(?:([+-]?\d+) years?)? ?(?:([+-]?\d+) mons?)? ?(?:([+-]?\d+) days?)? ?"
    r"(?:([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?"
)


def interval_to_iso(s: str) -> str:
    """Convert an interval in IntervalStyle ``postgres`` to ISO 8601.

    The result is exactly what the server prints with IntervalStyle
    ``iso_8601`` (``P1Y2M3DT4H5M6.5S``; each field keeps its own sign, as
    PostgreSQL's fields do). Input already in ISO form passes through;
    ``infinity``/``-infinity`` (PostgreSQL 17+) stay as those words.
    """
    if s.startswith("P") or s in ("infinity", "-infinity"):
        return s
    m = _INTERVAL_RE.fullmatch(s)
    if m is None or not s:
        raise ValueError("not an interval in IntervalStyle postgres")
    years, mons, days = int(m[1] or 0), int(m[2] or 0), int(m[3] or 0)
    hours = int(m[5] or 0)
    mins = int(m[6] or 0)
    secs = int(m[7] or 0)
    frac = m[8] or ""
    neg = m[4] == "-"
    parts = ["P"]
    if years:
        parts.append(f"{years}Y")
    if mons:
        parts.append(f"{mons}M")
    if days:
        parts.append(f"{days}D")
    frac = frac.rstrip("0")
    if hours or mins or secs or frac:
        sign = "-" if neg else ""
        parts.append("T")
        if hours:
            parts.append(f"{sign}{hours}H")
        if mins:
            parts.append(f"{sign}{mins}M")
        if secs or frac:
            parts.append(f"{sign}{secs}{'.' + frac if frac else ''}S")
    return "".join(parts) if len(parts) > 1 else "PT0S"


# --- arrays ------------------------------------------------------------------

_QUOTED: Final = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_BACKSLASH: Final = re.compile(r"\\(.)", re.S)


def _array_converter(conv: TextConverter, delim: str) -> Callable[[str], list[Any]]:
    """Build a parser for array literals (``{1,NULL,"a b"}``, nested ``{{..},{..}}``)."""

    def parse(s: str) -> list[Any]:
        if s[:1] == "[":
            # '[0:2]={...}': PostgreSQL prints bounds only when one isn't 1.
            raise ValueError(
                "arrays with a lower bound other than 1 are not supported "
                f"(dimensions {s[: s.find('=')]!r})"
            )
        if s[:1] != "{" or s[-1:] != "}":
            raise ValueError("not an array literal")
        inner = s[1:-1]
        if not inner:
            return []
        if '"' not in inner and "{" not in inner and "\\" not in inner:
            return [None if e == "NULL" else conv(e) for e in inner.split(delim)]
        return _parse_array(s, conv, delim)

    return parse


def _parse_array(s: str, conv: TextConverter, delim: str) -> list[Any]:
    """General case: nesting, quoting, escapes. Strict about structure."""
    root: list[Any] = []
    stack: list[list[Any]] = []
    cur: list[Any] | None = None
    expect_item = True  # after '{' or a delimiter
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "{":
            new: list[Any] = []
            if cur is None:
                if i:
                    raise ValueError(f"unexpected '{{' at {i}")
                root = new
            else:
                if not expect_item:
                    raise ValueError(f"unexpected '{{' at {i}")
                cur.append(new)
                stack.append(cur)
            cur = new
            expect_item = True
            i += 1
        elif c == "}":
            if cur is None or (expect_item and cur):
                raise ValueError(f"unexpected '}}' at {i}")
            cur = stack.pop() if stack else None
            expect_item = False
            i += 1
            if cur is None and i != n:
                raise ValueError(f"text after the array at {i}")
        elif c == delim:
            if expect_item or cur is None:
                raise ValueError(f"unexpected {delim!r} at {i}")
            expect_item = True
            i += 1
        elif cur is None or not expect_item:
            raise ValueError(f"unexpected {c!r} at {i}")
        elif c == '"':
            m = _QUOTED.match(s, i)
            if m is None:
                raise ValueError(f"unterminated quoted element at {i}")
            text = m[1]
            cur.append(conv(_BACKSLASH.sub(r"\1", text) if "\\" in text else text))
            expect_item = False
            i = m.end()
        else:
            j = i
            while j < n and s[j] != delim and s[j] != "}":
                j += 2 if s[j] == "\\" else 1
            tok = s[i:j].strip()
            if tok.upper() == "NULL":
                cur.append(None)
            else:
                cur.append(conv(_BACKSLASH.sub(r"\1", tok) if "\\" in tok else tok))
            expect_item = False
            i = j
    if cur is not None or stack:
        raise ValueError("unterminated array literal")
    return root


def _array(oid: int, typmod: int, elem: PgType, delim: str) -> PgType:
    et = elem.column_type
    ct = ColumnType(Kind.ARRAY, native=f"{et.native}[]", element=et)
    return PgType(oid, typmod, ct, _array_converter(elem.from_text, delim))


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
    16: _fixed(Kind.BOOLEAN, "boolean", _bool),
    17: _fixed(Kind.BYTES, "bytea", _bytea),
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
    790: _fixed(Kind.DECIMAL, "money", _money, precision=19, scale=2),
    1700: _Builtin(_numeric_type, Decimal),
    1042: _Builtin(lambda tm: _char_type("character", "bpchar", tm), str),
    1043: _Builtin(lambda tm: _char_type("character varying", "character varying", tm), str),
    1082: _fixed(Kind.DATE, "date", _date),
    1083: _Builtin(lambda tm: _time_type(Kind.TIME, "time", "without time zone", tm), _time),
    1266: _Builtin(lambda tm: _time_type(Kind.TIMETZ, "time", "with time zone", tm), _timetz),
    1114: _Builtin(
        lambda tm: _time_type(Kind.TIMESTAMP, "timestamp", "without time zone", tm), _timestamp
    ),
    1184: _Builtin(
        lambda tm: _time_type(Kind.TIMESTAMPTZ, "timestamp", "with time zone", tm), _timestamptz
    ),
    1186: _Builtin(_interval_type, interval_to_iso),
    1560: _Builtin(lambda tm: _bit_type("bit", Kind.BITS, tm), _bits),
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
