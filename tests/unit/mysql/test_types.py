"""The MySQL type table: every family, both paths, edge values, zero dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.errors import SchemaError, SerializationError
from cdc.events import Kind
from cdc.serde.temporal import ZERO
from connectors.mysql import types as t
from connectors.mysql import values
from connectors.mysql.types import (
    BinlogColumn,
    CatalogColumn,
    column_type_from_binlog,
    column_type_from_catalog,
    parse_enum_values,
)
from connectors.mysql.values import BinlogRowDecoder, TextRowDecoder, decode_time2, make_codec

# --------------------------------------------------------------------------- helpers


def cat(name: str, data_type: str, column_type: str | None = None, **kw: Any) -> CatalogColumn:
    return CatalogColumn(name, data_type, column_type or data_type, **kw)


def codec(c: CatalogColumn, zero_date: values.ZeroDatePolicy = "null") -> values.ColumnCodec:
    return make_codec(
        c.shape(),
        column_type_from_catalog(c),
        nullable=c.nullable,
        table="db.t",
        zero_date=zero_date,
        charset=c.charset,
    )


def text(c: CatalogColumn, v: Any, zero_date: values.ZeroDatePolicy = "null") -> Any:
    k = codec(c, zero_date)
    return v if k.from_text is None else k.from_text(v)


def binlog(c: CatalogColumn, v: Any, zero_date: values.ZeroDatePolicy = "null") -> Any:
    k = codec(c, zero_date)
    return v if k.from_binlog is None else k.from_binlog(v)


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def encode_time2(td: timedelta, fsp: int) -> bytes:
    """The server's my_time_packed_to_binary (C integer semantics), for round trips."""
    total = td // timedelta(microseconds=1)
    neg, a = total < 0, abs(total)
    secs, micro = divmod(a, 10**6)
    micro -= micro % 10 ** (6 - fsp)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    nr: int = (((h << 12) | (m << 6) | s) << 24) + micro
    if neg:
        nr = -nr
    intpart: int = nr >> 24
    frac: int = nr - _c_div(nr, 1 << 24) * (1 << 24)
    head = (0x800000 + intpart).to_bytes(3, "big")
    if fsp == 0:
        return head
    if fsp <= 2:
        return head + bytes([_c_div(frac, 10000) & 0xFF])
    if fsp <= 4:
        return head + int(_c_div(frac, 100) & 0xFFFF).to_bytes(2, "big")
    return int(nr + 0x800000000000).to_bytes(6, "big")


# --------------------------------------------------------------------------- TIME2


@pytest.mark.parametrize(
    ("td", "fsp"),
    [
        (timedelta(0), 0),
        (timedelta(seconds=1), 0),
        (-timedelta(seconds=1), 0),
        (-timedelta(hours=838, minutes=59, seconds=59), 0),
        (-timedelta(hours=838, minutes=59, seconds=59), 6),
        (timedelta(hours=838, minutes=59, seconds=59, microseconds=999999), 6),
        (-timedelta(milliseconds=500), 1),
        (-timedelta(hours=1, minutes=2, seconds=3, milliseconds=125), 3),
        (-timedelta(microseconds=1), 6),
        (-timedelta(seconds=1, microseconds=10), 5),
        (-timedelta(seconds=2, milliseconds=10), 2),
    ],
)
def test_time2_edge_values(td: timedelta, fsp: int) -> None:
    assert decode_time2(encode_time2(td, fsp), fsp) == td


@given(
    st.integers(
        min_value=-(838 * 3600 + 59 * 60 + 59) * 10**6 - 999999,
        max_value=(838 * 3600 + 59 * 60 + 59) * 10**6 + 999999,
    ),
    st.integers(min_value=0, max_value=6),
)
def test_time2_round_trip(micros: int, fsp: int) -> None:
    sign = -1 if micros < 0 else 1
    a = abs(micros)
    a -= a % 10 ** (6 - fsp)
    td = timedelta(microseconds=sign * a)
    assert decode_time2(encode_time2(td, fsp), fsp) == td


