"""The run encoder (connectors/postgres/sink/copyrun.py, _ccopy.c) against psycopg.

Rows of every type family it converts, with edge values (hypothesis), are
encoded by the real serde; the C encoder and the pure-Python reference must
give the same result byte for byte, and every tuple they accept must equal
what psycopg's binary dumpers (the strict ones of .binary where the sink
installs them) write for the canonical values. A value they refuse must be
one the general path has to judge (NaN, sentinels, out-of-range, NUL...).
"""

from __future__ import annotations

import math
import struct
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.pq import Format

from cdc.events import ChangeEvent, Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.serde import AvroSerde, DecodedChange, InMemorySchemaRegistry
from cdc.spi import ReplicaColumn, ReplicaTable, TableName
from connectors.postgres.sink import binary, copyrun
from tests.unit.serde.strategies import pg_source, values

# (kind, column type, replica data_type, length, precision, scale, fraction)
_FAMILIES: list[tuple[str, ColumnType, str, int | None, int | None, int | None, int | None]] = [
    ("b", ColumnType(Kind.BOOLEAN, "boolean"), "bool", None, None, None, None),
    ("i2", ColumnType(Kind.INT16, "smallint"), "int2", None, None, None, None),
    ("i4", ColumnType(Kind.INT32, "integer"), "int4", None, None, None, None),
    ("i8", ColumnType(Kind.INT64, "bigint"), "int8", None, None, None, None),
    ("i8to4", ColumnType(Kind.INT64, "bigint"), "int4", None, None, None, None),
    ("f4", ColumnType(Kind.FLOAT32, "real"), "float4", None, None, None, None),
    ("f8", ColumnType(Kind.FLOAT64, "double precision"), "float8", None, None, None, None),
    ("t", ColumnType(Kind.STRING, "text"), "text", None, None, None, None),
    ("vc", ColumnType(Kind.STRING, "varchar(5)", length=5), "varchar", 5, None, None, None),
    ("by", ColumnType(Kind.BYTES, "bytea"), "bytea", None, None, None, None),
    ("d", ColumnType(Kind.DATE, "date"), "date", None, None, None, None),
    ("ts", ColumnType(Kind.TIMESTAMP, "timestamp"), "timestamp", None, None, None, 6),
    ("ts3", ColumnType(Kind.TIMESTAMP, "timestamp"), "timestamp", None, None, None, 3),
    ("tz", ColumnType(Kind.TIMESTAMPTZ, "timestamptz"), "timestamptz", None, None, None, 6),
    ("u", ColumnType(Kind.UUID, "uuid"), "uuid", None, None, None, None),
    ("n", ColumnType(Kind.DECIMAL, "numeric(10,2)", precision=10, scale=2), "numeric",
     None, 10, 2, None),
    ("n38", ColumnType(Kind.DECIMAL, "numeric(38,9)", precision=38, scale=9), "numeric",
     None, None, None, None),
    ("n5", ColumnType(Kind.DECIMAL, "numeric(12,4)", precision=12, scale=4), "numeric",
     None, 6, 1, None),
]
_KINDS = {
    "bool": Kind.BOOLEAN, "int2": Kind.INT16, "int4": Kind.INT32, "int8": Kind.INT64,
    "float4": Kind.FLOAT32, "float8": Kind.FLOAT64, "text": Kind.STRING, "varchar": Kind.STRING,
    "bytea": Kind.BYTES, "date": Kind.DATE, "timestamp": Kind.TIMESTAMP,
    "timestamptz": Kind.TIMESTAMPTZ, "uuid": Kind.UUID, "numeric": Kind.DECIMAL,
}  # fmt: skip

SCHEMA = TableSchema(
    TableId("app", "public", "copyrun"),
    (Column("id", ColumnType(Kind.INT64, "bigint"), nullable=False),
     *(Column(name, ct, nullable=True) for name, ct, *_ in _FAMILIES)),
    ("id",),
)
REPLICA = ReplicaTable(
    TableName("public", "copyrun"),
    (ReplicaColumn("id", "bigint", "int8", False, kind=Kind.INT64),
     *(ReplicaColumn(name, dt, dt, True, length=ln, precision=p, scale=s, fraction=f,
                     kind=_KINDS[dt])
       for name, _, dt, ln, p, s, f in _FAMILIES)),
    ("id",),
)

_serde = AvroSerde(InMemorySchemaRegistry())


def _event(i: int, row: dict[str, Any], op: Op = Op.CREATE) -> ChangeEvent:
    src = pg_source(index=i)
    return ChangeEvent(op, SCHEMA, {"id": row["id"]}, None, row, src, 1_767_225_600_000)


_COMPILED: dict[tuple[int, int, bool], list[copyrun.RunEncoder]] = {}


