"""Fast Avro encode of change events and schema-driven decode back to rows.

Encoding is the source's hot path. Measured on this project's machines
(MACHINE-NOTES.md, bench/serde_bench.py), fastavro's ``schemaless_writer``
costs several microseconds per call before any field is written, so running
it over a whole Debezium envelope caps a source near 17k events/s. This
module therefore:

* generates, once per table schema version, a Python function that writes a
  row image's Avro bytes directly (primitives inline, other kinds through the
  :class:`~cdc.serde.types.AvroType` encoders), and
* assembles the envelope around the row bytes by hand: a record is its fields
  back to back and a ``["null", T]`` union is a branch-index varint followed
  by the value, so ``before``/``after`` are ``0x02 + row bytes`` or ``0x00``
  and the ``source`` block is mostly cached bytes.

The result is ordinary Avro binary for the registered schema; the unit tests
check it byte for byte against fastavro's writer.

Decoding is schema driven and general, because sinks must also read records
Debezium wrote: a reader generated from the writer schema (:mod:`.reader`,
checked against fastavro in the tests) returns the raw record (ints, bytes,
dicts), then per-column converters chosen from the writer schema's hints
rebuild canonical values (Decimal, aware UTC datetimes, timedelta, UUID, the
temporal sentinels, NaN decimals and multi-dimensional arrays from
``cdc_special_values``).
"""

from __future__ import annotations

import json
import json.encoder
import re
import struct
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from threading import Lock
from typing import Any, Final

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, UnknownType

from cdc import native
from cdc.errors import PositionError, SchemaError, SerializationError
from cdc.events import (
    ChangeEvent,
    Column,
    Op,
    Row,
    SourceInfo,
    TableId,
    TableSchema,
    TransactionInfo,
)
from cdc.positions import Lsn, MySqlPosition, PgPosition, position_from_dict
from cdc.serde import binary
from cdc.serde.binary import NULL_BRANCH, VALUE_BRANCH, zigzag
from cdc.serde.envelope import (
    FieldSpec,
    TableSchemas,
    full_name,
    named_types,
    source_shape,
)
from cdc.serde.field_decoding import ColumnDecoding, column_decoding, unwrap_nullable
from cdc.serde.limits import DEFAULT_LIMITS, DecodeLimits
from cdc.serde.reader import Reader, compile_reader
from cdc.serde.special_values import special_value
from cdc.serde.types import Inline

_string = binary.string
_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


def _no_default(o: Any) -> Any:
    raise TypeError(f"{type(o).__name__} in a position's to_dict() is not JSON")


def _compact_json_encoder() -> Callable[[Any], str]:
    """Compact ``json.dumps`` without its per-call encoder set-up (~2 us saved).

    Positions are small flat dicts, encoded once per event on the hot path.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the C accelerator
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    chunks = make(
        None, _no_default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )

    def encode(o: Any) -> str:
        return "".join(chunks(o, 0))

    return encode


_POSITION_JSON: Final = _compact_json_encoder()

# --------------------------------------------------------------------------- row encoding


# An encoded row image: bytes, columns it lacks, special values (column -> JSON).
Image = tuple[bytes, Sequence[str], Mapping[str, str] | None]


class _NeedsSlowPath(Exception):
    """Raised by generated code when a row does not fit the fast path's assumptions."""


# The C twin of the generated fast path (cdc/serde/_cencode.c), when built.
_C: Final = native.load("cdc.serde._cencode")
_C_SLOW: Final[tuple[type[BaseException], ...]] = (_C.SlowPath,) if _C is not None else ()


# Exceptions a generated fast path can raise on a value it does not handle;
# the slow path then re-encodes the row and names the offending column.
_FAST_PATH_ERRORS: Final[tuple[type[BaseException], ...]] = (
    KeyError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
    ArithmeticError,
    struct.error,
    SerializationError,
    _NeedsSlowPath,
    *_C_SLOW,
)