def test_time2_from_server_bytes() -> None:
    # Bytes MariaDB 10.11 wrote for TIME(6) '-838:59:59.000000' and TIME(3) '-01:02:03.125'.
    assert decode_time2(
        encode_time2(-timedelta(hours=838, minutes=59, seconds=59), 6), 6
    ) == -timedelta(hours=838, minutes=59, seconds=59)
    assert values._time_from_text("-838:59:59.000000") == -timedelta(hours=838, minutes=59, seconds=59)
    assert values._time_from_text("-00:00:00.5") == -timedelta(milliseconds=500)
    assert values._time_from_text("12:00:00") == timedelta(hours=12)


# --------------------------------------------------------------------------- integers


@pytest.mark.parametrize(
    ("dt", "ctype", "kind", "lo", "hi"),
    [
        ("tinyint", "tinyint(4)", Kind.INT16, -128, 127),
        ("tinyint", "tinyint(3) unsigned", Kind.INT16, 0, 255),
        ("tinyint", "tinyint(1)", Kind.INT16, -128, 127),
        ("smallint", "smallint(6)", Kind.INT16, -32768, 32767),
        ("smallint", "smallint(5) unsigned", Kind.INT32, 0, 65535),
        ("mediumint", "mediumint(9)", Kind.INT32, -8388608, 8388607),
        ("mediumint", "mediumint(8) unsigned", Kind.INT32, 0, 16777215),
        ("int", "int(11)", Kind.INT32, -(2**31), 2**31 - 1),
        ("int", "int(10) unsigned", Kind.INT64, 0, 2**32 - 1),
        ("bigint", "bigint(20)", Kind.INT64, -(2**63), 2**63 - 1),
        ("bigint", "bigint(20) unsigned", Kind.UINT64, 0, 2**64 - 1),
    ],
)
def test_integers(dt: str, ctype: str, kind: Kind, lo: int, hi: int) -> None:
    c = cat("n", dt, ctype)
    assert column_type_from_catalog(c).kind is kind
    assert column_type_from_catalog(c).native == ctype
    for v in (lo, hi, 0):
        assert text(c, str(v)) == v
        assert binlog(c, v) == v
    if c.unsigned:  # a signed reading of an unsigned column is corrected
        bits = t.INT_BITS[dt]
        assert binlog(c, -1) == 2**bits - 1
        assert binlog(c, hi - 2**bits) == hi


def test_bigint_unsigned_max() -> None:
    c = cat("n", "bigint", "bigint(20) unsigned")
    assert binlog(c, -1) == 18446744073709551615
    assert text(c, "18446744073709551615") == 18446744073709551615


# --------------------------------------------------------------------------- numbers


def test_decimal() -> None:
    c = cat("d", "decimal", "decimal(65,30)", precision=65, scale=30)
    ct = column_type_from_catalog(c)
    assert (ct.kind, ct.precision, ct.scale) == (Kind.DECIMAL, 65, 30)
    big = "12345678901234567890123456789012345.123456789012345678901234567890"
    assert text(c, big) == Decimal(big)
    assert str(text(c, "-1.50")) == "-1.50"
    assert binlog(c, Decimal("-1.50")) == Decimal("-1.50")


def test_float_is_shortest_single() -> None:
    c = cat("f", "float")
    assert column_type_from_catalog(c).kind is Kind.FLOAT32
    assert binlog(c, 1.100000023841858) == 1.1  # what the row image's 4 bytes read as
    assert text(c, "1.1") == 1.1
    assert text(c, "3.40282e38") == binlog(c, 3.4028200183756568e38)
    d = cat("d", "double")
    assert column_type_from_catalog(d).kind is Kind.FLOAT64
    assert text(d, "3.141592653589793") == binlog(d, 3.141592653589793)


# --------------------------------------------------------------------------- bits, strings, bytes


@pytest.mark.parametrize(
    ("width", "bits", "raw"),
    [
        (1, "1", b"\x01"),
        (10, "1010101010", b"\x02\xaa"),
        (64, "1" * 64, b"\xff" * 8),
        (16, "0000000000000001", b"\x00\x01"),
    ],
)
def test_bits(width: int, bits: str, raw: bytes) -> None:
    c = cat("b", "bit", f"bit({width})", precision=width)
    ct = column_type_from_catalog(c)
    assert (ct.kind, ct.length) == (Kind.BITS, width)
    assert binlog(c, bits) == raw
    assert text(c, raw) == raw
    assert text(c, raw.lstrip(b"\x00") or b"\x00") == raw


