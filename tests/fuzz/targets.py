"""Fuzz targets: one per parser of untrusted bytes, each a differential check.

Every target takes arbitrary bytes and runs the C parser and its pure-Python
reference (the specification) on them. It passes when both give the same
result or both raise the parser's documented decode error; it fails (raises
:class:`Finding`, or lets the unexpected exception through) on any other
exception, on a disagreement, and of course on a crash, which under the
sanitizer build (``make sanitize``) includes every memory error.

=============  ================================================  =====================
target         parsers                                           documented error
=============  ================================================  =====================
framing        cdc.serde.framing.unframe / frame                 SerializationError
avro_envelope  _cdecode.read + EnvelopeReader._from_tuple vs     SerializationError
               the generated Python reader + EnvelopeReader.read
avro_key       _cdecode.read vs the Python reader (KeyReader)    SerializationError
pgoutput       _cpgoutput.parse_row / read_tuple vs decoder.py   C: ValueError (then
                                                                 the Python path),
                                                                 Python:
                                                                 SerializationError
rowimage       _crowimage.Program.decode vs rowimage.py          ValueError (same type
                                                                 on both sides)
text_rows      _cencode.encode_text_rows vs converting and       any (both refuse)
               encoding each row's event in Python
copy_run       _ccopy.encode vs copyrun.encode_py (envelope ->   none: both stop the run
               binary COPY tuples of the PostgreSQL sink), and   at the same record
               _crun.encode vs runs.encode_py (SQL literal rows
               of the MariaDB/MySQL sink)
=============  ================================================  =====================

Input layouts (the seed corpus under ``corpus/<target>/`` follows them; see
``capture.py``): Avro targets (copy_run too) and framing take a Confluent-framed message, the
schema id choosing one of the writer schemas captured from the registry
(``avro-schemas.json``; an unknown id picks one by ``id % count``); pgoutput
takes one flag byte (bit 0: inside a stream block) and the message; rowimage
takes one byte (bit 7: update pairs, bits 0-6: table of
``rowimage-tables.json``) and the rows event body; text_rows takes snapshot rows
of text (:func:`text_row_values`).

Bounds: an input is capped at :data:`MAX_INPUT` bytes, so a target's memory
stays bounded by the parsers' own limits (defect 1 of issue 11 is about those).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, Final

from cdc import native
from cdc.errors import SerializationError
from cdc.serde import rowdecode
from cdc.serde.decode import EnvelopeReader
from cdc.serde.framing import HEADER_SIZE, frame, unframe
from cdc.serde.reader import compile_reader
from cdc.serde.rowdecode import KeyReader, WriterSchema
from connectors.mysql.source import rowimage
from connectors.mysql.types import BinlogColumn, column_type_from_binlog
from connectors.mysql.values import make_codec
from connectors.postgres.source import decoder as pg
from connectors.postgres.source import messages

HERE = Path(__file__).resolve().parent
MAX_INPUT = 1 << 16


class Finding(AssertionError):
    """The two parsers disagree, or one raised something it must not."""


# ------------------------------------------------------------------ framing


def framing(data: bytes) -> None:
    try:
        schema_id, body = unframe(data)
    except SerializationError:
        if len(data) >= HEADER_SIZE and data[0] == 0:
            raise Finding(f"unframe refused a well-formed header: {data[:5].hex()}") from None
        return
    if (schema_id, bytes(body)) != (struct.unpack_from(">I", data, 1)[0], data[HEADER_SIZE:]):
        raise Finding("unframe split the message wrongly")
    if frame(schema_id, bytes(body)) != data:
        raise Finding("frame(unframe(m)) != m")


# ------------------------------------------------------------------ Avro


@cache
def _schemas(kind: str) -> tuple[dict[int, WriterSchema], list[WriterSchema]]:
    raw = json.loads((HERE / "avro-schemas.json").read_text())
    by_id = {int(k): WriterSchema.parse(v["schema"]) for k, v in raw.items() if v["kind"] == kind}
    return by_id, [by_id[k] for k in sorted(by_id)]


def _writer(kind: str, data: bytes) -> tuple[WriterSchema, bytes] | None:
    try:
        schema_id, body = unframe(data)
    except SerializationError:
        return None
    by_id, ordered = _schemas(kind)
    return by_id.get(schema_id) or ordered[schema_id % len(ordered)], bytes(body)


@cache
def _python_reader(writer: WriterSchema) -> Callable[[bytes], Any]:
    read, _ = compile_reader(writer.schema, writer.named)
    return read


@cache
def _envelope_reader(writer: WriterSchema) -> EnvelopeReader:
    return EnvelopeReader(writer)


@cache
def _key_reader(writer: WriterSchema) -> KeyReader:
    return KeyReader(writer)


def _outcome(fn: Callable[[], Any]) -> tuple[str, str]:
    try:
        return "ok", repr(fn())  # repr: NaN == NaN, and types must match too
    except SerializationError:
        return "error", "SerializationError"


def _native_read(program: Any, body: bytes) -> Any:
    read = rowdecode._NATIVE_READ
    assert read is not None and program is not None
    return read(program, body, 0)


def _compare(what: str, c: tuple[str, str], py: tuple[str, str], body: bytes) -> None:
    if c != py:
        raise Finding(f"{what}: C {c[0]} {c[1][:300]} != Python {py[0]} {py[1][:300]} "
                      f"on {body[:200].hex()}")


def avro_envelope(data: bytes) -> None:
    got = _writer("value", data[:MAX_INPUT])
    if got is None:
        return
    writer, body = got
    reader = _envelope_reader(writer)
    python = _outcome(lambda: reader.read(_python_reader(writer)(body), None, None))
    if reader._native is not None and rowdecode._NATIVE_READ is not None:
        c = _outcome(lambda: reader._from_tuple(_native_read(reader._native, body), None, None))
        _compare("envelope", c, python, body)
    # what a sink calls: the C reader with the Python one behind it
    _compare("envelope decode", _outcome(lambda: reader.decode(body, None, None)), python, body)


def avro_key(data: bytes) -> None:
    got = _writer("key", data[:MAX_INPUT])
    if got is None:
        return
    writer, body = got
    reader = _key_reader(writer)
    python = _outcome(lambda: reader.rows.convert(_python_reader(writer)(body))[0])
    if reader._native is not None and rowdecode._NATIVE_READ is not None:
        # the C reader returns canonical rows (it is compiled with the key's row spec)
        _compare("key", _outcome(lambda: _native_read(reader._native, body)), python, body)
    _compare("key read", _outcome(lambda: reader.read(body)), python, body)


# ------------------------------------------------------------------ pgoutput


def _row_of(msg: Any) -> Any:
    if isinstance(msg, messages.Insert):
        return msg.relation_id, msg.new, None, None
    if isinstance(msg, messages.Update):
        return msg.relation_id, msg.new, msg.old, msg.old_kind
    if isinstance(msg, messages.Delete):
        return msg.relation_id, None, msg.old, msg.old_kind
    return None


def pgoutput(data: bytes) -> None:
    if not data:
        return
    in_stream = bool(data[0] & 1)
    payload = bytes(data[1:MAX_INPUT])
    try:
        msg: Any = pg.decode_message(payload, in_stream=in_stream)
    except SerializationError:
        msg = None
    row = None if msg is None else _row_of(msg)
    c = pg._C
    if c is not None and payload[:1] in (b"I", b"U", b"D"):
        try:
            c_row = c.parse_row(payload, in_stream, messages.UNCHANGED_TOAST)
        except ValueError:
            c_row = None  # malformed for C: decode_row falls back to the reference
        if c_row is not None and c_row != row:
            raise Finding(f"parse_row: C {c_row!r:.300} != Python {row!r:.300} on {payload.hex()}")
    if c is not None and len(payload) > 1:
        # TupleData anywhere in the message: C may only be stricter than the reference
        pos = data[0] >> 1 & 0x3F
        if pos < len(payload):
            try:
                c_tuple = c.read_tuple(payload, pos, messages.UNCHANGED_TOAST)
            except ValueError:
                c_tuple = None
            if c_tuple is not None:
                try:
                    py_tuple = pg._read_tuple(payload + pg._PAD, pos, len(payload))
                except pg._Malformed:
                    py_tuple = None
                if c_tuple != py_tuple:
                    raise Finding(f"read_tuple at {pos}: C {c_tuple!r:.300} != Python "
                                  f"{py_tuple!r:.300} on {payload.hex()}")
    try:
        public = pg.decode_row(payload, in_stream)
    except SerializationError:
        public = None
    if public != row:
        raise Finding(f"decode_row {public!r:.300} != decode_message {row!r:.300}")


# ------------------------------------------------------------------ binlog row images


@cache
def _tables() -> list[list[BinlogColumn]]:
    raw = json.loads((HERE / "rowimage-tables.json").read_text())
    return [
        [BinlogColumn(**{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()})
         for c in cols]
        for cols in raw
    ]


@cache
def _row_decoders(index: int) -> tuple[Any, Any]:
    cols = _tables()[index]
    codecs = [
        make_codec(b.shape(), column_type_from_binlog(b), nullable=b.nullable, table="db.t",
                   zero_date="null", charset=b.charset)
        for b in cols
    ]
    py = rowimage.build_fast_decoder(cols, codecs, use_native=False)
    c = rowimage.build_fast_decoder(cols, codecs) if rowimage.native_available() else None
    assert py is not None
    return py, c


# A malformed body: both decoders raise ValueError (or the SerializationError
# of a column conversion they call); anything else is a finding.
_ROW_ERRORS: Final = (ValueError, SerializationError)


def _row_outcome(dec: Any, body: bytes, pairs: bool) -> tuple[str, str]:
    try:
        return "ok", repr(dec.decode(body, 0, len(body), pairs))
    except _ROW_ERRORS as e:
        return "error", f"malformed: {e}"


def rowimage_target(data: bytes) -> None:
    if not data:
        return
    tables = _tables()
    index = (data[0] & 0x7F) % len(tables)
    pairs = bool(data[0] & 0x80)
    body = bytes(data[1:MAX_INPUT])
    py, c = _row_decoders(index)
    python = _row_outcome(py, body, pairs)
    if c is None:
        return
    native_out = _row_outcome(c, body, pairs)
    if native_out[0] == python[0] == "error":
        return
    _compare("row images", native_out, python, body)


# ------------------------------------------------------------------ snapshot text rows

# (name, type oid, typmod) of the text-rows table: every text form plus columns whose
# converter runs (real, numeric without typmod, timestamptz, smallint).
TEXT_COLUMNS: Final = (
    ("id", 20, -1), ("qty", 23, -1), ("name", 25, -1), ("price", 1700, (10 << 16 | 2) + 4),
    ("created", 1114, -1), ("day", 1082, -1), ("ratio", 701, -1), ("active", 16, -1),
    ("code", 1043, 54), ("small", 21, -1), ("real", 700, -1), ("free", 1700, -1),
    ("tstz", 1184, -1), ("wide", 1700, (30 << 16 | 5) + 4),
)


@cache
def _text_encoders() -> tuple[Any, Any, Any]:
    from cdc.serde import encode
    from cdc.serde.encode import TableEncoder
    from cdc.serde.envelope import build_schemas
    from connectors.postgres.source.catalog import build_shape

    shape = build_shape("db", "public", "t", TEXT_COLUMNS, None, ("id",), None)
    schemas = build_schemas(shape.schema, prefix="p", connector="postgresql")
    native = TableEncoder(schemas)
    saved = encode._C
    encode._C = None
    try:
        python = TableEncoder(schemas)
    finally:
        encode._C = saved
    return shape, native, python


def _text_batch(shape: Any, texts: list[tuple[Any, ...]], stream: bool | None = None) -> Any:
    """A snapshot batch of ``texts``, or (``stream`` True or False: its last_in_tx) a
    stream's run of inserts in transaction 4711, from its 3rd event on."""
    from cdc.events import SourceInfo
    from cdc.spi import SnapshotRows, StreamRows
    from connectors.postgres.position import Lsn, PgPosition
    from connectors.postgres.source.catalog import text_forms

    n = len(texts)

    def at(i: int) -> SourceInfo:
        if stream is None:
            return SourceInfo("postgresql", "p", "1", "18",
                              PgPosition(Lsn(99), 7 + i, True, False),
                              1_700_000_000_000, None, "true", None)
        return SourceInfo("postgresql", "p", "1", "18",
                          PgPosition(Lsn(99), 2 + i, False, stream and i == n - 1),
                          1_700_000_000_000, "4711", "false", None)

    if stream is None:
        return SnapshotRows(shape.schema, at(0), 1_700_000_000_000, at, texts=texts,
                            names=shape.names, forms=text_forms(shape), convert=shape.row,
                            key_of=shape.key)
    return StreamRows(shape.schema, at(0), 1_700_000_000_123, at, texts=texts,
                      names=shape.names, forms=text_forms(shape), convert=shape.row,
                      key_of=shape.key, tx_id="4711", first_order=3, first_dc=2,
                      last_in_tx=stream)


