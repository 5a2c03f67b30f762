"""Runs of rows as the VALUES list of one multi-row upsert, built straight from the Avro values.

The MariaDB/MySQL sink's :class:`~cdc.sink.runprogram.RunFormat` for the applier's
batch-level fast path (:class:`cdc.spi.CopiesRuns`; what qualifies for a run is
:mod:`cdc.sink.runprogram`'s): consecutive qualifying records become
``(v1,v2,...),(v1,v2,...)`` with no Python object per row but its position text,
and :class:`~connectors.mysql.sink.session.MySqlSession` sends them as one
``INSERT .. ON DUPLICATE KEY UPDATE``, as its general path writes full rows. A
run ends once its text holds :data:`MAX_BYTES` (the general path's statement size).

Literals are for a session without ``NO_BACKSLASH_ESCAPES`` (the sink's own
``sql_mode``; the session restores it before a run if it changed): quotes are
doubled, backslashes escaped, and a string holding NUL ends the run. This module maps replica column types to
converters and writes each value; the walk runs in C (``_crun.c``, on the
engine's ``runwalk.h``) when built, and :func:`encode_py` is the reference it is
tested against byte for byte (``CDC_NATIVE=0`` runs it). Column types it does not
convert (everything but booleans, integers, DOUBLE, character strings, DATE,
DATETIME and TIMESTAMP (from timestamps with and without time zone), DECIMAL, uuids
into text and MariaDB's ``uuid``, and bytes into the binary types, of the same kind at
the source; FLOAT too, whose general path writes a value's shortest
single-precision decimal) make :func:`compile_encoder`
return None: that table's records keep the general path.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Final

from cdc import native
from cdc.events import Column, Kind
from cdc.serde.temporal import civil_from_days
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
from cdc.spi import ReplicaColumn, ReplicaTable

__all__ = ["MAX_BYTES", "compile_encoder", "encode_py", "native_loaded"]

_crun = native.load("connectors.mysql.sink._crun")

# Converters: the numbers of _crun.c (M_FLOAT is reserved, not compiled).
(M_BOOL, M_INT, M_FLOAT, M_DOUBLE, M_TEXT, M_DATE, M_DATETIME, M_DECIMAL, M_TSTZ, M_UUID,
 M_BYTES) = range(1, 12)  # fmt: skip

MAX_BYTES: Final = 1_024_000  # the session's statement size (PyMySQL's executemany's)

_MIN_DAYS: Final = -719162  # 0001-01-01
_MAX_DAYS: Final = 2932896  # 9999-12-31
_DAY_US: Final = 86_400_000_000
_TS_MIN_US: Final = 1_000_000  # a TIMESTAMP column's range: 1970-01-01 00:00:01 UTC
_TS_MAX_US: Final = 2_147_483_647_999_999  # to 2038-01-19 03:14:07.999999
_INT_RANGES: Final = {
    "tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32, "integer": 32, "bigint": 64,
}  # fmt: skip
_CHARS: Final = ("varchar", "char")
_TEXTS: Final = ("tinytext", "text", "mediumtext", "longtext")
_BINARIES: Final = ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob")
_UUID_FORM: Final = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_I64_MAX: Final = 2**63 - 1


def _converter(col: Column, avro: Any, rc: ReplicaColumn) -> Converter:
    """(converter, p1, p2, p3, avro int) of one row column into replica column ``rc``."""
    k = col.type.kind
    prim = primitive(avro)
    dt = rc.data_type
    if k is Kind.BOOLEAN and dt == "tinyint" and prim == "boolean":
        return M_BOOL, 0, 0, 0, False
    bits = _INT_RANGES.get(dt)
    if k in (Kind.INT16, Kind.INT32, Kind.INT64) and bits is not None and prim in ("int", "long"):
        if "unsigned" in rc.type_text:
            lo, hi = 0, min(2**bits - 1, _I64_MAX)
        else:
            lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return M_INT, lo, hi, 0, prim == "int"
    if k is Kind.FLOAT64 and dt == "double" and prim == "double":
        return M_DOUBLE, 0, 0, 0, False
    if k is Kind.STRING and prim == "string" and rc.length is not None:
        if dt in _CHARS:
            return M_TEXT, rc.length, -1, 0, False
        if dt in _TEXTS:
            return M_TEXT, -1, rc.length, 0, False
    if k is Kind.UUID and prim == "string" and (
            dt == "uuid" or (dt in _CHARS and rc.length is not None and rc.length >= 36)):
        return M_UUID, 0, 0, 0, False
    if k is Kind.BYTES and prim == "bytes" and dt in _BINARIES and rc.length is not None:
        return M_BYTES, rc.length, 0, 0, False
    if k is Kind.DATE and dt == "date" and prim == "int":
        return M_DATE, 0, 0, 0, False
    if k is Kind.TIMESTAMP and dt == "datetime" and prim == "long":
        return M_DATETIME, 0 if rc.fraction is None else rc.fraction, 0, 0, False
    if k is Kind.TIMESTAMPTZ and dt in ("datetime", "timestamp") and prim == "string":
        fraction = 0 if rc.fraction is None else rc.fraction
        return M_TSTZ, fraction, int(dt == "timestamp"), 0, False
    if (k is Kind.DECIMAL and dt == "decimal" and prim == "bytes" and isinstance(avro, dict)
            and avro.get("logicalType") == "decimal" and rc.precision is not None):
        scale = int(avro.get("scale", 0))
        if 0 <= scale <= 38 and int(avro.get("precision", 0)) <= 38 and 0 <= (rc.scale or 0) <= 38:
            return M_DECIMAL, scale, rc.precision, rc.scale or 0, False
    raise Unsupported(f"column {col.name} ({k.value} -> {dt})")


def _date(days: int) -> str:
    y, m, d = civil_from_days(days)
    return f"{y:04d}-{m:02d}-{d:02d}"


def _datetime(n: int) -> bytes:
    days, us = divmod(n, _DAY_US)
    secs, frac = divmod(us, 1_000_000)
    clock = f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"
    return (f"'{_date(days)} {clock}.{frac:06d}'" if frac else f"'{_date(days)} {clock}'").encode()


def _double(v: float) -> bytes:
    if not math.isfinite(v):
        raise Refuse
    s = float.__repr__(v)
    return (s if "e" in s else s + "e0").encode()


def _decimal(raw: bytes, scale: int, tprec: int, tscale: int) -> bytes:
    if not 1 <= len(raw) <= 16:
        raise Refuse
    u = int.from_bytes(raw, "big", signed=True)
    digits = str(abs(u)) if u else ""
    nd = len(digits)
    nz = len(digits.rstrip("0"))
    if nz and (nz - (nd - scale) > tscale or nd - scale > tprec - tscale):
        raise Refuse
    whole = digits[: nd - scale] if nd > scale else "0"
    out = ("-" if u < 0 else "") + whole
    if scale:
        out += "." + digits[max(nd - scale, 0) :].rjust(scale, "0")
    return out.encode()


def _value(ins: Instr, c: Cursor) -> bytes:
    """One column's literal (``NULL`` too)."""
    _, conv, null_i, p1, p2, p3, _, avro_int = ins
    if null_i >= 0:
        b = c.long()
        if b not in (0, 1):
            raise Refuse
        if b == null_i:
            return b"NULL"
    if conv == M_BOOL:
        v = c.take(1)
        if v[0] > 1:
            raise Refuse
        return b"1" if v[0] else b"0"
    if conv == M_INT:
        n = c.long()
        if (avro_int and not -(2**31) <= n < 2**31) or not p1 <= n <= p2:
            raise Refuse
        return str(n).encode()
    if conv == M_DOUBLE:
        (f,) = struct.unpack("<d", c.take(8))
        return _double(f)
    if conv == M_DATE:
        n = c.long()
        if not _MIN_DAYS <= n <= _MAX_DAYS:
            raise Refuse
        return f"'{_date(n)}'".encode()
    if conv == M_DATETIME:
        n = c.long()
        if not _MIN_DAYS * _DAY_US <= n < (_MAX_DAYS + 1) * _DAY_US or n % 10 ** (6 - p1):
            raise Refuse
        return _datetime(n)
    s = c.sized()
    if conv == M_TSTZ:
        n = tstz_micros(s)
        if n % 10 ** (6 - p1) or (p2 and not _TS_MIN_US <= n <= _TS_MAX_US):
            raise Refuse
        return _datetime(n)
    if conv == M_TEXT:
        chars = len(text(s))  # (refuses NUL and invalid UTF-8)
        if (p1 >= 0 and chars > p1) or (p2 >= 0 and len(s) > p2):
            raise Refuse
        return b"'" + s.replace(b"\\", b"\\\\").replace(b"'", b"''") + b"'"
    if conv == M_DECIMAL:
        return _decimal(s, p1, p2, p3)
    if conv == M_UUID:
        if not _UUID_FORM.match(s):
            raise Refuse  # (not the form the general path writes)
        return b"'" + s + b"'"
    if conv == M_BYTES:
        if len(s) > p1:
            raise Refuse
        return b"X'" + s.hex().upper().encode() + b"'"
    raise Refuse


class _Literals:
    """``(v1,v2,...)`` rows, separated by commas."""

    max_bytes = MAX_BYTES

    def __init__(self, module: Any) -> None:
        self.module = module

    def converter(self, col: Column, avro: Any, rc: ReplicaColumn) -> Converter:
        return _converter(col, avro, rc)

    def value(self, ins: Instr, c: Cursor) -> bytes:
        return _value(ins, c)

    def row(self, index: int, fields: list[bytes]) -> bytes:
        return (b",(" if index else b"(") + b",".join(fields) + b")"


_FORMAT: Final = _Literals(_crun)


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
) -> RunProgram | None:
    """The SQL literal run encoder of :func:`cdc.sink.runprogram.compile_program`."""
    return compile_program(
        _FORMAT, envelope, named, row_columns, columns, key,
        replica, use_native=use_native, updates=updates,
    )


def native_loaded() -> bool:
    return _crun is not None