def test_strings_and_emoji() -> None:
    vc = cat("v", "varchar", "varchar(10)", char_length=10, octet_length=40, charset="utf8mb4")
    ct = column_type_from_catalog(vc)
    assert (ct.kind, ct.length) == (Kind.STRING, 10)
    assert text(vc, "é😀") == binlog(vc, "é😀") == "é😀"
    tx = cat("t", "text", "text", char_length=65535, octet_length=65535, charset="utf8mb4")
    assert column_type_from_catalog(tx).kind is Kind.STRING
    assert binlog(tx, "text😀") == "text😀"


def test_binary_padding() -> None:
    bn = cat("b", "binary", "binary(4)", char_length=4, octet_length=4)
    assert column_type_from_catalog(bn).kind is Kind.BYTES
    assert binlog(bn, b"ab") == b"ab\x00\x00"  # the row image drops trailing zeros
    assert text(bn, b"ab\x00\x00") == b"ab\x00\x00"
    vb = cat("v", "varbinary", "varbinary(10)", char_length=10, octet_length=10)
    assert binlog(vb, b"x\x00") == b"x\x00"
    bl = cat("l", "blob", "blob", char_length=65535, octet_length=65535)
    assert column_type_from_catalog(bl).kind is Kind.BYTES
    assert binlog(bl, b"\x00\xff") == b"\x00\xff"


def test_undecodable_charset_is_an_error() -> None:
    c = cat("v", "varchar", "varchar(5)", char_length=5, octet_length=5, charset="swe7")
    with pytest.raises(SerializationError, match="swe7"):
        binlog(c, b"abc")
    latin = cat("v", "varchar", "varchar(5)", char_length=5, octet_length=5, charset="latin1")
    assert codec(latin).from_binlog is None


def test_enum_and_set() -> None:
    en = cat("e", "enum", "enum('a','b','it''s')")
    ct = column_type_from_catalog(en)
    assert (ct.kind, ct.values) == (Kind.ENUM, ("a", "b", "it's"))
    assert binlog(en, "b") == text(en, "b") == "b"
    s = cat("s", "set", "set('x','y','z')")
    assert column_type_from_catalog(s).values == ("x", "y", "z")
    assert binlog(s, {"z", "x"}) == "x,z" == text(s, "x,z")
    assert binlog(s, {"z", "y", "x"}) == "x,y,z"


@pytest.mark.parametrize(
    ("column_type", "labels"),
    [
        ("enum('a','b')", ("a", "b")),
        ("enum('it''s','x,y')", ("it's", "x,y")),
        ("set('')", ("",)),
        ("enum('a\\\\b')", ("a\\b",)),
        ("enum('😀','(x)')", ("😀", "(x)")),
    ],
)
def test_parse_enum_values(column_type: str, labels: tuple[str, ...]) -> None:
    assert parse_enum_values(column_type) == labels


def test_json() -> None:
    mariadb = cat("j", "longtext", "longtext", charset="utf8mb4", json=True)
    assert column_type_from_catalog(mariadb).kind is Kind.JSON
    assert binlog(mariadb, '{"a": [1, 2]}') == '{"a": [1, 2]}'
    mysql = cat("j", "json")
    assert column_type_from_catalog(mysql).kind is Kind.JSON
    # MySQL binary JSON decoded by mysql-replication: bytes keys and strings
    assert (
        binlog(mysql, {b"a": [1, 2, b"x\xc3\xa9"], b"b": None}) == '{"a": [1, 2, "xé"], "b": null}'
    )
    assert text(mysql, '{"a": 1}') == '{"a": 1}'


def test_uuid_and_inet_mariadb() -> None:
    u = cat("u", "uuid")
    assert column_type_from_catalog(u).kind is Kind.UUID
    value = UUID("123e4567-e89b-12d3-a456-426614174000")
    assert binlog(u, value.bytes.rstrip(b"\x00")) == value
    assert text(u, str(value)) == value
    i6 = cat("i", "inet6")
    assert column_type_from_catalog(i6).kind is Kind.STRING
    raw = bytes.fromhex("20010db8000000000000000000000001")
    assert binlog(i6, raw) == "2001:db8::1" == text(i6, "2001:db8::1")
    i4 = cat("i", "inet4")
    assert binlog(i4, b"\n\x00\x00\x01") == "10.0.0.1"


