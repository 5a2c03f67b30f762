"""Dates and times on the wire: sentinels, calendar arithmetic, their codecs.

Part of the serde's type layer (:mod:`cdc.serde.types` builds the
:class:`~cdc.serde.types.AvroType` of each date/time kind from the functions
here; :mod:`cdc.serde.field_decoding` reads Debezium's date/time fields with
them; :mod:`cdc.serde.rowdecode` hands the common converters to the C reader).

* :class:`TemporalSentinel`: the date/time values outside what Python's
  ``date``/``datetime`` can hold (``infinity``/``-infinity`` and the zero
  date), and their wire forms: the extreme ints/longs (``DATE_WIRE``,
  ``TIMESTAMP_WIRE``) or strings (``TIMESTAMPTZ_WIRE``), see
  ``schemas/TYPES.md``.
* Calendar arithmetic for any year (proleptic Gregorian, astronomical years):
  finite values outside Python's range travel as int days/microseconds and
  as ISO 8601 text with Java-style years.
* The canonical value <-> wire conversions and the Avro encoders of DATE,
  TIME, TIMESTAMP and TIMESTAMPTZ, and the converters of the other time units
  (millis, nanos) other writers use.

It knows no Avro schema and no database: those are the mapping's and the
connectors' business.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any, Final

from cdc.errors import SerializationError
from cdc.serde import binary
from cdc.serde.value_codecs import type_error

# --------------------------------------------------------------------------- sentinels


class TemporalSentinel(Enum):
    """Date/time values outside what Python's ``date``/``datetime`` can hold.

    Sources put these in rows instead of a date or datetime; sink dialects
    turn them back into the database's own spelling (PostgreSQL
    ``'infinity'``, MySQL ``'0000-00-00'``).
    """

    POS_INFINITY = "infinity"
    NEG_INFINITY = "-infinity"
    ZERO = "0000-00-00"  # MySQL's zero date / zero datetime

    def __repr__(self) -> str:
        return f"TemporalSentinel.{self.name}"


POS_INFINITY: Final = TemporalSentinel.POS_INFINITY
NEG_INFINITY: Final = TemporalSentinel.NEG_INFINITY
ZERO: Final = TemporalSentinel.ZERO
POS_INFINITY_DATE: Final = POS_INFINITY
NEG_INFINITY_DATE: Final = NEG_INFINITY
POS_INFINITY_TS: Final = POS_INFINITY
NEG_INFINITY_TS: Final = NEG_INFINITY
ZERO_DATE: Final = ZERO
ZERO_DATETIME: Final = ZERO

# Wire forms. Dates are Avro ints (days since 1970-01-01): PostgreSQL itself
# uses INT32_MIN/INT32_MAX for -infinity/infinity and its finite range stops
# far from both, so INT32_MIN + 1 is free for the zero date. Timestamps are
# longs of microseconds since 1970-01-01, same idea one size up.
DATE_WIRE: Final[Mapping[TemporalSentinel, int]] = {
    POS_INFINITY: binary.INT32_MAX,
    NEG_INFINITY: binary.INT32_MIN,
    ZERO: binary.INT32_MIN + 1,
}
TIMESTAMP_WIRE: Final[Mapping[TemporalSentinel, int]] = {
    POS_INFINITY: binary.INT64_MAX,
    NEG_INFINITY: binary.INT64_MIN,
    ZERO: binary.INT64_MIN + 1,
}
TIMESTAMPTZ_WIRE: Final[Mapping[TemporalSentinel, str]] = {
    POS_INFINITY: "infinity",
    NEG_INFINITY: "-infinity",
    ZERO: "0000-00-00T00:00:00Z",
}
_DATE_FROM_WIRE = {v: k for k, v in DATE_WIRE.items()}
_TIMESTAMP_FROM_WIRE = {v: k for k, v in TIMESTAMP_WIRE.items()}
_TIMESTAMPTZ_FROM_WIRE = {v: k for k, v in TIMESTAMPTZ_WIRE.items()}

_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MIN_ORDINAL: Final = date.min.toordinal()
_MAX_ORDINAL: Final = date.max.toordinal()
_EPOCH: Final = datetime(1970, 1, 1)
_ONE_US: Final = timedelta(microseconds=1)
_MIN_MICROS: Final = (datetime.min - _EPOCH) // _ONE_US
_MAX_MICROS: Final = (datetime.max - _EPOCH) // _ONE_US

_zz = binary.zigzag

# --------------------------------------------------------------------------- conversions


def _date_to_wire(v: Any) -> int:
    if isinstance(v, date) and not isinstance(v, datetime):
        return v.toordinal() - _EPOCH_ORDINAL
    if isinstance(v, TemporalSentinel):
        return DATE_WIRE[v]
    if isinstance(v, int) and not isinstance(v, bool):
        # Days outside Python's date range (PostgreSQL goes to 4713 BC / 5874897 AD).
        if not binary.INT32_MIN < v < binary.INT32_MAX or v in _DATE_FROM_WIRE:
            raise SerializationError(f"date {v} days since 1970 is outside the DATE range")
        return v
    raise type_error("a date, int days or a TemporalSentinel", v)


def date_from_wire(n: int) -> date | int | TemporalSentinel:
    s = _DATE_FROM_WIRE.get(n)
    if s is not None:
        return s
    o = n + _EPOCH_ORDINAL
    if _MIN_ORDINAL <= o <= _MAX_ORDINAL:
        return date.fromordinal(o)
    return n


def _ts_to_wire(v: Any) -> int:
    if isinstance(v, datetime):
        if v.tzinfo is not None:
            raise SerializationError(f"TIMESTAMP needs a naive datetime, got aware {v!r}")
        return (v - _EPOCH) // _ONE_US
    if isinstance(v, TemporalSentinel):
        return TIMESTAMP_WIRE[v]
    if isinstance(v, int) and not isinstance(v, bool):
        return _out_of_range_micros(v)
    raise type_error("a naive datetime, int microseconds or a TemporalSentinel", v)


def _out_of_range_micros(v: int) -> int:
    # Microseconds since 1970 outside Python's datetime range (PostgreSQL goes
    # from 4713 BC to 294276 AD). An Avro long holds up to ~292277 AD.
    if not binary.INT64_MIN < v < binary.INT64_MAX or v in _TIMESTAMP_FROM_WIRE:
        raise SerializationError(f"timestamp {v} us since 1970 does not fit a TIMESTAMP long")
    return v


def ts_from_micros(n: int) -> datetime | int | TemporalSentinel:
    s = _TIMESTAMP_FROM_WIRE.get(n)
    if s is not None:
        return s
    if _MIN_MICROS <= n <= _MAX_MICROS:
        return _EPOCH + timedelta(microseconds=n)
    return n  # outside Python's range: the canonical int


def civil_from_days(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) of a day number (0 = 1970-01-01).

    Astronomical years (0 is 1 BC), as ISO 8601 and Java print them: Python's
    date stops at years 1..9999, PostgreSQL does not.
    """
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def days_from_civil(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


def _micros_to_iso(n: int) -> str:
    """ISO 8601 in UTC for any microsecond count, Java-style years outside 0..9999."""
    days, rem = divmod(n, 86_400_000_000)
    y, m, d = civil_from_days(days)
    secs, us = divmod(rem, 1_000_000)
    hh, secs = divmod(secs, 3600)
    mm, ss = divmod(secs, 60)
    year = f"{y:04d}" if 0 <= y <= 9999 else f"{'+' if y > 0 else '-'}{abs(y):04d}"
    frac = f".{us:06d}" if us else ""
    return f"{year}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}{frac}Z"


_ISO_ANY_YEAR = re.compile(
    r"([+-]?\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)\Z"
)


def _iso_to_micros(s: str) -> int | None:
    m = _ISO_ANY_YEAR.match(s)
    if m is None:
        return None
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    micros = (
        days_from_civil(int(year), int(month), int(day)) * 86_400_000_000
        + (int(hh) * 3600 + int(mm) * 60 + int(ss)) * 1_000_000
        + (int(frac[:6].ljust(6, "0")) if frac else 0)
    )
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        micros -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60) * 1_000_000
    return micros


