"""Exact-fit checks, and the verifier's canonical text per kind (cross-dialect equality)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.errors import DdlRefused
from cdc.events import Kind
from cdc.sink.values import DoesNotFit, db_text, decimal_check, json_value, time_text
from cdc.verify import normalizer
from connectors.mysql.sink.dialect import _float_to_db, _time_to_db
from connectors.postgres.sink.values import interval_from_db
from connectors.postgres.sink.values import time_to_db as pg_time_to_db


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


# -- TIME across dialects, database notation in errors (issue #10) ----------------------------

_TIME_MAX_US = 3_020_399_999_999  # MySQL TIME: 838:59:59.999999


def test_time_text_is_database_notation() -> None:
    assert time_text(timedelta(days=-35, seconds=3601)) == "-838:59:59"
    assert time_text(timedelta(microseconds=_TIME_MAX_US)) == "838:59:59.999999"
    assert time_text(timedelta(microseconds=-1)) == "-00:00:00.000001"
    assert time_text(timedelta(hours=24)) == "24:00:00"
    assert time_text(timedelta(0)) == "00:00:00"


@settings(deadline=None)
@given(st.integers(-_TIME_MAX_US, _TIME_MAX_US))
def test_time_text_and_the_interval_forms_read_back_as_the_same_time(us: int) -> None:
    """What the sink writes into an interval column ([-]H:MM:SS[.f]), and the two ways
    PostgreSQL prints it back, all verify equal to the MySQL TIME value."""

    td = timedelta(microseconds=us)
    norm = normalizer(Kind.TIME)
    assert norm(time_text(td)) == norm(td) == str(us)
    # IntervalStyle iso_8601 of an interval with only a time part: each field signed.
    sign = -1 if us < 0 else 1
    h, rest = divmod(abs(us), 3_600_000_000)
    m, rest = divmod(rest, 60_000_000)
    s, f = divmod(rest, 1_000_000)
    fields = [(h, "H"), (m, "M")]
    iso = "PT" + "".join(f"{sign * v}{u}" for v, u in fields if v)
    if s or f or iso == "PT":
        sec = f"{s}.{f:06}".rstrip("0").rstrip(".")
        iso += ("-" if sign < 0 and (s or f) else "") + sec + "S"
    assert interval_from_db(iso) == td, iso
    assert norm(iso) == str(us), iso


def test_error_texts_show_values_as_the_databases_write_them() -> None:
    assert db_text(float("inf")) == "Infinity" and db_text(float("-inf")) == "-Infinity"
    assert db_text(float("nan")) == "NaN" and db_text(timedelta(days=-35, seconds=3601)) == "-838:59:59"
    assert db_text(b"\x01\xff") == "\\x01ff" and db_text("it's") == "'it''s'"
    assert db_text("x" * 200).endswith("...") and len(db_text("x" * 200)) == 80
    for conv, value, text in ((_float_to_db, float("inf"), "Infinity has no"),
                              (_float_to_db, float("nan"), "NaN has no"),
                              (_time_to_db, timedelta(hours=-839), "TIME -839:00:00 is outside"),
                              (pg_time_to_db, timedelta(days=-35, seconds=3601),
                               "TIME -838:59:59 is outside")):
        with pytest.raises(DoesNotFit) as caught:
            conv(value)
        assert text in str(caught.value) and "days" not in str(caught.value)
    e = DdlRefused("sink s: replica table t column 'b': the replica refused `ALTER ..`: (1071)",
                   statement="ALTER ..", column="b", hint="change it\nby hand")
    assert e.one_line().count("hint:") == 1 and "\n" in str(e)