def _c_program(fields: Sequence[FieldSpec]) -> Any:
    """The fields as a native RowProgram, or None without the C module."""
    if _C is None:
        return None
    ops = {
        None: _C.OP_CALL,
        Inline.BOOLEAN: _C.OP_BOOLEAN,
        Inline.INT: _C.OP_INT,
        Inline.STRING: _C.OP_STRING,
        Inline.BYTES: _C.OP_BYTES,
        Inline.DOUBLE: _C.OP_DOUBLE,
        Inline.DATE: _C.OP_DATE,
        Inline.TIMESTAMP: _C.OP_TIMESTAMP,
        Inline.TIMESTAMPTZ: _C.OP_TIMESTAMPTZ,
        Inline.DECIMAL: _C.OP_DECIMAL,
    }
    spec = []
    for f in fields:
        lo, hi = f.avro.inline_params or (binary.INT64_MIN, binary.INT64_MAX)
        absent = NULL_BRANCH if f.column.nullable else f.avro.placeholder  # as RowEncoder._absent
        spec.append(
            (f.column.name, f.column.nullable, ops[f.avro.inline], lo, hi, f.avro.encode, absent)
        )
    return _C.RowProgram(spec)


class RowEncoder:
    """Writes row images of one record schema (a table's Value or Key record)."""

    __slots__ = ("_absent", "_fast", "_unchanged", "fields", "label", "program", "source")

    def __init__(self, fields: Sequence[FieldSpec], label: str) -> None:
        self.fields = tuple(fields)
        self.label = label
        self.source = _generate(self.fields)
        namespace: dict[str, Any] = {
            "zz": zigzag,
            "N": NULL_BRANCH,
            "V": VALUE_BRANCH,
            "T": binary.TRUE,
            "F": binary.FALSE,
            "pd": binary.pack_double,
            "Slow": _NeedsSlowPath,
            "date": date,
            "datetime": datetime,
            "UTC": UTC,
            "EPOCH": _EPOCH,
            "US": timedelta(microseconds=1),
        }
        for i, f in enumerate(self.fields):
            namespace[f"enc_{i}"] = f.avro.encode
        exec(compile(self.source, f"<row encoder {label!r}>", "exec"), namespace)
        self._fast: Callable[[Row], bytes] = namespace["encode"]
        self.program = _c_program(self.fields)
        if self.program is not None:
            self._fast = self.program.encode
        # What to write for a column the image lacks: before-image gaps read as
        # null (or the type's zero when NOT NULL); unchanged TOAST columns get
        # Debezium's "__debezium_unavailable_value" marker where it applies.
        self._absent = tuple(
            NULL_BRANCH if f.column.nullable else f.avro.placeholder for f in self.fields
        )
        self._unchanged = tuple(
            (VALUE_BRANCH + f.avro.placeholder if f.avro.debezium_unavailable else NULL_BRANCH)
            if f.column.nullable
            else f.avro.placeholder
            for f in self.fields
        )

    def encode(self, row: Row) -> bytes:
        """A complete image (every column, nothing else) of plain values: keys."""
        try:
            return self._fast(row)
        except _FAST_PATH_ERRORS:
            pass  # fall through: the checked path encodes it or raises naming the column
        body, _, specials = self._checked(row, (), allow_absent=False)
        if specials:
            raise SerializationError(
                f"{self.label}: key column(s) {sorted(specials)} hold a value with no key "
                "encoding (NaN/Infinity, a multi-dimensional array)"
            )
        return body

    def encode_image(
        self, row: Row, *, unchanged: Collection[str] = (), allow_absent: bool = False
    ) -> Image:
        """A row image: its bytes, the columns it lacks, and its special values.

        ``unchanged`` columns are written as placeholders whatever the row
        holds; other missing columns are allowed only with ``allow_absent``.
        Special values (NaN/Infinity decimals, multi-dimensional arrays) are
        written as placeholders
        and returned as column -> JSON text for ``cdc_special_values``.
        """
        if not unchanged:
            try:
                return self._fast(row), (), None
            except _FAST_PATH_ERRORS:
                pass  # fall through to the checked path, as in encode()
        return self._checked(row, unchanged, allow_absent=allow_absent)

    def _checked(self, row: Row, unchanged: Collection[str], *, allow_absent: bool) -> Image:
        parts: list[bytes] = []
        absent: list[str] = []
        specials: dict[str, str] = {}
        known = 0
        for i, f in enumerate(self.fields):
            name = f.column.name
            if name in unchanged:
                parts.append(self._unchanged[i])
                if name in row:
                    known += 1
                continue
            if name not in row:
                if not allow_absent:
                    raise SerializationError(f"{self.label}: the row has no column {name!r}")
                absent.append(name)
                parts.append(self._absent[i])
                continue
            known += 1
            v = row[name]
            if v is None:
                if not f.column.nullable:
                    raise SerializationError(
                        f"{self.label}: column {name!r} is NOT NULL but the row holds None"
                    )
                parts.append(NULL_BRANCH)
                continue
            try:
                if f.avro.special is not None:
                    text = f.avro.special(v)
                    if text is not None:
                        specials[name] = text
                        parts.append(self._absent[i])
                        continue
                b = f.avro.encode(v)
            except SerializationError as e:
                raise SerializationError(
                    f"{self.label}: column {name!r} ({f.column.type.kind}): {e}"
                ) from e
            except (TypeError, ValueError, OverflowError, ArithmeticError, struct.error) as e:
                raise SerializationError(
                    f"{self.label}: column {name!r} ({f.column.type.kind}) "
                    f"cannot hold {v!r:.80}: {e}"
                ) from e
            if f.column.nullable:
                parts.append(VALUE_BRANCH)
            parts.append(b)
        if known != len(row):
            names = {f.column.name for f in self.fields}
            extra = sorted(str(k) for k in row if k not in names)
            raise SerializationError(
                f"{self.label}: the row has columns the schema lacks: {extra} "
                "(the event's TableSchema is stale?)"
            )
        missing_unchanged = set(unchanged) - {f.column.name for f in self.fields}
        if missing_unchanged:
            raise SerializationError(
                f"{self.label}: unchanged names unknown columns {sorted(missing_unchanged)}"
            )
        return b"".join(parts), absent, specials or None


