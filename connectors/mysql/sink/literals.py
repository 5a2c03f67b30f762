"""SQL literals of row values, written as PyMySQL's ``Connection.escape`` would.

:class:`~connectors.mysql.sink.session.MySqlSession` writes multi-row upserts
as literal text rather than through ``executemany``'s per-value escaping;
this module holds the per-type literal writers (:func:`fast_literals`) and
picks the C row writer ``_cliteral`` when it reproduces them exactly
(:func:`native_row_text`). Nothing here talks to a server or knows a table:
the SQL around the literals is the dialect's, the I/O the session's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import pymysql.connections
from pymysql import converters as _pymysql_converters

from cdc import native

__all__ = ["fast_literals", "native_row_text"]


def fast_literals(conn: Any) -> dict[type, Callable[[Any], str]]:
    """SQL literals of the common value types, by exact type, as PyMySQL's
    ``Connection.escape`` writes them (others go through it); mostly C-level
    callables so a row costs no Python frames for its ints, NULLs and dates."""
    esc = getattr(conn, "_escape_string", None)
    encoders = getattr(conn, "encoders", None)
    if esc is None or not isinstance(encoders, dict):
        return {}
    out: dict[type, Callable[[Any], str]] = {
        int: int.__repr__,
        type(None): "NULL".format,
        bool: {True: "1", False: "0"}.__getitem__,
        str: lambda v: "'" + esc(v) + "'",
        date: "'{0.year:04}-{0.month:02}-{0.day:02}'".format,
    }
    for t in (datetime, Decimal, float, timedelta):
        enc = encoders.get(t)
        if enc is not None:
            out[t] = _same_as.get((t, enc)) or _encoder_call(enc, encoders)
    return out


_DATETIME: Final = "'{0.year:04}-{0.month:02}-{0.day:02} {0.hour:02}:{0.minute:02}:{0.second:02}'".format
_DATETIME_US: Final = (
    "'{0.year:04}-{0.month:02}-{0.day:02} {0.hour:02}:{0.minute:02}:{0.second:02}.{0.microsecond:06}'"
).format


def _datetime_literal(v: datetime) -> str:
    return (_DATETIME_US if v.microsecond else _DATETIME)(v)


def _float_literal(v: float) -> str:
    s = float.__repr__(v)
    if "e" in s:
        return s
    if s in ("inf", "-inf", "nan"):
        return str(_pymysql_converters.escape_float(v))  # raises, as PyMySQL does
    return s + "e0"


def _decimal_literal(v: Decimal) -> str:
    if v.is_finite():
        return format(v, "f")
    return str(_pymysql_converters.Decimal2Literal(v, None))  # raises, as PyMySQL does


# PyMySQL's own encoders, written here without their extra call (tests compare outputs);
# used only when the connection's encoder is exactly PyMySQL's function.
_same_as: Final[dict[tuple[type, Any], Callable[[Any], str]]] = {
    (datetime, _pymysql_converters.escape_datetime): _datetime_literal,
    (float, _pymysql_converters.escape_float): _float_literal,
    (Decimal, _pymysql_converters.Decimal2Literal): _decimal_literal,
}


_cliteral: Any = native.load("connectors.mysql.sink._cliteral")


def native_row_text(
    conn: Any, literals: dict[type, Callable[[Any], str]]
) -> Callable[..., str] | None:
    """The C writer of a row's literal text (``_cliteral.row``), when the session's
    literals are the ones it reproduces (PyMySQL's str escaping, datetime and
    float encoders); None otherwise (the Python loop, the reference, runs then)."""
    if (
        _cliteral is None
        or literals.get(datetime) is not _datetime_literal
        or literals.get(float) is not _float_literal
        or str not in literals
        or getattr(type(conn), "_escape_string", None) is not pymysql.connections.Connection._escape_string
    ):
        return None
    row: Callable[..., str] = _cliteral.row
    return row


def _encoder_call(enc: Callable[[Any, Any], Any], encoders: Any) -> Callable[[Any], str]:
    def literal(v: Any) -> str:
        return str(enc(v, encoders))

    return literal
