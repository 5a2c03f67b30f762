"""Records Debezium writes decode with our decoder; our schemas look like Debezium's.

The Debezium records are built by hand (schema and values) following the
documented PostgreSQL connector envelope (``customers`` example: key ``id``,
``first_name``/``last_name``/``email``, source block with version, connector,
name, ts_ms, snapshot, db, sequence, schema, table, txId, lsn, xmin), written
with fastavro and framed as the Confluent converter frames them.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastavro import parse_schema, schemaless_writer

from cdc.events import Kind, Op, TableId
from cdc.serde import AvroSerde, InMemorySchemaRegistry, frame
from cdc.serde.decode import DecodedChange
from cdc.serde.envelope import build_schemas
from tests.unit.serde.test_codec_errors import orders

NS = "PostgreSQL_server.inventory.customers"


def _opt(t: Any) -> list[Any]:
    return ["null", t]


DEBEZIUM_PG_SOURCE: dict[str, Any] = {
    "type": "record",
    "name": "Source",
    "namespace": "io.debezium.connector.postgresql",
    "fields": [
        {"name": "version", "type": "string"},
        {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {
            "name": "snapshot",
            "type": [
                {
                    "type": "string",
                    "connect.version": 1,
                    "connect.parameters": {"allowed": "true,last,false,incremental"},
                    "connect.default": "false",
                    "connect.name": "io.debezium.data.Enum",
                },
                "null",
            ],
            "default": "false",
        },
        {"name": "db", "type": "string"},
        {"name": "sequence", "type": _opt("string"), "default": None},
        {"name": "ts_us", "type": _opt("long"), "default": None},
        {"name": "ts_ns", "type": _opt("long"), "default": None},
        {"name": "schema", "type": "string"},
        {"name": "table", "type": "string"},
        {"name": "txId", "type": _opt("long"), "default": None},
        {"name": "lsn", "type": _opt("long"), "default": None},
        {"name": "xmin", "type": _opt("long"), "default": None},
    ],
    "connect.name": "io.debezium.connector.postgresql.Source",
}


def debezium_envelope(ns: str, value_fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "record",
        "name": "Envelope",
        "namespace": ns,
        "fields": [
            {
                "name": "before",
                "type": [
                    "null",
                    {
                        "type": "record",
                        "name": "Value",
                        "fields": value_fields,
                        "connect.name": f"{ns}.Value",
                    },
                ],
                "default": None,
            },
            {"name": "after", "type": ["null", "Value"], "default": None},
            {"name": "source", "type": DEBEZIUM_PG_SOURCE},
            {
                "name": "transaction",
                "type": [
                    "null",
                    {
                        "type": "record",
                        "name": "block",
                        "namespace": "event",
                        "fields": [
                            {"name": "id", "type": "string"},
                            {"name": "total_order", "type": "long"},
                            {"name": "data_collection_order", "type": "long"},
                        ],
                        "connect.version": 1,
                        "connect.name": "event.block",
                    },
                ],
                "default": None,
            },
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": _opt("long"), "default": None},
            {"name": "ts_us", "type": _opt("long"), "default": None},
            {"name": "ts_ns", "type": _opt("long"), "default": None},
        ],
        "connect.version": 2,
        "connect.name": f"{ns}.Envelope",
    }


CUSTOMERS_KEY = {
    "type": "record",
    "name": "Key",
    "namespace": NS,
    "fields": [{"name": "id", "type": "int"}],
    "connect.name": f"{NS}.Key",
}
CUSTOMERS_VALUE = debezium_envelope(
    NS,
    [
        {"name": "id", "type": "int"},
        {"name": "first_name", "type": "string"},
        {"name": "last_name", "type": "string"},
        {"name": "email", "type": "string"},
    ],
)


def source_block(**changes: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "version": "3.6.1.Final",
        "connector": "postgresql",
        "name": "PostgreSQL_server",
        "ts_ms": 1559033904863,
        "snapshot": "true",
        "db": "postgres",
        "sequence": '["24023119","24023128"]',
        "ts_us": 1559033904863000,
        "ts_ns": 1559033904863000000,
        "schema": "public",
        "table": "customers",
        "txId": 555,
        "lsn": 24023128,
        "xmin": None,
    }
    block.update(changes)
    return block


def write(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(schema), record)
    return out.getvalue()


def framed(registry: InMemorySchemaRegistry, subject: str, schema: Any, record: Any) -> bytes:
    schema_id = registry.register(subject, json.dumps(schema))
    return frame(schema_id, write(schema, record))


def test_debezium_customers_create_decodes() -> None:
    registry = InMemorySchemaRegistry()
    after = {"id": 1, "first_name": "Anne", "last_name": "Kretchmar", "email": "annek@noanswer.org"}
    key = framed(registry, "PostgreSQL_server.public.customers-key", CUSTOMERS_KEY, {"id": 1})
    value = framed(
        registry,
        "PostgreSQL_server.public.customers-value",
        CUSTOMERS_VALUE,
        {
            "before": None,
            "after": after,
            "source": source_block(),
            "transaction": None,
            "op": "c",
            "ts_ms": 1559033904863,
            "ts_us": 1559033904863000,
            "ts_ns": 1559033904863000000,
        },
    )
    change = AvroSerde(registry).decode(key, value)
    assert isinstance(change, DecodedChange)
    assert change.op is Op.CREATE
    assert change.table == TableId("postgres", "public", "customers")
    assert change.key == {"id": 1}
    assert change.before is None
    assert change.after == after
    assert change.source["lsn"] == 24023128 and change.source["txId"] == 555
    assert change.position is None  # Debezium's records carry no cdc_position
    assert change.unchanged == frozenset()
    assert change.ts_ms == 1559033904863
    assert change.schema.primary_key == ("id",)
    assert [c.name for c in change.schema.columns] == ["id", "first_name", "last_name", "email"]
    assert change.schema.column("id").type.kind is Kind.INT32
    assert not change.schema.column("email").nullable


def test_debezium_update_with_semantic_types_and_unavailable_toast() -> None:
    ns = "dbserver1.public.readings"
    fields: list[dict[str, Any]] = [
        {"name": "id", "type": "long"},
        {"name": "day", "type": ["null", {"type": "int", "connect.version": 1,
                                          "connect.name": "io.debezium.time.Date"}],
         "default": None},
        {"name": "at", "type": {"type": "long", "connect.version": 1,
                                "connect.name": "io.debezium.time.MicroTimestamp"}},
        {"name": "at_tz", "type": {"type": "string", "connect.version": 1,
                                   "connect.name": "io.debezium.time.ZonedTimestamp"}},
        {"name": "took", "type": {"type": "long", "connect.version": 1,
                                  "connect.name": "io.debezium.time.MicroTime"}},
        {"name": "price", "type": {"type": "bytes", "scale": 2, "precision": 8,
                                   "connect.version": 1, "logicalType": "decimal",
                                   "connect.parameters": {"scale": "2",
                                                          "connect.decimal.precision": "8"},
                                   "connect.name": "org.apache.kafka.connect.data.Decimal"}},
        {"name": "any_num", "type": ["null", {
            "type": "record", "name": "VariableScaleDecimal", "namespace": "io.debezium.data",
            "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
            "connect.version": 1, "connect.name": "io.debezium.data.VariableScaleDecimal"}],
         "default": None},
        {"name": "tag", "type": {"type": "string", "connect.version": 1,
                                 "connect.name": "io.debezium.data.Uuid"}},
        {"name": "doc", "type": ["null", {"type": "string", "connect.version": 1,
                                          "connect.name": "io.debezium.data.Json"}],
         "default": None},
        {"name": "flags", "type": {"type": "bytes", "connect.version": 1,
                                   "connect.parameters": {"length": "10"},
                                   "connect.name": "io.debezium.data.Bits"}},
        {"name": "mood", "type": {"type": "string", "connect.version": 1,
                                  "connect.parameters": {"allowed": "sad,ok,happy"},
                                  "connect.name": "io.debezium.data.Enum"}},
        {"name": "small", "type": {"type": "int", "connect.type": "int16"}},
        {"name": "ratio", "type": "float"},
        {"name": "tags", "type": ["null", {"type": "array", "items": ["null", "string"]}],
         "default": None},
    ]  # fmt: skip
    schema = debezium_envelope(ns, fields)
    before = {
        "id": 7, "day": 19000, "at": 1_700_000_000_123_456, "at_tz": "2023-11-14T22:13:20.5Z",
        "took": -3_723_000_001, "price": (123456).to_bytes(3, "big", signed=True),
        "any_num": {"scale": 3, "value": (-1500).to_bytes(2, "big", signed=True)},
        "tag": "6f1b1b5e-8a57-4c5e-9df0-3a0a1f0f5e11", "doc": '{"a": [1, 2]}',
        "flags": b"\x01\x02", "mood": "ok", "small": -7, "ratio": 0.1, "tags": ["x", None],
    }  # fmt: skip
    after = dict(before, doc="__debezium_unavailable_value", mood="happy")
    registry = InMemorySchemaRegistry()
    value = framed(
        registry,
        "dbserver1.public.readings-value",
        schema,
        {"before": before, "after": after, "source": source_block(table="readings", snapshot="false"),
         "transaction": {"id": "571:53195832", "total_order": 2, "data_collection_order": 1},
         "op": "u", "ts_ms": 1, "ts_us": None, "ts_ns": None},
    )  # fmt: skip
    change = AvroSerde(registry).decode(None, value)
    assert isinstance(change, DecodedChange)
    assert change.op is Op.UPDATE and change.key is None
    assert change.unchanged == {"doc"}
    assert change.after is not None and "doc" not in change.after
    b = change.before
    assert b is not None
    assert b["day"] == date(2022, 1, 8)
    assert b["at"] == datetime(2023, 11, 14, 22, 13, 20, 123456)
    assert b["at_tz"] == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)
    assert b["took"] == -timedelta(hours=1, minutes=2, seconds=3, microseconds=1)
    assert b["price"] == Decimal("1234.56")
    assert b["any_num"] == Decimal("-1.500")
    assert str(b["tag"]) == "6f1b1b5e-8a57-4c5e-9df0-3a0a1f0f5e11"
    assert b["doc"] == '{"a": [1, 2]}'
    assert b["flags"] == b"\x02\x01"  # Debezium's little-endian -> our big-endian
    assert b["small"] == -7 and b["ratio"] == 0.1 and b["tags"] == ["x", None]
    assert change.transaction is not None and change.transaction.total_order == 2
    kinds = {c.name: c.type.kind for c in change.schema.columns}
    assert kinds == {
        "id": Kind.INT64, "day": Kind.DATE, "at": Kind.TIMESTAMP, "at_tz": Kind.TIMESTAMPTZ,
        "took": Kind.TIME, "price": Kind.DECIMAL, "any_num": Kind.DECIMAL, "tag": Kind.UUID,
        "doc": Kind.JSON, "flags": Kind.BITS, "mood": Kind.ENUM, "small": Kind.INT16,
        "ratio": Kind.FLOAT32, "tags": Kind.ARRAY,
    }  # fmt: skip
    assert change.schema.column("mood").type.values == ("sad", "ok", "happy")
    assert change.schema.column("flags").type.length == 10


def test_debezium_tombstone() -> None:
    registry = InMemorySchemaRegistry()
    key = framed(registry, "PostgreSQL_server.public.customers-key", CUSTOMERS_KEY, {"id": 9})
    tomb = AvroSerde(registry).decode(key, None)
    assert tomb.key == {"id": 9}
    assert tomb.table is None  # Debezium's key schema names no table


def test_our_envelope_has_debeziums_shape() -> None:
    s = build_schemas(orders(), prefix="dbserver1", connector="postgresql")
    env = s.value_schema
    assert env["name"] == "Envelope" and env["namespace"] == "dbserver1.public.orders"
    assert env["connect.name"] == "dbserver1.public.orders.Envelope"
    names = [f["name"] for f in env["fields"]]
    assert names[:6] == ["before", "after", "source", "transaction", "op", "ts_ms"]
    before = env["fields"][0]["type"][1]
    assert before["name"] == "Value" and before["connect.name"] == "dbserver1.public.orders.Value"
    assert env["fields"][1]["type"] == ["null", "dbserver1.public.orders.Value"]
    ours = {f["name"]: f for f in env["fields"][2]["type"]["fields"]}
    for f in DEBEZIUM_PG_SOURCE["fields"]:
        if f["name"] in ("ts_us", "ts_ns"):
            continue  # not carried, see schemas/ENVELOPE.md
        assert ours[f["name"]]["type"] == f["type"] or f["name"] == "snapshot", f["name"]
    assert env["fields"][3]["type"][1]["connect.name"] == "event.block"
    assert s.key_schema is not None
    assert s.key_schema["name"] == "Key"
    assert [f["name"] for f in s.key_schema["fields"]] == ["id"]
    for f in env["fields"][6:]:
        assert f["name"].startswith("cdc_") and f["default"] is None
    for f in env["fields"][2]["type"]["fields"]:
        if f["name"].startswith("cdc_"):
            assert f["default"] is None
