"""The MariaDB/MySQL run encoder (connectors/mysql/sink/runs.py, _crun.c): the C walker
and the Python reference agree byte for byte on generated rows (values at the edges of
MariaDB's types and beyond them), each taken value's literal is the one an independent
writer gives for the decoded value, and refused values are exactly those the general
path must judge."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.events import ChangeEvent, Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.serde import AvroSerde, DecodedChange, InMemorySchemaRegistry
from cdc.spi import ReplicaColumn, ReplicaTable, TableName
from connectors.mysql.sink import runs
from tests.unit.serde.strategies import pg_source, values

# (name, column type, replica data_type, type_text, length, precision, scale, fraction)
_FAMILIES: list[tuple[str, ColumnType, str, str, int | None, int | None, int | None, int | None]] = [
    ("b", ColumnType(Kind.BOOLEAN, "boolean"), "tinyint", "tinyint(1)", None, None, None, None),
    ("i2", ColumnType(Kind.INT16, "smallint"), "smallint", "smallint(6)", None, None, None, None),
    ("i4", ColumnType(Kind.INT32, "integer"), "int", "int(11)", None, None, None, None),
    ("u4", ColumnType(Kind.INT64, "bigint"), "int", "int(10) unsigned", None, None, None, None),
    ("i8", ColumnType(Kind.INT64, "bigint"), "bigint", "bigint(20)", None, None, None, None),
    ("t1", ColumnType(Kind.INT32, "integer"), "tinyint", "tinyint(4)", None, None, None, None),
    ("f8", ColumnType(Kind.FLOAT64, "double precision"), "double", "double", None, None, None, None),
    ("t", ColumnType(Kind.STRING, "text"), "text", "text", 65535, None, None, None),
    ("tt", ColumnType(Kind.STRING, "text"), "tinytext", "tinytext", 255, None, None, None),
    ("vc", ColumnType(Kind.STRING, "varchar(5)", length=5), "varchar", "varchar(5)", 5, None,
     None, None),
    ("d", ColumnType(Kind.DATE, "date"), "date", "date", None, None, None, None),
    ("ts", ColumnType(Kind.TIMESTAMP, "timestamp"), "datetime", "datetime(6)", None, None, None, 6),
    ("ts0", ColumnType(Kind.TIMESTAMP, "timestamp"), "datetime", "datetime", None, None, None, 0),
    ("tz", ColumnType(Kind.TIMESTAMPTZ, "timestamptz"), "datetime", "datetime(6)", None, None,
     None, 6),
    ("tz3", ColumnType(Kind.TIMESTAMPTZ, "timestamptz"), "timestamp", "timestamp(3)", None, None,
     None, 3),
    ("uu", ColumnType(Kind.UUID, "uuid"), "char", "char(36)", 36, None, None, None),
    ("mu", ColumnType(Kind.UUID, "uuid"), "uuid", "uuid", None, None, None, None),
    ("by", ColumnType(Kind.BYTES, "bytea"), "varbinary", "varbinary(8)", 8, None, None, None),
    ("bl", ColumnType(Kind.BYTES, "bytea"), "blob", "blob", 65535, None, None, None),
    ("n", ColumnType(Kind.DECIMAL, "numeric(10,2)", precision=10, scale=2), "decimal",
     "decimal(10,2)", None, 10, 2, None),
    ("n5", ColumnType(Kind.DECIMAL, "numeric(12,4)", precision=12, scale=4), "decimal",
     "decimal(6,1)", None, 6, 1, None),
]  # fmt: skip

SCHEMA = TableSchema(
    TableId("app", "public", "myrun"),
    (Column("id", ColumnType(Kind.INT64, "bigint"), nullable=False),
     *(Column(name, ct, nullable=True) for name, ct, *_ in _FAMILIES)),
    ("id",),
)
REPLICA = ReplicaTable(
    TableName(None, "myrun"),
    (ReplicaColumn("id", "bigint(20)", "bigint", False, kind=Kind.INT64),
     *(ReplicaColumn(name, tt, dt, True, length=ln, precision=p, scale=s, fraction=f)
       for name, _, dt, tt, ln, p, s, f in _FAMILIES)),
    ("id",),
)
_serde = AvroSerde(InMemorySchemaRegistry())
_ENC: dict[tuple[int, bool], list[Any]] = {}


def _event(i: int, row: dict[str, Any], op: Op = Op.CREATE) -> ChangeEvent:
    return ChangeEvent(op, SCHEMA, {"id": row["id"]}, None, row, pg_source(index=i), 1)


def _encoders(value: bytes, updates: bool = False) -> list[Any]:
    sid = int.from_bytes(value[1:5], "big")
    hit = _ENC.get((sid, updates))
    if hit is None:
        reader = _serde._envelope_reader(sid)
        hit = []
        for use_native in (True, False):
            enc = runs.compile_encoder(
                reader.writer.schema, reader.writer.named, reader.rows.columns,
                [c.name for c in SCHEMA.columns], SCHEMA.primary_key, REPLICA,
                use_native=use_native, updates=updates,
            )
            assert enc is not None
            hit.append(enc)
        if runs.native_loaded():
            assert hit[0].program is not None
        _ENC[(sid, updates)] = hit
    return hit


def _literal(v: Any) -> str:
    """An independent writer of the literal each taken value must have."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if "e" in r else r + "e0"
    if isinstance(v, uuid.UUID):
        return f"'{v}'"
    if isinstance(v, bytes):
        return "X'" + v.hex().upper() + "'"
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "''") + "'"
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            v = v.astimezone(UTC).replace(tzinfo=None)
        frac = f".{v.microsecond:06d}" if v.microsecond else ""
        return f"'{v.year:04d}-{v.month:02d}-{v.day:02d} {v:%H:%M:%S}{frac}'"
    if isinstance(v, date):
        return f"'{v.year:04d}-{v.month:02d}-{v.day:02d}'"
    if isinstance(v, Decimal):
        return format(v, "f")
    raise AssertionError(type(v))


