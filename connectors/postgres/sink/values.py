"""Value conversion between the engine's canonical values and a PostgreSQL replica's columns.

What :meth:`PostgresDialect.to_db <connectors.postgres.sink.dialect.PostgresDialect.to_db>`
and ``from_db`` return per column: converters from canonical values to what
psycopg dumps into the replica column (dates beyond Python's range as
Julian-day text, infinity and other sentinels, MySQL TIME durations into
``time`` or ``interval``, bit strings, arrays of them), and back from what
the session loads (``time`` as a duration, ISO 8601 intervals, UTC
timestamps, bits, unsigned 64-bit numerics). A value that the column cannot
hold raises :class:`~cdc.sink.values.DoesNotFit` (a data error, never a
silent change).

Pure functions: no SQL, no connection. The SQL is in :mod:`.dialect`, the
I/O in :mod:`.session`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

from cdc.serde.temporal import TemporalSentinel
from cdc.sink.values import DoesNotFit, identity_for, time_text

_EPOCH_JULIAN: Final = 2_440_588  # Julian day of 1970-01-01
_DAY: Final = timedelta(days=1)


def _sentinel_text(v: TemporalSentinel) -> str:
    if v is TemporalSentinel.ZERO:
        raise DoesNotFit("MySQL's zero date has no PostgreSQL representation")
    return str(v.value)


@identity_for(date, datetime)
def date_to_db(v: Any) -> Any:
    if isinstance(v, date):
        return v
    if isinstance(v, TemporalSentinel):
        return _sentinel_text(v)
    if isinstance(v, int):  # days since 1970 beyond Python's date range
        return f"J{_EPOCH_JULIAN + v}"
    return v


@identity_for(datetime)
def ts_to_db(v: Any) -> Any:
    if isinstance(v, TemporalSentinel):
        return _sentinel_text(v)
    return v


def time_to_db(v: Any) -> Any:
    if not isinstance(v, timedelta):
        return v
    if v == _DAY:
        return "24:00:00"
    if not timedelta(0) <= v < _DAY:
        raise DoesNotFit(
            f"TIME {time_text(v)} is outside the range 00:00:00..24:00:00 of the replica's "
            "time column (a replica interval column holds every MySQL TIME)"
        )
    us = v // timedelta(microseconds=1)
    return time(us // 3_600_000_000, us // 60_000_000 % 60, us // 1_000_000 % 60, us % 1_000_000)


def interval_to_db(v: Any) -> Any:
    """A TIME duration into an interval column, as ``[-]H:MM:SS[.f]`` (no day part,
    so the replica prints it as MySQL does)."""
    return time_text(v) if isinstance(v, timedelta) else v


def bits_to_db(width: int | None) -> Callable[[Any], Any]:
    def conv(v: Any) -> Any:
        if not isinstance(v, bytes | bytearray):
            return v
        n = width if width is not None else len(v) * 8
        value = int.from_bytes(v, "big")
        if value >> n:
            raise DoesNotFit(f"bit string of {len(v) * 8} bits does not fit bit({n})")
        return format(value, f"0{n}b") if n else ""

    return conv


def array_to_db(element: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def each(v: list[Any]) -> list[Any]:
        return [None if x is None else each(x) if isinstance(x, list) else element(x) for x in v]

    def conv(v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = each(v)
        kinds = _leaf_types(out, set())
        if str in kinds and len(kinds) > 1:  # e.g. dates and 'infinity': psycopg dumps
            return _as_text(out)  # one element type per list, so all as text
        return out

    return conv


def _leaf_types(v: list[Any], seen: set[type]) -> set[type]:
    for x in v:
        if isinstance(x, list):
            _leaf_types(x, seen)
        elif x is not None:
            seen.add(type(x))
    return seen


def _as_text(v: list[Any]) -> list[Any]:
    return [
        None if x is None
        else _as_text(x) if isinstance(x, list)
        else x.isoformat() if isinstance(x, date | datetime)
        else str(x)
        for x in v
    ]  # fmt: skip


def time_from_db(v: Any) -> Any:
    if isinstance(v, time):
        return timedelta(hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond)
    return v


_ISO_TIME: Final = re.compile(
    r"(-)?P(?:(-?\d+)D)?(?:T(?:(-?\d+)H)?(?:(-?\d+)M)?(?:(-?\d+)(?:\.(\d{1,6}))?S)?)?"
)


def interval_from_db(v: Any) -> Any:
    """An interval column's value (ISO 8601 text: sessions load intervals as the text
    IntervalStyle iso_8601 prints) as the TIME duration it holds."""
    if not isinstance(v, str):
        return v
    m = _ISO_TIME.fullmatch(v)
    if m is None or v in ("P", "PT"):
        return v  # months or years: not a TIME
    sign, d, h, mi, sec, frac = m.groups()
    seconds = int(sec or 0)
    us = int((frac or "0").ljust(6, "0"))
    out = timedelta(days=int(d or 0), hours=int(h or 0), minutes=int(mi or 0), seconds=seconds,
                    microseconds=-us if sec is not None and sec.startswith("-") else us)
    return -out if sign else out


def utc(v: Any) -> Any:
    return v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo is not None else v


def bits_from_db(v: Any) -> Any:
    if isinstance(v, str):
        n = len(v)
        return int(v, 2).to_bytes((n + 7) // 8, "big") if n else b""
    return v


def uint_from_db(v: Any) -> Any:
    return int(v) if isinstance(v, Decimal) else v
