"""Hypothesis strategies for tables of every neutral kind and their change events.

Shared by the pure round-trip tests and the Kafka/registry integration test.
Values are canonical (cdc.events docstring): what a source would put in a row,
including NaN, infinities, the temporal sentinels, extremes and unicode.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

from hypothesis import strategies as st

from cdc.events import (
    ChangeEvent,
    Column,
    ColumnType,
    Kind,
    Op,
    SourceInfo,
    TableId,
    TableSchema,
    TransactionInfo,
)
from cdc.serde.temporal import (
    DATE_WIRE,
    NEG_INFINITY,
    POS_INFINITY,
    ZERO,
    TemporalSentinel,
)
from cdc.serde.value_codecs import shortest_float32
from connectors.mysql.position import BinlogFile, GtidSet, MySqlPosition
from connectors.postgres.position import Lsn, PgPosition

_CTX = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
SENTINELS = st.sampled_from([POS_INFINITY, NEG_INFINITY, ZERO])
_SCALAR_KINDS = [k for k in Kind if k is not Kind.ARRAY]
_OFFSETS = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8)),
            timezone(timedelta(hours=14))]  # fmt: skip


def _decimal_types() -> st.SearchStrategy[ColumnType]:
    fixed = st.integers(1, 65).flatmap(
        lambda p: st.builds(
            lambda s: ColumnType(Kind.DECIMAL, f"numeric({p},{s})", precision=p, scale=s),
            st.integers(0, min(p, 30)),
        )
    )
    return st.one_of(
        fixed,
        st.just(ColumnType(Kind.DECIMAL, "numeric")),  # unconstrained
        st.just(ColumnType(Kind.DECIMAL, "numeric(5,-2)", precision=5, scale=-2)),
        st.just(ColumnType(Kind.DECIMAL, "numeric", nan=True)),
        st.just(ColumnType(Kind.DECIMAL, "numeric(10,2)", precision=10, scale=2, nan=True)),
    )


def scalar_type(kind: Kind) -> st.SearchStrategy[ColumnType]:
    """Column types of one (non-array) kind, with the variants the mapping distinguishes."""
    if kind is Kind.DECIMAL:
        return _decimal_types()
    if kind in (Kind.ENUM, Kind.SET):
        return st.lists(
            st.text("abcdefghij-_ é", min_size=1, max_size=6),
            min_size=1, max_size=5, unique=True,
        ).map(lambda vs: ColumnType(kind, str(kind), values=tuple(vs)))  # fmt: skip
    if kind is Kind.BITS:
        return st.integers(1, 80).map(lambda n: ColumnType(Kind.BITS, f"bit({n})", length=n))
    if kind is Kind.INT16:
        return st.sampled_from([ColumnType(Kind.INT16, "smallint"), ColumnType(Kind.INT16, "year")])
    return st.just(ColumnType(kind, str(kind)))


def scalar_types() -> st.SearchStrategy[ColumnType]:
    return st.sampled_from(_SCALAR_KINDS).flatmap(scalar_type)


def _array_of(el: ColumnType) -> ColumnType:
    return ColumnType(Kind.ARRAY, f"{el.native}[]", element=el)


def column_types() -> st.SearchStrategy[ColumnType]:
    """Any kind; arrays of any element kind nested up to three levels."""
    s = scalar_types()
    return st.one_of(
        s, s, s, s.map(_array_of), s.map(_array_of).map(_array_of),
        s.map(_array_of).map(_array_of).map(_array_of),
    )  # fmt: skip


@st.composite
def every_kind_schemas(draw: st.DrawFn) -> TableSchema:
    """A table with a column of every kind and an array column of every kind."""
    columns = [Column("id", ColumnType(Kind.INT64, "bigint"), nullable=False)]
    for kind in _SCALAR_KINDS:
        ct = draw(scalar_type(kind))
        columns.append(Column(f"c_{kind}", ct, nullable=draw(st.booleans())))
        columns.append(Column(f"a_{kind}", _array_of(ct)))
    columns.append(Column("nested", _array_of(_array_of(draw(scalar_types())))))
    return TableSchema(TableId("db", "public", "every_kind"), tuple(columns), ("id",))


def _fixed_decimal(p: int, s: int) -> st.SearchStrategy[Decimal]:
    limit = 10**p - 1
    return st.integers(-limit, limit).map(lambda n: Decimal(n).scaleb(-s, _CTX))


# Microseconds since 1970 outside Python's datetime range (PostgreSQL BC years,
# years above 9999): the canonical int form of TIMESTAMP and TIMESTAMPTZ.
_MIN_US = (datetime.min - datetime(1970, 1, 1)) // timedelta(microseconds=1)
_MAX_US = (datetime.max - datetime(1970, 1, 1)) // timedelta(microseconds=1)
_OUT_OF_RANGE_MICROS = st.one_of(
    st.integers(-(2**63) + 2, _MIN_US - 1), st.integers(_MAX_US + 1, 2**63 - 2)
)

_FINITE_DECIMALS = st.decimals(allow_nan=False, allow_infinity=False).filter(
    lambda d: abs(int(d.as_tuple().exponent)) < 10_000
)


def values(ct: ColumnType) -> st.SearchStrategy[Any]:
    """Canonical non-null values of a column type."""
    k = ct.kind
    if k is Kind.BOOLEAN:
        return st.booleans()
    if k is Kind.INT16:
        return st.integers(-(2**15), 2**15 - 1)
    if k is Kind.INT32:
        return st.integers(-(2**31), 2**31 - 1)
    if k is Kind.INT64:
        return st.integers(-(2**63), 2**63 - 1)
    if k is Kind.UINT64:
        return st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 2**63, 2**64 - 1]))
    if k is Kind.FLOAT32:
        return st.floats(width=32).map(shortest_float32)
    if k is Kind.FLOAT64:
        return st.floats()
    if k is Kind.DECIMAL:
        if ct.nan:
            base = (
                _fixed_decimal(ct.precision, ct.scale or 0)
                if ct.precision is not None
                else _FINITE_DECIMALS
            )
            return st.one_of(
                base, st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
            )
        if ct.precision is not None and 0 <= (ct.scale or 0) <= ct.precision:
            return _fixed_decimal(ct.precision, ct.scale or 0)
        return _FINITE_DECIMALS
    if k in (Kind.STRING, Kind.JSON, Kind.TIMETZ, Kind.INTERVAL):
        return st.text()
    if k is Kind.ENUM:
        return st.sampled_from(ct.values)
    if k is Kind.SET:
        return st.lists(st.sampled_from(ct.values), unique=True).map(",".join)
    if k in (Kind.BYTES, Kind.GEOMETRY):
        return st.binary()
    if k is Kind.BITS:
        n = ((ct.length or 8) + 7) // 8
        return st.binary(min_size=n, max_size=n)
    if k is Kind.UUID:
        return st.uuids()
    if k is Kind.DATE:
        out_of_range = st.one_of(
            st.integers(-2_451_545, date.min.toordinal() - 719_163 - 1),
            st.integers(date.max.toordinal() - 719_163 + 1, 2_147_483_000),
        ).filter(lambda n: n not in DATE_WIRE.values())
        return st.one_of(st.dates(), out_of_range, SENTINELS)
    if k is Kind.TIME:
        return st.timedeltas(min_value=-timedelta(hours=838, minutes=59, seconds=59),
                             max_value=timedelta(hours=838, minutes=59, seconds=59))  # fmt: skip
    if k is Kind.TIMESTAMP:
        return st.one_of(st.datetimes(), _OUT_OF_RANGE_MICROS, SENTINELS)
    if k is Kind.TIMESTAMPTZ:
        aware = st.datetimes(
            min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
            timezones=st.sampled_from(_OFFSETS),
        )  # fmt: skip
        return st.one_of(aware, _OUT_OF_RANGE_MICROS, SENTINELS)
    if k is Kind.ARRAY:
        assert ct.element is not None
        return st.integers(1, 3).flatmap(lambda depth: nested_lists(values(ct.element), depth))
    raise AssertionError(f"no strategy for {k}")


def nested_lists(leaf: st.SearchStrategy[Any], depth: int) -> st.SearchStrategy[list[Any]]:
    """Array values of ``depth`` dimensions (PostgreSQL arrays of any dimensionality):
    NULL elements, empty inner arrays, and (for depth 1) flat lists."""
    if depth <= 1:
        return st.lists(st.one_of(st.none(), leaf), max_size=4)
    return st.lists(nested_lists(leaf, depth - 1), max_size=3)


_NAMES = st.one_of(
    st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
    st.text(min_size=1, max_size=8),  # unicode, spaces, dashes: sanitised names
)


@st.composite
def table_schemas(draw: st.DrawFn, *, max_columns: int = 8) -> TableSchema:
    names = draw(st.lists(_NAMES, min_size=1, max_size=max_columns, unique=True))
    columns = []
    for i, name in enumerate(names):
        ct = draw(column_types())
        nullable = i > 0 and draw(st.booleans())  # the first column is the key
        if i == 0 and (ct.kind in (Kind.FLOAT32, Kind.FLOAT64, Kind.ARRAY) or ct.nan):
            ct = ColumnType(Kind.INT64, "bigint")  # key values NaN cannot be keys
        default = draw(st.one_of(st.none(), st.just("nextval('s')")))
        columns.append(Column(name, ct, nullable, default))
    pk = (names[0],) if draw(st.integers(0, 9)) else ()
    table = TableId(draw(st.sampled_from(["shop", "db-1"])), "public", draw(_NAMES))
    return TableSchema(table, tuple(columns), pk)


@st.composite
def rows(draw: st.DrawFn, schema: TableSchema) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for c in schema.columns:
        if c.nullable and draw(st.integers(0, 4)) == 0:
            row[c.name] = None
        else:
            row[c.name] = draw(values(c.type))
    return row


def pg_source(name: str = "srv", *, ts_ms: int = 1_767_225_600_000, index: int = 0) -> SourceInfo:
    return SourceInfo(
        connector="postgresql",
        name=name,
        version="0.1.0",
        db_version="18.6",
        position=PgPosition(Lsn(0x16_B374_D848), index=index),
        ts_ms=ts_ms,
        tx_id="7301",
    )


@st.composite
def sources(draw: st.DrawFn, name: str = "srv") -> SourceInfo:
    if draw(st.booleans()):
        position: PgPosition | MySqlPosition = PgPosition(
            Lsn(draw(st.integers(0, 2**63 - 1))),
            index=draw(st.integers(0, 10**6)),
            snapshot=draw(st.booleans()),
            last_in_tx=draw(st.booleans()),
        )
        connector = "postgresql"
        tx = draw(st.one_of(st.none(), st.integers(0, 2**32).map(str)))
    else:
        position = MySqlPosition(
            BinlogFile(f"mysql-bin.{draw(st.integers(1, 999999)):06d}"),
            draw(st.integers(4, 2**40)),
            index=draw(st.integers(0, 1000)),
            gtid_set=GtidSet.parse(draw(st.sampled_from(["", "0-1-8", "0-1-8,1-2-5"]))),
            gtid=draw(st.one_of(st.none(), st.just("0-1-9"))),
            server_id=draw(st.integers(1, 2**32 - 1)),
            snapshot=draw(st.booleans()),
        )
        connector = draw(st.sampled_from(["mysql", "mariadb"]))
        tx = draw(st.one_of(st.none(), st.just("0-1-9")))
    return SourceInfo(
        connector=connector,
        name=name,
        version="0.1.0",
        db_version=draw(st.sampled_from(["", "18.6", "10.11.19-MariaDB"])),
        position=position,
        ts_ms=draw(st.integers(0, 2**45)),
        tx_id=tx,
        snapshot=draw(st.sampled_from(["false", "true", "last", "incremental"])),
        origin=draw(st.one_of(st.none(), st.text(max_size=10))),
    )


@st.composite
def change_events(draw: st.DrawFn, schema: TableSchema | None = None) -> ChangeEvent:
    """An event of any op over any table (or the given one), with a consistent key."""
    if schema is None:
        schema = draw(table_schemas())
    op = draw(st.sampled_from([Op.CREATE, Op.READ, Op.UPDATE, Op.DELETE, Op.TRUNCATE]))
    before = after = key = None
    unchanged: frozenset[str] = frozenset()
    if op in (Op.CREATE, Op.READ, Op.UPDATE):
        after = draw(rows(schema))
    if op in (Op.UPDATE, Op.DELETE) and (op is Op.DELETE or draw(st.booleans())):
        before = draw(rows(schema))
        if op is Op.DELETE and schema.primary_key and draw(st.booleans()):
            before = {k: before[k] for k in schema.primary_key}  # key-only old image
    if op is Op.UPDATE and after is not None and draw(st.booleans()):
        candidates = [c.name for c in schema.columns if c.name not in schema.primary_key]
        unchanged = frozenset(draw(st.lists(st.sampled_from(candidates), unique=True))
                              if candidates else [])  # fmt: skip
        after = {k: v for k, v in after.items() if k not in unchanged}
    image = after if after is not None else before
    if schema.primary_key and image is not None and op is not Op.TRUNCATE:
        key = {k: image[k] for k in schema.primary_key}
        if after is not None and before is not None:
            before = {**before, **key}
    transaction = draw(st.one_of(
        st.none(),
        st.builds(TransactionInfo, st.text(min_size=1, max_size=12), st.integers(1, 2**40),
                  st.integers(1, 2**40)),
    ))  # fmt: skip
    return ChangeEvent(
        op=op,
        schema=schema,
        key=key,
        before=before,
        after=after,
        source=draw(sources()),
        ts_ms=draw(st.integers(0, 2**45)),
        transaction=transaction,
        unchanged=unchanged,
    )


# --------------------------------------------------------------------------- comparison


def same_value(ct: ColumnType, a: Any, b: Any) -> bool:
    """Canonical equality: NaN equals NaN, decimals exactly, aware times as instants in UTC."""
    if a is None or b is None:
        return a is b
    k = ct.kind
    if k is Kind.ARRAY:
        assert ct.element is not None
        el = ct.element
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(
                same_value(ct if isinstance(x, list) and el.kind is not Kind.ARRAY else el, x, y)
                for x, y in zip(a, b, strict=True)
            )
        )
    if isinstance(a, float):
        return (
            isinstance(b, float)
            and ((math.isnan(a) and math.isnan(b)) or a == b)
            and math.copysign(1, a) == math.copysign(1, b)
        )
    if isinstance(a, Decimal):
        if not isinstance(b, Decimal):
            return False
        if ct.precision is not None and not ct.nan and 0 <= (ct.scale or 0) <= ct.precision:
            return a == b and b.as_tuple().exponent == -(ct.scale or 0)
        if not a.is_finite() or not b.is_finite():
            return str(a) == str(b)  # NaN, sNaN, Infinity, signs
        # Exact value and exponent (a zero's sign has no Avro/Java spelling).
        return a == b and a.as_tuple().exponent == b.as_tuple().exponent
    if isinstance(a, TemporalSentinel):
        return a is b
    if k is Kind.TIMESTAMPTZ and isinstance(a, datetime):
        return isinstance(b, datetime) and b.tzinfo is UTC and a == b
    if k is Kind.UINT64 or k in (Kind.INT16, Kind.INT32, Kind.INT64):
        return type(b) is int and a == b
    if k in (Kind.DATE, Kind.TIMESTAMP, Kind.TIMESTAMPTZ) and isinstance(a, int):
        return type(b) is int and a == b
    return type(a) is type(b) and bool(a == b)


def same_row(schema: TableSchema, a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if set(a) != set(b):
        return False
    return all(same_value(schema.column(n).type, a[n], b[n]) for n in a)
