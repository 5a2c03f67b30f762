"""Fast Avro encode of change events: row images and the envelope around them.

Encoding is the source's hot path. Measured on this project's machines
(MACHINE-NOTES.md, bench/serde_bench.py), fastavro's ``schemaless_writer``
costs several microseconds per call before any field is written, so running
it over a whole Debezium envelope caps a source near 17k events/s. This
module therefore:

* generates, once per table schema version, a Python function that writes a
  row image's Avro bytes directly (primitives inline, other kinds through the
  :class:`~cdc.serde.types.AvroType` encoders), with the C encoder
  (``_cencode.c``) running the same program where it is built, and
* assembles the envelope around the row bytes by hand: a record is its fields
  back to back and a ``["null", T]`` union is a branch-index varint followed
  by the value, so ``before``/``after`` are ``0x02 + row bytes`` or ``0x00``;
  the ``source`` block is written by the connector's
  :class:`cdc.spi.SourceWriter`, mostly from cached bytes.

The result is ordinary Avro binary for the registered schema; the unit tests
check it byte for byte against fastavro's writer. Decoding is in
:mod:`.rowdecode` and :mod:`.decode`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from cdc import native
from cdc.errors import SerializationError
from cdc.events import (
    ChangeEvent,
    Op,
    Row,
)
from cdc.registry import source_block
from cdc.serde import binary
from cdc.serde.binary import NULL_BRANCH, VALUE_BRANCH, zigzag
from cdc.serde.envelope import (
    FieldSpec,
    TableSchemas,
)
from cdc.serde.types import (
    Inline,
)
from cdc.spi import SnapshotRows, StreamRows, TextForm, WritesSourceRuns

_string = binary.string
_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()


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


# The op a text form's plain spellings are written for (cdc.spi.TextForm; _cencode.c's
# FORM_* constants, checked below).
_FORM_OPS: Final = {
    TextForm.SAME: Inline.STRING,
    TextForm.INT: Inline.INT,
    TextForm.BOOL: Inline.BOOLEAN,
    TextForm.DECIMAL: Inline.DECIMAL,
    TextForm.DATE: Inline.DATE,
    TextForm.TIMESTAMP: Inline.TIMESTAMP,
    TextForm.DOUBLE: Inline.DOUBLE,
}
if _C is not None:
    assert all(getattr(_C, f"FORM_{f.name}") == f.value for f in TextForm), "_cencode FORM_*"


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

    __slots__ = ("_runs", "_text_plans", "key", "label", "schemas", "source", "value")

    def __init__(self, schemas: TableSchemas) -> None:
        self.schemas = schemas
        self.label = str(schemas.table_schema.table)
        self.value = RowEncoder(schemas.value_fields, self.label)
        self.key = (
            RowEncoder(schemas.key_fields, f"{self.label} key") if schemas.key_fields else None
        )
        self.source = source_block(schemas.connector).writer(schemas.table_schema.table)
        self._text_plans: dict[tuple[Any, ...], tuple[Any, Any]] = {}
        # Asked once: a runtime-checkable protocol's isinstance walks its members.
        self._runs = isinstance(self.source, WritesSourceRuns)

    def encode_key(self, event: ChangeEvent, prefix: bytes = b"") -> bytes | None:
        """The key record, or None (truncate, or a table without a primary key)."""
        if self.key is None or event.key is None:
            return None
        return prefix + self.key.encode(event.key)

    def encode_rows(
        self, rows: SnapshotRows, key_prefix: bytes = b"", value_prefix: bytes = b""
    ) -> tuple[list[bytes | None], list[bytes]]:
        """Keys and envelopes of a snapshot batch or a stream's run of inserts: byte for
        byte those of its events (:meth:`SnapshotRows.event`, :meth:`StreamRows.event`),
        without building them where the C encoder runs."""
        program = self.value.program
        n = len(rows)
        if program is None:  # the reference: one event per row
            events = [rows.event(i) for i in range(n)]
            return (
                [self.encode_key(e, key_prefix) for e in events],
                [self.encode_value(e, value_prefix) for e in events],
            )
        writer = self.source
        if self._runs:
            sources = list(writer.encode_run(rows))  # type: ignore[attr-defined]
        else:
            sources = [writer.encode(rows.source_at(i)) for i in range(n)]
        if isinstance(rows, StreamRows):
            if rows.last_in_tx:  # its position's flag differs from the run's first row's
                sources[-1] = writer.encode(rows.source_at(n - 1))
            # The transaction block, written after the source block.
            head = VALUE_BRANCH + _string(rows.tx_id)
            order, dc = rows.first_order, rows.first_dc
            sources = [b"".join((s, head, zigzag(order + i), zigzag(dc + i)))
                       for i, s in enumerate(sources)]
        if rows.texts is not None:
            return self._encode_texts(rows, sources, key_prefix, value_prefix)
        envelope = _C.encode_envelope  # type: ignore[union-attr]
        op = _OPS[Op.READ]
        ts_ms = rows.ts_ms
        afters = rows.afters
        values: list[bytes] = []
        add = values.append
        i = 0
        while i < n:
            try:
                for i in range(i, n):  # noqa: B020 - resumes after a row the C path refused
                    add(envelope(program, value_prefix, None, afters[i], sources[i], None, op,
                                 ts_ms))  # fmt: skip
                i = n
            except _FAST_PATH_ERRORS:
                add(self.encode_value(rows.event(i), value_prefix))
                i += 1
        key = self.key
        if key is None:
            return [None] * n, values
        keys = rows.keys
        encode = key.encode
        return (
            [None if k is None else key_prefix + encode(k) for k in keys],
            values,
        )

    def _plans(self, rows: SnapshotRows) -> tuple[Any, Any]:
        """The native value and key plans for rows of ``rows.names``/``rows.forms``."""
        cache_key = (rows.names, rows.forms)
        hit = self._text_plans.get(cache_key)
        if hit is not None:
            return hit
        column = {name: i for i, name in enumerate(rows.names)}

        def plan(encoder: RowEncoder) -> Any:
            forms, convs, cols = [], [], []
            for f in encoder.fields:
                i = column[f.column.name]
                form, conv = rows.forms[i]
                # A form is used only where the field's op writes what the form promises.
                if _FORM_OPS.get(form) is not f.avro.inline:
                    form = TextForm.CALL
                forms.append(int(form))
                convs.append(conv)
                cols.append(i)
            return (encoder.program, tuple(forms), tuple(convs), tuple(cols))

        plans = (plan(self.value), None if self.key is None else plan(self.key))
        self._text_plans[cache_key] = plans
        return plans

    def _encode_texts(
        self, rows: SnapshotRows, sources: list[bytes], key_prefix: bytes, value_prefix: bytes
    ) -> tuple[list[bytes | None], list[bytes]]:
        """encode_rows of text rows: the C encoder reads the texts; a row it does not
        handle is encoded from its event (which raises what the per-row path raises)."""
        texts = rows.texts
        assert texts is not None and _C is not None
        value_plan, key_plan = self._plans(rows)
        # The envelope around the after image: before null, after's branch; then after
        # the source: transaction null (a stream's run has it in ``sources``), op, ts_ms,
        # unchanged/absent/specials null.
        tx, op = (b"", _OPS[Op.CREATE]) if isinstance(rows, StreamRows) else (
            NULL_BRANCH, _OPS[Op.READ])
        tail = b"".join((tx, op, VALUE_BRANCH, zigzag(rows.ts_ms),
                         NULL_BRANCH, NULL_BRANCH, NULL_BRANCH))  # fmt: skip
        keys, values = _C.encode_text_rows(
            value_plan, key_plan, texts, NULL_BRANCH + VALUE_BRANCH, sources, tail,
            value_prefix, key_prefix, len(rows.names), _FAST_PATH_ERRORS,
        )  # fmt: skip
        if None in values:
            for i, v in enumerate(values):
                if v is None:
                    event = rows.event(i)
                    keys[i] = self.encode_key(event, key_prefix)
                    values[i] = self.encode_value(event, value_prefix)
        return keys, values

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


__all__ = ["RowEncoder", "TableEncoder"]
