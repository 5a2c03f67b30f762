"""Schema-driven decode of Avro records back to canonical rows.

Decoding is schema driven and general, because sinks must also read records
Debezium wrote: a reader generated from the writer schema (:mod:`.reader`,
checked against fastavro in the tests; the C reader where built) returns the
raw record (ints, bytes, dicts), then per-column converters chosen from the
writer schema's hints rebuild canonical values (Decimal, aware UTC datetimes,
timedelta, UUID, the temporal sentinels, NaN decimals and multi-dimensional
arrays from ``cdc_special_values``). This module holds the writer schemas
(parsed once per registry id), the row decoder of one record schema and the
key reader; :mod:`.decode` reads whole change envelopes with them.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from threading import Lock
from typing import Any, Final

from cdc.errors import SchemaError, SerializationError
from cdc.events import (
    Column,
    TableId,
)
from cdc.serde import reader as _reader
from cdc.serde import temporal as _temporal
from cdc.serde import value_codecs as _value_codecs
from cdc.serde.envelope import (
    full_name,
    named_types,
)
from cdc.serde.field_decoding import ColumnDecoding, column_decoding
from cdc.serde.limits import DEFAULT_LIMITS, DecodeLimits
from cdc.serde.reader import Reader, compile_reader

_FIXED_DECIMAL_CODE: Final = _value_codecs.fixed_decimal_codec(1, 0)[1].__code__
_cdecode = _reader.native_module()
_NATIVE_READ: Final[Callable[..., Any] | None] = None if _cdecode is None else _cdecode.read


_DATA_ERRORS: Final = (ValueError, TypeError, OverflowError, ArithmeticError, KeyError)


def _guarded(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``conv`` as the C reader calls it: a value that does not convert (the errors
    :meth:`RowDecoder.convert` names) raises SerializationError, the C reader's one
    signal that the bytes are bad, so the reference path names the problem; any
    other error (MemoryError, a bug) propagates as it is."""

    def call(v: Any) -> Any:
        try:
            return conv(v)
        except _DATA_ERRORS as e:
            raise SerializationError(f"value {v!r:.80} does not convert: {e}") from e

    return call


def _native_conversion(conv: Callable[[Any], Any] | None) -> _reader.Conversion | None:
    """The C reader's form of a column converter: a native code for the common
    ones (which call ``conv`` for values outside their fast case), else a call."""
    if conv is None:
        return None
    safe = _guarded(conv)
    if conv is _temporal.date_from_wire:
        return (_reader.CV_DATE, 0, safe)
    if conv is _temporal.ts_from_micros:
        return (_reader.CV_TS, 0, safe)
    if conv is _temporal.time_from_micros:
        return (_reader.CV_TIME, 0, safe)
    code = getattr(conv, "__code__", None)
    cells = getattr(conv, "__closure__", None)
    if code is _FIXED_DECIMAL_CODE and cells is not None:
        scale = cells[code.co_freevars.index("scale")].cell_contents
        if isinstance(scale, int) and 0 <= scale <= 1_000_000:
            return (_reader.CV_DECIMAL, scale, safe)
    return (_reader.CV_CALL, 0, safe)


@dataclass(frozen=True, slots=True, eq=False)
class WriterSchema:
    """A writer schema parsed once for reading (one per registry id)."""

    text: str
    schema: Any
    named: Mapping[str, Any]
    read: Reader

    @classmethod
    def parse(cls, schema: str | Mapping[str, Any] | WriterSchema) -> WriterSchema:
        if isinstance(schema, WriterSchema):
            return schema
        text = schema if isinstance(schema, str) else json.dumps(schema, separators=(",", ":"))
        with _CACHE_LOCK:
            hit = _WRITER_CACHE.get(text)
            if hit is not None:
                _WRITER_CACHE.move_to_end(text)
                return hit
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise SchemaError(f"writer schema is not JSON: {e}") from e
        # Imported here: a process that never reads a writer schema (a source) does
        # not carry fastavro (about 3 MB resident).
        from fastavro import parse_schema
        from fastavro.schema import SchemaParseException, UnknownType

        try:
            # fastavro validates the schema; defaults matter only for schema
            # resolution, which decoding with the writer schema never does.
            parse_schema(obj, _ignore_default_error=True)
        except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError) as e:
            raise SchemaError(f"writer schema is not valid Avro: {e}") from e
        named = named_types(obj)
        read, _ = compile_reader(obj, named)
        program = _reader.compile_native(obj, named)
        if program is not None:
            read = _reader.native_reader(program, read)
        ws = cls(text=text, schema=obj, named=named, read=read)
        with _CACHE_LOCK:
            _WRITER_CACHE[text] = ws
            if len(_WRITER_CACHE) > _CACHE_SIZE:
                _WRITER_CACHE.popitem(last=False)
        return ws


_CACHE_SIZE: Final = 1024
_CACHE_LOCK = Lock()
_WRITER_CACHE: OrderedDict[str, WriterSchema] = OrderedDict()


