"""Change envelopes read back into changes (the sinks' side of the serde).

:class:`EnvelopeReader` decodes the envelopes of one value schema, ours or
Debezium's, into :class:`DecodedChange` (canonical rows from
:mod:`.rowdecode`, the position from ``source.cdc_position`` through the
position codec of its kind); :meth:`EnvelopeReader.fast_read` is the sinks'
fast read of a plain cdc-written change, nothing built but the rows. Readers
are cached per schema text; :func:`decode_change` decodes unframed bodies
without a registry.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from threading import Lock
from typing import Any, Final

from cdc.errors import PositionError, SchemaError, SerializationError
from cdc.events import (
    ChangeEvent,
    Op,
    Row,
    SourceInfo,
    TableId,
    TableSchema,
    TransactionInfo,
)
from cdc.positions import Position, position_codec, position_from_dict, text_kind
from cdc.serde import reader as _reader
from cdc.serde.envelope import (
    full_name,
)
from cdc.serde.field_decoding import unwrap_nullable
from cdc.serde.limits import DEFAULT_LIMITS, DecodeLimits
from cdc.serde.rowdecode import (
    _NATIVE_READ,
    KeyReader,
    RowDecoder,
    WriterSchema,
    _table_from_prop,
)
from cdc.serde.special_values import special_value
from cdc.spi import PositionCodec

_OP_OF: Final[dict[Any, Op]] = {op.value: op for op in Op}
_CACHE_SIZE: Final = 1024


@dataclass(frozen=True, slots=True)
class DecodedChange:
    """One change read back from Kafka, with canonical Python values.

    ``key``/``before``/``after`` use the source's column names (not the
    sanitised Avro names). Columns the source did not send (``unchanged``) are
    absent from ``after``: a sink keeps the replica's value for them.
    ``position`` is present for records cdc wrote (None for Debezium's).
    """

    op: Op
    table: TableId
    schema: TableSchema
    key: Row | None
    before: Row | None
    after: Row | None
    source: Mapping[str, Any]
    position: Position | None
    unchanged: frozenset[str]
    origin: str | None
    transaction: TransactionInfo | None
    ts_ms: int | None

    def source_info(self) -> SourceInfo:
        """The event's SourceInfo; only records cdc wrote carry enough for it."""
        if self.position is None:
            raise SerializationError(
                f"{self.table}: record has no cdc_position (not written by cdc)"
            )
        s = self.source
        return SourceInfo(
            connector=str(s["connector"]),
            name=str(s["name"]),
            version=str(s["version"]),
            db_version=str(s.get("cdc_db_version") or ""),
            position=self.position,
            ts_ms=int(s["ts_ms"]),
            tx_id=s.get("cdc_tx_id"),
            snapshot=str(s.get("snapshot") or "false"),
            origin=self.origin,
        )

    def to_event(self) -> ChangeEvent:
        """The ChangeEvent this record was encoded from (cdc-written records only)."""
        return ChangeEvent(
            op=self.op,
            schema=self.schema,
            key=self.key,
            before=self.before,
            after=self.after,
            source=self.source_info(),
            ts_ms=self.ts_ms if self.ts_ms is not None else int(self.source["ts_ms"]),
            transaction=self.transaction,
            unchanged=self.unchanged,
        )


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A record with a null value: log compaction's delete marker for ``key``."""

    key: Row | None
    table: TableId | None


class EnvelopeReader:
    """Decodes change envelopes written with one value schema (ours or Debezium's)."""

    __slots__ = (
        "_codecs",
        "_fields",
        "_last_codec",
        "_limits",
        "_native",
        "_native_rows",
        "_schemas",
        "cdc_written",
        "primary_key",
        "rows",
        "table",
        "writer",
    )

    def __init__(self, writer: WriterSchema, limits: DecodeLimits = DEFAULT_LIMITS) -> None:
        self.writer = writer
        self._limits = limits
        env = writer.schema
        fields = {f["name"]: f for f in env.get("fields", ())} if isinstance(env, dict) else {}
        missing = {"before", "after", "source", "op"} - fields.keys()
        if missing:
            raise SchemaError(
                f"value schema {env.get('name') if isinstance(env, dict) else env!r} is not a "
                f"change envelope (no {sorted(missing)} fields)"
            )
        env_ns = env.get("namespace") or str(env.get("name", "")).rpartition(".")[0] or None
        value_t, _ = unwrap_nullable(fields["before"]["type"])
        if isinstance(value_t, str):
            value_t = writer.named.get(f"{env_ns}.{value_t}", writer.named.get(value_t, value_t))
        value = value_t
        if not isinstance(value, dict) or value.get("type") != "record":
            raise SchemaError("envelope 'before' is not a [null, record] union")
        self.cdc_written = "cdc_unchanged" in fields
        self.rows = RowDecoder(value, writer.named, trusted=self.cdc_written, namespace=env_ns)
        self.table = _table_from_prop(value.get("cdc.table"))
        pk = value.get("cdc.primary_key")
        self.primary_key = tuple(str(k) for k in pk) if isinstance(pk, list) else None
        self._schemas: dict[tuple[TableId, KeyReader | None], TableSchema] = {}
        self._codecs: dict[str, PositionCodec] = {}  # position codecs by kind
        self._last_codec: PositionCodec | None = None  # the one that parsed the last text
        # The C reader reads the envelope as a tuple (indexes below) and, for records
        # cdc wrote, before/after straight into canonical rows.
        names = [str(f["name"]) for f in env["fields"]]
        self._fields = tuple(
            names.index(n) if n in names else -1
            for n in (
                "op", "source", "before", "after", "cdc_unchanged", "cdc_before_absent",
                "cdc_special_values", "transaction", "ts_ms",
            )
        )  # fmt: skip
        spec = self.rows.native_spec
        self._native_rows = spec is not None
        self._native = _reader.compile_native(
            env,
            writer.named,
            tuples=(full_name(env, None),),
            rows={} if spec is None else {self.rows.full_name: spec},
        )

    def table_schema(self, table: TableId, key: KeyReader | None) -> TableSchema:
        hit = self._schemas.get((table, key))
        if hit is not None:
            return hit
        if self.primary_key is not None:
            pk = self.primary_key
        elif key is not None:
            names = self.rows.original_names
            pk = tuple(names.get(c.name, c.name) for c in key.rows.columns)
        else:
            pk = ()
        try:
            ts = TableSchema(table, self.rows.columns, pk)
        except ValueError as e:
            raise SchemaError(f"{table}: key and value schemas disagree: {e}") from e
        if len(self._schemas) < 64:
            self._schemas[(table, key)] = ts
        return ts

    def read(
        self, env: Mapping[str, Any], key: Mapping[str, Any] | None, key_reader: KeyReader | None
    ) -> DecodedChange:
        """The change of an envelope as :func:`decode_value` returned it (the reference path)."""
        source: Mapping[str, Any] = env["source"]
        unchanged_list = env.get("cdc_unchanged") or ()
        absent = env.get("cdc_before_absent") or ()
        before = after = None
        unchanged: set[str] = set()
        if env["before"] is not None:
            before, _ = self.rows.convert(env["before"], absent)
        if env["after"] is not None:
            after, unchanged = self.rows.convert(env["after"], unchanged_list)
            unchanged.update(unchanged_list)
        return self._change(
            env["op"], source, before, after, unchanged, env.get("cdc_special_values"),
            env.get("transaction"), env.get("ts_ms"), key, key_reader,
        )  # fmt: skip

    def decode(
        self,
        body: bytes | bytearray | memoryview,
        key: Mapping[str, Any] | None,
        key_reader: KeyReader | None,
        start: int = 0,
    ) -> DecodedChange:
        """The change in the Avro body ``body[start:]``: the C reader when built,
        else (and for anything it refuses) the generated Python reader."""
        lim = self._limits
        if self._native is not None:
            try:
                t = _NATIVE_READ(  # type: ignore[misc]
                    self._native, body, start, lim.max_items, lim.max_record_bytes
                )
            except SerializationError:  # bad bytes: the reference path names the problem
                t = None
            if t is not None:
                return self._from_tuple(t, key, key_reader)
        env = self.writer.read(bytes(memoryview(body)[start:]), lim)
        return self.read(env, key, key_reader)

    def fast_read(
        self, body: bytes | bytearray | memoryview, start: int
    ) -> tuple[str, Mapping[str, Any], dict[str, Any] | None, dict[str, Any] | None] | None:
        """``(op, source, before, after)`` of a plain cdc-written change, read by the C
        reader with nothing else built; None when the record needs :meth:`decode`
        (no C reader, a schema without a table property, unchanged or absent columns,
        special values, an unreadable body: the full path decides and names errors)."""
        native = self._native
        if native is None or not self._native_rows or not self.cdc_written or self.table is None:
            return None
        lim = self._limits
        try:
            t = _NATIVE_READ(  # type: ignore[misc]
                native, body, start, lim.max_items, lim.max_record_bytes
            )
        except SerializationError:  # bad bytes: decode() names the problem
            return None
        i_op, i_src, i_before, i_after, i_unch, i_absent, i_special, _, _ = self._fields
        if (
            (i_unch >= 0 and t[i_unch])
            or (i_special >= 0 and t[i_special])
            or (i_absent >= 0 and t[i_absent])
        ):
            return None
        return t[i_op], t[i_src], t[i_before], t[i_after]

    def fast_reader(
        self, start: int
    ) -> Callable[[bytes], tuple[str, Mapping[str, Any], dict[str, Any] | None, dict[str, Any] | None] | None] | None:
        """:meth:`fast_read` of bodies at ``start`` as one function with everything it
        looks up bound (the sink's per-record hot path); None when fast_read would
        always answer None (what it checks first is fixed at construction)."""
        native = self._native
        if native is None or not self._native_rows or not self.cdc_written or self.table is None:
            return None
        read = _NATIVE_READ
        max_items, max_bytes = self._limits.max_items, self._limits.max_record_bytes
        i_op, i_src, i_before, i_after, i_unch, i_absent, i_special, _, _ = self._fields
        # (a missing field's index is -1: t[-1] would be another field, so test it as False)
        flags = tuple(i for i in (i_unch, i_special, i_absent) if i >= 0)

        def fast(body: bytes) -> tuple[str, Mapping[str, Any], dict[str, Any] | None, dict[str, Any] | None] | None:
            try:
                t = read(native, body, start, max_items, max_bytes)  # type: ignore[misc]
            except SerializationError:  # bad bytes: decode() names the problem
                return None
            for i in flags:
                if t[i]:
                    return None
            return t[i_op], t[i_src], t[i_before], t[i_after]

        return fast

    def _from_tuple(
        self, t: tuple[Any, ...], key: Mapping[str, Any] | None, key_reader: KeyReader | None
    ) -> DecodedChange:
        i_op, i_src, i_before, i_after, i_unch, i_absent, i_special, i_tx, i_ts = self._fields
        before = t[i_before]
        after = t[i_after]
        unchanged_list = (t[i_unch] if i_unch >= 0 else None) or ()
        unchanged: set[str] = set()
        if self._native_rows:  # already canonical rows: drop what the source did not send
            if before is not None and i_absent >= 0 and t[i_absent]:
                for name in t[i_absent]:
                    before.pop(name, None)
            if after is not None and unchanged_list:
                for name in unchanged_list:
                    after.pop(name, None)
                unchanged.update(unchanged_list)
        else:
            absent = (t[i_absent] if i_absent >= 0 else None) or ()
            if before is not None:
                before, _ = self.rows.convert(before, absent)
            if after is not None:
                after, unchanged = self.rows.convert(after, unchanged_list)
                unchanged.update(unchanged_list)
        return self._change(
            t[i_op], t[i_src], before, after, unchanged,
            t[i_special] if i_special >= 0 else None, t[i_tx] if i_tx >= 0 else None,
            t[i_ts] if i_ts >= 0 else None, key, key_reader,
        )  # fmt: skip

    def _change(
        self,
        op_text: Any,
        source: Mapping[str, Any],
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        unchanged: set[str],
        specials: Mapping[str, str] | None,
        tx: Mapping[str, Any] | None,
        ts_ms: int | None,
        key: Mapping[str, Any] | None,
        key_reader: KeyReader | None,
    ) -> DecodedChange:
        op = _OP_OF.get(op_text)
        if op is None:
            raise SerializationError(f"unknown op {op_text!r} in change envelope")
        table = self.table or self._table_from_source(source)
        if specials:
            self._restore_specials(specials, before, after, table)
        position = None
        raw_position = source.get("cdc_position")
        if raw_position:
            try:
                position = self._position(raw_position)
            except (ValueError, PositionError) as e:
                raise SerializationError(
                    f"{table}: unreadable cdc_position {raw_position!r}: {e}"
                ) from e
        return DecodedChange(
            op=op,
            table=table,
            schema=self.table_schema(table, key_reader),
            key=key,
            before=before,
            after=after,
            source=source,
            position=position,
            unchanged=frozenset(unchanged),
            origin=source.get("cdc_origin"),
            transaction=None
            if tx is None
            else TransactionInfo(
                str(tx["id"]), int(tx["total_order"]), int(tx["data_collection_order"])
            ),
            ts_ms=ts_ms,
        )

    def _position(self, text: str) -> Position:
        """A ``cdc_position`` text as a position: its codec's fast parse when the text
        is in the exact form the codec knows, else the generic JSON. The codec that
        parsed the last text tries first (a codec parses only texts of its own kind)."""
        last = self._last_codec
        if last is not None:
            fast = last.parse_text(text)
            if fast is not None:
                return fast
        kind = text_kind(text)
        if kind is not None:
            codec = self._codecs.get(kind)
            if codec is None:
                codec = self._codecs[kind] = position_codec(kind)
            fast = codec.parse_text(text)
            if fast is not None:
                self._last_codec = codec
                return fast
        return position_from_dict(json.loads(text))

    def _restore_specials(
        self,
        specials: Mapping[str, str],
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        table: TableId,
    ) -> None:
        for key, text in specials.items():
            image, _, column = key.partition(".")
            row = before if image == "before" else after if image == "after" else None
            ct = self.rows.types.get(column)
            if row is None or ct is None:
                raise SerializationError(f"{table}: cdc_special_values names {key!r}, not a column")
            row[column] = special_value(text, ct)

    def _table_from_source(self, source: Mapping[str, Any]) -> TableId:
        table = source.get("table")
        if table is None:
            raise SerializationError("change envelope source names no table")
        # Blocks of databases with schemas have a "schema" field (Debezium's too).
        return TableId(str(source["db"]), source.get("schema"), str(table))


_READERS_LOCK = Lock()
_ENVELOPE_READERS: OrderedDict[str, EnvelopeReader] = OrderedDict()
_KEY_READERS: OrderedDict[str, KeyReader] = OrderedDict()


def _cached_reader(
    cache: OrderedDict[str, Any], make: Callable[[WriterSchema], Any],
    writer: str | Mapping[str, Any] | WriterSchema,
) -> Any:
    """The reader ``make`` builds for ``writer``, one per schema text (LRU-bounded)."""
    ws = WriterSchema.parse(writer)
    with _READERS_LOCK:
        hit = cache.get(ws.text)
    if hit is None:
        hit = make(ws)
        with _READERS_LOCK:
            cache[ws.text] = hit
            if len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
    return hit


def envelope_reader(writer: str | Mapping[str, Any] | WriterSchema) -> EnvelopeReader:
    return _cached_reader(_ENVELOPE_READERS, EnvelopeReader, writer)  # type: ignore[no-any-return]


def key_reader(writer: str | Mapping[str, Any] | WriterSchema) -> KeyReader:
    return _cached_reader(_KEY_READERS, KeyReader, writer)  # type: ignore[no-any-return]


def envelope_to_change(
    envelope: Mapping[str, Any],
    value_schema: str | Mapping[str, Any] | WriterSchema,
    key: Mapping[str, Any] | None = None,
    key_schema: str | Mapping[str, Any] | WriterSchema | None = None,
) -> DecodedChange:
    """Canonical change from an envelope as :func:`decode_value` returned it.

    ``key`` is the key record as read (Avro field names), converted here too.
    """
    kr = None if key_schema is None else key_reader(key_schema)
    key_row = None
    if key is not None and kr is not None:
        key_row = kr.rows.convert(key)[0]
    return envelope_reader(value_schema).read(envelope, key_row, kr)


def decode_change(
    value: bytes | bytearray | memoryview | None,
    value_schema: str | Mapping[str, Any] | WriterSchema | None,
    key: bytes | bytearray | memoryview | None = None,
    key_schema: str | Mapping[str, Any] | WriterSchema | None = None,
) -> DecodedChange | Tombstone:
    """Decode unframed key/value bodies with their writer schemas (no registry)."""
    kr = None if key is None or key_schema is None else key_reader(key_schema)
    key_row = None if key is None or kr is None else kr.read(key)
    if value is None:
        return Tombstone(key=key_row, table=None if kr is None else kr.table)
    if value_schema is None:
        raise SerializationError("a value without a writer schema")
    return envelope_reader(value_schema).decode(value, key_row, kr)


__all__ = [
    "DecodedChange",
    "EnvelopeReader",
    "Tombstone",
    "decode_change",
    "envelope_reader",
    "envelope_to_change",
    "key_reader",
]
