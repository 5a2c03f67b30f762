"""Multi-dimensional array values (PostgreSQL lets any array column hold any number
of dimensions) travel losslessly: null/[] in the flat Avro array, the nested form
in ``cdc_special_values``, restored by our decoder; C and Python write the same bytes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdc.errors import SerializationError
from cdc.events import ChangeEvent, Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.serde import AvroSerde, InMemorySchemaRegistry, encode
from cdc.serde.decode import DecodedChange
from cdc.serde.encode import TableEncoder
from cdc.serde.envelope import build_schemas
from cdc.serde.rowdecode import decode_value
from cdc.serde.special_values import NESTED_ARRAY_KEY, special_value
from cdc.serde.temporal import POS_INFINITY
from cdc.serde.types import avro_type
from tests.unit.serde.strategies import nested_lists, pg_source, same_value, scalar_types, values

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def array_of(element: ColumnType) -> ColumnType:
    return ColumnType(Kind.ARRAY, f"{element.native}[]", element=element)


INT = ColumnType(Kind.INT32, "integer")
NUMERIC = ColumnType(Kind.DECIMAL, "numeric", nan=True)


def grid_table() -> TableSchema:
    return TableSchema(
        TableId("shop", "public", "grids"),
        (
            Column("id", ColumnType(Kind.INT32, "integer"), nullable=False),
            Column("ints", array_of(INT)),
            Column("texts", array_of(ColumnType(Kind.STRING, "text")), nullable=False),
            Column("nums", array_of(NUMERIC)),
            Column("days", array_of(ColumnType(Kind.DATE, "date"))),
            Column("blobs", array_of(ColumnType(Kind.BYTES, "bytea"))),
            Column("ids", array_of(ColumnType(Kind.UUID, "uuid"))),
            Column("flags", array_of(ColumnType(Kind.BOOLEAN, "boolean"))),
            Column("ats", array_of(ColumnType(Kind.TIMESTAMPTZ, "timestamptz"))),
        ),
        ("id",),
    )


GRID_ROW: dict[str, Any] = {
    "id": 1,
    "ints": [[1, 2], [3, None]],
    "texts": [[["a", "é\"{}"], [None, ""]], [["NULL", "x,y"], ["\\", "🦆"]]],
    "nums": [[Decimal("1.50"), Decimal("NaN")], [None, Decimal("-Infinity")]],
    "days": [[date(2024, 2, 29), POS_INFINITY], [None, date(1, 1, 1)]],
    "blobs": [[b"\x00\xff", b""], [None, b"{}"]],
    "ids": [[uuid.UUID(int=0), None]],
    "flags": [[True], [False], [None]],
    "ats": [[datetime(2024, 1, 1, 12, tzinfo=UTC)], [[]]],
}


@pytest.fixture
def python_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(encode, "_C", None)
    yield


def test_the_reported_value_no_longer_stops_the_encoder() -> None:
    at = avro_type(ColumnType(Kind.ARRAY, element=INT, native="integer[]"))
    with pytest.raises(SerializationError, match="cdc_special_values"):
        at.encode([[1, 2], [3, None]])  # the field cannot hold it...
    assert at.special is not None
    text = at.special([[1, 2], [3, None]])  # ...its special form can
    assert text is not None and json.loads(text) == {NESTED_ARRAY_KEY: [["Ag==", "BA=="], ["Bg==", None]]}
    assert special_value(text, at.column_type) == [[1, 2], [3, None]]
    assert at.special([1, None, 3]) is None  # a flat array stays in its field


@pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
def test_multidimensional_arrays_survive_as_special_values(
    native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not native:
        monkeypatch.setattr(encode, "_C", None)
    serde = AvroSerde(InMemorySchemaRegistry())
    before = {**GRID_ROW, "ints": [1, None], "nums": [Decimal("2")]}
    ev = ChangeEvent(Op.UPDATE, grid_table(), {"id": 1}, before, GRID_ROW, pg_source(), 1)
    value = serde.encode_value(ev)
    decoded = serde.decode(serde.encode_key(ev), value)
    assert isinstance(decoded, DecodedChange) and decoded.after is not None
    schema = grid_table()
    for c in schema.columns:
        assert same_value(c.type, GRID_ROW[c.name], decoded.after[c.name]), c.name
    assert decoded.before == before
    # What a Debezium consumer sees: null (nullable) or [] (NOT NULL) plus our map.
    raw = decode_value(value[5:], serde.registry.get_schema(int.from_bytes(value[1:5], "big")))
    assert raw["after"]["ints"] is None and raw["after"]["texts"] == []
    assert raw["before"]["ints"] == [1, None]
    specials = raw["cdc_special_values"]
    assert {k for k in specials if k.startswith("after.")} == {
        f"after.{c.name}" for c in schema.columns if c.name != "id"
    }
    assert "before.ints" not in specials and "before.nums" not in specials
    assert all(json.loads(t).keys() == {NESTED_ARRAY_KEY} for t in specials.values())


def test_c_and_python_write_the_same_nested_envelope() -> None:
    if encode._C is None:
        pytest.skip("native encoder not built (make native)")
    schemas = build_schemas(grid_table(), prefix="p", connector="postgresql")
    native = TableEncoder(schemas)
    saved = encode._C
    encode._C = None
    try:
        python = TableEncoder(schemas)
    finally:
        encode._C = saved
    ev = ChangeEvent(Op.CREATE, grid_table(), {"id": 1}, None, GRID_ROW, pg_source(), 1)
    assert native.encode_value(ev, b"\x00") == python.encode_value(ev, b"\x00")


def test_decimal_special_form_stays_readable() -> None:
    ct = array_of(NUMERIC)
    got = special_value('["1.50", null, "Infinity"]', ct)
    assert [str(x) for x in got] == ["1.50", "None", "Infinity"]
    assert special_value('"NaN"', NUMERIC).is_nan()
    assert avro_type(ct).special is not None
    assert avro_type(ct).special([Decimal("NaN")]) == '["NaN"]'  # flat: unchanged form


def test_an_array_key_column_with_nested_values_is_refused() -> None:
    table = TableSchema(TableId("s", "public", "k"), (Column("k", array_of(INT), nullable=False),),
                        ("k",))  # fmt: skip
    ev = ChangeEvent(Op.CREATE, table, {"k": [[1]]}, None, {"k": [[1]]}, pg_source(), 1)
    with pytest.raises(SerializationError, match="multi-dimensional"):
        AvroSerde(InMemorySchemaRegistry()).encode_key(ev)


@pytest.mark.parametrize(
    "text",
    [
        '{"cdc.nested": 3}',
        '{"cdc.nested": [["not base64!"]]}',
        '{"cdc.nested": [["AAAA"]]}',  # bytes left over for an int
        '{"cdc.nested": [[{"other": 1}]]}',
        '{"cdc.nested": [[1]]}',
        '{"cdc.nested": [], "x": 1}',
        '{"cdc.nested": [[{"special": "\\"zz\\""}]]}',
    ],
)
def test_hostile_nested_forms_are_named_errors(text: str) -> None:
    with pytest.raises(SerializationError, match="unreadable special value"):
        special_value(text, array_of(INT if "special" not in text else NUMERIC))


def test_a_nested_form_for_a_scalar_column_is_an_error() -> None:
    with pytest.raises(SerializationError, match="unreadable special value"):
        special_value('{"cdc.nested": [[]]}', INT)


@SETTINGS
@given(st.data())
def test_nested_lists_of_every_element_kind_round_trip(data: st.DataObject) -> None:
    element = data.draw(scalar_types())
    ct = array_of(element)
    value = data.draw(st.integers(2, 3).flatmap(lambda d: nested_lists(values(element), d)))
    at = avro_type(ct)
    assert at.special is not None
    text = at.special(value)
    if any(isinstance(x, list) for x in value):
        assert text is not None and text.startswith('{"' + NESTED_ARRAY_KEY)
    if text is None:  # e.g. [] at depth 2: a flat value
        return
    assert same_value(ct, value, special_value(text, ct))
