"""cdc's row-image decoder against encoders written from the server's formats.

(End to end it is checked against MariaDB's own bytes in
tests/integration/mysql/test_types_stream.py, for every type family.)"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.events import ColumnType, Kind
from connectors.mysql import types as t
from connectors.mysql import values
from connectors.mysql.source import rowimage as r
from connectors.mysql.types import BinlogColumn
from connectors.mysql.values import ColumnCodec, make_codec

DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def encode_decimal(d: Decimal, precision: int, scale: int) -> bytes:
    """MySQL's decimal2bin."""
    sign, digits, _ = d.as_tuple()
    s = "".join(map(str, digits)).rjust(precision, "0")
    ip, fp = s[: precision - scale], s[precision - scale :]
    intg0, intg0x = divmod(precision - scale, 9)
    frac0, frac0x = divmod(scale, 9)
    out = bytearray()
    if intg0x:
        out += int(ip[:intg0x]).to_bytes(DIG2BYTES[intg0x], "big")
    for i in range(intg0):
        out += int(ip[intg0x + 9 * i : intg0x + 9 * (i + 1)]).to_bytes(4, "big")
    for i in range(frac0):
        out += int(fp[9 * i : 9 * (i + 1)]).to_bytes(4, "big")
    if frac0x:
        out += int(fp[9 * frac0 :]).to_bytes(DIG2BYTES[frac0x], "big")
    if sign:
        out = bytearray(b ^ 0xFF for b in out)
    out[0] ^= 0x80
    return bytes(out)


@given(st.data(), st.integers(min_value=1, max_value=65))
def test_decimal_round_trip(data: st.DataObject, precision: int) -> None:
    scale = data.draw(st.integers(min_value=0, max_value=min(30, precision)))
    n = data.draw(st.integers(min_value=-(10**precision - 1), max_value=10**precision - 1))
    value = Decimal(f"{n}E-{scale}")  # exact (scaleb would round to 28 digits)
    raw = encode_decimal(value, precision, scale)
    got, end = r._decimal(precision, scale)(b"xx" + raw, 2)
    assert end == 2 + len(raw)
    assert got == value and got.as_tuple().exponent == -scale


def test_decimal_extremes() -> None:
    big = Decimal("99999999999999999999999999999999999.999999999999999999999999999999")
    for v in (
        big,
        big.copy_negate(),
        Decimal("0E-30"),
        Decimal("-0.000000000000000000000000000001"),
    ):
        assert r._decimal(65, 30)(encode_decimal(v, 65, 30), 0)[0] == v
    assert str(r._decimal(5, 2)(encode_decimal(Decimal("-1.50"), 5, 2), 0)[0]) == "-1.50"
    assert str(r._decimal(10, 0)(encode_decimal(Decimal("42"), 10, 0), 0)[0]) == "42"