def _any_outcome(fn: Callable[[], Any]) -> tuple[str, str]:
    try:
        return "ok", repr(fn())
    except Exception as e:
        return "error", type(e).__name__


def text_row_values(data: bytes) -> list[tuple[Any, ...]]:
    """Rows of text values from fuzz bytes: rows split on 0x1e, columns on 0x1f, a
    column of one NUL byte is NULL; short rows are padded with a plain value."""
    plain = ("1", "2", "x", "1.50", "2024-01-01 00:00:01", "2024-01-01", "0.5", "t", "c", "3",
             "1.5", "2.25", "2024-01-01 00:00:01+00", "7.12345")
    out = []
    for raw in data[:MAX_INPUT].split(b"\x1e")[:8]:
        cols: list[Any] = [None if c == b"\x00" else c.decode("utf-8", "replace")
                           for c in (raw.split(b"\x1f") if raw else [])[: len(TEXT_COLUMNS)]]
        cols += plain[len(cols):]
        out.append(tuple(cols))
    return out


def text_rows(data: bytes) -> None:
    """The C text-row encoder (_cencode.encode_text_rows via TableEncoder.encode_rows)
    against the per-row reference (convert, then encode each event in Python), for a
    snapshot batch and for a stream's run of inserts (cdc.spi.StreamRows)."""
    from cdc.serde import encode

    shape, native, python = _text_encoders()
    texts = text_row_values(data)
    for stream in (None, False, True):
        py = _any_outcome(lambda s=stream: python.encode_rows(_text_batch(shape, texts, s),
                                                              b"K", b"V"))
        if encode._C is None:
            return
        c = _any_outcome(lambda s=stream: native.encode_rows(_text_batch(shape, texts, s),
                                                             b"K", b"V"))
        if c[0] == py[0] == "error":
            continue  # both refuse (the first failing row may differ between the two orders)
        _compare("text rows" if stream is None else "stream rows", c, py, data)


