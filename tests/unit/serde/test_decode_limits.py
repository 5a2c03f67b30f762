"""Decoding limits (cdc/serde/limits.py): a few hostile bytes never decode into a huge value.

Issue #11, defect 1: array/map items that take no bytes (null, empty records,
fixed(0)) were capped per block only, so ~400 bytes claiming a billion nulls in
blocks of ten million took a sink past 2 GB. Both readers now count every item
and map entry of a record against ``DecodeLimits.max_items`` before allocating,
and refuse bodies over ``max_record_bytes``. The Python reader is checked in
every run; the C reader too when it is built (not under CDC_NATIVE=0).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cdc import native
from cdc.errors import SerializationError
from cdc.serde import AvroSerde, DecodeLimits, InMemorySchemaRegistry
from cdc.serde.binary import zigzag
from cdc.serde.decode import EnvelopeReader
from cdc.serde.envelope import named_types
from cdc.serde.framing import frame_prefix
from cdc.serde.limits import DEFAULT_LIMITS
from cdc.serde.reader import compile_native, compile_reader
from cdc.serde.rowdecode import KeyReader, WriterSchema

cdecode = native.load("cdc.serde._cdecode")

NULLS = {"type": "array", "items": "null"}
EMPTY = {"type": "record", "name": "Empty", "fields": []}
ZERO_FIXED = {"type": "fixed", "name": "Nothing", "size": 0}


def readers(schema: Any) -> list[tuple[str, Any]]:
    """(name, read(body, limits)) of the Python reader and, when built, the C reader."""
    named = named_types(schema)
    python, _ = compile_reader(schema, named)
    out: list[tuple[str, Any]] = [("python", python)]
    if cdecode is not None:
        program = compile_native(schema, named)

        def c(body: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
            return cdecode.read(program, body, 0, limits.max_items, limits.max_record_bytes)  # type: ignore[union-attr]

        out.append(("c", c))
    return out


def blocks(count: int, times: int, item: bytes = b"") -> bytes:
    return (zigzag(count) + item * count) * times + b"\x00"


@pytest.mark.parametrize("items", [NULLS, {"type": "array", "items": EMPTY},
                                   {"type": "array", "items": ZERO_FIXED},
                                   {"type": "map", "values": "null"}])
def test_zero_width_items_over_the_limit_are_refused_in_both_readers(items: Any) -> None:
    """1.2 million zero-width items in two blocks: each block is under the old per-block
    cap (ten million), the total is over the default max_items (a million). Before the
    fix both readers returned the 1.2-million-item value."""
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": items}]}
    key = b"\x00" if items["type"] == "map" else b""  # a map entry has a one-byte empty key
    body = blocks(600_000, 2, key)
    for name, read in readers(schema):
        with pytest.raises(SerializationError, match=r"decoding\.max_items"):
            read(body)
        at_limit = read(blocks(500_000, 2, key))["a"]
        # exactly at the limit still reads (a map's million entries share one key)
        assert len(at_limit) == (1 if items["type"] == "map" else 1_000_000), name


def test_the_issue_record_claiming_a_billion_nulls_is_refused_at_once() -> None:
    """The reproduction of the issue: ~400 bytes, a billion nulls in blocks of ten million."""
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": NULLS}]}
    body = blocks(10_000_000, 100)
    assert len(body) < 500
    for name, read in readers(schema):
        t0 = time.monotonic()
        with pytest.raises(SerializationError, match=r"decoding\.max_items"):
            read(body)
        assert time.monotonic() - t0 < 1.0, name  # refused before allocating, not after


def test_nested_blocks_count_against_one_budget() -> None:
    """array<array<null>>: each outer item takes one byte but may claim a block of nulls;
    the budget is per record, over every array and map in it."""
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "a", "type": {"type": "array", "items": NULLS}}]}
    inner = zigzag(1000) + b"\x00"  # an inner array of 1000 nulls
    body = zigzag(200) + inner * 200 + b"\x00"  # 200 x 1000 = 200,000 nulls
    small = DecodeLimits(max_items=100_000)
    for _, read in readers(schema):
        assert sum(len(x) for x in read(body)["a"]) == 200_000
        with pytest.raises(SerializationError, match=r"more than 100000 array items"):
            read(body, small)


def test_negative_block_counts_need_a_byte_size_inside_the_body() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "a", "type": NULLS}]}
    for _, read in readers(schema):
        assert read(zigzag(-3) + zigzag(0) + b"\x00") == {"a": [None] * 3}
        for size in (-1, 5, 2**40):
            with pytest.raises(SerializationError, match="block byte size"):
                read(zigzag(-3) + zigzag(size) + b"\x00")


def test_lengths_beyond_the_body_are_refused() -> None:
    schema = {"type": "record", "name": "R", "fields": [
        {"name": "s", "type": "string"}, {"name": "b", "type": "bytes"}]}
    for _, read in readers(schema):
        for body in (zigzag(2**40) + b"x", zigzag(0) + zigzag(2**62), zigzag(-1)):
            with pytest.raises(SerializationError):
                read(body)


def test_bodies_longer_than_max_record_bytes_are_refused() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "b", "type": "bytes"}]}
    body = zigzag(2000) + b"x" * 2000
    for _, read in readers(schema):
        assert len(read(body)["b"]) == 2000
        with pytest.raises(SerializationError, match=r"decoding\.max_record_bytes"):
            read(body, DecodeLimits(max_record_bytes=1024))


ENVELOPE = {
    "type": "record", "name": "Envelope", "namespace": "t.d.tags",
    "fields": [
        {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": [
            {"name": "id", "type": "long"},
            {"name": "tags", "type": ["null", NULLS]}]}], "default": None},
        {"name": "after", "type": ["null", "Value"], "default": None},
        {"name": "source", "type": {"type": "record", "name": "Source", "fields": [
            {"name": "db", "type": "string"}, {"name": "table", "type": "string"}]}},
        {"name": "op", "type": "string"},
    ],
}


def bomb(count: int = 10_000_000, times: int = 100) -> bytes:
    """An update-less create whose row's array<null> column claims count x times nulls."""
    return b"\x00" + b"\x02" + zigzag(1) + b"\x02" + blocks(count, times) + \
        zigzag(1) + b"d" + zigzag(1) + b"t" + zigzag(1) + b"c"


