"""Encoding errors name the table and column; images may lack what the source lacks."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from cdc.errors import SerializationError
from cdc.events import ChangeEvent, Column, ColumnType, Kind, Op, TableId, TableSchema
from cdc.serde import AvroSerde, InMemorySchemaRegistry
from cdc.serde.codec import DecodedChange
from tests.unit.serde.strategies import pg_source


def orders() -> TableSchema:
    return TableSchema(
        TableId("shop", "public", "orders"),
        (
            Column("id", ColumnType(Kind.INT64, "bigint"), nullable=False),
            Column("qty", ColumnType(Kind.INT32, "integer"), nullable=False),
            Column("amount", ColumnType(Kind.DECIMAL, "numeric(12,2)", precision=12, scale=2)),
            Column("note", ColumnType(Kind.STRING, "text")),
            Column("doc", ColumnType(Kind.JSON, "jsonb"), nullable=False),
            Column("at", ColumnType(Kind.TIMESTAMPTZ, "timestamptz")),
            Column("day", ColumnType(Kind.DATE, "date")),
        ),
        ("id",),
    )


def row(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 1,
        "qty": 2,
        "amount": Decimal("3.50"),
        "note": "n",
        "doc": "{}",
        "at": datetime(2026, 1, 1, tzinfo=UTC),
        "day": date(2026, 1, 1),
    }
    base.update(changes)
    return base


def event(image: dict[str, Any] | None = None, **kw: Any) -> ChangeEvent:
    image = row() if image is None else image
    fields: dict[str, Any] = {
        "op": Op.CREATE, "schema": orders(), "key": {"id": image.get("id", 1)}, "before": None,
        "after": image, "source": pg_source(), "ts_ms": 1,
    }  # fmt: skip
    fields.update(kw)
    return ChangeEvent(**fields)


@pytest.fixture()
def serde() -> AvroSerde:
    return AvroSerde(InMemorySchemaRegistry())


@pytest.mark.parametrize(
    ("changes", "column", "says"),
    [
        ({"qty": "2"}, "qty", "int"),
        ({"qty": 2**31}, "qty", "int"),
        ({"qty": None}, "qty", "NOT NULL"),
        ({"amount": Decimal("1.234")}, "amount", "fractional digits"),
        ({"amount": Decimal("1e12")}, "amount", "12 digits"),
        ({"amount": Decimal("NaN")}, "amount", "NaN"),
        ({"amount": 1.5}, "amount", "Decimal"),
        ({"at": datetime(2026, 1, 1)}, "at", "aware"),
        ({"day": datetime(2026, 1, 1)}, "day", "date"),
        ({"note": b"bytes"}, "note", "str"),
        ({"note": "\ud800"}, "note", "surrogate"),
    ],
)
def test_bad_values_name_table_and_column(
    serde: AvroSerde, changes: dict[str, Any], column: str, says: str
) -> None:
    with pytest.raises(SerializationError) as e:
        serde.encode_value(event(row(**changes)))
    message = str(e.value)
    assert "public.orders" in message
    assert repr(column) in message
    assert says in message


def test_missing_and_extra_columns_are_errors(serde: AvroSerde) -> None:
    incomplete = row()
    del incomplete["note"]
    with pytest.raises(SerializationError, match="no column 'note'"):
        serde.encode_value(event(incomplete))
    with pytest.raises(SerializationError, match=r"columns the schema lacks: \['extra'\]"):
        serde.encode_value(event(row(extra=1)))


def test_unchanged_toast_columns_are_left_out_of_after(serde: AvroSerde) -> None:
    after = row()
    del after["note"], after["doc"]
    ev = event(after, op=Op.UPDATE, unchanged=frozenset({"note", "doc"}))
    decoded = serde.decode(serde.encode_key(ev), serde.encode_value(ev))
    assert isinstance(decoded, DecodedChange)
    assert decoded.unchanged == {"note", "doc"}
    assert decoded.after == {k: v for k, v in row().items() if k not in ("note", "doc")}


def test_unchanged_values_are_ignored_even_if_present(serde: AvroSerde) -> None:
    ev = event(row(note="stale"), op=Op.UPDATE, unchanged=frozenset({"note"}))
    decoded = serde.decode(None, serde.encode_value(ev))
    assert isinstance(decoded, DecodedChange)
    assert decoded.after is not None and "note" not in decoded.after


def test_unchanged_must_name_columns(serde: AvroSerde) -> None:
    with pytest.raises(SerializationError, match="unknown columns"):
        serde.encode_value(event(op=Op.UPDATE, unchanged=frozenset({"nope"})))


def test_key_only_before_image_of_a_delete(serde: AvroSerde) -> None:
    ev = event(op=Op.DELETE, before={"id": 1}, after=None)
    decoded = serde.decode(serde.encode_key(ev), serde.encode_value(ev))
    assert isinstance(decoded, DecodedChange)
    assert decoded.before == {"id": 1}
    assert decoded.key == {"id": 1}


def test_op_needs_its_images(serde: AvroSerde) -> None:
    with pytest.raises(SerializationError, match="without an after image"):
        serde.encode_value(event(op=Op.UPDATE, after=None, before=row()))
    with pytest.raises(SerializationError, match="DELETE event without a before image"):
        serde.encode_value(event(op=Op.DELETE, after=None))


def test_position_kind_must_match_connector(serde: AvroSerde) -> None:
    from dataclasses import replace

    from connectors.mysql.position import BinlogFile, MySqlPosition

    src = replace(pg_source(), position=MySqlPosition(BinlogFile("b.000001"), 4))
    with pytest.raises(SerializationError, match="postgresql source event has a mysql position"):
        serde.encode_value(event(source=src))


def test_unknown_connector_is_a_schema_error(serde: AvroSerde) -> None:
    from dataclasses import replace

    from cdc.errors import SchemaError

    with pytest.raises(SchemaError, match="unknown connector 'oracle'"):
        serde.encode_value(event(source=replace(pg_source(), connector="oracle")))


def nan_table() -> TableSchema:
    return TableSchema(
        TableId("shop", "public", "gauges"),
        (
            Column("id", ColumnType(Kind.INT32, "integer"), nullable=False),
            Column("v", ColumnType(Kind.DECIMAL, "numeric", nan=True)),
            Column("w", ColumnType(Kind.DECIMAL, "numeric(6,2)", precision=6, scale=2, nan=True),
                   nullable=False),
            Column("vs", ColumnType(Kind.ARRAY, "numeric[]",
                                    element=ColumnType(Kind.DECIMAL, "numeric", nan=True))),
        ),
        ("id",),
    )  # fmt: skip


def test_nan_and_infinity_decimals_survive_as_special_values(serde: AvroSerde) -> None:
    from cdc.serde.codec import decode_value

    after = {"id": 1, "v": Decimal("NaN"), "w": Decimal("-Infinity"),
             "vs": [Decimal("1.50"), None, Decimal("Infinity")]}  # fmt: skip
    before = {"id": 1, "v": Decimal("2.5"), "w": Decimal("1.00"), "vs": None}
    ev = ChangeEvent(Op.UPDATE, nan_table(), {"id": 1}, before, after, pg_source(), 1)
    value = serde.encode_value(ev)
    decoded = serde.decode(serde.encode_key(ev), value)
    assert isinstance(decoded, DecodedChange)
    assert decoded.before == before
    got = decoded.after
    assert got is not None
    assert got["v"].is_nan() and got["w"] == Decimal("-Infinity")
    assert [str(x) for x in got["vs"]] == ["1.50", "None", "Infinity"]
    # What a Debezium consumer sees: null (nullable) or zero (NOT NULL), plus our map.
    raw = decode_value(value[5:], serde.registry.get_schema(int.from_bytes(value[1:5], "big")))
    assert raw["after"]["v"] is None and raw["after"]["w"] == b"\x00" and raw["after"]["vs"] is None
    assert raw["cdc_special_values"] == {
        "after.v": '"NaN"', "after.vs": '["1.50", null, "Infinity"]', "after.w": '"-Infinity"',
    }  # fmt: skip


def test_nan_needs_a_nan_capable_column_and_cannot_be_a_key(serde: AvroSerde) -> None:
    with pytest.raises(SerializationError, match=r"set ColumnType\.nan"):
        serde.encode_value(event(row(amount=Decimal("NaN"))))
    keyed = TableSchema(TableId("s", "public", "k"),
                        (Column("k", ColumnType(Kind.DECIMAL, "numeric", nan=True), nullable=False),),
                        ("k",))  # fmt: skip
    ev = ChangeEvent(Op.CREATE, keyed, {"k": Decimal("NaN")}, None, {"k": Decimal("NaN")},
                     pg_source(), 1)  # fmt: skip
    with pytest.raises(SerializationError, match="key column"):
        serde.encode_key(ev)
