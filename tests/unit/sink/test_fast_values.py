"""Shortcuts of the write path agree with what they replace: MariaDB literals
written without PyMySQL's extra call, and converters skipped for the exact types
they declare to return unchanged."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymysql import converters

from cdc.events import ColumnType, Kind
from cdc.sink.values import passes
from connectors.mysql.sink import dialect as my
from connectors.postgres.sink import dialect as pg


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_literal(v: float) -> None:
    assert my._float_literal(v) == converters.escape_float(v)


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_literal(v: Decimal) -> None:
    assert my._decimal_literal(v) == converters.Decimal2Literal(v, None)


@given(st.datetimes())
def test_datetime_literal(v: datetime) -> None:
    assert my._datetime_literal(v) == converters.escape_datetime(v)


@pytest.mark.parametrize("v", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_and_decimals_are_refused_like_pymysql(v: float) -> None:
    with pytest.raises(converters.ProgrammingError):
        my._float_literal(v)
    with pytest.raises(converters.ProgrammingError):
        my._decimal_literal(Decimal(v))


_VALUES: dict[type, Any] = {
    date: st.dates(),
    datetime: st.datetimes(),
}


@pytest.mark.parametrize("dialect", [pg.PostgresDialect(), my.MySqlDialect()])
@pytest.mark.parametrize("kind", [Kind.DATE, Kind.TIMESTAMP, Kind.TIMESTAMPTZ])
@given(data=st.data())
def test_declared_identities_hold(dialect: Any, kind: Kind, data: st.DataObject) -> None:
    conv = dialect.to_db(ColumnType(kind), None)
    if conv is None:
        return
    for t in passes(conv):
        v = data.draw(_VALUES[t])
        assert conv(v) is v
