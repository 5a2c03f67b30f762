"""The sink's consumed messages into buffers: the native take() against the reference loop.

``SinkWorker._add`` hands runs of plain messages (no error, an assigned
partition, no headers) to ``cdc.sink._crecords.take`` and handles every other
message itself; with the native module off (``_take`` None) its loop is the
whole path. Both must leave the same records in the same buffers, in order,
and count the same, whatever the mix: errors, unassigned partitions, headers,
tombstones, missing keys and offsets, partition changes at any point.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc import native
from cdc.sink import worker as worker_mod
from cdc.sink.applier import Record
from cdc.sink.worker import SinkWorker

crecords = native.load("cdc.sink._crecords")
ASSIGNED = [("a", 0), ("a", 1), ("b", 0)]


def _worker(errors: list[KafkaError]) -> SinkWorker:
    w = SinkWorker.__new__(SinkWorker)
    w._buffers = {tp: [] for tp in ASSIGNED}  # type: ignore[misc]
    w._buffered = 0
    w._stalled = True
    w._drained = True
    w._oldest = 0.0
    w.name = "test"
    w._consumer_error = errors.append  # type: ignore[method-assign]
    return w


def _fields(r: Record) -> tuple[Any, ...]:
    return tuple(getattr(r, f.name) for f in dataclasses.fields(Record))


def _run(messages: list[Message], native_on: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    errors: list[KafkaError] = []
    w = _worker(errors)
    with monkeypatch.context() as m:
        if not native_on:
            m.setattr(worker_mod, "_take", None)
        w._add(messages)
    buffers = {tp: [_fields(r) for r in buf] for tp, buf in w._buffers.items()}
    return buffers, w._buffered, [e.code() for e in errors], w._stalled, w._oldest > 0


def _message(tp: tuple[str, int], offset: int | None, key: bytes | None, value: bytes | None,
             headers: list[tuple[str, Any]] | None, error: bool) -> Message:
    kw: dict[str, Any] = {} if offset is None else {"offset": offset}  # omitted: offset() None
    if error:
        kw["error"] = KafkaError(KafkaError._PARTITION_EOF)
    return Message(topic=tp[0], partition=tp[1], key=key, value=value, headers=headers, **kw)


message = st.builds(
    _message,
    st.sampled_from([*ASSIGNED, ("a", 2), ("c", 0)]),
    st.one_of(st.none(), st.integers(0, 2**62)),
    st.one_of(st.none(), st.binary(max_size=8)),
    st.one_of(st.none(), st.binary(max_size=16)),
    st.one_of(st.none(), st.just([]), st.just([("h", b"1"), ("t", "x")])),
    st.booleans(),
)


@pytest.mark.skipif(crecords is None, reason="cdc.sink._crecords not built")
@settings(max_examples=300, deadline=None)
@given(st.lists(message, max_size=40))
def test_take_buffers_what_the_reference_buffers(messages: list[Message]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        assert _run(messages, True, mp) == _run(messages, False, mp)


@pytest.mark.skipif(crecords is None, reason="cdc.sink._crecords not built")
def test_take_stops_at_the_first_message_it_leaves_to_the_reference() -> None:
    assert crecords is not None
    make = native.positional_constructor(Record)
    buffers: dict[tuple[str, int], list[Record]] = {("a", 0): [], ("a", 1): []}
    plain = [Message(topic="a", partition=p, offset=o, key=b"k", value=b"v")
             for p, o in ((0, 1), (1, 7), (0, 2))]
    odd = [
        Message(topic="a", partition=0, offset=3, error=KafkaError(KafkaError._PARTITION_EOF)),
        Message(topic="a", partition=5, offset=3),  # not assigned
        Message(topic="a", partition=0, offset=3, headers=[("h", b"1")]),
    ]
    for stop in odd:
        for b in buffers.values():
            b.clear()
        assert crecords.take([*plain, stop, *plain], 0, buffers, make) == (3, 3)
        assert [r.offset for r in buffers[("a", 0)]] == [1, 2]
        assert crecords.take([*plain, stop, *plain], 4, buffers, make) == (3, 7)
        assert [r.offset for r in buffers[("a", 0)]] == [1, 2, 1, 2]
    assert crecords.take([], 0, buffers, make) == (0, 0)
    with pytest.raises(TypeError):
        crecords.take(tuple(plain), 0, buffers, make)
    with pytest.raises(ValueError):
        crecords.take(plain, -1, buffers, make)


def test_the_reference_counts_and_routes_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [
        Message(topic="a", partition=0, key=None, value=None),
        Message(topic="b", partition=0, offset=4, key=b"k", value=b"v", headers=[("h", "x")]),
        Message(topic="c", partition=0, offset=1),
        Message(topic="a", partition=1, error=KafkaError(KafkaError._PARTITION_EOF)),
    ]
    buffers, count, errors, stalled, timed = _run(messages, False, monkeypatch)
    assert count == 2 and errors == [KafkaError._PARTITION_EOF] and not stalled and timed
    assert buffers[("a", 0)] == [("a", 0, 0, None, None, None, None, None)]
    assert buffers[("b", 0)] == [("b", 0, 4, b"k", b"v", [("h", b"x")], None, None)]