def test_a_sink_codec_refuses_the_bomb_with_its_configured_limits() -> None:
    """Through the sink's AvroSerde (registry ids, framing, the envelope reader, C or
    Python): the record is a SerializationError (a bad record: dead-lettered or fatal as
    errors.policy says), decided before any big allocation; the limit is the config's."""
    registry = InMemorySchemaRegistry()
    sid = registry.register("t.d.tags-value", json.dumps(ENVELOPE))
    prefix = frame_prefix(sid)
    serde = AvroSerde(registry)
    for _ in range(20):  # the issue's 20 records
        with pytest.raises(SerializationError, match=r"decoding\.max_items"):
            serde.decode(None, prefix + bomb())
        assert serde.fast_read(prefix + bomb()) is None
        read = serde.fast_reader(sid)  # (the sink's fused form of fast_read)
        assert read is None or read(prefix + bomb()) is None
    ok = prefix + bomb(1000, 2)
    assert serde.decode(None, ok).after["tags"] == [None] * 2000  # type: ignore[union-attr]
    tight = AvroSerde(registry, limits=DecodeLimits(max_items=1999))
    with pytest.raises(SerializationError, match="more than 1999"):
        tight.decode(None, ok)


def test_readers_take_limits_from_their_owner() -> None:
    ws = WriterSchema.parse(ENVELOPE)
    with pytest.raises(SerializationError, match="more than 10 array"):
        EnvelopeReader(ws, DecodeLimits(max_items=10)).decode(bomb(11, 1), None, None)
    key = {"type": "record", "name": "Key", "fields": [{"name": "k", "type": NULLS}]}
    kr = KeyReader(WriterSchema.parse(key), DecodeLimits(max_items=10))
    assert kr.read(blocks(10, 1)) == {"k": [None] * 10}
    with pytest.raises(SerializationError, match="more than 10 array"):
        kr.read(blocks(11, 1))


def test_arrays_inside_named_types_defined_outside_the_schema_are_counted() -> None:
    inner = {"type": "record", "name": "N", "fields": [{"name": "x", "type": NULLS}]}
    schema = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "N"}]}
    python, _ = compile_reader(schema, {"N": inner})
    assert python(blocks(3, 1)) == {"n": {"x": [None] * 3}}
    with pytest.raises(SerializationError, match="more than 2 array"):
        python(blocks(3, 1), DecodeLimits(max_items=2))
