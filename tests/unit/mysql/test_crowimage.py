"""The C row-image decoder (``_crowimage``) against the Python one, the reference.

Both decode the same bytes: hypothesis-built rows of every type family the
source supports (random bytes of each column's storage shape, so invalid
dates, out-of-range decimal groups and undecodable text are covered too, and
valid values from encoders), with NULLs, as inserts and as update pairs.
Results must be identical (``repr``: value and type, Decimal exponents,
tzinfo), and an exception in one must be the same type in the other.
Truncated input must raise ValueError, never crash.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import struct
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from cdc.events import (
    ChangeEvent,
    ColumnType,
    Kind,
    Op,
    SourceInfo,
    TableId,
    TableSchema,
    TransactionInfo,
)
from connectors.mysql import types as t
from connectors.mysql.position import BinlogFile, GtidSet, MySqlPosition
from connectors.mysql.source import binlog, transaction
from connectors.mysql.source import rowimage as r
from connectors.mysql.types import BinlogColumn
from connectors.mysql.values import ColumnCodec, make_codec

from .test_rowimage import encode_datetime2, encode_decimal

pytestmark = pytest.mark.skipif(not r.native_available(), reason="_crowimage not built")

UTF8 = "utf8mb4_general_ci"


def col(name: str, code: int, **kw: Any) -> BinlogColumn:
    return BinlogColumn(name, code, **kw)


def codec_for(b: BinlogColumn, kind: Kind, native: str = "", zero_date: str = "null",
              nullable: bool = True) -> ColumnCodec:
    return make_codec(b.shape(), ColumnType(kind, native=native), nullable=nullable,
                      table="db.t", zero_date=zero_date, charset=b.charset)  # type: ignore[arg-type]


# ------------------------------------------------------------------ families
# Each family: (column, kind, native, cell strategy). A cell strategy makes the
# packed bytes of one non-NULL value (right length; content random or valid).


def _fixed(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


def _prefixed(prefix: int, content: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return content.map(lambda b: len(b).to_bytes(prefix, "little") + b)


def _decimal_cell(p: int, s: int) -> st.SearchStrategy[bytes]:
    size = len(encode_decimal(Decimal(0), p, s))
    valid = st.integers(min_value=-(10**p - 1), max_value=10**p - 1).map(
        lambda n: encode_decimal(Decimal(f"{n}E-{s}"), p, s)
    )
    return st.one_of(valid, _fixed(size))


def _datetime_cell(fsp: int) -> st.SearchStrategy[bytes]:
    valid = st.datetimes(min_value=datetime(1000, 1, 1)).map(
        lambda v: encode_datetime2(v.replace(microsecond=_trunc_micros(v.microsecond, fsp)), fsp)
    )
    zero = (0x8000000000).to_bytes(5, "big") + bytes((fsp + 1) // 2)
    return st.one_of(valid, _fixed(5 + (fsp + 1) // 2), st.just(zero))


def _trunc_micros(us: int, fsp: int) -> int:
    n = (fsp + 1) // 2
    return {0: 0, 1: us // 10000 * 10000, 2: us // 100 * 100, 3: us}[n]


def _timestamp_cell(fsp: int) -> st.SearchStrategy[bytes]:
    n = (fsp + 1) // 2
    return st.one_of(_fixed(4 + n), st.just(bytes(4 + n)))


def _date_cell() -> st.SearchStrategy[bytes]:
    valid = st.dates().map(lambda d: (d.year << 9 | d.month << 5 | d.day).to_bytes(3, "little"))
    return st.one_of(valid, _fixed(3), st.just(bytes(3)))


def _time2_cell(fsp: int) -> st.SearchStrategy[bytes]:
    return _fixed(3 + (fsp + 1) // 2)


def _json_cell() -> st.SearchStrategy[bytes]:
    # a few binary JSON scalars: literal (null/true/false), int64, string
    lit = st.sampled_from([b"\x04\x00", b"\x04\x01", b"\x04\x02"])
    i64 = st.integers(min_value=-(2**63), max_value=2**63 - 1).map(
        lambda n: b"\x09" + n.to_bytes(8, "little", signed=True))
    s = st.text(max_size=20).map(lambda x: x.encode()).map(lambda b: b"\x0c" + bytes([len(b)]) + b)
    return _prefixed(4, st.one_of(lit, i64, s))


def _geometry_cell() -> st.SearchStrategy[bytes]:
    return _prefixed(4, st.binary(min_size=5, max_size=40))


LABELS = ("a", "bb", "ccc", "d", "é")


def families() -> list[tuple[BinlogColumn, Kind, str, st.SearchStrategy[bytes]]]:
    fams: list[tuple[BinlogColumn, Kind, str, st.SearchStrategy[bytes]]] = []
    for code, size in ((t.T_TINY, 1), (t.T_SHORT, 2), (t.T_INT24, 3), (t.T_LONG, 4),
                       (t.T_LONGLONG, 8)):
        for unsigned in (False, True):
            kind = Kind.UINT64 if code == t.T_LONGLONG and unsigned else Kind.INT64
            cells = st.one_of(_fixed(size), st.just(b"\xff" * size), st.just(b"\x00" * size))
            fams.append((col("i", code, unsigned=unsigned), kind, "", cells))
    fams.append((col("f", t.T_FLOAT), Kind.FLOAT32, "", st.one_of(
        _fixed(4), st.floats(width=32, allow_nan=True).map(lambda x: struct.pack("<f", x)))))
    fams.append((col("d", t.T_DOUBLE), Kind.FLOAT64, "", _fixed(8)))
    for p, s in ((1, 0), (5, 2), (10, 0), (12, 2), (18, 9), (30, 30), (65, 30), (65, 0), (9, 4)):
        fams.append((col("n", t.T_NEWDECIMAL, precision=p, scale=s), Kind.DECIMAL, "",
                     _decimal_cell(p, s)))
    text = st.text(max_size=30).map(lambda x: x.encode())
    fams.append((col("s", t.T_VARCHAR, max_length=120, collation=UTF8), Kind.STRING, "",
                 _prefixed(1, st.one_of(text, st.binary(max_size=20)))))
    fams.append((col("s", t.T_VARCHAR, max_length=1020, collation=UTF8), Kind.STRING, "",
                 _prefixed(2, text)))
    fams.append((col("s", t.T_STRING, max_length=40, collation="latin1_swedish_ci"), Kind.STRING,
                 "", _prefixed(1, st.binary(max_size=20))))
    fams.append((col("s", t.T_VARCHAR, max_length=40, collation="ascii_general_ci"), Kind.STRING,
                 "", _prefixed(1, st.binary(max_size=20))))
    fams.append((col("b", t.T_STRING, max_length=8, collation="binary"), Kind.BYTES, "",
                 _prefixed(1, st.binary(max_size=8))))
    fams.append((col("b", t.T_VARCHAR, max_length=300, collation="binary"), Kind.BYTES, "",
                 _prefixed(2, st.binary(max_size=40))))
    for ls in (1, 2, 3, 4):
        fams.append((col("x", t.T_BLOB, length_size=ls, collation=UTF8), Kind.STRING, "",
                     _prefixed(ls, text)))
        fams.append((col("x", t.T_BLOB, length_size=ls, collation="binary"), Kind.BYTES, "",
                     _prefixed(ls, st.binary(max_size=40))))
    fams.append((col("u", t.T_STRING, max_length=16, collation="binary"), Kind.UUID, "uuid",
                 _prefixed(1, st.binary(min_size=16, max_size=16))))
    fams.append((col("ip", t.T_STRING, max_length=16, collation="binary"), Kind.STRING, "inet6",
                 _prefixed(1, st.binary(min_size=16, max_size=16))))
    fams.append((col("ip", t.T_STRING, max_length=4, collation="binary"), Kind.STRING, "inet4",
                 _prefixed(1, st.binary(min_size=4, max_size=4))))
    fams.append((col("e", t.T_ENUM, enum_values=LABELS, pack_size=1), Kind.ENUM, "",
                 _fixed(1)))
    fams.append((col("e", t.T_ENUM, enum_values=LABELS, pack_size=2), Kind.ENUM, "",
                 _fixed(2)))
    fams.append((col("st", t.T_SET, set_values=LABELS, pack_size=1), Kind.SET, "", _fixed(1)))
    many = tuple(f"v{i}" for i in range(64))
    fams.append((col("st", t.T_SET, set_values=many, pack_size=8), Kind.SET, "", _fixed(8)))
    for bits in (1, 7, 9, 64):
        fams.append((col("bt", t.T_BIT, bits=bits), Kind.BITS, "", _fixed((bits + 7) // 8)))
    fams.append((col("dt", t.T_DATE), Kind.DATE, "", _date_cell()))
    for fsp in range(7):
        fams.append((col("dt", t.T_DATETIME2, fsp=fsp), Kind.TIMESTAMP, "", _datetime_cell(fsp)))
        fams.append((col("ts", t.T_TIMESTAMP2, fsp=fsp), Kind.TIMESTAMPTZ, "",
                     _timestamp_cell(fsp)))
        fams.append((col("tm", t.T_TIME2, fsp=fsp), Kind.TIME, "", _time2_cell(fsp)))
    fams.append((col("y", t.T_YEAR), Kind.INT32, "", _fixed(1)))
    fams.append((col("g", t.T_GEOMETRY, length_size=4), Kind.GEOMETRY, "", _geometry_cell()))
    fams.append((col("j", t.T_JSON, length_size=4), Kind.JSON, "", _json_cell()))
    return fams


FAMILIES = families()


def decoders(columns: list[BinlogColumn], codecs: list[ColumnCodec]) -> tuple[Any, Any]:
    py = r.build_fast_decoder(columns, codecs, use_native=False)
    c = r.build_fast_decoder(columns, codecs, use_native=True)
    assert py is not None and c is not None and py.program is None and c.program is not None
    return py, c


def outcome(dec: Any, body: bytes, pairs: bool) -> tuple[str, str]:
    try:
        return ("ok", repr(dec.decode(body, 0, len(body), pairs)))
    except Exception as e:  # the type must agree, the message may differ
        return ("error", type(e).__name__)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[BinlogColumn], list[ColumnCodec], bytes, bool]:
    picks = draw(st.lists(st.sampled_from(range(len(FAMILIES))), min_size=1, max_size=12))
    zero_date = draw(st.sampled_from(["null", "min", "sentinel", "error"]))
    nullable = draw(st.booleans())
    columns, codecs, cells = [], [], []
    for i, k in enumerate(picks):
        b, kind, native, cell = FAMILIES[k]
        b = dataclasses.replace(b, name=f"{b.name}{i}", nullable=nullable)
        columns.append(b)
        codecs.append(codec_for(b, kind, native, zero_date, nullable))
        cells.append(cell)
    pairs = draw(st.booleans())
    nrows = draw(st.integers(min_value=1, max_value=4)) * (2 if pairs else 1)
    body = bytearray()
    n = len(columns)
    for _ in range(nrows):
        nulls = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        bitmap = sum(1 << i for i, isnull in enumerate(nulls) if isnull)
        bitmap |= draw(st.integers(0, 255)) << n  # padding bits: ignored
        body += (bitmap & ((1 << (8 * ((n + 7) // 8))) - 1)).to_bytes((n + 7) // 8, "little")
        for isnull, cell in zip(nulls, cells, strict=True):
            if not isnull:
                body += draw(cell)
    return columns, codecs, bytes(body), pairs


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_native_equals_python_on_generated_rows(
    case: tuple[list[BinlogColumn], list[ColumnCodec], bytes, bool],
) -> None:
    columns, codecs, body, pairs = case
    py, c = decoders(columns, codecs)
    assert outcome(c, body, pairs) == outcome(py, body, pairs)


@pytest.mark.parametrize("k", range(len(FAMILIES)), ids=lambda k: f"{FAMILIES[k][0].type_code}-{k}")
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_family_alone(k: int, data: st.DataObject) -> None:
    b, kind, native, cell = FAMILIES[k]
    codecs = [codec_for(b, kind, native)]
    py, c = decoders([b], codecs)
    body = b"\x00" + data.draw(cell) + b"\x01" + b"\x00" + data.draw(cell) + b"\x01"
    assert outcome(c, body, False) == outcome(py, body, False)
    assert outcome(c, body, True) == outcome(py, body, True)


def test_known_values() -> None:
    cols = [
        col("id", t.T_LONGLONG, unsigned=True),
        col("n", t.T_NEWDECIMAL, precision=12, scale=2),
        col("tm", t.T_TIME2, fsp=6),
        col("ts", t.T_TIMESTAMP2, fsp=6),
        col("f", t.T_FLOAT),
    ]
    kinds = [Kind.UINT64, Kind.DECIMAL, Kind.TIME, Kind.TIMESTAMPTZ, Kind.FLOAT32]
    codecs = [codec_for(b, k) for b, k in zip(cols, kinds, strict=True)]
    _, c = decoders(cols, codecs)
    # -838:59:59.000000 in TIME2(6): the server's packed value
    packed = -(((838 << 12) | (59 << 6) | 59) << 24)
    tm = (packed + 0x800000000000).to_bytes(6, "big")
    body = (
        b"\x00" + b"\xff" * 8 + encode_decimal(Decimal("-1234.50"), 12, 2) + tm
        + (1).to_bytes(4, "big") + (1).to_bytes(3, "big") + struct.pack("<f", 1.1)
    )
    (row,) = c.decode(body, 0, len(body), False)
    assert row == {
        "id": 2**64 - 1,
        "n": Decimal("-1234.50"),
        "tm": -timedelta(hours=838, minutes=59, seconds=59),
        "ts": datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=UTC),
        "f": 1.1,
    }
    assert str(row["n"]) == "-1234.50" and row["ts"].tzinfo is UTC


def test_zero_dates_follow_the_policy() -> None:
    b = col("d", t.T_DATE, nullable=False)
    for policy, want in (("null", date(1970, 1, 1)), ("min", date(1, 1, 1))):
        _, c = decoders([b], [codec_for(b, Kind.DATE, zero_date=policy, nullable=False)])
        assert c.decode(b"\x00" + bytes(3), 0, 4, False) == [{"d": want}]
    _, c = decoders([b], [codec_for(b, Kind.DATE, zero_date="error", nullable=False)])
    from cdc.errors import SerializationError

    with pytest.raises(SerializationError, match=r"db\.t\.d"):
        c.decode(b"\x00" + bytes(3), 0, 4, False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_truncated_input_raises_value_error(
    case: tuple[list[BinlogColumn], list[ColumnCodec], bytes, bool],
) -> None:
    columns, codecs, body, pairs = case
    py, c = decoders(columns, codecs)
    if outcome(py, body, pairs)[0] != "ok":
        return
    for cut in range(len(body)):
        try:
            c.decode(body[:cut], 0, cut, pairs)
        except ValueError:
            pass
        except Exception as e:  # a Python column decoder (JSON, UUID...) on short bytes
            assert not isinstance(e, SystemError | MemoryError), e
        # else: the cut fell on a row boundary (a shorter, valid body)


def test_bad_arguments_are_errors_not_crashes() -> None:
    b = col("i", t.T_LONG)
    _, c = decoders([b], [codec_for(b, Kind.INT32)])
    prog = c.program
    with pytest.raises(ValueError):
        prog.decode(b"\x00\x01", 0, 5, False)
    with pytest.raises(ValueError):
        prog.decode(b"\x00\x01", -1, 2, False)
    with pytest.raises(TypeError):
        prog.decode(bytearray(b"\x00"), 0, 1, False)
    native = r._native
    with pytest.raises(ValueError):
        native.Program(("a",), ((native.OP_INT, 5, 0, None, None),))
    with pytest.raises(ValueError):
        native.Program(("a",), ((99, 0, 0, None, None),))
    with pytest.raises(ValueError):
        native.Program(("a", "b"), ((native.OP_YEAR, 0, 0, None, None),))
    with pytest.raises(TypeError):
        native.Program(("a",), (("x",),))


def test_json_null_and_python_fallback_columns() -> None:
    b = col("j", t.T_JSON, length_size=4)
    py, c = decoders([b], [codec_for(b, Kind.JSON)])
    doc = b"\x0c\x02hi"
    body = b"\x00" + len(doc).to_bytes(4, "little") + doc
    got = c.decode(body, 0, len(body), False)
    assert got == py.decode(body, 0, len(body), False) and isinstance(got[0]["j"], str)
    doc = b"\x04\x01"  # true
    body = b"\x00" + len(doc).to_bytes(4, "little") + doc
    assert c.decode(body, 0, len(body), False) == [{"j": json.dumps(True)}]


# ------------------------------------------------------------------ Maker


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def test_maker_builds_the_same_frozen_objects() -> None:
    native = importlib.import_module("cdc._cslots")
    pos_args = dict(file=BinlogFile("mysql-bin.000003"), pos=4, index=2,
                    gtid_set=GtidSet.parse("0-1-5"), gtid="0-1-6", server_id=1,
                    snapshot=False, last_in_tx=False, vts=0)
    make_pos = native.Maker(MySqlPosition, _fields(MySqlPosition))
    built = make_pos(*pos_args.values())
    ref = MySqlPosition(**pos_args)  # type: ignore[arg-type]
    assert built == ref and hash(built) == hash(ref) and repr(built) == repr(ref)
    assert built.to_dict() == ref.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.pos = 5  # type: ignore[misc]
    schema = TableSchema(TableId("db", None, "t"), (), ())
    src = native.Maker(SourceInfo, _fields(SourceInfo))(
        "mysql", "n", "1", "v", built, 1000, "0-1-6", "false", None)
    assert src == SourceInfo("mysql", "n", "1", "v", ref, 1000, "0-1-6")
    ev = native.Maker(ChangeEvent, _fields(ChangeEvent))(
        Op.CREATE, schema, {"id": 1}, None, {"id": 1}, src, 5, TransactionInfo("x", 1, 1),
        frozenset())
    assert ev == ChangeEvent(Op.CREATE, schema, {"id": 1}, None, {"id": 1}, src, 5,
                             TransactionInfo("x", 1, 1))
    with pytest.raises(TypeError):
        make_pos(1, 2)
    with pytest.raises(AttributeError):
        native.Maker(MySqlPosition, ("file", "nope"))
    with pytest.raises(TypeError):  # not a slot
        native.Maker(int, ("real",))


# ------------------------------------------------------------------ changes, EventBuilder

image_values = st.one_of(st.integers(-3, 3), st.text(max_size=2), st.none())


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent]),
    key_names=st.sampled_from([(), ("a",), ("a", "b")]),
    rows=st.lists(
        st.tuples(st.fixed_dictionaries({"a": image_values, "b": image_values, "c": image_values}),
                  st.fixed_dictionaries({"a": image_values, "b": image_values, "c": image_values})),
        max_size=5,
    ),
)
def test_native_changes_equal_python(
    kind: type, key_names: tuple[str, ...], rows: list[tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    images: list[Any] = rows if kind is UpdateRowsEvent else [r[0] for r in rows]
    want = transaction.row_changes(key_names, kind, images)
    got = r._native.changes(transaction.CHANGE_KINDS[kind], key_names, images, transaction.CHANGE_OPS)
    assert got == want
    assert [type(c) for c in got] == [tuple] * len(want)


def test_native_changes_errors() -> None:
    native = r._native
    ops = transaction.CHANGE_OPS
    with pytest.raises(KeyError):
        native.changes(0, ("missing",), [{"a": 1}], ops)
    with pytest.raises(TypeError):
        native.changes(1, ("a",), [{"a": 1}], ops)  # updates are pairs
    with pytest.raises(ValueError):
        native.changes(7, (), [{"a": 1}], ops)
    with pytest.raises(TypeError):
        native.changes(0, (), ({"a": 1},), ops)


@pytest.mark.parametrize("clock", [False, True])
@pytest.mark.parametrize("last", [False, True])
def test_event_builder_equals_the_python_event(
    last: bool, clock: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    assert binlog._build_event is not None
    reader = binlog.BinlogReader({"host": "x"}, server_id=9, source_name="src",
                                 skip_replicated=clock)
    reader._server_id, reader._db_version = 1, "10.11.19-MariaDB"
    reader._file = BinlogFile("mysql-bin.000007")
    reader._gtid_set = GtidSet.parse("0-1-41")
    schema = TableSchema(TableId("db", None, "t"), (), ())
    held = (Op.UPDATE, schema, {"id": 1}, {"id": 1, "v": "a"}, {"id": 1, "v": "b"}, 4, 2)

    def build() -> tuple[ChangeEvent, Any]:
        tx = reader._begin(1234, "0-1-42", GtidSet.parse("0-1-42"), 1_700_000_000, True)
        return reader._event(tx, held, last), reader._resume

    before = int(time.time() * 1000)
    native_event, native_resume = build()
    monkeypatch.setattr(binlog, "_build_event", None)
    python_event, python_resume = build()
    after = int(time.time() * 1000)
    assert before <= native_event.ts_ms <= after
    assert dataclasses.replace(native_event, ts_ms=0) == dataclasses.replace(python_event, ts_ms=0)
    assert native_event.source == python_event.source
    assert native_event.position.to_dict() == python_event.position.to_dict()
    assert native_event.transaction == python_event.transaction == TransactionInfo("0-1-42", 5, 2)
    assert native_resume == python_resume
    assert native_event.position.last_in_tx is last
    assert str(native_event.position.gtid_set) == ("0-1-42" if last else "0-1-41")
    assert type(native_event.source.position) is MySqlPosition
    # the master-master version clock (skip_replicated) stamps the version time
    assert native_event.position.vts == (1_700_000_000_000 if clock else 0)
