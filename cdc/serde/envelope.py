"""Per-table key and value schemas in Debezium's envelope shape.

A table's key schema is a record of its primary-key columns; its value
schema is Debezium's change envelope (``before``/``after`` row images, a
connector-specific ``source`` block, ``transaction``, ``op``, ``ts_ms``).
The source block's common fields and our extensions are declared here; the
fields between them belong to the connector (:class:`cdc.spi.SourceBlock`).
Consumers written for Debezium read our topics unchanged; the few facts
Debezium does not carry but lossless replication needs (the exact source
position, unchanged TOAST columns, replication origin) ride in optional
``cdc_*`` fields with null defaults that such consumers ignore. Every field
is described in ``schemas/ENVELOPE.md``.

Schemas are built once per :class:`~cdc.events.TableSchema` (the codec caches
them); nothing here runs per row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cdc.errors import SchemaError
from cdc.events import Column, TableId, TableSchema
from cdc.registry import source_block
from cdc.serde.types import (
    AvroSchema,
    AvroType,
    avro_field_names,
    avro_name,
    avro_type,
    column_type_to_json,
)

TopicNaming = Callable[[str, TableId], str]

_TOPIC_ILLEGAL = re.compile(r"[^A-Za-z0-9._-]")
_TOPIC_MAX = 249


def default_topic_name(prefix: str, table: TableId) -> str:
    """``<prefix>.<schema or database>.<table>``, Debezium's default topic.

    Characters Kafka does not allow in topic names become ``_`` (as
    Debezium's topic naming does).
    """
    name = _TOPIC_ILLEGAL.sub("_", f"{prefix}.{table.schema or table.database}.{table.table}")
    if len(name) > _TOPIC_MAX:
        raise SchemaError(f"topic name for {table} is longer than {_TOPIC_MAX}: {name!r}")
    return name


def namespace_for(prefix: str, table: TableId) -> str:
    """Avro namespace ``<prefix>.<schema or database>.<table>``, each part sanitised."""
    parts = [*prefix.split("."), table.schema or table.database, table.table]
    return ".".join(avro_name(p) for p in parts)


# --------------------------------------------------------------------------- source blocks

SNAPSHOT_VALUES: Final = (
    "true",
    "first",
    "first_in_data_collection",
    "last_in_data_collection",
    "last",
    "false",
    "incremental",
)


def _opt(avro: AvroSchema) -> list[Any]:
    return ["null", avro]


def _snapshot_field() -> dict[str, Any]:
    # Debezium's shape: an optional Enum-string defaulting to "false".
    return {
        "name": "snapshot",
        "type": [
            {
                "type": "string",
                "connect.version": 1,
                "connect.parameters": {"allowed": ",".join(SNAPSHOT_VALUES)},
                "connect.default": "false",
                "connect.name": "io.debezium.data.Enum",
            },
            "null",
        ],
        "default": "false",
    }


_COMMON_HEAD: Final[tuple[dict[str, Any], ...]] = (
    {"name": "version", "type": "string"},
    {"name": "connector", "type": "string"},
    {"name": "name", "type": "string"},
    {"name": "ts_ms", "type": "long"},
    _snapshot_field(),
    {"name": "db", "type": "string"},
    {"name": "sequence", "type": _opt("string"), "default": None},
)

# Our extension fields: optional with a null default, so Debezium consumers
# (and Avro schema resolution against Debezium's own schemas) ignore them.
EXTENSION_SOURCE_FIELDS: Final = ("cdc_position", "cdc_origin", "cdc_db_version", "cdc_tx_id")
_EXTENSIONS: Final[tuple[dict[str, Any], ...]] = tuple(
    {"name": n, "type": _opt("string"), "default": None} for n in EXTENSION_SOURCE_FIELDS
)



def source_schema(connector: str) -> dict[str, Any]:
    """The ``source`` record of the source block named ``connector`` (SourceInfo.connector):
    the common fields, the block's own (:class:`cdc.spi.SourceBlock`), our extensions,
    named as Debezium names it. SchemaError when no installed connector has the block."""
    block = source_block(connector)
    namespace = block.namespace
    return {
        "type": "record",
        "name": "Source",
        "namespace": namespace,
        "fields": [dict(f) for f in (*_COMMON_HEAD, *block.fields, *_EXTENSIONS)],
        "connect.name": f"{namespace}.Source",
    }


TRANSACTION_SCHEMA: Final[dict[str, Any]] = {
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
}

EXTENSION_ENVELOPE_FIELDS: Final = ("cdc_unchanged", "cdc_before_absent", "cdc_special_values")


# --------------------------------------------------------------------------- table schemas


@dataclass(frozen=True, slots=True, eq=False)
class FieldSpec:
    """One column as an Avro record field."""

    column: Column
    name: str  # Avro field name (sanitised)
    avro: AvroType

    def schema(self, *, with_default: bool) -> dict[str, Any]:
        f: dict[str, Any] = {"name": self.name}
        if self.column.nullable:
            f["type"] = ["null", self.avro.schema]
            f["default"] = None
        else:
            f["type"] = self.avro.schema
            if with_default:
                f["default"] = self.avro.default
        f["cdc.type"] = column_type_to_json(self.column.type)
        if self.name != self.column.name:
            f["cdc.name"] = self.column.name
        if self.column.default is not None:
            f["cdc.default"] = self.column.default
        return f


@dataclass(frozen=True, slots=True, eq=False)
class TableSchemas:
    """Everything schema-level the codec needs for one table schema version."""

    table_schema: TableSchema
    connector: str
    namespace: str
    value_fields: tuple[FieldSpec, ...]
    key_fields: tuple[FieldSpec, ...]
    key_schema: dict[str, Any] | None  # None: the table has no primary key
    value_schema: dict[str, Any]

    @property
    def key_text(self) -> str | None:
        return None if self.key_schema is None else schema_text(self.key_schema)

    @property
    def value_text(self) -> str:
        return schema_text(self.value_schema)


def schema_text(schema: Any) -> str:
    """The canonical text we register: compact JSON, insertion order kept."""
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


def build_schemas(table_schema: TableSchema, *, prefix: str, connector: str) -> TableSchemas:
    """Key and envelope schemas for one table schema version."""
    ns = namespace_for(prefix, table_schema.table)
    names = avro_field_names([c.name for c in table_schema.columns])
    value_fields = tuple(
        FieldSpec(c, n, avro_type(c.type)) for c, n in zip(table_schema.columns, names, strict=True)
    )
    by_column = {f.column.name: f for f in value_fields}
    key_fields = tuple(by_column[k] for k in table_schema.primary_key)
    t = table_schema.table
    table_prop = {"database": t.database, "schema": t.schema, "table": t.table}

    value_record = {
        "type": "record",
        "name": "Value",
        "namespace": ns,
        "fields": [f.schema(with_default=True) for f in value_fields],
        "connect.name": f"{ns}.Value",
        "cdc.table": table_prop,
        "cdc.primary_key": list(table_schema.primary_key),
    }
    envelope = {
        "type": "record",
        "name": "Envelope",
        "namespace": ns,
        "fields": [
            {"name": "before", "type": ["null", value_record], "default": None},
            {"name": "after", "type": ["null", f"{ns}.Value"], "default": None},
            {"name": "source", "type": source_schema(connector)},
            {"name": "transaction", "type": ["null", TRANSACTION_SCHEMA], "default": None},
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": ["null", "long"], "default": None},
            {
                "name": "cdc_unchanged",
                "type": ["null", {"type": "array", "items": "string"}],
                "default": None,
            },
            {
                "name": "cdc_before_absent",
                "type": ["null", {"type": "array", "items": "string"}],
                "default": None,
            },
            {
                "name": "cdc_special_values",
                "type": ["null", {"type": "map", "values": "string"}],
                "default": None,
            },
        ],
        "connect.version": 1,
        "connect.name": f"{ns}.Envelope",
    }
    key_schema = None
    if key_fields:
        key_schema = {
            "type": "record",
            "name": "Key",
            "namespace": ns,
            "fields": [f.schema(with_default=False) for f in key_fields],
            "connect.name": f"{ns}.Key",
            "cdc.table": table_prop,
        }
        key_schema = dedupe_named_types(key_schema)
    return TableSchemas(
        table_schema=table_schema,
        connector=connector,
        namespace=ns,
        value_fields=value_fields,
        key_fields=key_fields,
        key_schema=key_schema,
        value_schema=dedupe_named_types(envelope),
    )


def dedupe_named_types(schema: dict[str, Any]) -> dict[str, Any]:
    """Replace repeated definitions of a named type by references to the first.

    Avro allows a name to be defined once per schema; two columns of the same
    named type (``VariableScaleDecimal``) must reference it after the first.
    """
    defined: set[str] = set()

    def walk(t: Any, enclosing_ns: str | None) -> Any:
        if isinstance(t, list):
            return [walk(x, enclosing_ns) for x in t]
        if not isinstance(t, dict):
            return t
        kind = t.get("type")
        if kind in ("record", "enum", "fixed", "error"):
            full = full_name(t, enclosing_ns)
            if full in defined:
                return full
            defined.add(full)
            ns = full.rpartition(".")[0] or None
            if kind in ("record", "error"):
                t = dict(t)
                t["fields"] = [dict(f, type=walk(f["type"], ns)) for f in t["fields"]]
            return t
        if kind == "array":
            return dict(t, items=walk(t["items"], enclosing_ns))
        if kind == "map":
            return dict(t, values=walk(t["values"], enclosing_ns))
        if isinstance(kind, dict | list):
            return dict(t, type=walk(kind, enclosing_ns))
        return t

    out = walk(schema, None)
    assert isinstance(out, dict)
    return out


def full_name(t: Mapping[str, Any], enclosing_ns: str | None) -> str:
    name = str(t["name"])
    if "." in name:
        return name
    ns = t.get("namespace", enclosing_ns)
    return f"{ns}.{name}" if ns else name


def named_types(schema: Any) -> dict[str, Any]:
    """Every named type defined in ``schema``, by full name."""
    found: dict[str, Any] = {}

    def walk(t: Any, ns: str | None) -> None:
        if isinstance(t, list):
            for x in t:
                walk(x, ns)
            return
        if not isinstance(t, dict):
            return
        kind = t.get("type")
        if kind in ("record", "enum", "fixed", "error"):
            full = full_name(t, ns)
            found.setdefault(full, t)
            inner = full.rpartition(".")[0] or None
            for f in t.get("fields", ()):
                walk(f["type"], inner)
        elif kind == "array":
            walk(t.get("items"), ns)
        elif kind == "map":
            walk(t.get("values"), ns)
        elif isinstance(kind, dict | list):
            walk(kind, ns)

    walk(schema, None)
    return found