def _encoders(
    value: bytes, serde: AvroSerde = _serde, *, updates: bool = False
) -> list[copyrun.RunEncoder]:
    """The C and the Python encoder of ``value``'s schema (compiled once per schema)."""
    schema_id = int.from_bytes(value[1:5], "big")
    hit = _COMPILED.get((id(serde), schema_id, updates))
    if hit is not None:
        return hit
    reader = serde._envelope_reader(schema_id)
    out = []
    for native in (True, False):
        enc = copyrun.compile_encoder(
            reader.writer.schema, reader.writer.named, reader.rows.columns,
            [c.name for c in SCHEMA.columns], SCHEMA.primary_key, REPLICA, use_native=native,
            updates=updates,
        )
        assert enc is not None
        out.append(enc)
    if copyrun.native_loaded():
        assert out[0].program is not None
    if serde is _serde:
        _COMPILED[(id(serde), schema_id, updates)] = out
    return out


_STRICT = {"int2": binary._StrictInt2, "int4": binary._StrictInt4,
           "float4": binary._StrictFloat4, "bool": binary._StrictBool}  # fmt: skip


def _dump(dt: str, v: Any) -> bytes:
    """psycopg's binary dump of ``v`` for a column of type ``dt`` (as the sink's COPY)."""
    if dt in _STRICT:
        strict: Any = _STRICT[dt](type(v))
        return bytes(strict.dump(v))
    info = psycopg.adapters.types[dt]
    assert info is not None
    cls: Any = psycopg.adapters.get_dumper_by_oid(info.oid, Format.BINARY)
    return bytes(cls(type(v)).dump(v))


def _expected(row: dict[str, Any]) -> bytes:
    out = [struct.pack("!h", len(REPLICA.columns))]
    for rc in REPLICA.columns:
        v = row.get(rc.name)
        if v is None:
            out.append(b"\xff\xff\xff\xff")
            continue
        b = _dump(rc.data_type, v)
        out.append(struct.pack("!I", len(b)) + b)
    return b"".join(out)


def _encode_one(
    value: bytes, row: dict[str, Any], updates: bool = False
) -> tuple[int, bytes, list[str], DecodedChange, dict[str, Any]]:
    """``value`` through the C and the Python encoder (which must agree): ``(rows,
    payload, positions)`` with the record decoded canonically and its after image."""
    got = [e.encode([value], 0, 1, None, 5) for e in _encoders(value, updates=updates)]
    assert got[0] == got[1]
    n, payload, positions = got[0]
    canonical = _serde.decode(_serde.encode_key(_event(0, row)), value)
    assert isinstance(canonical, DecodedChange) and canonical.after is not None
    return n, payload, positions, canonical, dict(canonical.after)


def _must_refuse(row: dict[str, Any]) -> bool:
    """Whether the general path must judge this row (a value the encoder refuses)."""
    for name, _, dt, ln, p, s, f in _FAMILIES:
        v = row.get(name)
        if v is None:
            continue
        if isinstance(v, float) and math.isnan(v):
            return True
        if dt in ("date", "timestamp", "timestamptz") and not isinstance(v, date):
            return True  # sentinels, out-of-range ints
        if dt == "timestamp" and f is not None and f < 6 and v.microsecond % 10 ** (6 - f):
            return True
        if dt in ("text", "varchar") and ("\x00" in v or (ln is not None and len(v) > ln)):
            return True
        if dt == "int4" and not -(2**31) <= v < 2**31:
            return True
        if dt == "numeric" and p is not None:
            stripped = v.normalize() if v else Decimal(0)
            e = stripped.as_tuple().exponent
            assert isinstance(e, int)
            if -e > (s or 0) or (v and v.adjusted() + 1 > p - (s or 0)):
                return True
    return False


def _rows() -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, st.SearchStrategy[Any]] = {"id": st.integers(-(2**63), 2**63 - 1)}
    for name, ct, *_ in _FAMILIES:
        vs = values(ct)
        if ct.kind is Kind.INT64 and name == "i8to4":
            vs = st.one_of(st.integers(-(2**31), 2**31 - 1), vs)
        fields[name] = st.one_of(st.none(), vs)
    return st.fixed_dictionaries(fields)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows())
def test_encoder_matches_psycopg_and_the_reference(row: dict[str, Any]) -> None:
    value = _serde.encode_value(_event(0, row))
    n, payload, positions, canonical, after = _encode_one(value, row)
    if n == 1:
        assert payload == _expected(after)
        assert positions == [canonical.source["cdc_position"]]
    else:
        assert n == 0 and payload == b"" and positions == []
        assert _must_refuse(after), f"refused a row the encoder should take: {after}"


