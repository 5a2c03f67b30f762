"""The snapshot-replication schedule: cron parsing and next run times (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.snapshot.schedule import Cron, CronError, Schedule


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("expr", "after", "expected"), [
    ("0 2 * * *", "2026-12-06 22:50", "2026-12-07 02:00"),
    ("0 2 * * *", "2026-12-07 01:59:59", "2026-12-07 02:00"),
    ("0 2 * * *", "2026-12-07 02:00", "2026-12-08 02:00"),  # strictly after
    ("*/15 * * * *", "2026-12-06 22:50", "2026-12-06 23:00"),
    ("30 8 * * mon-fri", "2026-12-05 09:00", "2026-12-07 08:30"),  # Saturday -> Monday
    ("0 0 1 * *", "2026-12-06 00:00", "2027-01-01 00:00"),
    ("0 0 29 feb *", "2026-03-01 00:00", "2028-02-29 00:00"),
    ("0 12 13 * 5", "2026-12-06 00:00", "2026-12-11 12:00"),  # day 13 OR Friday (Vixie)
    ("5 4 * * 7", "2026-12-06 04:05", "2026-12-13 04:05"),  # 7 is Sunday
    ("0 9-17/4 * * *", "2026-12-06 10:00", "2026-12-06 13:00"),
])
def test_next_after(expr: str, after: str, expected: str) -> None:
    assert Cron.parse(expr).next_after(_at(after)) == _at(expected)


@pytest.mark.parametrize(("expr", "message"), [
    ("0 2 * *", "has 4 fields"),
    ("60 * * * *", "minute: 60 is outside 0-59"),
    ("* 24 * * *", "hour: 24 is outside 0-23"),
    ("* * * foo *", "month: 'foo' is not a number or a name"),
    ("*/0 * * * *", "step '0' must be a positive number"),
    ("5-1 * * * *", "runs backwards"),
    ("1,,2 * * * *", "empty list item"),
])
def test_invalid_expressions_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        Cron.parse(expr)


def test_impossible_date_is_an_error_not_a_hang() -> None:
    with pytest.raises(CronError, match="matches no time"):
        Cron.parse("0 0 30 feb *").next_after(_at("2026-01-01 00:00"))


def test_interval_counts_from_the_last_start() -> None:
    assert Schedule(interval_s=90).next_after(_at("2026-12-06 10:00")) == _at("2026-12-06 10:01:30")


def _matches(cron: Cron, t: datetime) -> bool:
    return (t.minute in cron.minutes and t.hour in cron.hours and cron._day_matches(t))


_field = st.one_of(st.just("*"), st.integers(0, 5).map(str), st.just("*/7"), st.just("1-3"))


@settings(max_examples=150, deadline=None)
@given(minute=st.sampled_from(["*", "0", "*/15", "7,31", "50-59"]),
       hour=st.sampled_from(["*", "0", "*/6", "13", "22-23"]),
       dom=st.sampled_from(["*", "1", "15", "28-31", "*/10"]),
       month=st.sampled_from(["*", "1", "feb", "6-8", "*/5"]),
       dow=st.sampled_from(["*", "0", "mon-fri", "sat,sun", "3"]),
       start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2030, 1, 1)))
def test_next_after_is_the_first_matching_minute(minute: str, hour: str, dom: str, month: str,
                                                 dow: str, start: datetime) -> None:
    cron = Cron.parse(f"{minute} {hour} {dom} {month} {dow}")
    t = start.replace(tzinfo=UTC)
    got = cron.next_after(t)
    assert got > t and got.second == 0 and _matches(cron, got)
    # No matching minute in between (checked over the first day after t, minute by minute).
    probe = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = min(got, probe + timedelta(days=1))
    while probe < end:
        assert not _matches(cron, probe), probe
        probe += timedelta(minutes=1)
