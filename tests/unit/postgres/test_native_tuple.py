"""The C TupleData parser agrees with decoder._read_tuple, and never crashes on bad bytes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.postgres.source import decoder as d

pytestmark = pytest.mark.skipif(d._C is None, reason="native parser not built (make native)")
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

values = st.one_of(
    st.none(),
    st.just(d.UNCHANGED_TOAST),
    st.text(max_size=40),
    st.binary(max_size=40),
)


def _encode(vals: list[object]) -> bytes:
    out = [struct.pack(">H", len(vals))]
    for v in vals:
        if v is None:
            out.append(b"n")
        elif v is d.UNCHANGED_TOAST:
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
        return d._read_tuple(buf + d._PAD, pos, len(buf))
    except d._Malformed:
        return "malformed"


def _native(buf: bytes, pos: int) -> object:
    assert d._C is not None
    try:
        return d._C.read_tuple(buf, pos, d.UNCHANGED_TOAST)
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