def test_geometry_strips_srid() -> None:
    g = cat("g", "point")
    assert column_type_from_catalog(g).kind is Kind.GEOMETRY
    wkb = bytes.fromhex("0101000000000000000000f03f0000000000000040")
    internal = (4326).to_bytes(4, "little") + wkb
    assert binlog(g, internal) == wkb == text(g, internal)
    with pytest.raises(SerializationError):
        binlog(g, b"\x00")


# --------------------------------------------------------------------------- temporal


def test_date_time_datetime_timestamp_year() -> None:
    d = cat("d", "date")
    assert column_type_from_catalog(d).kind is Kind.DATE
    assert text(d, "2024-02-29") == binlog(d, date(2024, 2, 29)) == date(2024, 2, 29)
    tm = cat("t", "time", "time(6)", fsp=6)
    ct = column_type_from_catalog(tm)
    assert (ct.kind, ct.precision) == (Kind.TIME, 6)
    dt = cat("dt", "datetime", "datetime(6)", fsp=6)
    assert column_type_from_catalog(dt).kind is Kind.TIMESTAMP
    naive = datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert text(dt, "2024-01-02 03:04:05.123456") == binlog(dt, naive) == naive
    assert text(dt, "2024-01-02 03:04:05.5") == datetime(2024, 1, 2, 3, 4, 5, 500000)
    ts = cat("ts", "timestamp", "timestamp(6)", fsp=6)
    assert column_type_from_catalog(ts).kind is Kind.TIMESTAMPTZ
    aware = datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    assert text(ts, "2024-01-02 03:04:05.500000") == aware
    assert binlog(ts, datetime(2024, 1, 2, 3, 4, 5, 500000)) == aware
    y = cat("y", "year", "year(4)")
    ct = column_type_from_catalog(y)
    assert (ct.kind, ct.native) == (Kind.INT32, "year(4)")
    assert text(y, "1901") == binlog(y, 1901) == 1901
    assert text(y, "0000") == binlog(y, 1900) == 0  # the library reads year 0 as 1900
    assert binlog(y, 2155) == 2155


@pytest.mark.parametrize(
    ("policy", "nullable", "expect"),
    [
        ("null", True, (None, None, None)),
        ("null", False, (date(1970, 1, 1), datetime(1970, 1, 1), datetime(1970, 1, 1, tzinfo=UTC))),
        ("min", True, (date(1, 1, 1), datetime(1, 1, 1), datetime(1, 1, 1, tzinfo=UTC))),
        ("sentinel", True, (ZERO, ZERO, ZERO)),
    ],
)
def test_zero_dates(policy: values.ZeroDatePolicy, nullable: bool, expect: tuple[Any, ...]) -> None:
    d = cat("d", "date", nullable=nullable)
    dt = cat("dt", "datetime", "datetime(6)", fsp=6, nullable=nullable)
    ts = cat("ts", "timestamp", fsp=0, nullable=nullable)
    assert text(d, "0000-00-00", policy) == expect[0]
    assert text(d, "2024-00-10", policy) == expect[0]
    assert text(dt, "0000-00-00 00:00:00.000000", policy) == expect[1]
    assert text(dt, "2024-02-00 00:00:00", policy) == expect[1]
    assert text(ts, "0000-00-00 00:00:00", policy) == expect[2]
    assert binlog(ts, datetime(1970, 1, 1), policy) == expect[2]
    # the binlog path: mysql-replication gives None plus a reason
    codecs = [codec(d, policy), codec(dt, policy), codec(ts, policy)]
    row = BinlogRowDecoder(codecs, "db.t")(
        {"d": None, "dt": None, "ts": datetime(1970, 1, 1)},
        {"d": "out of date range", "dt": "out of datetime2 range"},
    )
    assert (row["d"], row["dt"], row["ts"]) == expect


