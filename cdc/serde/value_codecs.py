"""Value codecs: canonical values of the non-temporal kinds <-> Avro binary.

Part of the serde's type layer: :func:`cdc.serde.types.avro_type` picks from
these the ``encode`` (canonical value -> Avro binary of the non-null type) and
``decode`` (what a schema-driven Avro reader returns -> canonical value) of
each kind; :mod:`cdc.serde.field_decoding` reuses the converters for other
writers' fields and :mod:`cdc.serde.temporal` the type error. Covers booleans,
ints, floats (and the canonical FLOAT32, :func:`shortest_float32`), strings,
bytes, decimals (fixed scale and Debezium's ``VariableScaleDecimal``),
UINT64, bits, UUIDs, geometries and flat arrays.

It holds no schema and no type table (:mod:`cdc.serde.types`), no date/time
arithmetic (:mod:`cdc.serde.temporal`) and no special-value form
(:mod:`cdc.serde.special_values`). The row encoder inlines the common
primitives itself (:mod:`cdc.serde.encode`); these functions are its slow
path and the encoders of everything else.
"""

from __future__ import annotations

import math
import struct
import uuid
from collections.abc import Callable, Mapping
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, Inexact, InvalidOperation
from typing import Any, Final

from cdc.errors import SerializationError
from cdc.serde import binary

Encoder = Callable[[Any], bytes]
Converter = Callable[[Any], Any]

_zz = binary.zigzag

# Exact decimal arithmetic: scaling never rounds and a lost digit is an error.
_DEC_CTX: Final = Context(
    prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Inexact]
)
_f32 = struct.Struct("<f")


def type_error(what: str, v: Any) -> SerializationError:
    return SerializationError(f"expected {what}, got {type(v).__name__} {v!r:.80}")


# --------------------------------------------------------------------------- numbers, bits, uuid


def _uuid_to_wire(v: Any) -> str:
    if isinstance(v, uuid.UUID):
        return str(v)
    raise type_error("a uuid.UUID", v)