def _generate(fields: Sequence[FieldSpec]) -> str:
    """Python source of a function writing a full row of ``fields``."""
    lines = [
        "def encode(row):",
        f"    if len(row) != {len(fields)}:",
        "        raise Slow",
        "    out = []",
        "    a = out.append",
    ]
    for i, f in enumerate(fields):
        lines.append(f"    v = row[{f.column.name!r}]")
        pad = "    "
        if f.column.nullable:
            lines += ["    if v is None:", "        a(N)", "    else:", "        a(V)"]
            pad = "        "
        body: list[str]
        inline = f.avro.inline
        if inline is Inline.BOOLEAN:
            body = [
                "if v is True:",
                "    a(T)",
                "elif v is False:",
                "    a(F)",
                "else:",
                "    raise Slow",
            ]
        elif inline is Inline.INT:
            assert f.avro.inline_params is not None
            lo, hi = f.avro.inline_params
            body = []
            if (lo, hi) != (binary.INT64_MIN, binary.INT64_MAX):  # zigzag checks longs itself
                body = [f"if not {lo} <= v <= {hi}:", "    raise Slow"]
            body.append("a(zz(v))")
        elif inline is Inline.STRING:
            body = ["e = v.encode()", "a(zz(len(e)))", "a(e)"]
        elif inline is Inline.BYTES:
            body = ["if not isinstance(v, bytes):", "    raise Slow", "a(zz(len(v)))", "a(v)"]
        elif inline is Inline.DOUBLE:
            body = ["if not isinstance(v, float):", "    raise Slow", "a(pd(v))"]
        elif inline is Inline.DATE:
            body = [
                "if v.__class__ is date:",
                f"    a(zz(v.toordinal() - {_EPOCH_ORDINAL}))",
                "else:",
                f"    a(enc_{i}(v))",
            ]
        elif inline is Inline.TIMESTAMP:
            body = [
                "if v.__class__ is datetime and v.tzinfo is None:",
                "    a(zz((v - EPOCH) // US))",
                "else:",
                f"    a(enc_{i}(v))",
            ]
        elif inline is Inline.TIMESTAMPTZ:
            body = [
                "if v.__class__ is datetime and v.tzinfo is UTC:",
                "    e = v.isoformat().encode()",  # ends in "+00:00"; written as "Z"
                "    a(zz(len(e) - 5))",
                "    a(e[:-6])",
                "    a(b'Z')",
                "else:",
                f"    a(enc_{i}(v))",
            ]
        else:
            body = [f"a(enc_{i}(v))"]
        lines += [pad + line for line in body]
    lines.append("    return b''.join(out)")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- source block


