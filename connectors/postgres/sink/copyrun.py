"""Runs of rows as one binary COPY payload, built straight from the Avro values.

The PostgreSQL sink's :class:`~cdc.sink.runprogram.RunFormat` for the applier's
batch-level fast path (:class:`cdc.spi.CopiesRuns`; what qualifies for a run is
:mod:`cdc.sink.runprogram`'s): consecutive qualifying records become the
tuples of one binary ``COPY`` with no Python object per row but its position
text. This module maps replica column types to converters and writes each
value as a COPY field; the walk runs in C (``_ccopy.c``, on the engine's
``runwalk.h``) when built, and :func:`encode_py` is the reference it is tested
against byte for byte (``CDC_NATIVE=0`` runs it).
Column types it does not convert (arrays, json, enums, time, interval, bits,
variable-scale decimals, cross-type pairs) make :func:`compile_encoder`
return None: that table's records keep the general path.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from cdc import native
from cdc.events import Column, Kind
from cdc.sink.runprogram import (
    Converter,
    Cursor,
    Instr,
    Refuse,
    RunProgram,
    Unsupported,
    compile_program,
    primitive,
    text,
    tstz_micros,
)
from cdc.sink.runprogram import encode_py as encode_py
from cdc.spi import ReplicaTable

_ccopy = native.load("connectors.postgres.sink._ccopy")

# Converters: the numbers of _ccopy.c.
(C_BOOL, C_INT2, C_INT4, C_INT8, C_FLOAT4, C_FLOAT8, C_TEXT, C_BYTEA, C_DATE, C_TS, C_TSTZ, C_UUID,
 C_NUMERIC) = range(1, 14)  # fmt: skip

HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER: Final = b"\xff\xff"

RunEncoder = RunProgram

_PG_EPOCH_DAYS: Final = 10957
_DAY_US: Final = 86_400_000_000
_MIN_DAYS: Final = -719162
_MAX_DAYS: Final = 2932896
_I16: Final = struct.Struct("!h")
_I32: Final = struct.Struct("!i")
_I64: Final = struct.Struct("!q")
_U32: Final = struct.Struct("!I")
_HEX: Final = frozenset(b"0123456789abcdef")


_NULL: Final = b"\xff\xff\xff\xff"


def _converter(col: Column, avro: Any, rc: Any) -> Converter:
    """(converter, p1, p2, p3, avro int) of one row column into replica column ``rc``."""
    k = col.type.kind
    prim = primitive(avro)
    dt = rc.data_type
    if k is Kind.BOOLEAN and dt == "bool" and prim == "boolean":
        return C_BOOL, 0, 0, 0, False
    if k in (Kind.INT16, Kind.INT32, Kind.INT64) and prim in ("int", "long"):
        conv = {"int2": C_INT2, "int4": C_INT4, "int8": C_INT8}.get(dt)
        if conv is not None:
            return conv, 0, 0, 0, prim == "int"
    if k is Kind.FLOAT32 and dt == "float4" and prim == "float":
        return C_FLOAT4, 0, 0, 0, False
    if k is Kind.FLOAT64 and dt == "float8" and prim == "double":
        return C_FLOAT8, 0, 0, 0, False
    if k is Kind.STRING and dt in ("text", "varchar") and prim == "string":
        limit = rc.length if dt == "varchar" and rc.length is not None else -1
        return C_TEXT, limit, 0, 0, False
    if k is Kind.BYTES and dt == "bytea" and prim == "bytes":
        return C_BYTEA, 0, 0, 0, False
    if k is Kind.DATE and dt == "date" and prim == "int":
        return C_DATE, 0, 0, 0, False
    if k is Kind.TIMESTAMP and dt == "timestamp" and prim == "long":
        return C_TS, 6 if rc.fraction is None else rc.fraction, 0, 0, False
    if k is Kind.TIMESTAMPTZ and dt == "timestamptz" and prim == "string":
        return C_TSTZ, 6 if rc.fraction is None else rc.fraction, 0, 0, False
    if k is Kind.UUID and dt == "uuid" and prim == "string":
        return C_UUID, 0, 0, 0, False
    if (
        k is Kind.DECIMAL
        and dt == "numeric"
        and prim == "bytes"
        and isinstance(avro, dict)
        and avro.get("logicalType") == "decimal"
    ):
        scale = int(avro.get("scale", 0))
        if 0 <= scale <= 38 and int(avro.get("precision", 0)) <= 38:
            if rc.precision is None:
                return C_NUMERIC, scale, -1, 0, False
            return C_NUMERIC, scale, rc.precision, rc.scale or 0, False
    raise Unsupported(f"column {col.name} ({k.value} -> {dt})")


def _value(ins: Instr, c: Cursor) -> bytes | None:
    """One column's COPY field bytes (None: NULL)."""
    _, conv, null_i, p1, p2, p3, _, avro_int = ins
    if null_i >= 0:
        b = c.long()
        if b not in (0, 1):
            raise Refuse
        if b == null_i:
            return None
    if conv == C_BOOL:
        v = c.take(1)
        if v[0] > 1:
            raise Refuse
        return v
    if conv in (C_INT2, C_INT4, C_INT8):
        n = c.long()
        if avro_int and not -(2**31) <= n < 2**31:
            raise Refuse
        try:
            return (_I16 if conv == C_INT2 else _I32 if conv == C_INT4 else _I64).pack(n)
        except struct.error:
            raise Refuse from None
    if conv in (C_FLOAT4, C_FLOAT8):
        raw = c.take(4 if conv == C_FLOAT4 else 8)
        (f,) = struct.unpack("<f" if conv == C_FLOAT4 else "<d", raw)
        if f != f:
            raise Refuse
        return raw[::-1]
    if conv == C_DATE:
        n = c.long()
        if not _MIN_DAYS <= n <= _MAX_DAYS:
            raise Refuse
        return _I32.pack(n - _PG_EPOCH_DAYS)
    if conv == C_TS:
        n = c.long()
        if not _MIN_DAYS * _DAY_US <= n < (_MAX_DAYS + 1) * _DAY_US or n % 10 ** (6 - p1):
            raise Refuse
        return _I64.pack(n - _PG_EPOCH_DAYS * _DAY_US)
    s = c.sized()
    if conv == C_TEXT:
        text_ = text(s)
        if p1 >= 0 and len(text_) > p1:
            raise Refuse
        return s
    if conv == C_BYTEA:
        return s
    if conv == C_TSTZ:
        us = tstz_micros(s)
        if us % 10 ** (6 - p1):
            raise Refuse
        return _I64.pack(us - _PG_EPOCH_DAYS * _DAY_US)
    if conv == C_UUID:
        if len(s) != 36 or any(s[i] != 0x2D for i in (8, 13, 18, 23)):
            raise Refuse
        h = s.replace(b"-", b"")
        if len(h) != 32 or not set(h) <= _HEX:
            raise Refuse
        return bytes.fromhex(h.decode())
    if conv == C_NUMERIC:
        return _numeric(s, p1, p2, p3)
    raise Refuse


