"""Exact-fit checks, and the verifier's canonical text per kind (cross-dialect equality)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.events import Kind
from cdc.sink.values import DoesNotFit, decimal_check, json_value
from cdc.verify import normalizer


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4,
                   min_value=Decimal("-99999"), max_value=Decimal("99999")))
def test_decimal_check_accepts_exactly_what_fits(v: Decimal) -> None:
    check = decimal_check(7, 2, special=False)
    assert check is not None
    fits = v == v.quantize(Decimal("0.01")) and abs(v) < Decimal("100000")
    if fits:
        assert check(v) is v
    else:
        with pytest.raises(DoesNotFit):
            check(v)


def test_json_value_keeps_values_exact() -> None:
    assert json_value([Decimal("1.10"), date(2020, 1, 2), uuid.UUID(int=0), b"\x01", None]) == [
        "1.10", "2020-01-02", "00000000-0000-0000-0000-000000000000", "AQ==", None]


@pytest.mark.parametrize(("kind", "a", "b"), [
    (Kind.BOOLEAN, True, 1),
    (Kind.DECIMAL, Decimal("1.50"), Decimal("1.500000000000000000000000000000")),
    (Kind.UINT64, Decimal("18446744073709551615"), 18446744073709551615),
    (Kind.JSON, {"b": 1, "a": [1, 2]}, '{"a": [1, 2], "b": 1}'),
    (Kind.BITS, "1000000101", b"\x02\x05"),
    (Kind.UUID, uuid.UUID(int=5), "00000000-0000-0000-0000-000000000005"),
    (Kind.DATE, "2024-02-29", date(2024, 2, 29)),
    (Kind.TIME, "12:34:56.5", timedelta(hours=12, minutes=34, seconds=56, milliseconds=500)),
    (Kind.TIME, time(1, 2, 3), timedelta(hours=1, minutes=2, seconds=3)),
    (Kind.TIMETZ, "12:34:56+02", "12:34:56+02:00"),
    (Kind.TIMESTAMP, "2024-01-02 03:04:05.5", datetime(2024, 1, 2, 3, 4, 5, 500_000)),
    (Kind.TIMESTAMPTZ, "2024-01-02 03:04:05+02", datetime(2024, 1, 2, 1, 4, 5)),
    (Kind.TIMESTAMPTZ, datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC), datetime(2024, 1, 2, 1, 4, 5)),
    (Kind.INTERVAL, "P1Y2M3DT4H5M6S", "P0Y14M3DT4H5M6.000S"),
    (Kind.BYTES, memoryview(b"\x00\xff"), b"\x00\xff"),
])
def test_values_of_both_databases_normalise_alike(kind: Kind, a: object, b: object) -> None:
    n = normalizer(kind)
    assert n(a) == n(b)


def test_arrays_normalise_alike_from_lists_and_json() -> None:
    n = normalizer(Kind.ARRAY, Kind.DATE)
    assert n(["2020-01-01", None]) == n('["2020-01-01T00:00:00", null]'.replace("T00:00:00", ""))
    assert normalizer(Kind.ARRAY, Kind.INT32)([1, 2, None]) == normalizer(Kind.ARRAY, Kind.INT32)("[1,2,null]")


def test_different_values_stay_different() -> None:
    n = normalizer(Kind.DECIMAL)
    assert n(Decimal("1.5")) != n(Decimal("1.05"))
    assert normalizer(Kind.STRING)("a") != normalizer(Kind.STRING)("a ")
    assert normalizer(Kind.DATE)(None) is None
