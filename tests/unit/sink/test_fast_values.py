"""Shortcuts of the write path agree with what they replace: MariaDB literals
written without PyMySQL's extra call, and converters skipped for the exact types
they declare to return unchanged."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pymysql
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymysql import converters
from pymysql.constants import SERVER_STATUS

from cdc.events import ColumnType, Kind
from cdc.sink.values import passes
from connectors.mysql.sink import literals as mysql_literals
from connectors.mysql.sink.dialect import MySqlDialect
from connectors.postgres.sink import dialect as pg


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_literal(v: float) -> None:
    assert mysql_literals._float_literal(v) == converters.escape_float(v)


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_literal(v: Decimal) -> None:
    assert mysql_literals._decimal_literal(v) == converters.Decimal2Literal(v, None)


@given(st.datetimes())
def test_datetime_literal(v: datetime) -> None:
    assert mysql_literals._datetime_literal(v) == converters.escape_datetime(v)


@pytest.mark.parametrize("v", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_and_decimals_are_refused_like_pymysql(v: float) -> None:
    with pytest.raises(converters.ProgrammingError):
        mysql_literals._float_literal(v)
    with pytest.raises(converters.ProgrammingError):
        mysql_literals._decimal_literal(Decimal(v))


_VALUES: dict[type, Any] = {
    date: st.dates(),
    datetime: st.datetimes(),
}


@pytest.mark.parametrize("dialect", [pg.PostgresDialect(), MySqlDialect()])
@pytest.mark.parametrize("kind", [Kind.DATE, Kind.TIMESTAMP, Kind.TIMESTAMPTZ])
@given(data=st.data())
def test_declared_identities_hold(dialect: Any, kind: Kind, data: st.DataObject) -> None:
    conv = dialect.to_db(ColumnType(kind), None)
    if conv is None:
        return
    for t in passes(conv):
        v = data.draw(_VALUES[t])
        assert conv(v) is v


# -- a whole row's literal text in C (connectors/mysql/sink/_cliteral.c) ---------------------

_row_values = st.lists(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(-(2**63), 2**63 - 1),
        st.text(),
        st.text(st.characters(max_codepoint=127)),
        st.sampled_from(["", "'", "\\", '"', "\x00", "\n", "\r", "\x1a", "a'b\\c", "é'", "%s"]),
        st.dates(),
        st.datetimes(),
        st.datetimes(timezones=st.just(UTC)),
        st.decimals(allow_nan=False, allow_infinity=False),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from([0.0, -0.0, 1e16, 1e15, 1e-5, 1e-4, 5e-324, 1.7976931348623157e308, 0.1,
                         -2.5, 1e22, 123456789012345678.0]),
        st.timedeltas(),
        st.binary(max_size=8),
    ),
    max_size=12,
)


def _connection(no_backslash: bool) -> Any:
    conn = pymysql.connections.Connection(defer_connect=True)
    conn.server_status = SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES if no_backslash else 0
    return conn


@pytest.mark.skipif(mysql_literals._cliteral is None, reason="native module not built")
@settings(deadline=None)  # a shared 2-core machine took 250 ms for one example once
@given(_row_values, st.booleans())
def test_native_row_text_is_the_python_text(row: list[Any], no_backslash: bool) -> None:
    conn = _connection(no_backslash)
    literals = mysql_literals.fast_literals(conn)
    row_text = mysql_literals.native_row_text(conn, literals)
    assert row_text is not None
    get = literals.get

    def fallback(v: Any) -> str:
        return (get(type(v)) or conn.escape)(v)

    want = "(" + ",".join([(get(type(v)) or conn.escape)(v) for v in row]) + ")"
    assert row_text(row, fallback, no_backslash) == want
    assert row_text(tuple(row), fallback, no_backslash) == want


def test_native_row_text_only_for_pymysql_s_own_escaping() -> None:
    class Custom(pymysql.connections.Connection):
        def _escape_string(self, s: str) -> str:
            return s

    conn = Custom(defer_connect=True)
    assert mysql_literals.native_row_text(conn, mysql_literals.fast_literals(conn)) is None


@pytest.mark.skipif(mysql_literals._cliteral is None, reason="native module not built")
@pytest.mark.parametrize("v", [float("nan"), float("inf"), float("-inf")])
def test_native_row_text_leaves_non_finite_floats_to_the_fallback(v: float) -> None:
    conn = _connection(False)
    literals = mysql_literals.fast_literals(conn)
    row_text = mysql_literals.native_row_text(conn, literals)
    assert row_text is not None
    seen: list[Any] = []

    def fallback(x: Any) -> str:
        seen.append(x)
        return "X"

    assert row_text([1, v, 2.5], fallback, False) == "(1,X,2.5e0)"
    assert len(seen) == 1 and seen[0] is v
