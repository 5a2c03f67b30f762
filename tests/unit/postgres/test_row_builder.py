"""The generated row builder (catalog.TableShape.row) against the type table's
converters, value for value: including the converters' first branches that the
builder writes inline (text_values.INLINE), and every text that takes their other
branches or that they refuse."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc.errors import SerializationError
from cdc.events import Column, TableId, TableSchema
from connectors.postgres.source.catalog import TableShape
from connectors.postgres.source.messages import UNCHANGED_TOAST
from connectors.postgres.text_values import INLINE, parse_bool, parse_date, parse_timestamp
from connectors.postgres.types import resolve_type

# id bigint, active boolean, day date, created timestamp, name text
TYPES = [resolve_type(20), resolve_type(16), resolve_type(1082), resolve_type(1114),
         resolve_type(25)]
NAMES = ("id", "active", "day", "created", "name")
SHAPE = TableShape(TableSchema(
    TableId("db", "public", "t"),
    tuple(Column(n, t.column_type, nullable=n != "id") for n, t in zip(NAMES, TYPES, strict=True)),
    ("id",)), TYPES)


def test_the_inlined_converters_are_the_table_s() -> None:
    assert {TYPES[1].from_text, TYPES[2].from_text, TYPES[3].from_text} == set(INLINE)
    assert set(INLINE) == {parse_bool, parse_date, parse_timestamp}


def _reference(values: tuple[Any, ...]) -> dict[str, Any]:
    return {n: (t.from_text(v) if v.__class__ is str else v)
            for n, t, v in zip(NAMES, TYPES, values, strict=True)}


def _same(values: tuple[Any, ...]) -> None:
    try:
        want: Any = _reference(values)
    except Exception as e:
        want = e
    if isinstance(want, Exception):
        with pytest.raises((SerializationError, type(want))):
            SHAPE.row(values)
        return
    got = SHAPE.row(values)
    assert got == want
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]


DATES = st.one_of(
    st.dates().map(date.isoformat),
    st.sampled_from(["infinity", "-infinity", "0001-01-01", "9999-12-31", "0044-03-15 BC",
                     "12345-01-01", "2024-02-30", "2024-13-01", "20240101xx", "", "2024-1-1"]),
    st.text(max_size=12),
)
TIMESTAMPS = st.one_of(
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
    st.sampled_from(["infinity", "-infinity", "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999",
                     "0044-03-15 12:00:00 BC", "10000-01-01 00:00:00", "2024-01-01 24:00:00",
                     "2024-01-01T10:00:00", "2024-01-01 10:00:00+02", "2024-01-01", ""]),
    st.text(max_size=30),
)
BOOLS = st.one_of(st.sampled_from(["t", "f", "true", "T", "", "1"]), st.text(max_size=3))
NOT_TEXT = st.sampled_from([None, UNCHANGED_TOAST])


@given(st.tuples(st.integers(-(2**63), 2**63 - 1).map(str), st.one_of(BOOLS, NOT_TEXT),
                 st.one_of(DATES, NOT_TEXT), st.one_of(TIMESTAMPS, NOT_TEXT),
                 st.one_of(st.text(), NOT_TEXT)))
def test_the_builder_gives_the_converters_values(values: tuple[Any, ...]) -> None:
    _same(values)


def test_known_rows() -> None:
    row = SHAPE.row(("7", "t", "2024-02-29", "2024-02-29 23:59:59.5", "x"))
    assert row == {"id": 7, "active": True, "day": date(2024, 2, 29),
                   "created": datetime(2024, 2, 29, 23, 59, 59, 500000), "name": "x"}
    # The converters' other branches: outside Python's range, BC, infinity.
    row = SHAPE.row(("1", "f", "0044-03-15 BC", "infinity", None))
    assert row["day"] == parse_date("0044-03-15 BC")
    assert row["created"] == parse_timestamp("infinity")
