"""PostgreSQL's text output -> canonical Python values: the per-type parsers.

The converters :mod:`connectors.postgres.types` puts in its built-in table
(and applies per value, or per row with ``make_row_converter``): booleans,
``bytea`` (hex and escape), ``money`` in any ``lc_monetary`` layout, bit
strings, dates and timestamps including BC years, years past 9999 and
``infinity`` (as days/microseconds since 1970 or a
:class:`~cdc.serde.temporal.TemporalSentinel` where Python's types end),
``time``/``timetz``, intervals (to ISO 8601) and array literals (nested,
quoted, escaped). They parse what a server prints under
:data:`connectors.postgres.types.SESSION_SETTINGS` and raise ``ValueError``
(or :class:`~cdc.errors.SerializationError`) on anything else.

Pure functions on strings: no type OIDs, no catalog, no I/O. They run per
value on the source's hot path, so they are plain module-level functions
with their regexes compiled once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from cdc.serde.temporal import NEG_INFINITY, POS_INFINITY, TemporalSentinel

# --- converters: numbers, text, bytes ----------------------------------------

_BOOL: Final = {"t": True, "f": False}


def parse_bool(s: str) -> bool:
    return _BOOL[s]


def parse_bytea(s: str) -> bytes:
    if s.startswith("\\x"):
        return bytes.fromhex(s[2:])
    # bytea_output = 'escape': printable ASCII as is, \\ and \ooo octal escapes.
    raw = s.encode("ascii")
    if b"\\" not in raw:
        return raw
    return re.sub(rb"\\(\\|[0-3][0-7]{2})", _unescape_octal, raw)


def _unescape_octal(m: re.Match[bytes]) -> bytes:
    g = m.group(1)
    return b"\\" if g == b"\\" else bytes((int(g, 8),))


_MONEY_JUNK: Final = re.compile(r"[^0-9.,]")


def parse_money(s: str) -> Decimal:
    """Parse money text robustly across lc_monetary locales with 2 fraction digits.

    Currency symbols, spaces and grouping are dropped; the fraction is the
    two digits after the last '.' or ','; '-' or '(' anywhere means negative.
    """
    neg = "-" in s or "(" in s
    digits = _MONEY_JUNK.sub("", s)
    cut = max(digits.rfind("."), digits.rfind(","))
    if cut < 0 or len(digits) - cut != 3:
        raise ValueError("expected exactly 2 fraction digits (set lc_monetary=C)")
    whole = digits[:cut].replace(".", "").replace(",", "") or "0"
    return Decimal(f"{'-' if neg else ''}{whole}.{digits[cut + 1 :]}")


def parse_bits(s: str) -> bytes:
    return int(s, 2).to_bytes((len(s) + 7) // 8, "big") if s else b""


# --- converters: dates and times ---------------------------------------------

_UTC: Final = UTC
_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_AWARE: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DATE_RE: Final = re.compile(r"(\d{4,})-(\d\d)-(\d\d)( BC)?")
_TS_RE: Final = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
    r"(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?"
)
_TIME_RE: Final = re.compile(r"(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
_TIMETZ_RE: Final = re.compile(
    r"(\d\d:\d\d:\d\d(?:\.\d{1,6})?)([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?"
)


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 in the proleptic Gregorian calendar, any year.

    ``year`` is astronomical (0 = 1 BC), as PostgreSQL counts internally.
    """
    if not (1 <= month <= 12 and 1 <= day <= 31):
        raise ValueError(f"invalid date {year}-{month}-{day}")
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _year(text: str, bc: str | None) -> int:
    y = int(text)
    return 1 - y if bc else y


def parse_date(s: str) -> date | int | TemporalSentinel:
    if len(s) == 10:
        return date.fromisoformat(s)
    if s == "infinity":
        return POS_INFINITY
    if s == "-infinity":
        return NEG_INFINITY
    m = _DATE_RE.fullmatch(s)
    if m is None:
        raise ValueError("not an ISO date (set DateStyle=ISO)")
    y, mo, d = _year(m[1], m[4]), int(m[2]), int(m[3])
    if 1 <= y <= 9999:
        return date(y, mo, d)
    return days_from_civil(y, mo, d)  # outside Python's range: days since epoch