def _unscaled_bytes(n: int) -> bytes:
    # Two's complement, big-endian, as Avro's decimal and Java's BigInteger.
    return n.to_bytes((n.bit_length() + 8) // 8, "big", signed=True)


def from_unscaled(b: bytes) -> int:
    return int.from_bytes(b, "big", signed=True)


def _finite_decimal(v: Any, column: str) -> Decimal:
    """``v`` (an int or Decimal) as a finite Decimal, or the error naming ``column``."""
    d: Decimal
    if isinstance(v, int) and not isinstance(v, bool):
        d = Decimal(v)
    elif isinstance(v, Decimal):
        d = v
    else:
        raise type_error("a Decimal", v)
    if not d.is_finite():
        raise SerializationError(
            f"{d} in a {column} column mapped without NaN/Infinity "
            "support (set ColumnType.nan for columns that can hold them)"
        )
    return d


def fixed_decimal_codec(precision: int, scale: int) -> tuple[Encoder, Converter]:
    """(encoder of a canonical value to Avro bytes, converter of wire bytes back)."""
    limit = 10**precision

    def encode(v: Any) -> bytes:
        v = _finite_decimal(v, f"decimal({precision},{scale})")
        x = v.scaleb(scale, _DEC_CTX)
        n = int(x)
        if x != n:
            raise SerializationError(f"{v} has more than {scale} fractional digits")
        if not -limit < n < limit:
            raise SerializationError(f"{v} has more than {precision} digits")
        b = _unscaled_bytes(n)
        return _zz(len(b)) + b

    def from_wire(b: bytes) -> Decimal:
        return Decimal(from_unscaled(b)).scaleb(-scale, _DEC_CTX)

    return encode, from_wire


def _vsd_parts(v: Any) -> tuple[int, bytes]:
    v = _finite_decimal(v, "numeric")
    exp = v.as_tuple().exponent
    assert isinstance(exp, int)  # finite
    return -exp, _unscaled_bytes(int(v.scaleb(-exp, _DEC_CTX)))


def vsd_from_wire(rec: Mapping[str, Any]) -> Decimal:
    return Decimal(from_unscaled(rec["value"])).scaleb(-int(rec["scale"]), _DEC_CTX)


def uint64_to_wire(v: Any) -> bytes:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 64:
        return _unscaled_bytes(v)
    raise type_error("an int in 0..2**64-1", v)


def shortest_float32(x: float) -> float:
    """The float of the shortest decimal that identifies single ``x``.

    Databases print a REAL as that decimal (PostgreSQL >= 12, MySQL), and
    sources parse that text, so this is the canonical FLOAT32 value: an Avro
    float read back as a double (1.100000023841858) becomes 1.1 again.
    """
    if not math.isfinite(x) or x == 0.0:
        return x
    want = _f32.pack(x)
    for digits in range(6, 10):
        y = float(f"{x:.{digits}g}")
        if _f32.pack(y) == want:
            return y
    return x


def bits_to_wire(v: Any) -> bytes:
    if isinstance(v, bytes | bytearray):
        return bytes(v[::-1])  # Debezium's Bits are little-endian
    raise type_error("bytes", v)


def bits_from_wire(b: bytes) -> bytes:
    return b[::-1]


def padded_bits(length: int | None) -> Converter:
    # Debezium drops high zero bytes (BitSet.toByteArray); restore the width.
    width = (length + 7) // 8 if length else 0

    def from_wire(b: bytes) -> bytes:
        return b[::-1].rjust(width, b"\x00")

    return from_wire


# --------------------------------------------------------------------------- encoders


def enc_boolean(v: Any) -> bytes:
    if v is True:
        return binary.TRUE
    if v is False:
        return binary.FALSE
    raise type_error("a bool", v)


def int_encoder(lo: int, hi: int) -> Encoder:
    def enc(v: Any) -> bytes:
        if not isinstance(v, int) or not lo <= v <= hi:
            raise type_error(f"an int in {lo}..{hi}", v)
        return _zz(v)

    return enc


def enc_float(v: Any) -> bytes:
    if not isinstance(v, float | int):
        raise type_error("a float", v)
    return binary.pack_float(v)


def enc_double(v: Any) -> bytes:
    if not isinstance(v, float | int):
        raise type_error("a float", v)
    return binary.pack_double(v)


def enc_string(v: Any) -> bytes:
    if not isinstance(v, str):
        raise type_error("a str", v)
    b = v.encode("utf-8")
    return _zz(len(b)) + b


def enc_bytes(v: Any) -> bytes:
    if not isinstance(v, bytes | bytearray | memoryview):
        raise type_error("bytes", v)
    b = bytes(v)
    return _zz(len(b)) + b


def enc_uuid(v: Any) -> bytes:
    b = _uuid_to_wire(v).encode()
    return _zz(len(b)) + b


def enc_raw_bytes(b: bytes) -> bytes:
    return _zz(len(b)) + b


def enc_string_wire(s: str) -> bytes:
    b = s.encode("utf-8")
    return _zz(len(b)) + b


def enc_vsd(v: Any) -> bytes:
    scale, b = _vsd_parts(v)
    return _zz(scale) + _zz(len(b)) + b


def enc_geometry(v: Any) -> bytes:
    if not isinstance(v, bytes | bytearray | memoryview):
        raise type_error("WKB bytes", v)
    b = bytes(v)
    return _zz(len(b)) + b + binary.NULL_BRANCH  # srid: null


def geometry_from_wire(rec: Mapping[str, Any]) -> bytes:
    return bytes(rec["wkb"])


def array_encoder(element: Encoder, lists_nest: bool = True) -> Encoder:
    """Encoder of a flat array; with ``lists_nest`` (the element is not itself an
    array) a list element is another dimension, which only the special form holds."""

    def enc(v: Any) -> bytes:
        if not isinstance(v, list | tuple):
            raise type_error("a list", v)
        if not v:
            return binary.EMPTY_ARRAY
        parts = [_zz(len(v))]
        for x in v:
            if x is None:
                parts.append(binary.NULL_BRANCH)
            elif lists_nest and isinstance(x, list | tuple):  # multi-dimensional: a special
                raise type_error("an array element (nested lists travel in cdc_special_values)", x)
            else:
                parts.append(binary.VALUE_BRANCH)
                parts.append(element(x))
        parts.append(binary.EMPTY_ARRAY)
        return b"".join(parts)

    return enc


def array_decoder(element: Converter | None) -> Converter:
    if element is None:

        def plain(v: list[Any]) -> list[Any]:
            return list(v)

        return plain

    def convert(v: list[Any]) -> list[Any]:
        return [None if x is None else element(x) for x in v]

    return convert
