"""The neutral type -> Avro table, names, sentinels, and reading schema hints back."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cdc.events import ColumnType, Kind
from cdc.serde.field_decoding import column_decoding
from cdc.serde.temporal import (
    DATE_WIRE,
    NEG_INFINITY,
    POS_INFINITY,
    TIMESTAMP_WIRE,
    TIMESTAMPTZ_WIRE,
    ZERO,
)
from cdc.serde.types import (
    avro_field_names,
    avro_name,
    avro_type,
    column_type_from_json,
    column_type_to_json,
)
from cdc.serde.value_codecs import shortest_float32


def schema_of(ct: ColumnType) -> Any:
    return avro_type(ct).schema


@pytest.mark.parametrize(
    ("ct", "expected"),
    [
        (ColumnType(Kind.BOOLEAN), "boolean"),
        (ColumnType(Kind.INT16), {"type": "int", "connect.type": "int16"}),
        (ColumnType(Kind.INT32), "int"),
        (ColumnType(Kind.INT64), "long"),
        (ColumnType(Kind.FLOAT32), "float"),
        (ColumnType(Kind.FLOAT64), "double"),
        (ColumnType(Kind.STRING), "string"),
        (ColumnType(Kind.BYTES), "bytes"),
    ],
)
def test_plain_kinds(ct: ColumnType, expected: Any) -> None:
    assert schema_of(ct) == expected


def test_debezium_semantic_names() -> None:
    names = {
        Kind.JSON: "io.debezium.data.Json",
        Kind.UUID: "io.debezium.data.Uuid",
        Kind.ENUM: "io.debezium.data.Enum",
        Kind.SET: "io.debezium.data.EnumSet",
        Kind.BITS: "io.debezium.data.Bits",
        Kind.DATE: "io.debezium.time.Date",
        Kind.TIME: "io.debezium.time.MicroTime",
        Kind.TIMETZ: "io.debezium.time.ZonedTime",
        Kind.TIMESTAMP: "io.debezium.time.MicroTimestamp",
        Kind.TIMESTAMPTZ: "io.debezium.time.ZonedTimestamp",
        Kind.INTERVAL: "io.debezium.time.Interval",
        Kind.GEOMETRY: "io.debezium.data.geometry.Geometry",
    }
    for kind, name in names.items():
        s = schema_of(ColumnType(kind, values=("a", "b"), length=3))
        assert s["connect.name"] == name, kind
    assert schema_of(ColumnType(Kind.ENUM, values=("a", "b")))["connect.parameters"] == {
        "allowed": "a,b"
    }
    assert schema_of(ColumnType(Kind.BITS, length=12))["connect.parameters"] == {"length": "12"}
    assert (
        schema_of(ColumnType(Kind.INT16, native="year"))["connect.name"] == "io.debezium.time.Year"
    )


def test_avro_logical_types() -> None:
    # Exactly what Debezium 3.6 registers for these (issue #15): its semantic types
    # carry no logicalType, which a Connect converter would map to Connect's own.
    assert schema_of(ColumnType(Kind.DATE)) == {
        "type": "int", "connect.version": 1, "connect.name": "io.debezium.time.Date"}
    assert schema_of(ColumnType(Kind.UUID)) == {
        "type": "string", "connect.version": 1, "connect.name": "io.debezium.data.Uuid"}
    assert schema_of(ColumnType(Kind.TIMESTAMP)) == {
        "type": "long", "connect.version": 1, "connect.name": "io.debezium.time.MicroTimestamp"}
    # Out-of-day TIME values (MySQL -838:59:59, PostgreSQL 24:00) forbid time-micros.
    assert "logicalType" not in schema_of(ColumnType(Kind.TIME))


def test_decimals() -> None:
    fixed = schema_of(ColumnType(Kind.DECIMAL, precision=65, scale=30))
    assert fixed == {
        "type": "bytes",
        "scale": 30,
        "precision": 65,
        "connect.version": 1,
        "connect.parameters": {"scale": "30", "connect.decimal.precision": "65"},
        "connect.name": "org.apache.kafka.connect.data.Decimal",
        "logicalType": "decimal",
    }
    unconstrained = schema_of(ColumnType(Kind.DECIMAL))
    assert unconstrained["connect.name"] == "io.debezium.data.VariableScaleDecimal"
    # PostgreSQL 15 scales Avro's decimal cannot express
    assert schema_of(ColumnType(Kind.DECIMAL, precision=5, scale=-2)) == unconstrained
    assert schema_of(ColumnType(Kind.DECIMAL, precision=2, scale=5)) == unconstrained
    # NaN-capable columns keep the decimal schema (specials ride in cdc_special_values)
    assert schema_of(ColumnType(Kind.DECIMAL, precision=10, scale=2, nan=True)) == schema_of(
        ColumnType(Kind.DECIMAL, precision=10, scale=2)
    )
    unsigned = schema_of(ColumnType(Kind.UINT64))
    assert (unsigned["precision"], unsigned["scale"]) == (20, 0)


def test_arrays_hold_nulls_and_nest() -> None:
    inner = ColumnType(Kind.ARRAY, element=ColumnType(Kind.INT32))
    assert schema_of(ColumnType(Kind.ARRAY, element=inner)) == {
        "type": "array",
        "items": ["null", {"type": "array", "items": ["null", "int"]}],
    }


def codec(ct: ColumnType) -> tuple[Any, Any]:
    t = avro_type(ct)
    return t.encode, t.decode


def round_trip(ct: ColumnType, value: Any) -> Any:
    """Encode then read back through the same hints a sink would use."""
    from cdc.serde.rowdecode import decode_value

    t = avro_type(ct)
    wire = decode_value(t.encode(value), json.dumps(t.schema))
    dec = column_decoding({"name": "x", "type": t.schema, "cdc.type": column_type_to_json(ct)}, {})
    return wire if dec.decode is None else dec.decode(wire)


@pytest.mark.parametrize(
    ("ct", "value"),
    [
        (ColumnType(Kind.UINT64), 2**64 - 1),
        (
            ColumnType(Kind.DECIMAL, precision=65, scale=30),
            Decimal("-" + "9" * 35 + "." + "9" * 30),
        ),
        (ColumnType(Kind.DECIMAL), Decimal("1.2300E+40")),
        (ColumnType(Kind.DECIMAL, nan=True), Decimal("12.5000")),
        (ColumnType(Kind.DATE), POS_INFINITY),
        (ColumnType(Kind.DATE), ZERO),
        (ColumnType(Kind.DATE), -2_000_000),  # 3507 BC: PostgreSQL has it, Python does not
        (ColumnType(Kind.TIME), -timedelta(hours=838, minutes=59, seconds=59)),
        (ColumnType(Kind.TIME), timedelta(hours=24)),
        (ColumnType(Kind.TIMESTAMP), NEG_INFINITY),
        (ColumnType(Kind.TIMESTAMP), datetime(1, 1, 1)),
        (ColumnType(Kind.TIMESTAMP), datetime(9999, 12, 31, 23, 59, 59, 999999)),
        (ColumnType(Kind.TIMESTAMPTZ), ZERO),
        (ColumnType(Kind.TIMESTAMPTZ), -210_866_803_200_000_000),  # 4714 BC, as an int
        (ColumnType(Kind.TIMESTAMP), 9_000_000_000_000_000_000),  # year 287,000
        (ColumnType(Kind.UUID), uuid.UUID(int=2**128 - 1)),
        (ColumnType(Kind.BITS, length=12), b"\x0a\xbc"),
        (ColumnType(Kind.FLOAT32), 1.1),
        (ColumnType(Kind.FLOAT32), 3.4028235e38),
    ],
)
def test_special_values_round_trip(ct: ColumnType, value: Any) -> None:
    out = round_trip(ct, value)
    assert out == value or str(out) == str(value)
    assert type(out) is type(value)


def test_timestamptz_is_normalised_to_utc() -> None:
    from datetime import timezone

    local = datetime(2026, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    enc, _ = codec(ColumnType(Kind.TIMESTAMPTZ))
    assert enc(local)[1:] == b"2026-03-01T10:00:00Z"
    out = round_trip(ColumnType(Kind.TIMESTAMPTZ), local)
    assert out == local and out.tzinfo is UTC


def test_sentinel_wire_forms_are_documented_values() -> None:
    assert DATE_WIRE[POS_INFINITY] == 2**31 - 1 and DATE_WIRE[NEG_INFINITY] == -(2**31)
    assert TIMESTAMP_WIRE[POS_INFINITY] == 2**63 - 1
    assert TIMESTAMPTZ_WIRE[ZERO] == "0000-00-00T00:00:00Z"
    enc, _ = codec(ColumnType(Kind.DATE))
    with pytest.raises(Exception, match="outside the DATE range"):
        enc(2**31 - 1)  # an int that would read back as +infinity


def test_timestamps_outside_pythons_range_use_iso_years_like_java() -> None:
    enc, _ = codec(ColumnType(Kind.TIMESTAMPTZ))
    assert enc(-210_866_803_200_000_000)[1:] == b"-4713-11-24T00:00:00Z"
    z = column_decoding({"name": "f", "type": {"type": "string",
                         "connect.name": "io.debezium.time.ZonedTimestamp"}}, {})  # fmt: skip
    assert z.decode is not None
    assert z.decode("+10000-01-01T00:00:00Z") == 253_402_300_800_000_000
    assert z.decode("-0001-12-31T23:00:00-01:00") == -62_167_219_200_000_000


def test_bits_are_little_endian_on_the_wire_like_debezium() -> None:
    enc, _ = codec(ColumnType(Kind.BITS, length=16))
    assert enc(b"\x01\x02") == b"\x04\x02\x01"


def test_shortest_float32() -> None:
    import struct

    single = struct.unpack("<f", struct.pack("<f", 0.1))[0]
    assert single != 0.1 and shortest_float32(single) == 0.1
    assert shortest_float32(float("inf")) == float("inf")
    assert shortest_float32(-0.0) == 0.0


def test_unknown_kind_falls_back_to_string_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    odd = ColumnType("tsvector", native="tsvector")  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        t = avro_type(odd)
    assert t.schema == "string"
    assert "tsvector" in caplog.text
    assert t.encode("'a' 'b'") == b"\x0e'a' 'b'"


def test_array_without_element_type_carries_strings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        t = avro_type(ColumnType(Kind.ARRAY, native="_weird"))
    assert t.schema == {"type": "array", "items": ["null", "string"]}
    assert "_weird" in caplog.text


def test_avro_names_are_sanitised_deterministically() -> None:
    assert avro_name("ok_name1") == "ok_name1"
    assert avro_name("first-name") == "first_name"
    assert avro_name("1st") == "_1st"
    assert avro_name("prénom") == "pr_nom"
    assert avro_name("") == "_"
    names = avro_field_names(["a-b", "a_b", "c d"])
    assert names[1] == "a_b" and names[2] == "c_d"
    assert names[0].startswith("a_b_") and len(names[0]) == len("a_b_") + 8
    assert avro_field_names(["a-b", "a_b", "c d"]) == names  # stable
    assert avro_field_names(["a_b", "a-b"])[1] == names[0]  # independent of order


def test_column_type_json_round_trip() -> None:
    ct = ColumnType(
        Kind.ARRAY,
        "numeric(10,2)[]",
        element=ColumnType(Kind.DECIMAL, "numeric(10,2)", precision=10, scale=2, nan=True),
    )
    assert column_type_from_json(column_type_to_json(ct)) == ct
    assert column_type_from_json({"kind": "hologram"}) is None  # a newer cdc's kind


def test_decoding_reads_debezium_hints_without_cdc_type() -> None:
    def dec(t: Any) -> Any:
        return column_decoding({"name": "f", "type": t}, {})

    d = dec(
        ["null", {"type": "int", "connect.version": 1, "connect.name": "io.debezium.time.Date"}]
    )
    assert d.nullable and d.column_type.kind is Kind.DATE
    assert d.decode is not None and d.decode(19000) == date(2022, 1, 8)
    ts = dec({"type": "long", "connect.name": "io.debezium.time.Timestamp"})
    assert ts.decode is not None and ts.decode(1000) == datetime(1970, 1, 1, 0, 0, 1)
    z = dec({"type": "string", "connect.name": "io.debezium.time.ZonedTimestamp"})
    assert z.decode is not None
    assert z.decode("2020-01-01T01:00:00+01:00") == datetime(2020, 1, 1, tzinfo=UTC)
    assert z.decode("infinity") is POS_INFINITY
    dec_t = dec({
        "type": "bytes", "scale": 2, "precision": 5, "logicalType": "decimal",
        "connect.name": "org.apache.kafka.connect.data.Decimal",
        "connect.parameters": {"scale": "2", "connect.decimal.precision": "5",
                               "__debezium.source.column.type": "NUMERIC"},
    })  # fmt: skip
    assert dec_t.column_type.precision == 5 and dec_t.column_type.native == "NUMERIC"
    assert dec_t.decode is not None and dec_t.decode(b"\x30\x39") == Decimal("123.45")
    bits = dec({"type": "bytes", "connect.name": "io.debezium.data.Bits",
                "connect.parameters": {"length": "20"}})  # fmt: skip
    assert bits.decode is not None and bits.decode(b"\x01") == b"\x00\x00\x01"
    f = dec("float")
    assert f.column_type.kind is Kind.FLOAT32
    assert dec({"type": "int", "connect.type": "int16"}).column_type.kind is Kind.INT16
    m = dec({"type": "map", "values": "string"})
    assert m.column_type.kind is Kind.JSON and m.decode is not None
    assert m.decode({"b": "1", "a": "2"}) == '{"a": "2", "b": "1"}'
    assert dec("string").unavailable == "__debezium_unavailable_value"


def test_propagated_source_type_keeps_its_modifiers() -> None:
    """Debezium's column.propagate.source.type sends name, length and scale apart (issue #15)."""
    from cdc.serde.field_decoding import column_decoding, full_native_type

    assert full_native_type("NUMERIC", 12, 3) == "NUMERIC(12,3)"
    assert full_native_type("DECIMAL UNSIGNED", 10, 2) == "DECIMAL(10,2) UNSIGNED"
    assert full_native_type("varchar", 40, 0) == "varchar(40)"
    assert full_native_type("VARCHAR", 40, None) == "VARCHAR(40)"
    assert full_native_type("bpchar", 5, 0) == "bpchar(5)"
    assert full_native_type("BIT", 12, None) == "BIT(12)"
    assert full_native_type("varbit", 20, 0) == "varbit"
    assert full_native_type("DATETIME", 6, None) == "DATETIME(6)"
    assert full_native_type("TIME", 0, None) == "TIME"
    assert full_native_type("timestamp", 29, 6) == "timestamp"
    # No modifiers: types that take none, unbounded lengths, already spelled out.
    assert full_native_type("int4", 10, 0) == "int4"
    assert full_native_type("INT UNSIGNED", 10, 0) == "INT UNSIGNED"
    assert full_native_type("numeric", 131089, 0) == "numeric"
    assert full_native_type("varchar", 2147483647, 0) == "varchar"
    assert full_native_type("text", 2147483647, 0) == "text"
    assert full_native_type("numeric(5,2)", 5, 2) == "numeric(5,2)"
    assert full_native_type("numeric", None, None) == "numeric"
    d = column_decoding({"name": "n", "type": {
        "type": "bytes", "scale": 3, "precision": 12, "logicalType": "decimal",
        "connect.name": "org.apache.kafka.connect.data.Decimal",
        "connect.parameters": {"scale": "3", "connect.decimal.precision": "12",
                               "__debezium.source.column.type": "NUMERIC",
                               "__debezium.source.column.length": "12",
                               "__debezium.source.column.scale": "3"}}}, {})  # fmt: skip
    assert d.column_type.native == "NUMERIC(12,3)"
    assert (d.column_type.precision, d.column_type.scale) == (12, 3)
    s = column_decoding({"name": "s", "type": {
        "type": "string", "connect.parameters": {
            "__debezium.source.column.type": "VARCHAR",
            "__debezium.source.column.length": "40"}}}, {})  # fmt: skip
    assert s.column_type.native == "VARCHAR(40)" and s.column_type.length == 40


def test_replica_ddl_of_propagated_source_types() -> None:
    """The sink dialects create the full type from what Debezium propagates."""
    from cdc.events import ColumnType
    from connectors.mysql.sink.dialect import MySqlDialect
    from connectors.postgres.sink.dialect import PostgresDialect

    pg = PostgresDialect()
    num = ColumnType(Kind.DECIMAL, native="NUMERIC(12,3)", precision=12, scale=3)
    assert pg.column_ddl(num, native=True) == "numeric(12,3)"
    vc = ColumnType(Kind.STRING, native="varchar(40)", length=40)
    assert pg.column_ddl(vc, native=True) == "varchar(40)"
    assert pg.column_ddl(ColumnType(Kind.STRING, native="bpchar(5)", length=5),
                         native=True) == "bpchar(5)"
    my = MySqlDialect()
    assert my.column_ddl(ColumnType(Kind.DECIMAL, native="DECIMAL(12,3)", precision=12, scale=3),
                         native=True) == "decimal(12,3)"
    assert my.column_ddl(ColumnType(Kind.STRING, native="VARCHAR(40)", length=40),
                         native=True) == "varchar(40)"