def _fraction_us(f: str | None) -> int:
    return int(f.ljust(6, "0")) if f else 0


def _ts_slow(s: str, aware: bool) -> datetime | int | TemporalSentinel:
    """Infinity, BC and year > 9999 timestamps; out of Python's range -> epoch µs."""
    if s == "infinity":
        return POS_INFINITY
    if s == "-infinity":
        return NEG_INFINITY
    m = _TS_RE.fullmatch(s)
    if m is None or (m[8] is not None) != aware:
        raise ValueError("not an ISO timestamp (set DateStyle=ISO)")
    y = _year(m[1], m[12])
    us = (
        (days_from_civil(y, int(m[2]), int(m[3])) * 86400 + int(m[4]) * 3600 + int(m[5]) * 60)
        + int(m[6])
    ) * 1_000_000 + _fraction_us(m[7])
    if aware:
        offset = int(m[9]) * 3600 + int(m[10] or 0) * 60 + int(m[11] or 0)
        us -= (offset if m[8] == "+" else -offset) * 1_000_000
    try:
        return (
            _EPOCH_AWARE + timedelta(microseconds=us)
            if aware
            else _EPOCH + timedelta(microseconds=us)
        )
    except OverflowError:
        return us  # outside Python's datetime range: µs since the unix epoch


def parse_timestamp(s: str) -> datetime | int | TemporalSentinel:
    if len(s) >= 19 and s[4] == "-" and s[-1] != "C":
        return datetime.fromisoformat(s)
    return _ts_slow(s, False)


def parse_timestamptz(s: str) -> datetime | int | TemporalSentinel:
    if len(s) >= 22 and s[4] == "-" and s[-1] != "C":
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is _UTC:
            return dt
        try:
            return dt.astimezone(_UTC)
        except OverflowError:
            pass  # e.g. 9999-12-31 23:00-05: representable only as epoch µs
    return _ts_slow(s, True)


# The first branch of a converter, as an expression the generated row builder writes
# inline (connectors/postgres/source/catalog.py), saving a call per value: ``{v}`` is
# the text, ``{c}`` the converter itself, which still takes everything else and owns
# the errors. Each must give what the converter gives (tests/unit/postgres/test_row_builder.py).
INLINE: Final[dict[Callable[[str], Any], tuple[str, dict[str, Any]]]] = {
    parse_bool: ("_bool[{v}]", {"_bool": _BOOL}),
    parse_date: ("(_date({v}) if len({v}) == 10 else {c}({v}))", {"_date": date.fromisoformat}),
    parse_timestamp: (
        "(_datetime({v}) if len({v}) >= 19 and {v}[4] == '-' and {v}[-1] != 'C' else {c}({v}))",
        {"_datetime": datetime.fromisoformat},
    ),
}


def parse_time(s: str) -> timedelta:
    m = _TIME_RE.fullmatch(s)
    if m is None:
        raise ValueError("not a time of day")
    return timedelta(
        hours=int(m[1]), minutes=int(m[2]), seconds=int(m[3]), microseconds=_fraction_us(m[4])
    )


def parse_timetz(s: str) -> str:
    """``HH:MM:SS[.f]+HH:MM[:SS]``: PostgreSQL's text with the offset written in full."""
    m = _TIMETZ_RE.fullmatch(s)
    if m is None:
        raise ValueError("not a time with time zone")
    tail = f":{m[5]}" if m[5] else ""
    return f"{m[1]}{m[2]}{m[3]}:{m[4] or '00'}{tail}"


_INTERVAL_RE: Final = re.compile(
    r"(?:([+-]?\d+) years?)? ?(?:([+-]?\d+) mons?)? ?(?:([+-]?\d+) days?)? ?"
    r"(?:([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?"
)


