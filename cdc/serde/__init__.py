"""Avro serialization of change events: Debezium-compatible envelopes on Kafka.

Sources hand :class:`AvroSerde` a :class:`~cdc.events.ChangeEvent` and get
the topic and the Confluent-framed key and value bytes; sinks hand it the
bytes they consumed and get a :class:`DecodedChange` (or a :class:`Tombstone`)
with canonical Python values. Schemas are registered and fetched through a
:class:`SchemaRegistry` (:class:`RegistryClient` for a real one), once per
table schema version.

Layout: :mod:`.types` (column types -> Avro), :mod:`.value_codecs` and
:mod:`.temporal` (value codecs; dates and times), :mod:`.special_values`
(values with no Avro spelling), :mod:`.field_decoding` (writer schema fields
-> column types), :mod:`.envelope` (per-table schemas), :mod:`.encode`
(encode), :mod:`.rowdecode` and :mod:`.decode` (decode), :mod:`.sourceblock`
(what source writers share), :mod:`.reader` (generated Avro
readers), :mod:`.binary` (Avro primitives), :mod:`.framing` (wire header),
:mod:`.registry` (registry clients). ``schemas/ENVELOPE.md`` and
``schemas/TYPES.md`` document the wire contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from threading import Lock
from typing import Any, Final

from cdc import native
from cdc.errors import SerializationError
from cdc.events import ChangeEvent, Column, TableSchema
from cdc.serde.decode import (
    DecodedChange,
    EnvelopeReader,
    Tombstone,
    decode_change,
    envelope_to_change,
)
from cdc.serde.encode import TableEncoder
from cdc.serde.envelope import TopicNaming, build_schemas, default_topic_name
from cdc.serde.framing import HEADER_SIZE, frame, frame_prefix, unframe
from cdc.serde.limits import DEFAULT_LIMITS, DecodeLimits
from cdc.serde.registry import InMemorySchemaRegistry, RegistryClient, SchemaRegistry
from cdc.serde.rowdecode import KeyReader, WriterSchema, decode_value
from cdc.serde.temporal import (
    NEG_INFINITY,
    POS_INFINITY,
    ZERO,
    TemporalSentinel,
)
from cdc.spi import SnapshotRows


@dataclass(frozen=True, slots=True)
class EncodedChange:
    """A change ready for the producer. ``key`` None: no key (keyless table, truncate)."""

    topic: str
    key: bytes | None
    value: bytes


# One per event on a source's hot path: slots set directly (a frozen dataclass's
# ``__init__`` sets each through ``object.__setattr__``).
_ENCODED: Final = native.positional_constructor(EncodedChange)


@dataclass(frozen=True, slots=True, eq=False)
class _Encoding:
    table_schema: TableSchema
    prefix: str
    connector: str
    topic: str
    encoder: TableEncoder
    key_prefix: bytes
    value_prefix: bytes


_IDENTITY_CACHE_MAX: Final = 4096


class AvroSerde:
    """Encode events to framed Avro and decode them back, through a registry.

    The encode path looks a table's encoder up by the identity of the event's
    ``TableSchema`` (connectors reuse one object per schema version), so
    nothing schema-related is hashed or built per row.
    """

    def __init__(
        self,
        registry: SchemaRegistry,
        topic_naming: TopicNaming = default_topic_name,
        limits: DecodeLimits = DEFAULT_LIMITS,
    ) -> None:
        self.registry = registry
        self.limits = limits
        self.topic_naming = topic_naming
        self._by_identity: dict[tuple[int, str, str], _Encoding] = {}
        self._by_value: dict[tuple[TableSchema, str, str], _Encoding] = {}
        self._lock = Lock()
        self._envelopes: dict[int, EnvelopeReader] = {}
        self._keys: dict[int, KeyReader] = {}

    # -- encoding

    def _encoding(self, event: ChangeEvent) -> _Encoding:
        src = event.source
        hit = self._by_identity.get((id(event.schema), src.name, src.connector))
        if hit is not None and hit.table_schema is event.schema:
            return hit
        return self._encoding_slow(event)

    def _encoding_slow(self, event: ChangeEvent) -> _Encoding:
        src = event.source
        key = (event.schema, src.name, src.connector)
        with self._lock:
            enc = self._by_value.get(key)
        if enc is None:
            schemas = build_schemas(event.schema, prefix=src.name, connector=src.connector)
            topic = self.topic_naming(src.name, event.table)
            value_id = self.registry.register(f"{topic}-value", schemas.value_text)
            key_prefix = b""
            if schemas.key_text is not None:
                key_id = self.registry.register(f"{topic}-key", schemas.key_text)
                key_prefix = frame_prefix(key_id)
            enc = _Encoding(
                table_schema=event.schema,
                prefix=src.name,
                connector=src.connector,
                topic=topic,
                encoder=TableEncoder(schemas),
                key_prefix=key_prefix,
                value_prefix=frame_prefix(value_id),
            )
            with self._lock:
                enc = self._by_value.setdefault(key, enc)
        with self._lock:
            if len(self._by_identity) >= _IDENTITY_CACHE_MAX:
                self._by_identity.clear()  # connectors minting schema objects per event
            if enc.table_schema is not event.schema:
                enc = replace(enc, table_schema=event.schema)
            self._by_identity[(id(event.schema), src.name, src.connector)] = enc
        return enc

    def topic(self, event: ChangeEvent) -> str:
        return self._encoding(event).topic

    def encode_key(self, event: ChangeEvent) -> bytes | None:
        enc = self._encoding(event)
        return enc.encoder.encode_key(event, enc.key_prefix)

    def encode_value(self, event: ChangeEvent) -> bytes:
        enc = self._encoding(event)
        return enc.encoder.encode_value(event, enc.value_prefix)

    def encode(self, event: ChangeEvent) -> EncodedChange:
        """Topic, key and value of one event with a single cache lookup."""
        enc = self._encoding(event)
        return _ENCODED(  # type: ignore[no-any-return]
            enc.topic,
            enc.encoder.encode_key(event, enc.key_prefix),
            enc.encoder.encode_value(event, enc.value_prefix),
        )

    def encode_rows(self, rows: SnapshotRows) -> tuple[str, list[bytes | None], list[bytes]]:
        """Topic, keys and values of a snapshot batch or a stream's run of inserts
        (:class:`~cdc.spi.StreamRows`): those of its events, byte for byte."""
        src = rows.source
        enc = self._by_identity.get((id(rows.schema), src.name, src.connector))
        if enc is None or enc.table_schema is not rows.schema:
            enc = self._encoding_slow(rows.event(0))
        keys, values = enc.encoder.encode_rows(rows, enc.key_prefix, enc.value_prefix)
        return enc.topic, keys, values

    # -- decoding

    def _envelope_reader(self, schema_id: int) -> EnvelopeReader:
        reader = self._envelopes.get(schema_id)
        if reader is None:
            reader = EnvelopeReader(
                WriterSchema.parse(self.registry.get_schema(schema_id)), self.limits
            )
            self._envelopes[schema_id] = reader
        return reader

    def _key_reader(self, schema_id: int) -> KeyReader:
        reader = self._keys.get(schema_id)
        if reader is None:
            reader = KeyReader(WriterSchema.parse(self.registry.get_schema(schema_id)), self.limits)
            self._keys[schema_id] = reader
        return reader

    def decode(
        self,
        key: bytes | bytearray | memoryview | None,
        value: bytes | bytearray | memoryview | None,
    ) -> DecodedChange | Tombstone:
        """A consumed record's change; a null value is a :class:`Tombstone`."""
        kr = None
        key_row = None
        if key is not None:
            sid = _schema_id(key)
            kr = self._keys.get(sid) or self._key_reader(sid)
            key_row = kr.read(key, HEADER_SIZE)
        if value is None:
            return Tombstone(key=key_row, table=None if kr is None else kr.table)
        sid = _schema_id(value)
        reader = self._envelopes.get(sid) or self._envelope_reader(sid)
        return reader.decode(value, key_row, kr, HEADER_SIZE)


    def fast_reader(
        self, schema_id: int
    ) -> Callable[[bytes], tuple[str, Any, dict[str, Any] | None, dict[str, Any] | None] | None] | None:
        """:meth:`fast_read` of Confluent-framed values of ``schema_id`` as one function
        (``EnvelopeReader.fast_reader``), for a caller that read the id itself; None
        while that id's reader is not cached or when it has no fast read."""
        reader = self._envelopes.get(schema_id)
        return None if reader is None else reader.fast_reader(HEADER_SIZE)

    def envelope_schema(
        self, schema_id: int
    ) -> tuple[Mapping[str, Any], Mapping[str, Any], tuple[Column, ...]] | None:
        """``(envelope schema, named types, after-row columns)`` of a cdc-written value
        schema whose reader is cached (what a sink's run encoder compiles from); None
        for other envelopes (Debezium's: unavailable-value markers need the full path)."""
        reader = self._envelopes.get(schema_id)
        if reader is None or not reader.cdc_written or reader.table is None:
            return None
        return reader.writer.schema, reader.writer.named, reader.rows.columns

    def fast_read(
        self, value: bytes | None
    ) -> tuple[int, tuple[str, Any, dict[str, Any] | None, dict[str, Any] | None]] | None:
        """``(value schema id, (op, source, before, after))`` of a plain cdc-written
        change whose reader is already cached (see ``EnvelopeReader.fast_read``);
        None when :meth:`decode` must handle the record."""
        if value is None or len(value) < HEADER_SIZE or value[0] != 0:
            return None
        sid = _FROM_BYTES(value[1:HEADER_SIZE], "big")
        reader = self._envelopes.get(sid)
        if reader is None:
            return None
        got = reader.fast_read(value, HEADER_SIZE)
        return None if got is None else (sid, got)


def _schema_id(message: bytes | bytearray | memoryview) -> int:
    """The schema id of a Confluent-framed message (unframe() names what is wrong)."""
    if len(message) >= HEADER_SIZE and message[0] == 0:
        return _FROM_BYTES(message[1:HEADER_SIZE], "big")
    return unframe(message)[0]


_FROM_BYTES: Final = int.from_bytes


__all__ = [
    "NEG_INFINITY",
    "POS_INFINITY",
    "ZERO",
    "AvroSerde",
    "DecodeLimits",
    "DecodedChange",
    "EncodedChange",
    "InMemorySchemaRegistry",
    "RegistryClient",
    "SchemaRegistry",
    "SerializationError",
    "TemporalSentinel",
    "Tombstone",
    "TopicNaming",
    "WriterSchema",
    "decode_change",
    "decode_value",
    "default_topic_name",
    "envelope_to_change",
    "frame",
    "frame_prefix",
    "unframe",
]