def test_zero_date_error_names_the_column() -> None:
    d = cat("born", "date")
    with pytest.raises(SerializationError, match=r"db\.t\.born"):
        text(d, "0000-00-00", "error")
    with pytest.raises(SerializationError, match=r"db\.t\.born"):
        BinlogRowDecoder([codec(d, "error")], "db.t")({"born": None}, {"born": "out of date range"})


def test_unknown_zero_policy_rejected() -> None:
    with pytest.raises(ValueError, match="zero_date"):
        codec(cat("d", "date"), "nope")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- row decoders


def test_binlog_row_decoder_nulls_sets_and_image_errors() -> None:
    s = cat("s", "set", "set('a','b')")
    n = cat("n", "int", "int(11)")
    dec = BinlogRowDecoder([codec(s), codec(n)], "db.t")
    assert dec({"s": None, "n": None}, {"s": "empty set", "n": "null"}) == {"s": "", "n": None}
    assert dec({"s": {"b", "a"}, "n": 3}, {}) == {"s": "a,b", "n": 3}
    with pytest.raises(SchemaError, match="binlog_row_image"):
        dec({"s": None, "n": None}, {"n": "cols bitmap"})


def test_text_row_decoder() -> None:
    cols = [cat("id", "int", "int(11)"), cat("d", "date"), cat("b", "varbinary", char_length=3)]
    dec = TextRowDecoder([codec(c) for c in cols])
    assert dec(("1", "2024-01-01", b"\x00")) == {"id": 1, "d": date(2024, 1, 1), "b": b"\x00"}
    assert dec(("2", None, None)) == {"id": 2, "d": None, "b": None}


# --------------------------------------------------------------------------- shapes


def _bl(name: str, code: int, **kw: Any) -> BinlogColumn:
    return BinlogColumn(name, code, **kw)


# (catalog column, the TableMap column MariaDB 10.11 wrote for it) - from a real binlog
PAIRS = [
    (cat("id", "int", "int(11)"), _bl("id", t.T_LONG)),
    (cat("tiu", "tinyint", "tinyint(3) unsigned"), _bl("tiu", t.T_TINY, unsigned=True)),
    (cat("bi", "bigint", "bigint(20) unsigned"), _bl("bi", t.T_LONGLONG, unsigned=True)),
    (
        cat("d", "decimal", "decimal(65,30)", precision=65, scale=30),
        _bl("d", t.T_NEWDECIMAL, precision=65, scale=30),
    ),
    (cat("fl", "float"), _bl("fl", t.T_FLOAT)),
    (cat("db", "double"), _bl("db", t.T_DOUBLE)),
    (cat("bt", "bit", "bit(10)", precision=10), _bl("bt", t.T_BIT, bits=10)),
    (
        cat("ch", "char", "char(5)", char_length=5, octet_length=20, charset="utf8mb4"),
        _bl("ch", t.T_STRING, collation="utf8mb4_general_ci", max_length=20),
    ),
    (
        cat("vc", "varchar", "varchar(10)", char_length=10, octet_length=40, charset="utf8mb4"),
        _bl("vc", t.T_VARCHAR, collation="utf8mb4_general_ci", max_length=40),
    ),
    (
        cat("tx", "text", char_length=65535, octet_length=65535, charset="utf8mb4"),
        _bl("tx", t.T_BLOB, collation="utf8mb4_general_ci", length_size=2),
    ),
    (
        cat("bn", "binary", "binary(4)", char_length=4, octet_length=4),
        _bl("bn", t.T_STRING, collation="binary", max_length=4),
    ),
    (
        cat("vb", "varbinary", "varbinary(10)", char_length=10, octet_length=10),
        _bl("vb", t.T_VARCHAR, collation="binary", max_length=10),
    ),
    (
        cat("bl", "blob", char_length=65535, octet_length=65535),
        _bl("bl", t.T_BLOB, collation="binary", length_size=2),
    ),
    (cat("en", "enum", "enum('a','b','c')"), _bl("en", t.T_ENUM, enum_values=("a", "b", "c"))),
    (cat("st", "set", "set('x','y','z')"), _bl("st", t.T_SET, set_values=("x", "y", "z"))),
    (
        cat("js", "longtext", charset="utf8mb4", json=True),
        _bl("js", t.T_BLOB, collation="utf8mb4_bin", length_size=4),
    ),
    (cat("dt", "date"), _bl("dt", t.T_DATE)),
    (cat("tm", "time", "time(6)", fsp=6), _bl("tm", t.T_TIME2, fsp=6)),
    (cat("dtt", "datetime", "datetime(6)", fsp=6), _bl("dtt", t.T_DATETIME2, fsp=6)),
    (cat("ts", "timestamp", "timestamp(6)", fsp=6), _bl("ts", t.T_TIMESTAMP2, fsp=6)),
    (cat("ts0", "timestamp", "timestamp", fsp=0), _bl("ts0", t.T_TIMESTAMP2, fsp=0)),
    (cat("yr", "year", "year(4)"), _bl("yr", t.T_YEAR, unsigned=True)),
    (cat("g", "geometry"), _bl("g", t.T_GEOMETRY, collation="binary", length_size=4)),
    (cat("u", "uuid"), _bl("u", t.T_STRING, collation="binary", max_length=16)),
]


