"""The C TupleData parser agrees with decoder._read_tuple, and never crashes on bad bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.postgres.source import decoder, messages

pytestmark = pytest.mark.skipif(decoder._C is None, reason="native parser not built (make native)")
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

values = st.one_of(
    st.none(),
    st.just(messages.UNCHANGED_TOAST),
    st.text(max_size=40),
    st.binary(max_size=40),
)


def _encode(vals: list[object]) -> bytes:
    out = [struct.pack(">H", len(vals))]
    for v in vals:
        if v is None:
            out.append(b"n")
        elif v is messages.UNCHANGED_TOAST:
            out.append(b"u")
        elif isinstance(v, str):
            b = v.encode("utf-8", "surrogatepass")
            out.append(b"t" + struct.pack(">I", len(b)) + b)
        else:
            assert isinstance(v, bytes)
            out.append(b"b" + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def _python(buf: bytes, pos: int) -> object:
    try:
        return decoder._read_tuple(buf + decoder._PAD, pos, len(buf))
    except decoder._Malformed:
        return "malformed"


def _native(buf: bytes, pos: int) -> object:
    assert decoder._C is not None
    try:
        return decoder._C.read_tuple(buf, pos, messages.UNCHANGED_TOAST)
    except ValueError:
        return "malformed"


@SETTINGS
@given(st.lists(values, max_size=30), st.binary(max_size=3))
def test_well_formed_tuples_parse_identically(vals: list[object], head: bytes) -> None:
    buf = head + _encode(vals) + b"tail"
    assert _native(buf, len(head)) == _python(buf, len(head))
    assert _native(buf, len(head)) == (tuple(vals), len(buf) - 4)


@SETTINGS
@given(st.lists(values, max_size=8), st.data())
def test_damaged_tuples_agree_or_fall_back(vals: list[object], data: st.DataObject) -> None:
    buf = bytearray(_encode(vals))
    for _ in range(data.draw(st.integers(1, 3))):
        if buf:
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    damaged = bytes(buf[:cut])
    # The decoder falls back to Python when C says malformed, so C may only be
    # stricter than the reference, never accept something different.
    native = _native(damaged, 0)
    if native != "malformed":
        assert native == _python(damaged, 0)


def test_invalid_utf8_and_unknown_kinds_are_malformed() -> None:
    assert _native(b"\x00\x01t\x00\x00\x00\x01\xff", 0) == "malformed"
    assert _native(b"\x00\x01x", 0) == "malformed"
    assert _native(b"\x00", 0) == "malformed"
    assert _native(b"\x00\x02n", 0) == "malformed"


def _row_message(tag: bytes, in_stream: bool, new: list[object] | None,
                 old: list[object] | None, old_kind: bytes) -> bytes:
    out = tag + (struct.pack(">I", 77) if in_stream else b"") + struct.pack(">I", 16384)
    if old is not None:
        out += old_kind + _encode(old)
    if new is not None:
        out += b"N" + _encode(new)
    return out


def _decoded_python(payload: bytes, in_stream: bool) -> object:
    msg = decoder.decode_message(payload, in_stream=in_stream)
    if isinstance(msg, messages.Insert):
        return msg.relation_id, msg.new, None, None
    if isinstance(msg, messages.Update):
        return msg.relation_id, msg.new, msg.old, msg.old_kind
    assert isinstance(msg, messages.Delete)
    return msg.relation_id, None, msg.old, msg.old_kind


@SETTINGS
@given(st.sampled_from([b"I", b"U", b"D"]), st.booleans(), st.lists(values, max_size=6),
       st.lists(values, max_size=6), st.sampled_from([b"K", b"O", b""]), st.data())
def test_row_messages_decode_identically(
    tag: bytes, in_stream: bool, new: list[object], old: list[object], kind: bytes,
    data: st.DataObject,
) -> None:
    if tag == b"I":
        payload = _row_message(tag, in_stream, new, None, b"")
    elif tag == b"U":
        payload = _row_message(tag, in_stream, new, old if kind else None, kind)
    else:
        payload = _row_message(tag, in_stream, None, old, kind or b"K")
    assert decoder._C is not None
    assert decoder._C.parse_row(payload, in_stream, messages.UNCHANGED_TOAST) == _decoded_python(
        payload, in_stream)
    assert decoder.decode_row(payload, in_stream) == _decoded_python(payload, in_stream)
    # Damaged: the C parser may refuse (then decode_row raises the reference error) but
    # never disagree with the reference. The tag byte stays: the stream calls
    # decode_row only for I/U/D messages (another tag is another message).
    cut = data.draw(st.integers(1, len(payload)))
    damaged = payload[:cut] + data.draw(st.binary(max_size=3))
    try:
        expected: object = _decoded_python(damaged, in_stream)
    except decoder.SerializationError as e:
        expected = ("error", str(e))
    try:
        got: object = decoder.decode_row(damaged, in_stream)
    except decoder.SerializationError as e:
        got = ("error", str(e))
    assert got == expected


def test_positions_near_the_top_of_the_range_are_malformed_not_out_of_bounds() -> None:
    """``pos + 2`` overflowed for a position near PY_SSIZE_T_MAX (issue #11 review):
    the bounds checks are now written as ``end - pos``, which cannot overflow."""
    import sys

    for pos in (sys.maxsize, sys.maxsize - 1, sys.maxsize - 4, 3, -1):
        with pytest.raises(ValueError):
            decoder._C.read_tuple(b"\x00\x01t", pos, None)  # type: ignore[union-attr]