# ------------------------------------------------------------------ binary COPY runs

_COPY_TYPES: Final = {
    "boolean": "bool", "int16": "int2", "int32": "int4", "int64": "int8", "float32": "float4",
    "float64": "float8", "string": "text", "bytes": "bytea", "date": "date",
    "timestamp": "timestamp", "timestamptz": "timestamptz", "uuid": "uuid", "decimal": "numeric",
}  # fmt: skip


# MariaDB/MySQL replica columns: (data_type, type_text, length, fraction).
_MYSQL_TYPES: Final = {
    "boolean": ("tinyint", "tinyint(1)", None, None), "int16": ("smallint", "smallint(6)", None, None),
    "int32": ("int", "int(11)", None, None), "int64": ("bigint", "bigint(20)", None, None),
    "float64": ("double", "double", None, None), "string": ("text", "text", 65535, None),
    "date": ("date", "date", None, None), "timestamp": ("datetime", "datetime(6)", None, 6),
    "timestamptz": ("timestamp", "timestamp(6)", None, 6), "uuid": ("char", "char(36)", 36, None),
    "bytes": ("varbinary", "varbinary(255)", 255, None),
    "decimal": ("decimal", "decimal", None, None),
}  # fmt: skip


@cache
def _run_encoders(
    writer: WriterSchema, updates: bool = False, mysql: bool = False
) -> tuple[Any, Any] | None:
    """The C and Python run encoders (of inserts, or ``updates``; the PostgreSQL sink's
    binary COPY, or ``mysql``: the MariaDB sink's SQL literal rows) of a value schema
    into a replica table whose columns have the types the encoder converts (the others
    are left out)."""
    from cdc.spi import ReplicaColumn, ReplicaTable, TableName
    from connectors.mysql.sink import runs
    from connectors.postgres.sink import copyrun

    try:
        reader = _envelope_reader(writer)
    except Exception:  # not an envelope: nothing to encode
        return None
    cols = reader.rows.columns
    if not cols:
        return None
    replica = []
    for c in cols:
        if mysql:
            my = _MYSQL_TYPES.get(c.type.kind.value)
            if my is None or (my[0] == "decimal" and c.type.precision is None):
                continue
            dt, tt, length, fraction = my
            replica.append(ReplicaColumn(
                c.name, tt, dt, True, length=length, fraction=fraction,
                precision=c.type.precision if dt == "decimal" else None,
                scale=max(c.type.scale or 0, 0) if dt == "decimal" else None,
            ))  # fmt: skip
            continue
        dt = _COPY_TYPES.get(c.type.kind.value)
        if dt is None:
            continue
        precise = dt == "numeric" and c.type.precision is not None and (c.type.scale or 0) >= 0
        replica.append(ReplicaColumn(
            c.name, dt, dt, True, length=c.type.length,
            precision=c.type.precision if precise else None,
            scale=c.type.scale if precise else None, kind=c.type.kind,
        ))  # fmt: skip
    if not replica:
        return None
    key = (replica[0].name,)

    def compiled(names: list[str], native_: bool) -> Any:
        table = ReplicaTable(TableName("public", "fuzz"), tuple(replica), key)
        compile_ = runs.compile_encoder if mysql else copyrun.compile_encoder
        return compile_(writer.schema, writer.named, cols, names, key, table,
                        use_native=native_, updates=updates)  # fmt: skip

    # the columns the encoder converts (each tried alone with the key)
    names = [r.name for r in replica
             if r.name == key[0] or compiled([key[0], r.name], False) is not None]
    encs = [compiled(names, n) for n in (True, False)]
    if encs[0] is None or encs[1] is None:
        return None
    return encs[0], encs[1]


