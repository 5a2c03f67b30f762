"""Avro binary primitives, written by hand for the hot encode path.

fastavro's writer costs a fixed few microseconds per call, which is most of
the budget for a 30k events/s source (see bench/serde_bench.py). The codec
therefore assembles Avro bytes itself from these primitives; fastavro stays
the reader. Everything here follows the Avro 1.11 specification's binary
encoding: ints and longs are zig-zag varints, strings and bytes are a long
length followed by the data, a union is the branch index (a long) followed by
the value, a record is its fields back to back.
"""

from __future__ import annotations

import struct
from typing import Final

# One-byte varints (0..127 after zig-zag) are the overwhelmingly common case:
# lengths of short strings, small ints, union branch indexes.
_SMALL: Final[tuple[bytes, ...]] = tuple(bytes((i,)) for i in range(128))

NULL_BRANCH: Final = b"\x00"  # union branch 0 (null) in a ["null", T] union
VALUE_BRANCH: Final = b"\x02"  # union branch 1 (T) in a ["null", T] union
EMPTY_ARRAY: Final = b"\x00"  # an array with no blocks: just the end marker
TRUE: Final = b"\x01"
FALSE: Final = b"\x00"

INT32_MIN: Final = -(1 << 31)
INT32_MAX: Final = (1 << 31) - 1
INT64_MIN: Final = -(1 << 63)
INT64_MAX: Final = (1 << 63) - 1

pack_float: Final = struct.Struct("<f").pack
pack_double: Final = struct.Struct("<d").pack


# Two-byte varints (128..16383) by table too; longer ones are built from
# 14-bit groups, each two bytes with the continuation bit set.
_TWO: Final[tuple[bytes, ...]] = tuple(bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(0x4000))
_GROUP: Final[tuple[bytes, ...]] = tuple(
    bytes(((i & 0x7F) | 0x80, (i >> 7) | 0x80)) for i in range(0x4000)
)


def zigzag(n: int) -> bytes:
    """Encode an int or long (any value in the signed 64-bit range)."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return _SMALL[z]
    if z < 0x4000:
        return _TWO[z]
    if z >> 64:
        raise OverflowError(f"{n} is outside Avro's long range")
    head = b""
    while z >= 0x4000:
        head += _GROUP[z & 0x3FFF]
        z >>= 14
    return head + (_SMALL[z] if z < 0x80 else _TWO[z])


def string(s: str) -> bytes:
    b = s.encode("utf-8")
    return zigzag(len(b)) + b


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a zig-zag varint at ``pos``; return (value, next position).

    A truncated buffer raises IndexError; an over-long varint ValueError.
    """
    b = buf[pos]
    z = b & 0x7F
    shift = 7
    pos += 1
    while b & 0x80:
        b = buf[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise ValueError("varint longer than 10 bytes")
    return (z >> 1) ^ -(z & 1), pos