def encode_datetime2(v: datetime, fsp: int) -> bytes:
    ym = v.year * 13 + v.month
    packed = ((ym << 5 | v.day) << 17) | (v.hour << 12 | v.minute << 6 | v.second)
    head = (packed + 0x8000000000).to_bytes(5, "big")
    n = (fsp + 1) // 2
    frac = {0: 0, 1: v.microsecond // 10000, 2: v.microsecond // 100, 3: v.microsecond}[n]
    return head + frac.to_bytes(n, "big")


def zero() -> Any:
    return "ZERO"


@pytest.mark.parametrize("fsp", range(7))
def test_datetime2_and_timestamp2(fsp: int) -> None:
    micro = {0: 0, 1: 500000, 2: 120000, 3: 123000, 4: 123400, 5: 123450, 6: 123456}[fsp]
    v = datetime(2024, 2, 29, 23, 59, 58, micro)
    raw = encode_datetime2(v, fsp)
    assert r._datetime2(fsp, zero)(raw, 0) == (v, len(raw))
    assert r._datetime2(fsp, zero)(encode_datetime2(datetime(1000, 1, 1), fsp), 0)[0] == datetime(
        1000, 1, 1
    )
    zero_raw = (0x8000000000).to_bytes(5, "big") + bytes((fsp + 1) // 2)
    assert r._datetime2(fsp, zero)(zero_raw, 0)[0] == "ZERO"
    secs = int((v.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    n = (fsp + 1) // 2
    frac = {0: 0, 1: micro // 10000, 2: micro // 100, 3: micro}[n]
    ts_raw = secs.to_bytes(4, "big") + frac.to_bytes(n, "big")
    assert r._timestamp2(fsp, zero)(ts_raw, 0)[0] == v.replace(tzinfo=UTC)
    assert r._timestamp2(fsp, zero)(bytes(4 + n), 0)[0] == "ZERO"


def test_date_year_enum_set_bits() -> None:
    def enc_date(y: int, m: int, d: int) -> bytes:
        return (y << 9 | m << 5 | d).to_bytes(3, "little")

    assert r._date(zero)(enc_date(2024, 2, 29), 0) == (date(2024, 2, 29), 3)
    assert r._date(zero)(enc_date(2024, 0, 10), 0)[0] == "ZERO"
    assert r._date(zero)(bytes(3), 0)[0] == "ZERO"
    assert r._year(b"\x00", 0)[0] == 0 and r._year(b"\xff", 0)[0] == 2155
    assert r._enum(1, ["a", "b"])(b"\x02", 0)[0] == "b"
    assert r._enum(1, ["a", "b"])(b"\x00", 0)[0] == ""
    assert r._set(1, ["x", "y", "z"])(b"\x05", 0)[0] == "x,z"
    assert r._set(1, ["x", "y", "z"])(b"\x00", 0)[0] == ""
    assert r._bits(2)(b"\x03\xff", 0) == (b"\x03\xff", 2)
    assert r._time2(3)(bytes.fromhex("7ef0fd0c1c"), 0)[0] == values.decode_time2(
        bytes.fromhex("7ef0fd0c1c"), 3
    )


def _codec(b: BinlogColumn, kind: Kind = Kind.STRING, native: str = "") -> ColumnCodec:
    return make_codec(
        b.shape(),
        ColumnType(kind, native=native),
        nullable=True,
        table="db.t",
        zero_date="null",
        charset=b.charset,
    )


class FakePacket:
    def __init__(self, data: bytes) -> None:
        self.data, self.read_bytes = data, 0

    def read(self, n: int) -> bytes:
        out = self.data[self.read_bytes : self.read_bytes + n]
        self.read_bytes += n
        return out


class FakeEvent:
    def __init__(self, body: bytes, ncols: int) -> None:
        self.packet = FakePacket(body)
        self.event_size = len(body)
        self.number_of_columns = ncols
        self.columns_present_bitmap = b"\x07"


def test_rows_with_nulls_and_strings() -> None:
    cols = [
        BinlogColumn("id", t.T_LONG),
        BinlogColumn("s", t.T_VARCHAR, max_length=40, collation="utf8mb4_general_ci"),
        BinlogColumn("b", t.T_STRING, max_length=4, collation="binary"),
    ]
    codecs = [_codec(cols[0], Kind.INT32), _codec(cols[1]), _codec(cols[2], Kind.BYTES)]
    dec = r.build_fast_decoder(cols, codecs)
    assert dec is not None
    s = "é😀".encode()
    row1 = b"\x00" + (7).to_bytes(4, "little", signed=True) + bytes([len(s)]) + s + b"\x02ab"
    row2 = b"\x06" + (-1).to_bytes(4, "little", signed=True)  # s and b NULL
    ev = FakeEvent(row1 + row2, 3)
    assert dec.handles(ev)
    assert dec.images(ev, pairs=False) == [
        {"id": 7, "s": "é😀", "b": b"ab\x00\x00"},
        {"id": -1, "s": None, "b": None},
    ]
    minimal = FakeEvent(b"", 3)
    minimal.columns_present_bitmap = b"\x03"
    assert not dec.handles(minimal)
    padded = FakeEvent(b"", 3)
    padded.columns_present_bitmap = b"\xff"  # padding bits set: still a full image
    assert dec.handles(padded)


def test_unhandled_types_fall_back_to_the_library() -> None:
    old_datetime = BinlogColumn("d", t.T_DATETIME)
    assert r.build_fast_decoder([old_datetime], [_codec(old_datetime, Kind.TIMESTAMP)]) is None
    swe7 = BinlogColumn("s", t.T_VARCHAR, max_length=10, collation="swe7_swedish_ci")
    assert r.build_fast_decoder([swe7], [_codec(swe7)]) is None


def test_two_byte_length_prefix() -> None:
    col = BinlogColumn("s", t.T_VARCHAR, max_length=1020, collation="utf8mb4_general_ci")
    dec = r._column_decoder(col, _codec(col))
    assert dec is not None
    text = "x" * 300
    assert dec((300).to_bytes(2, "little") + text.encode(), 0) == (text, 302)
    blob = BinlogColumn("b", t.T_BLOB, length_size=3, collation="binary")
    bdec = r._column_decoder(blob, _codec(blob, Kind.BYTES))
    assert bdec is not None
    assert bdec((2).to_bytes(3, "little") + b"\x00\x01", 0) == (b"\x00\x01", 5)
