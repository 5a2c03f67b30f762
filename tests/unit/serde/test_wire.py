"""Framing, varints, generated readers on arbitrary schemas, topic naming."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.errors import SerializationError
from cdc.events import TableId
from cdc.serde import AvroSerde, InMemorySchemaRegistry, default_topic_name, frame, unframe
from cdc.serde.binary import read_long, zigzag
from cdc.serde.envelope import dedupe_named_types, namespace_for
from cdc.serde.rowdecode import decode_value


def test_frame_and_unframe() -> None:
    framed = frame(258, b"body")
    assert framed == b"\x00\x00\x00\x01\x02body"
    schema_id, body = unframe(framed)
    assert schema_id == 258 and bytes(body) == b"body"


@pytest.mark.parametrize(
    ("message", "says"),
    [
        (b"", "too short"),
        (b"\x00\x00\x01", "too short"),
        (b"\x01\x00\x00\x00\x01body", "magic byte 0x01"),
        (b'{"id": 1}', "magic byte 0x7b"),
    ],
)
def test_unframe_errors(message: bytes, says: str) -> None:
    with pytest.raises(SerializationError, match=says):
        unframe(message)


def test_facade_rejects_bad_frames() -> None:
    serde = AvroSerde(InMemorySchemaRegistry())
    with pytest.raises(SerializationError, match="magic byte"):
        serde.decode(None, b"\x05\x00\x00\x00\x01")


@settings(max_examples=500, deadline=None)
@given(st.integers(-(2**63), 2**63 - 1))
def test_varints_match_fastavro(n: int) -> None:
    out = io.BytesIO()
    schemaless_writer(out, "long", n)
    assert zigzag(n) == out.getvalue()
    assert read_long(out.getvalue(), 0) == (n, len(out.getvalue()))


def test_varint_range() -> None:
    for n in (2**63, -(2**63) - 1):
        with pytest.raises(OverflowError):
            zigzag(n)


# A schema exercising everything the generated reader handles.
KITCHEN_SINK: dict[str, Any] = {
    "type": "record",
    "name": "Sink",
    "namespace": "t",
    "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "s", "type": "string"},
        {"name": "y", "type": "bytes"},
        {"name": "fx", "type": {"type": "fixed", "name": "Four", "size": 4}},
        {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
        {"name": "a", "type": {"type": "array", "items": ["null", "long"]}},
        {"name": "m", "type": {"type": "map", "values": "string"}},
        {"name": "u", "type": ["null", "string", "long", "Four"]},
        {"name": "r", "type": ["null", {"type": "record", "name": "Inner",
                                        "fields": [{"name": "x", "type": "Color"},
                                                   {"name": "next", "type": ["null", "Inner"]}]}]},
    ],
}  # fmt: skip


def _inner(depth: int) -> st.SearchStrategy[Any]:
    leaf = st.none()
    node = st.fixed_dictionaries(
        {"x": st.sampled_from(["RED", "GREEN"]), "next": leaf if depth == 0 else _inner(depth - 1)}
    )
    return st.one_of(st.none(), node)


SINK_VALUES = st.fixed_dictionaries({
    "b": st.booleans(),
    "i": st.integers(-(2**31), 2**31 - 1),
    "l": st.integers(-(2**63), 2**63 - 1),
    "f": st.floats(width=32, allow_nan=False),
    "d": st.floats(allow_nan=False),
    "s": st.text(),
    "y": st.binary(),
    "fx": st.binary(min_size=4, max_size=4),
    "e": st.sampled_from(["RED", "GREEN"]),
    "a": st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))),
    "m": st.dictionaries(st.text(), st.text(), max_size=3),
    "u": st.one_of(st.none(), st.text(), st.integers(-(2**63), 2**63 - 1)),
    "r": _inner(2),
})  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(SINK_VALUES)
def test_generated_reader_agrees_with_fastavro(value: dict[str, Any]) -> None:
    parsed = parse_schema(KITCHEN_SINK)
    out = io.BytesIO()
    schemaless_writer(out, parsed, value)
    body = out.getvalue()
    ours = decode_value(body, json.dumps(KITCHEN_SINK))
    assert ours == schemaless_reader(io.BytesIO(body), parsed, None)


def test_reader_reads_blocked_arrays_with_byte_sizes() -> None:
    # count -2 (negative: a byte size follows), size 2, then two longs 1 and 2, then end
    body = zigzag(-2) + zigzag(2) + zigzag(1) + zigzag(2) + b"\x00"
    assert decode_value(body, '{"type": "array", "items": "long"}') == [1, 2]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\x02", "truncated|does not match"),
        (b"\x02a\x00", "left over"),
        (b"\x06", "union branch byte 6 of 2"),
    ],
)
def test_reader_rejects_malformed_bodies(body: bytes, says: str) -> None:
    schema = '["null", "string"]' if says != "left over" else '"string"'
    with pytest.raises(SerializationError, match=says):
        decode_value(body, schema)


def test_topic_and_namespace_naming() -> None:
    pg = TableId("shop", "public", "orders")
    my = TableId("shop", None, "orders")
    assert default_topic_name("srv", pg) == "srv.public.orders"
    assert default_topic_name("srv", my) == "srv.shop.orders"
    assert default_topic_name("srv", TableId("d", "s p", "t/ä")) == "srv.s_p.t__"
    assert namespace_for("prod.pg-1", TableId("d", "public", "1st")) == "prod.pg_1.public._1st"


def test_named_types_are_defined_once() -> None:
    vsd = {
        "type": "record",
        "name": "V",
        "namespace": "x",
        "fields": [{"name": "a", "type": "int"}],
    }
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "one", "type": vsd}, {"name": "two", "type": ["null", vsd]},
        {"name": "three", "type": {"type": "array", "items": vsd}},
    ]}  # fmt: skip
    out = dedupe_named_types(schema)
    assert out["fields"][0]["type"] == vsd
    assert out["fields"][1]["type"] == ["null", "x.V"]
    assert out["fields"][2]["type"]["items"] == "x.V"
    parse_schema(out)


def test_a_process_that_reads_no_writer_schema_does_not_import_fastavro() -> None:
    # A source only encodes: fastavro (schema validation of what a sink reads) stays out
    # of it, about 1.5 MB resident. A fresh interpreter: the test session has it loaded.
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, cdc.cli, cdc.runtime.source_runner, connectors.postgres.source.connector;"
            " print('fastavro' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"]
