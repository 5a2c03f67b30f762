"""Avro varints: the native ``zigzag`` against the Python reference, and back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.serde import binary

LONGS = st.one_of(
    st.integers(min_value=binary.INT64_MIN, max_value=binary.INT64_MAX),
    st.sampled_from([0, -1, 63, -64, 64, -65, 8191, 8192, -8193, binary.INT32_MIN,
                     binary.INT32_MAX, binary.INT64_MIN, binary.INT64_MAX]),
)


@given(LONGS)
def test_reference_round_trips_through_read_long(n: int) -> None:
    b = binary.py_zigzag(n)
    assert binary.read_long(b, 0) == (n, len(b))
    assert len(b) <= 10


@given(LONGS)
def test_zigzag_writes_the_reference_bytes(n: int) -> None:
    assert binary.zigzag(n) == binary.py_zigzag(n)


@pytest.mark.parametrize("n", [binary.INT64_MAX + 1, binary.INT64_MIN - 1, 1 << 80, -(1 << 80)])
def test_outside_the_long_range_is_refused(n: int) -> None:
    for encode in (binary.zigzag, binary.py_zigzag):
        with pytest.raises(OverflowError):
            encode(n)


def test_known_encodings() -> None:
    # Avro specification examples: 0 -> 00, -1 -> 01, 1 -> 02, -64 -> 7f, 64 -> 80 01.
    assert [binary.py_zigzag(n) for n in (0, -1, 1, -64, 64)] == [
        b"\x00", b"\x01", b"\x02", b"\x7f", b"\x80\x01"]