_PLAIN = {"id": 1, "b": True, "i2": -32768, "i4": 2**31 - 1, "i8": -(2**63), "i8to4": 5,
          "f4": -0.0, "f8": float("inf"), "t": "é\U0001f600", "vc": "abcde", "by": b"\x00\xff",
          "d": date(1, 1, 1), "ts": datetime(9999, 12, 31, 23, 59, 59, 999999),
          "ts3": datetime(2000, 1, 1, 0, 0, 0, 123000),
          "tz": datetime(1970, 1, 1, tzinfo=UTC), "u": uuid.UUID(int=2**128 - 1),
          "n": Decimal("-99999999.99"), "n38": Decimal("-99999999999999999999999999999.999999999"),
          "n5": Decimal("0.0000")}  # fmt: skip


def _run_values(rows: list[dict[str, Any]], ops: list[Op] | None = None) -> list[bytes]:
    ops = ops or [Op.CREATE] * len(rows)
    return [_serde.encode_value(_event(i, r, op)) for i, (r, op) in enumerate(zip(rows, ops, strict=True))]


def test_edge_row_is_taken() -> None:
    values_ = _run_values([_PLAIN])
    for enc in _encoders(values_[0]):
        n, payload, _ = enc.encode(values_, 0, 1, None, 5)
        assert n == 1
        assert payload == _expected(_PLAIN)


@pytest.mark.parametrize("stopper", ["update", "delete", "dup_key", "origin", "not_fit", "schema"])
def test_runs_stop_at_the_first_record_that_does_not_qualify(stopper: str) -> None:
    rows = [{**_PLAIN, "id": i} for i in range(5)]
    ops = [Op.CREATE, Op.READ, Op.CREATE, Op.CREATE, Op.CREATE]
    if stopper == "update":
        ops[2] = Op.UPDATE
    if stopper == "dup_key":
        rows[2]["id"] = 0
    if stopper == "not_fit":
        rows[2]["vc"] = "abcdef"
    values_: list[Any] = _run_values(rows, ops)
    if stopper == "delete":
        values_[2] = _serde.encode_value(
            ChangeEvent(Op.DELETE, SCHEMA, {"id": 2}, rows[2], None, pg_source(index=2), 1))
    if stopper == "schema":
        values_[2] = values_[2][:4] + bytes([values_[2][4] ^ 1]) + values_[2][5:]
    origin = None
    if stopper == "origin":
        ev = _event(2, rows[2])
        import dataclasses
        ev = dataclasses.replace(ev, source=dataclasses.replace(ev.source, origin="me"))
        values_[2] = _serde.encode_value(ev)
        origin = "me"
    for enc in _encoders(values_[0]):
        n, payload, positions = enc.encode(values_, 0, 5, origin, 5)
        assert n == 2 and len(positions) == 2
        assert payload == _expected(rows[0]) + _expected(rows[1])
        # and from the stopper on (a tombstone or a value of another schema: no run at all)
        n2, _, _ = enc.encode(values_, 3, 5, origin, 5)
        assert n2 == 2
        assert enc.encode([None, *values_], 0, 3, origin, 5)[0] == 0


def test_truncated_and_garbage_bytes_are_refused_not_raised() -> None:
    v = _run_values([_PLAIN])[0]
    for enc in _encoders(v):
        for cut in range(5, len(v)):
            assert enc.encode([v[:cut]], 0, 1, None, 5)[0] == 0
        assert enc.encode([v + b"\x00"], 0, 1, None, 5)[0] == 0


def _one_family_rows() -> st.SearchStrategy[dict[str, Any]]:
    """Rows with one non-null family column: most are taken, so each family's
    accepted values are compared with psycopg often."""
    nulls = {name: None for name, *_ in _FAMILIES}
    return st.sampled_from(_FAMILIES).flatmap(
        lambda fam: st.fixed_dictionaries({"id": st.integers(-(2**63), 2**63 - 1),
                                           fam[0]: values(fam[1])})
    ).map(lambda row: {**nulls, **row})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_one_family_rows())
def test_each_family_matches_psycopg(row: dict[str, Any]) -> None:
    test_encoder_matches_psycopg_and_the_reference.hypothesis.inner_test(row)  # type: ignore[attr-defined]