def _pg_position_json_prefix() -> str | None:
    """The constant head of a PgPosition's JSON, if a fast formatter can reproduce it.

    ``to_dict`` is the contract; formatting PgPosition directly is ~2 us
    cheaper per event. The formatter is used only if it reproduces
    ``to_dict``'s JSON exactly for probe positions (checked here, at import),
    so a change to positions.py falls back to the generic path, not to a
    wrong position.
    """
    head = '{"v":1,"kind":"postgres","lsn":"'
    probes = [
        PgPosition(Lsn(0)),
        PgPosition(Lsn(0x16_B374_D848), index=7, snapshot=True, last_in_tx=False),
        PgPosition(Lsn(2**64 - 1), index=2**40, snapshot=False, last_in_tx=True),
    ]
    for p in probes:
        if _format_pg_position(head, str(p.lsn), p) != _POSITION_JSON(p.to_dict()):
            return None
    return head


def _format_pg_position(head: str, lsn_text: str, p: PgPosition) -> str:
    snapshot = "true" if p.snapshot else "false"
    last = "true" if p.last_in_tx else "false"
    return f'{head}{lsn_text}","index":{p.index},"snapshot":{snapshot},"last_in_tx":{last}}}'


_PG_JSON_HEAD: Final = _pg_position_json_prefix()


def _pg_position_pattern() -> re.Pattern[str] | None:
    """A parser for the JSON the fast formatter writes, used only if it agrees
    with ``position_from_dict`` on probe positions (same reasoning as above)."""
    if _PG_JSON_HEAD is None:
        return None
    pattern = re.compile(
        re.escape(_PG_JSON_HEAD)
        + r'([0-9A-F]{1,8})/([0-9A-F]{1,8})","index":(\d+),'
        + r'"snapshot":(true|false),"last_in_tx":(true|false)\}\Z'
    )
    for p in (
        PgPosition(Lsn(0)),
        PgPosition(Lsn(0x16_B374_D848), index=7, snapshot=True, last_in_tx=False),
        PgPosition(Lsn(2**64 - 1), index=2**40, snapshot=False, last_in_tx=True),
    ):
        text = _format_pg_position(_PG_JSON_HEAD, str(p.lsn), p)
        m = pattern.match(text)
        if m is None:
            return None
        hi, lo, index, snapshot, last = m.groups()
        parsed = PgPosition(
            Lsn((int(hi, 16) << 32) | int(lo, 16)), int(index), snapshot == "true", last == "true"
        )
        generic = position_from_dict(json.loads(text))
        if parsed != generic or parsed.last_in_tx != generic.last_in_tx:
            return None
    return pattern


_PG_POSITION: Final = _pg_position_pattern()