def _tstz_to_wire(v: Any) -> str:
    if isinstance(v, datetime):
        if v.utcoffset() is None:
            raise SerializationError(f"TIMESTAMPTZ needs an aware datetime, got naive {v!r}")
        try:
            s = v.astimezone(UTC).isoformat()
        except OverflowError as e:
            raise SerializationError(
                f"{v!r} is outside datetime's range in UTC (pass int microseconds)"
            ) from e
        return s[:-6] + "Z"  # isoformat ends in "+00:00"; Debezium writes "Z"
    if isinstance(v, TemporalSentinel):
        return TIMESTAMPTZ_WIRE[v]
    if isinstance(v, int) and not isinstance(v, bool):
        return _micros_to_iso(v)  # outside Python's range (PostgreSQL BC, year > 9999)
    raise type_error("an aware datetime, int microseconds or a TemporalSentinel", v)


def tstz_from_wire(s: str) -> datetime | int | TemporalSentinel:
    special = _TIMESTAMPTZ_FROM_WIRE.get(s)
    if special is not None:
        return special
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        micros = _iso_to_micros(s)  # a year Python cannot hold
        if micros is None:
            raise SerializationError(f"not an ISO-8601 timestamp with zone: {s!r}") from None
        return utc_from_micros(micros)
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    if dt.tzinfo is UTC:
        return dt
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        micros = _iso_to_micros(s)
        assert micros is not None  # fromisoformat accepted it, so the pattern does too
        return micros


def _time_to_wire(v: Any) -> int:
    if isinstance(v, timedelta):
        return v // _ONE_US
    raise type_error("a timedelta", v)


def time_from_micros(n: int) -> timedelta:
    return timedelta(microseconds=n)


# Other writers' time units (Debezium's millis and nanos variants).


def millis_to_timedelta(n: int) -> timedelta:
    return timedelta(milliseconds=n)


def nanos_to_timedelta(n: int) -> timedelta:
    return timedelta(microseconds=n // 1000)


def ts_from_millis(n: int) -> datetime | int | TemporalSentinel:
    return ts_from_micros(n * 1000)


def ts_from_nanos(n: int) -> datetime | int | TemporalSentinel:
    return ts_from_micros(n // 1000)


def utc_from_micros(n: int) -> datetime | int | TemporalSentinel:
    v = ts_from_micros(n)
    return v.replace(tzinfo=UTC) if isinstance(v, datetime) else v


def utc_from_millis(n: int) -> datetime | int | TemporalSentinel:
    return utc_from_micros(n * 1000)


# --------------------------------------------------------------------------- encoders


def enc_date(v: Any) -> bytes:
    if v.__class__ is date:
        return _zz(v.toordinal() - _EPOCH_ORDINAL)
    return _zz(_date_to_wire(v))


def enc_time(v: Any) -> bytes:
    return _zz(_time_to_wire(v))


def enc_timestamp(v: Any) -> bytes:
    return _zz(_ts_to_wire(v))


def enc_timestamptz(v: Any) -> bytes:
    b = _tstz_to_wire(v).encode()
    return _zz(len(b)) + b