def copy_run(data: bytes) -> None:
    """The C run encoders (of inserts, of updates) and their Python reference on one
    framed value, alone and as a run of two (itself then itself with its last byte
    cut): same rows, bytes, positions."""
    data = data[:MAX_INPUT]
    got = _writer("value", data)
    if got is None:
        return
    writer, _ = got
    for updates, mysql in ((False, False), (True, False), (False, True), (True, True)):
        encs = _run_encoders(writer, updates, mysql)
        if encs is None:
            continue
        c_enc, py_enc = encs
        for values in ([data], [data, data[:-1]], [data, data]):
            c = c_enc.encode(values, 0, len(values), "fuzz", HEADER_SIZE)
            py = py_enc.encode(values, 0, len(values), "fuzz", HEADER_SIZE)
            if c != py:
                raise Finding(
                    f"copy_run (updates={updates}, mysql={mysql}): C {c!r:.300} != Python {py!r:.300} "
                    f"on {data[:200].hex()}"
                )


TARGETS: dict[str, Callable[[bytes], None]] = {
    "framing": framing,
    "avro_envelope": avro_envelope,
    "avro_key": avro_key,
    "pgoutput": pgoutput,
    "rowimage": rowimage_target,
    "text_rows": text_rows,
    "copy_run": copy_run,
}


def seeds(target: str) -> list[Path]:
    """The seed corpus of a target, plus its regression inputs (``regress-*``)."""
    d = HERE / "corpus" / target
    return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def native_expected() -> bool:
    """Whether the C side of the differential runs (else only the Python parsers do)."""
    return native.enabled() and all(
        m is not None for m in (rowdecode._NATIVE_READ, pg._C, rowimage._native)
    )