def _must_refuse(row: dict[str, Any]) -> bool:
    """Whether the general path must judge this row."""
    for name, _, dt, tt, ln, p, s, f in _FAMILIES:
        v = row.get(name)
        if v is None:
            continue
        if isinstance(v, float) and not math.isfinite(v):
            return True
        if dt in ("date", "datetime", "timestamp") and not isinstance(v, date):
            return True
        if dt in ("datetime", "timestamp") and f is not None and v.microsecond % 10 ** (6 - f):
            return True
        if dt == "timestamp":
            naive = v.astimezone(UTC).replace(tzinfo=None)
            if not datetime(1970, 1, 1, 0, 0, 1) <= naive <= datetime(2038, 1, 19, 3, 14, 7, 999999):
                return True
        if isinstance(v, bytes) and len(v) > (ln or 0):
            return True
        if isinstance(v, str) and ("\x00" in v or (dt == "varchar" and len(v) > (ln or 0))
                                   or (dt.endswith("text") and len(v.encode()) > (ln or 0))):
            return True
        if dt in ("tinyint", "smallint", "int", "bigint") and not isinstance(v, bool):
            bits = {"tinyint": 8, "smallint": 16, "int": 32, "bigint": 64}[dt]
            lo, hi = ((0, 2**bits - 1) if "unsigned" in tt
                      else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1))
            if not lo <= v <= hi:
                return True
        if dt == "decimal":
            t = v.normalize().as_tuple() if v else Decimal(0).as_tuple()
            e = t.exponent
            assert isinstance(e, int) and p is not None and s is not None
            if -e > s or (v and v.adjusted() + 1 > p - s):
                return True
    return False