def pg_position_key(text: str) -> tuple[tuple[int, int], str] | None:
    """The sort key of a PostgreSQL ``cdc_position`` text, without building the
    position (the sinks' per-record duplicate check), or None when the text is
    not exactly what :func:`_format_pg_position` writes (then parse it with
    :func:`parse_position`). Also returns the text, so the caller can build the
    position later. Agrees with ``PgPosition.sort_key`` (tested)."""
    if _PG_POSITION is None:
        return None
    m = _PG_POSITION.match(text)
    if m is None:
        return None
    hi, lo, index, snapshot, _ = m.groups()
    i = int(index)
    return ((int(hi, 16) << 32) | int(lo, 16), i if snapshot == "true" else _SNAPSHOT_AFTER + i), text


_SNAPSHOT_AFTER: Final = 1 << 62  # PgPosition.sort_key: streamed events sort after snapshot reads


def pg_position_sort_key(text: str) -> tuple[int, int] | None:
    """``pg_position_key(text)[0]`` (None when that is None), read by the C reader's
    parser when it can: it accepts a subset of the same texts (ASCII digits, at
    most 18 of them) and gives the same key (tested); the rest go to the
    regular expression."""
    if _PG_JSON_HEAD is None or _PG_POSITION is None:
        return None
    if _C_PG_KEY is not None:
        key: tuple[int, int] | None = _C_PG_KEY(_PG_JSON_HEAD, text)
        if key is not None:
            return key
    got = pg_position_key(text)
    return None if got is None else got[0]


def parse_position(text: str) -> PgPosition | MySqlPosition:
    """A ``cdc_position`` text as a position (the exact fast form, else generic JSON)."""
    if _PG_POSITION is not None:
        m = _PG_POSITION.match(text)
        if m is not None:
            hi, lo, index, snapshot, last = m.groups()
            return PgPosition(
                Lsn((int(hi, 16) << 32) | int(lo, 16)), int(index), snapshot == "true", last == "true"
            )
    return position_from_dict(json.loads(text))


