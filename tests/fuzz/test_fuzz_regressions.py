"""Regression tests of what fuzzing found (tests/fuzz/targets.py, make fuzz).

Each failed before its fix (the C reader let a column conversion's own
exception out; the Python row-image reference decoded an image cut inside a
column into a short value or raised struct.error / IndexError).
"""

from __future__ import annotations

import pytest

from cdc.errors import SerializationError
from cdc.serde import decode, rowdecode
from connectors.mysql import types as t
from connectors.mysql.source import rowimage
from connectors.mysql.types import BinlogColumn, column_type_from_binlog
from connectors.mysql.values import make_codec
from tests.fuzz import targets

UUID = b"123e4567-e89b-12d3-a456-426614174000"


def _record_with_bad_uuid() -> tuple[decode.EnvelopeReader, bytes]:
    """A captured MariaDB envelope whose UUID column holds 36 bytes that are not a UUID."""
    for path in targets.seeds("avro_envelope"):
        data = path.read_bytes()
        if UUID in data:
            got = targets._writer("value", data.replace(UUID, b"g" * 36))
            assert got is not None
            writer, body = got
            return targets._envelope_reader(writer), body
    raise AssertionError("no captured envelope with the UUID of test_types_stream ROW1")


def test_the_python_reader_names_a_bad_uuid_as_a_serialization_error() -> None:
    reader, body = _record_with_bad_uuid()
    with pytest.raises(SerializationError, match=r"column 'u' \(uuid\)"):
        reader.read(targets._python_reader(reader.writer)(body), None, None)


@pytest.mark.skipif(rowdecode._NATIVE_READ is None, reason="C reader not built")
def test_the_c_reader_names_a_bad_uuid_as_a_serialization_error() -> None:
    reader, body = _record_with_bad_uuid()
    with pytest.raises(SerializationError):
        rowdecode._NATIVE_READ(reader._native, body, 0)  # type: ignore[misc]


@pytest.mark.skipif(rowdecode._NATIVE_READ is None, reason="C reader not built")
def test_the_c_reader_names_a_bad_decimal_as_a_serialization_error() -> None:
    data = (targets.HERE / "corpus" / "avro_envelope" /
            "regress-c-reader-decimal-invalid-operation").read_bytes()
    got = targets._writer("value", data)
    assert got is not None
    writer, body = got
    reader = targets._envelope_reader(writer)
    with pytest.raises(SerializationError):  # what the Python reference raises
        reader.read(targets._python_reader(writer)(body), None, None)
    with pytest.raises(SerializationError):
        rowdecode._NATIVE_READ(reader._native, body, 0)  # type: ignore[misc]


def _decoder(cols: list[BinlogColumn], use_native: bool) -> rowimage.FastRowDecoder:
    codecs = [
        make_codec(b.shape(), column_type_from_binlog(b), nullable=b.nullable, table="db.t",
                   zero_date="null", charset=b.charset)
        for b in cols
    ]
    dec = rowimage.build_fast_decoder(cols, codecs, use_native=use_native)
    assert dec is not None
    return dec


BLOB_TABLE = [BinlogColumn("id", t.T_LONG),
              BinlogColumn("b", t.T_BLOB, length_size=2, collation="binary")]
# id = 7, then a BLOB whose 2-byte length says 5 bytes, of which 2 are present
SHORT_BLOB = b"\x00" + (7).to_bytes(4, "little") + b"\x05\x00ab"
# id = 7, then only the first byte of the BLOB's 2-byte length
CUT_LENGTH = b"\x00" + (7).to_bytes(4, "little") + b"\x05"
CUT_BIGINT = b"\x00\x01\x02\x03"  # a BIGINT of which 3 bytes are present
CUT_YEAR = b"\x00\x01\x02\x03\x04"  # INT present, YEAR missing

CASES = [
    pytest.param(BLOB_TABLE, SHORT_BLOB, id="blob-shorter-than-its-length"),
    pytest.param(BLOB_TABLE, CUT_LENGTH, id="blob-length-cut"),
    pytest.param([BinlogColumn("id", t.T_LONGLONG)], CUT_BIGINT, id="bigint-cut"),
    pytest.param([BinlogColumn("id", t.T_LONG), BinlogColumn("y", t.T_YEAR)], CUT_YEAR,
                 id="year-missing"),
]


@pytest.mark.skipif(not rowimage.native_available(), reason="_crowimage not built")
@pytest.mark.parametrize(("cols", "body"), CASES)
def test_the_c_row_decoder_refuses_a_truncated_image(cols: list[BinlogColumn], body: bytes) -> None:
    with pytest.raises(ValueError, match="truncated row image"):
        _decoder(cols, True).decode(body, 0, len(body), False)


@pytest.mark.parametrize(("cols", "body"), CASES)
def test_the_python_row_decoder_refuses_a_truncated_image(
    cols: list[BinlogColumn], body: bytes
) -> None:
    with pytest.raises(ValueError, match="truncated"):
        _decoder(cols, False).decode(body, 0, len(body), False)