def test_runs_of_a_mysql_source_envelope() -> None:
    """Another source block (MySQL's: other fields around cdc_position) and MySQL's
    edge values: YEAR as int16, the zero date sentinel (refused: the general path
    decides), DATETIME(6) extremes."""
    from cdc.events import SourceInfo
    from cdc.serde import ZERO
    from connectors.mysql.position import BinlogFile, MySqlPosition

    def src(i: int) -> SourceInfo:
        pos = MySqlPosition(BinlogFile("mysql-bin.000001"), 4 + i, 0, last_in_tx=True)
        return SourceInfo("mysql", "srv", "0.1", "10.11", pos, 1_700_000_000_000, tx_id=None)

    rows = [{**_PLAIN, "id": i, "i2": 1901 + i} for i in range(3)]
    rows[2]["d"] = ZERO
    serde = AvroSerde(InMemorySchemaRegistry())  # (another source block: another schema)
    values_ = [serde.encode_value(ChangeEvent(Op.CREATE, SCHEMA, {"id": r["id"]}, None, r,
                                              src(i), 1)) for i, r in enumerate(rows)]  # fmt: skip
    for enc in _encoders(values_[0], serde):
        n, payload, positions = enc.encode(values_, 0, 3, None, 5)
        assert n == 2
        assert payload == _expected(rows[0]) + _expected(rows[1])
        assert all(p.startswith("mysql") or "mysql-bin" in p for p in positions)


def test_long_runs_grow_the_key_set_and_still_stop_at_a_repeated_key() -> None:
    rows = [{**_PLAIN, "id": i, "t": f"row {i}"} for i in range(300)]
    rows.append({**_PLAIN, "id": 123})  # the same key again: the run ends before it
    values_ = _run_values(rows)
    expected = b"".join(_expected(r) for r in rows[:300])
    for enc in _encoders(values_[0]):
        n, payload, positions = enc.encode(values_, 0, len(values_), None, 5)
        assert (n, len(positions)) == (300, 300)
        assert payload == expected
        assert enc.encode(values_, 250, len(values_), None, 5)[0] == 51


# -- update runs ------------------------------------------------------------------------


def _update(i: int, row: dict[str, Any], before: dict[str, Any] | None) -> bytes:
    src = pg_source(index=i)
    return _serde.encode_value(
        ChangeEvent(Op.UPDATE, SCHEMA, {"id": row["id"]}, before, row, src, 1_767_225_600_000)
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rows(), st.sampled_from(["none", "same", "moved"]))
def test_update_encoder_matches_psycopg_and_the_reference(row: dict[str, Any], before: str) -> None:
    """An update's after image is encoded as an insert's row would be; a before image
    (REPLICA IDENTITY FULL) is allowed only with the same key (else a key change)."""
    old = None if before == "none" else {**row, "t": "old", "id": row["id"] ^ (before == "moved")}
    value = _update(0, row, old)
    n, payload, positions, canonical, after = _encode_one(value, row, updates=True)
    if n == 1:
        assert before != "moved"
        assert payload == _expected(after)
        assert positions == [canonical.source["cdc_position"]]
    else:
        assert n == 0 and payload == b"" and positions == []
        assert before == "moved" or _must_refuse(after), f"refused an update to take: {after}"
    # the insert encoder never takes an update, the update encoder never an insert
    for e in _encoders(value):
        assert e.encode([value], 0, 1, None, 5)[0] == 0
    insert = _serde.encode_value(_event(0, row))
    for e in _encoders(insert, updates=True):
        assert e.encode([insert], 0, 1, None, 5)[0] == 0


@pytest.mark.parametrize("stopper", ["insert", "moved", "dup_key", "not_fit", "before_not_fit"])
def test_update_runs_stop_at_the_first_record_that_does_not_qualify(stopper: str) -> None:
    rows = [{**_PLAIN, "id": i, "t": f"new {i}"} for i in range(5)]
    befores: list[dict[str, Any] | None] = [None, {**_PLAIN, "id": 1}, None, None, None]
    if stopper == "moved":
        befores[2] = {**_PLAIN, "id": 99}
    if stopper == "dup_key":
        rows[2]["id"] = 1
    if stopper == "not_fit":
        rows[2]["vc"] = "abcdef"
    if stopper == "before_not_fit":
        befores[2] = {**_PLAIN, "id": 2, "vc": "abcdef"}  # a key column only is read: taken
    values_ = [_update(i, r, b) for i, (r, b) in enumerate(zip(rows, befores, strict=True))]
    if stopper == "insert":
        values_[2] = _serde.encode_value(_event(2, rows[2]))
    want = 5 if stopper == "before_not_fit" else 2
    for enc in _encoders(values_[0], updates=True):
        n, payload, positions = enc.encode(values_, 0, 5, None, 5)
        assert n == want and len(positions) == want
        assert payload == b"".join(_expected(r) for r in rows[:want])
        assert enc.encode(values_, 3, 5, None, 5)[0] == 2


def test_update_before_image_truncated_or_garbage_is_refused_not_raised() -> None:
    v = _update(0, _PLAIN, dict(_PLAIN))
    for enc in _encoders(v, updates=True):
        assert enc.encode([v], 0, 1, None, 5)[0] == 1
        for cut in range(5, len(v)):
            assert enc.encode([v[:cut]], 0, 1, None, 5)[0] == 0
        assert enc.encode([v + b"\x00"], 0, 1, None, 5)[0] == 0