def _field(ins: Instr, c: Cursor) -> bytes:
    v = _value(ins, c)
    return _NULL if v is None else _U32.pack(len(v)) + v


class _PgCopy:
    """Binary COPY tuples: the field count, then each field (length, bytes)."""

    max_bytes = 0

    def __init__(self, module: Any) -> None:
        self.module = module

    def converter(self, col: Column, avro: Any, rc: Any) -> Converter:
        return _converter(col, avro, rc)

    def value(self, ins: Instr, c: Cursor) -> bytes:
        return _field(ins, c)

    def row(self, index: int, fields: list[bytes]) -> bytes:
        return _I16.pack(len(fields)) + b"".join(fields)


_FORMAT: Final = _PgCopy(_ccopy)


def compile_encoder(
    envelope: Mapping[str, Any],
    named: Mapping[str, Any],
    row_columns: Sequence[Column],
    columns: Sequence[str],
    key: Sequence[str],
    replica: ReplicaTable,
    *,
    use_native: bool = True,
    updates: bool = False,
) -> RunEncoder | None:
    """The binary COPY run encoder of :func:`cdc.sink.runprogram.compile_program`."""
    return compile_program(
        _FORMAT,
        envelope,
        named,
        row_columns,
        columns,
        key,
        replica,
        use_native=use_native,
        updates=updates,
    )


def _numeric(raw: bytes, scale: int, tprec: int, tscale: int) -> bytes:
    if not 1 <= len(raw) <= 16:
        raise Refuse
    u = int.from_bytes(raw, "big", signed=True)
    digits = str(abs(u)) if u else ""
    nd = len(digits)
    nz = len(digits.rstrip("0"))
    if tprec >= 0 and nz and (nz - (nd - scale) > tscale or nd - scale > tprec - tscale):
        raise Refuse
    if nz == 0:
        return _I16.pack(0) * 3 + struct.pack("!H", scale)
    wi = (nd - scale) % 4
    wi = 4 - wi if wi else 0
    padded = "0" * wi + digits
    weight = (nd + wi - scale) // 4 - 1
    groups = (nz + wi + 3) // 4
    padded = padded.ljust(groups * 4, "0")
    out = struct.pack("!HhHH", groups, weight, 0x4000 if u < 0 else 0, scale)
    return out + b"".join(struct.pack("!H", int(padded[g * 4 : g * 4 + 4])) for g in range(groups))


def native_loaded() -> bool:
    return _ccopy is not None


Compiler = Callable[..., RunEncoder | None]