class SourceEncoder:
    """Writes the ``source`` record of one table's events.

    Everything but the position is the same for all events of a transaction
    (commit time, commit LSN or binlog coordinates, transaction id), so those
    bytes are built once per transaction; per event only ``cdc_position`` (and
    MySQL's ``row``) is encoded.
    """

    __slots__ = (
        "_db",
        "_gtid_set",
        "_head",
        "_lsn_text",
        "_middle",
        "_my_head",
        "_my_mid",
        "_my_snapshot",
        "_post",
        "_pre",
        "_shape",
        "_statics",
        "_table_part",
        "_tail",
        "_tx_key",
    )

    def __init__(self, connector: str, table: TableId) -> None:
        self._shape = source_shape(connector)
        self._db = _string(table.database)
        if self._shape == "postgresql":
            self._table_part = _string(table.schema or "") + _string(table.table)
        else:
            self._table_part = VALUE_BRANCH + _string(table.table)
        self._tx_key: tuple[Any, ...] = ()
        self._statics: tuple[Any, ...] = ()
        self._pre = self._post = self._head = self._middle = self._tail = b""
        self._lsn_text = ""
        self._gtid_set: object = None
        self._my_snapshot: object = None
        self._my_head = self._my_mid = ""

    def encode(self, src: SourceInfo) -> bytes:
        pos = src.position
        if self._shape == "postgresql":
            if pos.__class__ is not PgPosition:
                raise SerializationError(f"a postgresql source event has a {pos.kind} position")
            assert isinstance(pos, PgPosition)
            lsn = pos.lsn.value
            key: tuple[Any, ...] = (src.ts_ms, lsn, src.tx_id, src.snapshot, src.name,
                                    src.version, src.connector, src.origin, src.db_version)  # fmt: skip
            if key != self._tx_key:
                self._new_transaction(src, key)
                self._lsn_text = str(pos.lsn)
            if _PG_JSON_HEAD is not None:
                if _C is not None and pos.index <= binary.INT64_MAX:
                    return _C.pg_source(  # type: ignore[no-any-return]
                        self._pre, _PG_JSON_HEAD, self._lsn_text, pos.index, pos.snapshot,
                        pos.last_in_tx, self._post,
                    )  # fmt: skip
                text = _format_pg_position(_PG_JSON_HEAD, self._lsn_text, pos)
            else:
                text = _POSITION_JSON(pos.to_dict())
            return b"".join((self._pre, VALUE_BRANCH, _string(text), self._post))
        if pos.__class__ is not MySqlPosition:
            raise SerializationError(f"a {src.connector} source event has a {pos.kind} position")
        assert isinstance(pos, MySqlPosition)
        key = (src.ts_ms, pos.file.name, pos.pos, pos.server_id, pos.gtid, src.tx_id,
               src.snapshot, src.name, src.version, src.connector, src.origin, src.db_version)  # fmt: skip
        if key != self._tx_key:
            self._new_transaction(src, key)
            self._gtid_set = None  # file/pos/GTID may have changed: split the JSON again
        if pos.gtid_set is not self._gtid_set or pos.snapshot is not self._my_snapshot:
            self._mysql_position_parts(pos)
        row = zigzag(min(pos.index, binary.INT32_MAX))
        if self._my_head:
            # The JSON of to_dict(), from per-transaction pieces (checked in _mysql_position_parts)
            text = f"{self._my_head}{pos.index}{self._my_mid}{'true}' if pos.last_in_tx else 'false}'}"
            position = _string(text)
        else:
            position = _string(_POSITION_JSON(pos.to_dict()))
        # row, thread (null), query (null), then cdc_position
        return b"".join(
            (self._pre, row, NULL_BRANCH, NULL_BRANCH, VALUE_BRANCH, position, self._post)
        )

    def _mysql_position_parts(self, pos: MySqlPosition) -> None:
        """Split a MySqlPosition's JSON around its per-event fields (index, last_in_tx).

        Everything else in it (file, pos, GTIDs, server id, snapshot) is the same
        for all events of a transaction. Exact by construction: the sentinel
        int and the trailing JSON ``false`` are replaced by the event's own.
        """
        self._gtid_set = pos.gtid_set
        self._my_snapshot = pos.snapshot
        self._my_head = self._my_mid = ""
        d = pos.to_dict()
        sentinel = 987_654_321_987_654_321
        d["index"], d["last_in_tx"] = sentinel, False
        probe = _POSITION_JSON(d)
        parts = probe.split(str(sentinel))
        if len(parts) != 2 or not parts[1].endswith("false}"):
            return
        self._my_head, self._my_mid = parts[0], parts[1][: -len("false}")]

    def _new_transaction(self, src: SourceInfo, key: tuple[Any, ...]) -> None:
        tx = src.tx_id
        pos = src.position
        statics = (src.version, src.connector, src.name, src.snapshot, src.origin, src.db_version)
        if statics != self._statics:
            # Constant for a connector's lifetime (the snapshot flag flips once).
            self._statics = statics
            self._head = b"".join((_string(src.version), _string(src.connector), _string(src.name)))
            self._middle = b"".join(
                (b"\x00" + _string(src.snapshot), self._db, NULL_BRANCH, self._table_part)
            )  # snapshot ([string, null] union: branch 0), db, sequence (null), schema/table
            self._tail = b"".join(
                (
                    NULL_BRANCH if src.origin is None else VALUE_BRANCH + _string(src.origin),
                    NULL_BRANCH if not src.db_version else VALUE_BRANCH + _string(src.db_version),
                )
            )
        ids: tuple[bytes, ...]
        if isinstance(pos, PgPosition):
            numeric = tx is not None and tx.isascii() and tx.isdigit() and len(tx) < 19
            lsn = pos.lsn.value
            ids = (
                VALUE_BRANCH + zigzag(int(tx)) if numeric and tx else NULL_BRANCH,  # txId
                VALUE_BRANCH + zigzag(lsn) if lsn <= binary.INT64_MAX else NULL_BRANCH,
                NULL_BRANCH,  # xmin
            )
        else:
            ids = (
                zigzag(pos.server_id),
                NULL_BRANCH if pos.gtid is None else VALUE_BRANCH + _string(pos.gtid),
                _string(pos.file.name),
                zigzag(pos.pos),
            )
        self._pre = b"".join((self._head, zigzag(src.ts_ms), self._middle, *ids))
        self._post = self._tail + (NULL_BRANCH if tx is None else VALUE_BRANCH + _string(tx))
        self._tx_key = key