def interval_to_iso(s: str) -> str:
    """Convert an interval in IntervalStyle ``postgres`` to ISO 8601.

    The result is exactly what the server prints with IntervalStyle
    ``iso_8601`` (``P1Y2M3DT4H5M6.5S``; each field keeps its own sign, as
    PostgreSQL's fields do). Input already in ISO form passes through;
    ``infinity``/``-infinity`` (PostgreSQL 17+) stay as those words.
    """
    if s.startswith("P") or s in ("infinity", "-infinity"):
        return s
    m = _INTERVAL_RE.fullmatch(s)
    if m is None or not s:
        raise ValueError("not an interval in IntervalStyle postgres")
    years, mons, days = int(m[1] or 0), int(m[2] or 0), int(m[3] or 0)
    hours = int(m[5] or 0)
    mins = int(m[6] or 0)
    secs = int(m[7] or 0)
    frac = m[8] or ""
    neg = m[4] == "-"
    parts = ["P"]
    if years:
        parts.append(f"{years}Y")
    if mons:
        parts.append(f"{mons}M")
    if days:
        parts.append(f"{days}D")
    frac = frac.rstrip("0")
    if hours or mins or secs or frac:
        sign = "-" if neg else ""
        parts.append("T")
        if hours:
            parts.append(f"{sign}{hours}H")
        if mins:
            parts.append(f"{sign}{mins}M")
        if secs or frac:
            parts.append(f"{sign}{secs}{'.' + frac if frac else ''}S")
    return "".join(parts) if len(parts) > 1 else "PT0S"


# --- arrays ------------------------------------------------------------------

_QUOTED: Final = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_BACKSLASH: Final = re.compile(r"\\(.)", re.S)


def array_parser(conv: Callable[[str], Any], delim: str) -> Callable[[str], list[Any]]:
    """Build a parser for array literals (``{1,NULL,"a b"}``, nested ``{{..},{..}}``)."""

    def parse(s: str) -> list[Any]:
        if s[:1] == "[":
            # '[0:2]={...}': PostgreSQL prints bounds only when one isn't 1.
            raise ValueError(
                "arrays with a lower bound other than 1 are not supported "
                f"(dimensions {s[: s.find('=')]!r})"
            )
        if s[:1] != "{" or s[-1:] != "}":
            raise ValueError("not an array literal")
        inner = s[1:-1]
        if not inner:
            return []
        if '"' not in inner and "{" not in inner and "\\" not in inner:
            return [None if e == "NULL" else conv(e) for e in inner.split(delim)]
        return _parse_array(s, conv, delim)

    return parse


def _parse_array(s: str, conv: Callable[[str], Any], delim: str) -> list[Any]:
    """General case: nesting, quoting, escapes. Strict about structure."""
    root: list[Any] = []
    stack: list[list[Any]] = []
    cur: list[Any] | None = None
    expect_item = True  # after '{' or a delimiter
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "{":
            new: list[Any] = []
            if cur is None:
                if i:
                    raise ValueError(f"unexpected '{{' at {i}")
                root = new
            else:
                if not expect_item:
                    raise ValueError(f"unexpected '{{' at {i}")
                cur.append(new)
                stack.append(cur)
            cur = new
            expect_item = True
            i += 1
        elif c == "}":
            if cur is None or (expect_item and cur):
                raise ValueError(f"unexpected '}}' at {i}")
            cur = stack.pop() if stack else None
            expect_item = False
            i += 1
            if cur is None and i != n:
                raise ValueError(f"text after the array at {i}")
        elif c == delim:
            if expect_item or cur is None:
                raise ValueError(f"unexpected {delim!r} at {i}")
            expect_item = True
            i += 1
        elif cur is None or not expect_item:
            raise ValueError(f"unexpected {c!r} at {i}")
        elif c == '"':
            m = _QUOTED.match(s, i)
            if m is None:
                raise ValueError(f"unterminated quoted element at {i}")
            text = m[1]
            cur.append(conv(_BACKSLASH.sub(r"\1", text) if "\\" in text else text))
            expect_item = False
            i = m.end()
        else:
            j = i
            while j < n and s[j] != delim and s[j] != "}":
                j += 2 if s[j] == "\\" else 1
            tok = s[i:j].strip()
            if tok.upper() == "NULL":
                cur.append(None)
            else:
                cur.append(conv(_BACKSLASH.sub(r"\1", tok) if "\\" in tok else tok))
            expect_item = False
            i = j
    if cur is not None or stack:
        raise ValueError("unterminated array literal")
    return root