def decode_value(
    body: bytes | bytearray | memoryview, writer_schema: str | Mapping[str, Any] | WriterSchema
) -> Any:
    """Read one Avro body (no framing) with its writer schema.

    Returns the record as the wire holds it (dates as ints, decimals as
    bytes...); :func:`decode_change` turns an envelope into canonical rows.
    """
    return WriterSchema.parse(writer_schema).read(bytes(body))


def _table_from_prop(prop: Any) -> TableId | None:
    if isinstance(prop, dict) and "database" in prop and "table" in prop:
        return TableId(str(prop["database"]), prop.get("schema"), str(prop["table"]))
    return None


class RowDecoder:
    """Reads one record schema's images into canonical rows."""

    __slots__ = (
        "_columns",
        "columns",
        "full_name",
        "label",
        "native_spec",
        "original_names",
        "trusted",
        "types",
    )

    def __init__(
        self,
        record: Mapping[str, Any],
        named: Mapping[str, Any],
        *,
        trusted: bool,
        namespace: str | None = None,
    ) -> None:
        self.label = str(record.get("name", "record"))
        full = full_name(record, namespace) if "name" in record else self.label
        self.full_name = full
        inner_ns = full.rpartition(".")[0] or None
        self.trusted = trusted
        cols: list[tuple[str, str, ColumnDecoding]] = []
        columns: list[Column] = []
        for field in record.get("fields", ()):
            avro_name = str(field["name"])
            original = str(field.get("cdc.name", avro_name))
            dec = column_decoding(
                field, named, namespace=inner_ns, context=f"{self.label}.{avro_name}"
            )
            cols.append((avro_name, original, dec))
            default = field.get("cdc.default")
            columns.append(
                Column(
                    original,
                    dec.column_type,
                    dec.nullable,
                    None if default is None else str(default),
                )
            )
        self._columns = tuple(
            (a, o, d.decode, None if trusted else d.unavailable, d.column_type.kind)
            for a, o, d in cols
        )
        self.columns = tuple(columns)
        self.original_names = {a: o for a, o, _ in cols}
        self.types = {c.name: c.type for c in columns}
        # The C reader's row spec: records it reads straight into canonical rows. Only
        # trusted rows (no Debezium unavailable markers to look for) take that path.
        self.native_spec: _reader.RowSpec | None = (
            tuple((o, _native_conversion(d.decode)) for _, o, d in cols) if trusted else None
        )

    def convert(
        self, rec: Mapping[str, Any], drop: Collection[str] = ()
    ) -> tuple[dict[str, Any], set[str]]:
        """Canonical row from a read record; also the columns Debezium marked unavailable."""
        out: dict[str, Any] = {}
        unavailable: set[str] = set()
        for avro_name, name, conv, marker, kind in self._columns:
            if name in drop:
                continue
            v = rec[avro_name]
            if v is None:
                out[name] = None
                continue
            if marker is not None and v == marker:
                unavailable.add(name)
                continue
            if conv is not None:
                try:
                    v = conv(v)
                except SerializationError as e:
                    raise SerializationError(f"{self.label}: column {name!r} ({kind}): {e}") from e
                except (ValueError, TypeError, OverflowError, ArithmeticError, KeyError) as e:
                    raise SerializationError(
                        f"{self.label}: column {name!r} ({kind}) holds {v!r:.80}, "
                        f"which does not convert: {e}"
                    ) from e
            out[name] = v
        return out, unavailable


class KeyReader:
    """Decodes keys written with one key schema."""

    __slots__ = ("_limits", "_native", "rows", "table", "writer")

    def __init__(self, writer: WriterSchema, limits: DecodeLimits = DEFAULT_LIMITS) -> None:
        self.writer = writer
        self._limits = limits
        s = writer.schema
        if not isinstance(s, dict) or s.get("type") != "record":
            raise SchemaError("key schema is not a record")
        self.table = _table_from_prop(s.get("cdc.table"))
        self.rows = RowDecoder(s, writer.named, trusted=True)  # keys carry no TOAST markers
        spec = self.rows.native_spec
        self._native = (
            None
            if spec is None
            else _reader.compile_native(s, writer.named, rows={self.rows.full_name: spec})
        )

    def read(self, body: bytes | bytearray | memoryview, start: int = 0) -> dict[str, Any]:
        """The key row of ``body[start:]``."""
        lim = self._limits
        if self._native is not None:
            try:
                row: dict[str, Any] = _NATIVE_READ(  # type: ignore[misc]
                    self._native, body, start, lim.max_items, lim.max_record_bytes
                )
                return row
            except SerializationError:  # bad bytes: the reference path names the problem
                pass
        if start:
            body = memoryview(body)[start:]
        return self.rows.convert(self.writer.read(bytes(body), lim))[0]


__all__ = ["KeyReader", "RowDecoder", "WriterSchema", "decode_value"]