# --------------------------------------------------------------------------- envelopes

_OPS: Final = {op: _string(op.value) for op in Op}
_NEEDS_AFTER: Final = frozenset((Op.CREATE, Op.READ, Op.UPDATE))


def _name_array(names: Collection[str]) -> bytes:
    if not names:
        return NULL_BRANCH
    ordered = sorted(names)
    return (
        VALUE_BRANCH
        + zigzag(len(ordered))
        + b"".join(_string(n) for n in ordered)
        + binary.EMPTY_ARRAY
    )


def _special_map(before: Mapping[str, str] | None, after: Mapping[str, str] | None) -> bytes:
    """``cdc_special_values``: {"before.<column>" | "after.<column>": JSON text}."""
    entries = [
        (f"{image}.{column}", text)
        for image, specials in (("before", before), ("after", after))
        if specials
        for column, text in sorted(specials.items())
    ]
    return (
        VALUE_BRANCH
        + zigzag(len(entries))
        + b"".join(_string(k) + _string(v) for k, v in entries)
        + binary.EMPTY_ARRAY
    )


class TableEncoder:
    """Encodes one table schema version's keys and envelopes (no framing)."""

    __slots__ = ("key", "label", "schemas", "source", "value")

    def __init__(self, schemas: TableSchemas) -> None:
        self.schemas = schemas
        self.label = str(schemas.table_schema.table)
        self.value = RowEncoder(schemas.value_fields, self.label)
        self.key = (
            RowEncoder(schemas.key_fields, f"{self.label} key") if schemas.key_fields else None
        )
        self.source = SourceEncoder(schemas.connector, schemas.table_schema.table)

    def encode_key(self, event: ChangeEvent, prefix: bytes = b"") -> bytes | None:
        """The key record, or None (truncate, or a table without a primary key)."""
        if self.key is None or event.key is None:
            return None
        return prefix + self.key.encode(event.key)

    def encode_value(self, event: ChangeEvent, prefix: bytes = b"") -> bytes:
        """The envelope of ``event``, whose schema must be this encoder's (unchecked: hot path)."""
        op = event.op
        before, after = event.before, event.after
        if op in _NEEDS_AFTER and after is None:
            raise SerializationError(f"{self.label}: a {op.name} event without an after image")
        if op is Op.DELETE and before is None:
            raise SerializationError(f"{self.label}: a DELETE event without a before image")
        unchanged = event.unchanged
        program = self.value.program
        if program is not None and not unchanged:
            source = self.source.encode(event.source)
            tx = event.transaction
            try:
                return _C.encode_envelope(  # type: ignore[union-attr,no-any-return]
                    program, prefix, before, after, source,
                    None if tx is None else (tx.id, tx.total_order, tx.data_collection_order),
                    _OPS[op], event.ts_ms,
                )  # fmt: skip
            except _FAST_PATH_ERRORS:
                pass  # an unusual value: the Python path below encodes it or names it
        parts = [prefix]
        before_absent: Sequence[str] = ()
        before_specials = after_specials = None
        if before is None:
            parts.append(NULL_BRANCH)
        else:
            body, before_absent, before_specials = self.value.encode_image(
                before, allow_absent=True
            )
            parts += (VALUE_BRANCH, body)
        if after is None:
            if unchanged:
                raise SerializationError(f"{self.label}: unchanged columns without an after image")
            parts.append(NULL_BRANCH)
        else:
            body, _, after_specials = self.value.encode_image(after, unchanged=unchanged)
            parts += (VALUE_BRANCH, body)
        parts.append(self.source.encode(event.source))
        tx = event.transaction
        if tx is None:
            parts.append(NULL_BRANCH)
        else:
            parts += (
                VALUE_BRANCH,
                _string(tx.id),
                zigzag(tx.total_order),
                zigzag(tx.data_collection_order),
            )
        parts += (
            _OPS[op],
            VALUE_BRANCH + zigzag(event.ts_ms),
            _name_array(unchanged),
            _name_array(before_absent),
            NULL_BRANCH
            if before_specials is None and after_specials is None
            else _special_map(before_specials, after_specials),
        )
        return b"".join(parts)


