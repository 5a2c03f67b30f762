"""The C reader (cdc/serde/_cdecode.c) against the generated Python reader, the reference.

Same values for every Avro type and every column type family the codec
maps, and on malformed or truncated input the same error class (never a
crash): both readers are run on the same bytes and must agree.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc import native
from cdc.errors import SerializationError
from cdc.events import ChangeEvent
from cdc.serde.binary import zigzag
from cdc.serde.decode import DecodedChange, EnvelopeReader
from cdc.serde.encode import TableEncoder
from cdc.serde.envelope import build_schemas, named_types
from cdc.serde.reader import compile_native, compile_reader, describe
from cdc.serde.rowdecode import KeyReader, WriterSchema
from tests.unit.serde.strategies import change_events, every_kind_schemas
from tests.unit.serde.test_wire import KITCHEN_SINK, SINK_VALUES

cdecode = native.load("cdc.serde._cdecode")
pytestmark = pytest.mark.skipif(cdecode is None, reason="C extension not built (make native)")

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def readers(schema: Any) -> tuple[Any, Any]:
    named = named_types(schema)
    python, _ = compile_reader(schema, named)
    program = compile_native(schema, named)
    return python, lambda body: cdecode.read(program, body)  # type: ignore[union-attr]


def outcome(read: Any, body: bytes) -> tuple[str, Any]:
    try:
        return "ok", repr(read(body))  # repr: NaN == NaN, and types must match too
    except SerializationError:
        return "error", SerializationError


def same_outcome(schema: Any, body: bytes) -> None:
    python, c = readers(schema)
    assert outcome(c, body) == outcome(python, body), body.hex()


def fastavro_bytes(schema: Any, value: Any) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(schema), value)
    return out.getvalue()


@SETTINGS
@given(SINK_VALUES)
def test_every_avro_type_reads_the_same(value: dict[str, Any]) -> None:
    body = fastavro_bytes(KITCHEN_SINK, value)
    python, c = readers(KITCHEN_SINK)
    assert repr(c(body)) == repr(python(body))


@SETTINGS
@given(SINK_VALUES, st.data())
def test_truncated_and_corrupted_bodies_fail_alike(value: dict[str, Any], data: st.DataObject) -> None:
    body = fastavro_bytes(KITCHEN_SINK, value)
    cut = data.draw(st.integers(0, max(0, len(body) - 1)))
    same_outcome(KITCHEN_SINK, body[:cut])
    if body:
        i = data.draw(st.integers(0, len(body) - 1))
        flipped = body[:i] + bytes([data.draw(st.integers(0, 255))]) + body[i + 1 :]
        same_outcome(KITCHEN_SINK, flipped)
    same_outcome(KITCHEN_SINK, body + data.draw(st.binary(min_size=1, max_size=4)))


SMALL_SCHEMAS = [
    "long", "int", "boolean", "float", "double", "string", "bytes",
    {"type": "fixed", "name": "F", "size": 3},
    {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]},
    ["null", "string", "long"],
    {"type": "array", "items": "string"},
    {"type": "array", "items": "null"},
    {"type": "map", "values": ["null", "double"]},
    {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"},
                                               {"name": "n", "type": ["null", "R"]}]},
]  # fmt: skip


@SETTINGS
@given(st.sampled_from(SMALL_SCHEMAS), st.binary(max_size=40))
def test_random_bytes_fail_or_read_alike(schema: Any, body: bytes) -> None:
    same_outcome(schema, body)


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        ("long", b"\xff" * 9 + b"\x01"),  # the largest 10-byte varint: reads
        ("long", b"\xff" * 10 + b"\x01"),  # 11 bytes
        ("long", b"\xff" * 9 + b"\x03"),  # 10th byte beyond 64 bits
        ("long", b"\x80"),  # truncated varint
        ({"type": "enum", "name": "E", "symbols": ["A"]}, zigzag(-1)),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, zigzag(1)),
        ("string", zigzag(-1)),
        ("string", zigzag(5) + b"ab"),
        ("string", zigzag(2) + b"\xed\xa0"),  # a lone surrogate is not UTF-8
        ("bytes", zigzag(2**62)),
        ({"type": "array", "items": "long"}, zigzag(2**40) + b"\x00"),
        ({"type": "array", "items": "long"}, zigzag(-(2**63)) + b"\x00"),
        ({"type": "array", "items": "null"}, zigzag(10**8) + b"\x00"),
        ({"type": "array", "items": "null"}, zigzag(3) + b"\x00"),
        ({"type": "array", "items": "long"}, zigzag(-2) + zigzag(2) + b"\x02\x04\x00"),
        (["null", "long"], b"\x04\x00"),
        (["null", "long"], b"\x01\x00"),
        ({"type": "fixed", "name": "F", "size": 3}, b"ab"),
        ("double", b"\x00" * 7),
        ("float", b"\x00" * 3),
    ],
)
def test_edge_cases_agree(schema: Any, body: bytes) -> None:
    same_outcome(schema, body)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "n", "type": ["null", "R"]}]}
    _, c = readers(schema)
    with pytest.raises(SerializationError, match="deeper"):
        c(b"\x02" * 100_000 + b"\x00")


def test_program_rejects_bad_node_tables() -> None:
    P = cdecode.Program  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        P(((99,),), 0, SerializationError)
    with pytest.raises(ValueError):
        P(((9, (5,)),), 0, SerializationError)  # child out of range
    with pytest.raises(TypeError):
        P(((2,),), 0, "not an exception class")
    nodes, root = describe(KITCHEN_SINK, named_types(KITCHEN_SINK))
    assert P(nodes, root, SerializationError) is not None


def test_read_record_returns_the_next_position() -> None:
    program = compile_native("string", {})
    body = zigzag(2) + b"hi" + b"rest"
    assert cdecode.read_record(program, body, 0) == ("hi", 3)  # type: ignore[union-attr]
    assert cdecode.read(program, b"xx" + body[:3], 2) == "hi"  # type: ignore[union-attr]


# -- every column type family, through the codec's envelope and key readers


def _python_change(reader: EnvelopeReader, body: bytes) -> DecodedChange:
    python, _ = compile_reader(reader.writer.schema, reader.writer.named)
    return reader.read(python(body), None, None)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(change_events(), every_kind_schemas().flatmap(change_events)))
def test_changes_of_every_type_family_decode_the_same(event: ChangeEvent) -> None:
    schemas = build_schemas(event.schema, prefix="srv", connector=event.source.connector)
    encoder = TableEncoder(schemas)
    body = encoder.encode_value(event)
    reader = EnvelopeReader(WriterSchema.parse(schemas.value_text))
    assert reader._native is not None
    assert repr(reader.decode(body, None, None)) == repr(_python_change(reader, body))
    key = encoder.encode_key(event)
    if key is not None and schemas.key_text is not None:
        kr = KeyReader(WriterSchema.parse(schemas.key_text))
        python, _ = compile_reader(kr.writer.schema, kr.writer.named)
        assert repr(kr.read(key)) == repr(kr.rows.convert(python(key))[0])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(every_kind_schemas().flatmap(change_events), st.data())
def test_damaged_changes_fail_with_the_same_error_class(event: ChangeEvent, data: st.DataObject) -> None:
    schemas = build_schemas(event.schema, prefix="srv", connector=event.source.connector)
    body = TableEncoder(schemas).encode_value(event)
    reader = EnvelopeReader(WriterSchema.parse(schemas.value_text))
    cut = body[: data.draw(st.integers(0, len(body) - 1))]
    i = data.draw(st.integers(0, len(body) - 1))
    flipped = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1 :]
    for damaged in (cut, flipped):
        try:
            want: Any = repr(_python_change(reader, damaged))
        except SerializationError:
            want = SerializationError
        # The C reader itself: its own error class for bad structure; a column
        # converter's own exception for a value that does not convert (decode()
        # then lets the reference path raise the SerializationError naming the column).
        try:
            t = cdecode.read(reader._native, damaged)  # type: ignore[union-attr]
        except SerializationError:
            assert want is SerializationError
        except (ValueError, TypeError, OverflowError, ArithmeticError) as e:
            assert want is SerializationError, e
        else:
            try:
                got: Any = repr(reader._from_tuple(t, None, None))
            except SerializationError:
                got = SerializationError
            assert got == want
        try:
            via_decode: Any = repr(reader.decode(damaged, None, None))
        except SerializationError:
            via_decode = SerializationError
        assert via_decode == want


def test_native_reader_is_what_writer_schemas_use() -> None:
    ws = WriterSchema.parse(json.dumps(KITCHEN_SINK))
    assert ws.read.__name__ == "fast"
