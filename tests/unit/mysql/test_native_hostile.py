"""Hostile or unusual bytes in the MySQL paths, C and Python (issue #11, defects 2, 4, 6).

* A rows event whose TableMap has no columns: a row image takes no bytes, and the
  decoders looped appending empty rows until memory ran out; both now raise a
  clear ValueError.
* MySQL's latin1 is cp1252 plus the five bytes cp1252 leaves undefined (0x81,
  0x8D, 0x8F, 0x90, 0x9D -> U+0081...): both decoders read all 256 byte values
  (before: UnicodeDecodeError stopped the stream).
* _cliteral.row walks a private copy of the values: a fallback that mutates the
  caller's list cannot free what is being written (before: use-after-free).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from cdc.events import ColumnType, Kind
from connectors.mysql import latin1
from connectors.mysql import types as t
from connectors.mysql.sink import literals as mysql_literals
from connectors.mysql.source import rowimage as r
from connectors.mysql.types import BinlogColumn
from connectors.mysql.values import make_codec

ALL_BYTES = bytes(range(256))


def decoders(columns: list[BinlogColumn]) -> list[tuple[str, r.FastRowDecoder]]:
    codecs = [make_codec(b.shape(), ColumnType(Kind.STRING), nullable=True, table="db.t",
                         zero_date="null", charset=b.charset)  # type: ignore[arg-type]
              for b in columns]
    out = []
    py = r.build_fast_decoder(columns, codecs, use_native=False)
    assert py is not None
    out.append(("python", py))
    if r.native_available():
        c = r.build_fast_decoder(columns, codecs, use_native=True)
        assert c is not None and c.program is not None
        out.append(("c", c))
    return out


def test_a_table_map_without_columns_is_a_decode_error_not_an_endless_loop() -> None:
    for name, dec in decoders([]):
        for pairs in (False, True):
            with pytest.raises(ValueError, match="no columns"):
                dec.decode(b"\x00\x00\x00", 0, 3, pairs)
        assert dec.decode(b"", 0, 0, False) == [], name  # an empty body is still fine


@pytest.mark.parametrize("code,length", [(t.T_VARCHAR, 1020), (t.T_STRING, 255)])
def test_mysql_latin1_reads_every_byte_value(code: int, length: int) -> None:
    col = BinlogColumn("s", code, max_length=length, collation="latin1_swedish_ci")
    expected = latin1.MYSQL_LATIN1_TABLE
    assert [expected[b] for b in (0x81, 0x8D, 0x8F, 0x90, 0x9D)] == \
        ["\x81", "\x8d", "\x8f", "\x90", "\x9d"]
    assert expected[0x80] == "\u20ac" and expected[0xE9] == "\u00e9"  # cp1252 elsewhere
    prefix = 2 if length > 255 else 1
    data = ALL_BYTES if prefix == 2 else ALL_BYTES[1:]  # a CHAR(255) holds 255 bytes
    body = b"\x00" + len(data).to_bytes(prefix, "little") + data
    for name, dec in decoders([col]):
        assert dec.decode(body, 0, len(body), False) == [{"s": expected[256 - len(data):]}], name
    assert ALL_BYTES.decode(latin1.MYSQL_LATIN1).encode(latin1.MYSQL_LATIN1) == ALL_BYTES


@pytest.mark.skipif(mysql_literals._cliteral is None, reason="native module not built")
def test_a_fallback_that_mutates_the_row_list_cannot_free_what_is_written() -> None:
    n = 64
    values: list[Any] = [Decimal(i) / 7 for i in range(n)]  # Decimals: each goes to fallback
    expected = "(" + ",".join(str(v) for v in values) + ")"

    def fallback(v: Any) -> str:
        if values:
            values.clear()  # frees the list's item array and every Decimal in it
            junk = [1.5] * n  # and reuses the memory for something else
            junk.append(0.0)
        return str(v)

    assert mysql_literals._cliteral.row(values, fallback, False) == expected
