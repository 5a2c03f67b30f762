"""Checks that a canonical value fits a replica column exactly, shared by the dialects.

Databases round some values silently instead of refusing them: PostgreSQL
and MariaDB round a DECIMAL with more fractional digits than the column's
scale, and both round (MariaDB: truncate) fractional seconds beyond the
column's precision. A replica must never hold a value the source did not
have, so the dialects' converters call these checks first and raise
:class:`DoesNotFit` (a ValueError), which the applier treats as a bad
record (dead letter queue or stop, by policy). Length and range limits the
databases do enforce (strings, MariaDB TIME/TIMESTAMP) are left to them.

Error texts show values in database notation (:func:`db_text`: ``-838:59:59``,
``Infinity``), never Python reprs.

Also here: the JSON form of values inside arrays, for replicas without
array types (MariaDB stores arrays as JSON); ``cdc verify`` uses the same
form to compare them.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any


class DoesNotFit(ValueError):
    """A value the replica column cannot hold without changing it."""


def time_text(v: timedelta) -> str:
    """A duration as MySQL/PostgreSQL write a TIME/interval: ``[-]H:MM:SS[.ffffff]``
    (hours may exceed 24: ``-838:59:59``). PostgreSQL reads it back as an interval
    with no day or month part."""
    us = v // timedelta(microseconds=1)
    sign = "-" if us < 0 else ""
    us = abs(us)
    seconds, frac = divmod(us, 1_000_000)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    text = f"{sign}{hours:02}:{minute:02}:{sec:02}"
    return f"{text}.{frac:06}" if frac else text


def float_text(v: float) -> str:
    """A float as the databases write it (``Infinity``, ``-Infinity``, ``NaN``)."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def db_text(v: Any, limit: int = 80) -> str:
    """A value for an error text, in database notation, cut to ``limit`` characters."""
    if isinstance(v, timedelta):
        text = time_text(v)
    elif isinstance(v, float):
        text = float_text(v)
    elif isinstance(v, datetime):
        text = v.isoformat(" ")
    elif isinstance(v, date | time | Decimal | uuid.UUID | int):
        text = str(v)
    elif isinstance(v, bytes | bytearray | memoryview):
        text = "\\x" + bytes(v).hex()
    elif isinstance(v, Enum):
        text = str(v.value)
    elif isinstance(v, str):
        text = "'" + v.replace("'", "''") + "'"
    else:
        text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def identity_for(*types: type) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Declare that a converter returns values of exactly these types unchanged, so
    the applier may skip calling it for them (see :func:`passes`)."""

    def mark(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
        conv.cdc_identity_for = frozenset(types)  # type: ignore[attr-defined]
        return conv

    return mark


def passes(conv: Callable[[Any], Any]) -> frozenset[type]:
    """The exact types ``conv`` returns unchanged (declared with :func:`identity_for`)."""
    found = getattr(conv, "cdc_identity_for", None)
    return found if isinstance(found, frozenset) else frozenset()


def decimal_check(
    precision: int | None,
    scale: int | None,
    *,
    special: bool,
    source_precision: int | None = None,
    source_scale: int | None = None,
) -> Callable[[Any], Any] | None:
    """A converter that passes Decimals fitting ``numeric(precision, scale)``.

    ``special``: the column accepts NaN and infinities (PostgreSQL numeric).
    When the source column's own precision and scale already fit, only the
    cheap NaN/infinity test remains (the common, same-type case), or nothing
    (None) when the column takes NaN too.
    """
    max_int_digits = None if precision is None else precision - (scale or 0)

    def finite(v: Any) -> Any:
        if isinstance(v, Decimal) and not v.is_finite():
            raise DoesNotFit(f"{v} has no representation in a DECIMAL column")
        return v

    if (
        source_precision is not None
        and source_scale is not None
        and source_scale >= 0
        and (scale is None or source_scale <= scale)
        and (max_int_digits is None or source_precision - source_scale <= max_int_digits)
    ):
        return None if special else finite

    def check(v: Any) -> Any:
        if isinstance(v, int):
            v = Decimal(v)
        if not isinstance(v, Decimal):
            return v
        if not v.is_finite():
            if special:
                return v
            raise DoesNotFit(f"{v} has no representation in a DECIMAL column")
        if scale is not None:
            _, digits, exp = v.as_tuple()
            assert isinstance(exp, int)
            if exp < -scale:
                # Trailing zeros beyond the scale are harmless (1.2300 fits scale 2).
                zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
                if exp + zeros < -scale and any(digits):
                    raise DoesNotFit(f"{v} has more than {scale} fractional digits (column scale)")
        if max_int_digits is not None and v != 0:
            int_digits = v.adjusted() + 1
            if int_digits > max_int_digits:
                raise DoesNotFit(
                    f"{v} has {int_digits} integer digits; the column holds {max_int_digits} "
                    f"(decimal({precision},{scale}))"
                )
        return v

    return check


def fraction_check(digits: int | None, source_digits: int | None = None) -> Callable[[Any], Any] | None:
    """A converter refusing datetimes/times/timedeltas with more fractional-second
    digits than the column keeps (None: the column keeps microseconds, or the
    source column has no more digits than it)."""
    if digits is None or digits >= 6:
        return None
    if source_digits is not None and source_digits <= digits:
        return None
    unit = 10 ** (6 - max(digits, 0))

    def check(v: Any) -> Any:
        if isinstance(v, datetime | time):
            us = v.microsecond
        elif isinstance(v, timedelta):
            us = v.microseconds
        else:
            return v
        if us % unit:
            raise DoesNotFit(
                f"{db_text(v)} has more fractional-second digits than the column keeps ({digits})"
            )
        return v

    return check


def chain(*convs: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """One converter applying ``convs`` in order (None entries skipped)."""
    fs = [c for c in convs if c is not None]
    if not fs:
        return None
    if len(fs) == 1:
        return fs[0]

    def run(v: Any) -> Any:
        for f in fs:
            v = f(v)
        return v

    return run


def json_value(v: Any) -> Any:
    """A canonical value as JSON data (arrays stored in MariaDB JSON columns).

    Numbers that JSON floats would round (Decimal) become strings, as do
    temporal values (ISO-8601), UUIDs and bytes (base64).
    """
    if v is None or isinstance(v, bool | int | str):
        return v
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return repr(v)
        return v
    if isinstance(v, list | tuple):
        return [json_value(x) for x in v]
    if isinstance(v, Decimal | uuid.UUID):
        return str(v)
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, timedelta):
        return f"PT{Decimal(v // timedelta(microseconds=1)).scaleb(-6)}S"
    if isinstance(v, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(v)).decode()
    if isinstance(v, Enum):
        return str(v.value)
    raise DoesNotFit(f"{type(v).__name__} value {v!r:.80} has no JSON form")