@pytest.mark.parametrize(("c", "b"), PAIRS, ids=[p[0].name for p in PAIRS])
def test_catalog_and_tablemap_shapes_agree(c: CatalogColumn, b: BinlogColumn) -> None:
    """The same column seen by information_schema and by a TableMap has one shape,
    and the TableMap-only type agrees with the catalog's on everything but MariaDB JSON
    and the spelling of `native`."""
    assert c.shape() == b.shape()
    from_cat, from_bin = column_type_from_catalog(c), column_type_from_binlog(b)
    if c.json:
        assert (from_cat.kind, from_bin.kind) == (Kind.JSON, Kind.STRING)
    elif c.data_type == "uuid":
        assert from_bin.kind is Kind.BYTES
    else:
        assert (from_cat.kind, from_cat.precision, from_cat.scale, from_cat.values) == (
            from_bin.kind,
            from_bin.precision,
            from_bin.scale,
            from_bin.values,
        )
        if c.data_type in ("char", "varchar", "binary", "varbinary"):
            assert from_cat.length == from_bin.length


@pytest.mark.parametrize(
    ("b", "native"),
    [
        (_bl("a", t.T_LONG, unsigned=True), "int unsigned"),
        (_bl("a", t.T_VARCHAR, collation="utf8mb4_general_ci", max_length=40), "varchar(10)"),
        (_bl("a", t.T_VARCHAR, collation="latin1_swedish_ci", max_length=5), "varchar(5)"),
        (_bl("a", t.T_STRING, collation="binary", max_length=4), "binary(4)"),
        (_bl("a", t.T_BLOB, collation="utf8mb4_bin", length_size=4), "longtext"),
        (_bl("a", t.T_BLOB, collation="binary", length_size=1), "tinyblob"),
        (_bl("a", t.T_NEWDECIMAL, precision=5, scale=2), "decimal(5,2)"),
        (_bl("a", t.T_ENUM, enum_values=("a", "it's")), "enum('a','it''s')"),
        (_bl("a", t.T_TIME2, fsp=3), "time(3)"),
        (_bl("a", t.T_DATETIME2, fsp=0), "datetime"),
    ],
)
def test_tablemap_natives(b: BinlogColumn, native: str) -> None:
    assert column_type_from_binlog(b).native == native


def test_shape_differs_after_alter() -> None:
    # varchar(10) -> varchar(20): the old rows' TableMap no longer matches the catalog
    now = cat("v", "varchar", "varchar(20)", char_length=20, octet_length=80, charset="utf8mb4")
    then = _bl("v", t.T_VARCHAR, collation="utf8mb4_general_ci", max_length=40)
    assert now.shape() != then.shape()
    assert column_type_from_binlog(then).length == 10


def test_unsupported_binlog_type() -> None:
    with pytest.raises(SchemaError, match="not supported"):
        _bl("x", 6).shape()


def test_from_replication_strips_invalid_enum_label() -> None:
    class Col:
        name, type, unsigned, collation_name = "e", t.T_ENUM, False, "utf8mb4_general_ci"
        enum_values: ClassVar[list[str]] = ["", "a", "b"]
        set_values = None
        size = 1

    b = BinlogColumn.from_replication(Col(), nullable=True)
    assert b.enum_values == ("a", "b")
    assert b.shape().values == ("a", "b")