def _rows() -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, st.SearchStrategy[Any]] = {"id": st.integers(-(2**63), 2**63 - 1)}
    for name, ct, *_ in _FAMILIES:
        vs = values(ct)
        if ct.kind is Kind.STRING:
            vs = st.one_of(vs, st.sampled_from(["it's", "back\\slash", "a\\'b", "\\", "''"]))
        fields[name] = st.one_of(st.none(), vs)
    return st.fixed_dictionaries(fields)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows())
def test_native_and_reference_agree_and_literals_are_exact(row: dict[str, Any]) -> None:
    value = _serde.encode_value(_event(0, row))
    got = [e.encode([value], 0, 1, None, 5) for e in _encoders(value)]
    assert got[0] == got[1]
    n, payload, positions = got[0]
    canonical = _serde.decode(_serde.encode_key(_event(0, row)), value)
    assert isinstance(canonical, DecodedChange) and canonical.after is not None
    after = dict(canonical.after)
    if n == 1:
        expected = "(" + ",".join(_literal(after.get(c.name)) for c in REPLICA.columns) + ")"
        assert payload == expected.encode()
        assert positions == [canonical.source["cdc_position"]]
        assert not _must_refuse(after), f"took a row the general path must judge: {after}"
    else:
        assert (n, payload, positions) == (0, b"", [])
        assert _must_refuse(after), f"refused a row the encoder should take: {after}"


_PLAIN = {"id": 1, "b": True, "i2": -32768, "i4": 2**31 - 1, "u4": 2**32 - 1, "i8": -(2**63),
          "t1": -128, "f8": -0.0, "t": "é\U0001f600 it's \\", "tt": "x" * 255,
          "vc": "abcde", "d": date(1, 1, 1), "ts": datetime(9999, 12, 31, 23, 59, 59, 999999),
          "ts0": datetime(1969, 12, 31, 23, 59, 59), "tz": datetime(1, 1, 1, tzinfo=UTC),
          "tz3": datetime(2038, 1, 19, 3, 14, 7, 999000, tzinfo=UTC),
          "uu": uuid.UUID(int=2**128 - 1), "mu": uuid.UUID(int=0), "by": b"\x00'\\\xff" * 2,
          "bl": b"", "n": Decimal("-99999999.99"),
          "n5": Decimal("12345.1000")}  # fmt: skip


def test_runs_are_rows_joined_by_commas_and_end_at_max_bytes() -> None:
    rows = [{**_PLAIN, "id": i} for i in range(3)]
    vals = [_serde.encode_value(_event(i, r)) for i, r in enumerate(rows)]
    one = "(" + ",".join(_literal(rows[0].get(c.name)) for c in REPLICA.columns) + ")"
    for enc in _encoders(vals[0]):
        n, payload, positions = enc.encode(vals, 0, 3, None, 5)
        assert n == 3 and len(positions) == 3
        assert payload.count(b"),(") == 2 and payload.startswith(one.encode() + b",(")
    # a run stops once its payload holds MAX_BYTES (the statement size)
    big = {**_PLAIN, "t": "y" * 60_000}
    many = [_serde.encode_value(_event(i, {**big, "id": i})) for i in range(40)]
    for enc in _encoders(many[0]):
        n, payload, _ = enc.encode(many, 0, 40, None, 5)
        assert 0 < n < 40 and len(payload) >= runs.MAX_BYTES > len(payload) - 61_000


def test_truncated_and_garbage_bytes_are_refused_not_raised() -> None:
    v = _serde.encode_value(_event(0, _PLAIN))
    for enc in _encoders(v):
        for cut in range(5, len(v)):
            assert enc.encode([v[:cut]], 0, 1, None, 5)[0] == 0
        for i in range(5, len(v)):
            bad = v[:i] + bytes([v[i] ^ 0xFF]) + v[i + 1 :]
            got = enc.encode([bad], 0, 1, None, 5)
            assert got[0] in (0, 1)
        assert _encoders(v)[0].encode([bad], 0, 1, None, 5) == _encoders(v)[1].encode(
            [bad], 0, 1, None, 5)