# --------------------------------------------------------------------------- decoding

# Decode-side imports live here, next to their use, so the encode half's import
# block stays untouched by decoding work.
from cdc.serde import reader as _reader  # noqa: E402
from cdc.serde import temporal as _temporal  # noqa: E402
from cdc.serde import value_codecs as _value_codecs  # noqa: E402

_FIXED_DECIMAL_CODE: Final = _value_codecs.fixed_decimal_codec(1, 0)[1].__code__
_cdecode = _reader.native_module()
_OP_OF: Final[dict[Any, Op]] = {op.value: op for op in Op}
_NATIVE_READ: Final[Callable[..., Any] | None] = None if _cdecode is None else _cdecode.read
_C_PG_KEY: Final[Callable[[str, str], tuple[int, int] | None] | None] = (
    getattr(_cdecode, "pg_position_key", None)
)


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
    position: PgPosition | MySqlPosition | None
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


class EnvelopeReader:
    """Decodes change envelopes written with one value schema (ours or Debezium's)."""

    __slots__ = (
        "_fields",
        "_limits",
        "_lsn",
        "_native",
        "_native_rows",
        "_schemas",
        "cdc_written",
        "primary_key",
        "rows",
        "source_shape",
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
        src = fields["source"]["type"]
        if isinstance(src, str):
            src = writer.named.get(f"{env_ns}.{src}", writer.named.get(src, src))
        src_name = (
            str(src.get("connect.name") or src.get("namespace") or "")
            if isinstance(src, dict)
            else ""
        )
        self.source_shape = (
            "mysql" if (".mysql." in src_name or ".mariadb." in src_name) else "postgresql"
        )
        self._schemas: dict[tuple[TableId, KeyReader | None], TableSchema] = {}
        self._lsn: tuple[str, str, Lsn] | None = None
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

    def _position(self, text: str) -> PgPosition | MySqlPosition:
        if _PG_POSITION is not None:
            m = _PG_POSITION.match(text)
            if m is not None:
                hi, lo, index, snapshot, last = m.groups()
                lsn = self._lsn
                if lsn is None or lsn[0] != hi or lsn[1] != lo:  # one Lsn per transaction
                    lsn = self._lsn = (hi, lo, Lsn((int(hi, 16) << 32) | int(lo, 16)))
                return PgPosition(lsn[2], int(index), snapshot == "true", last == "true")
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
        if self.source_shape == "mysql":
            return TableId(str(source["db"]), None, str(table))
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
    "KeyReader",
    "RowDecoder",
    "RowEncoder",
    "SourceEncoder",
    "TableEncoder",
    "Tombstone",
    "WriterSchema",
    "decode_change",
    "decode_value",
    "envelope_reader",
    "envelope_to_change",
    "key_reader",
    "parse_position",
    "pg_position_key",
    "pg_position_sort_key",
]
