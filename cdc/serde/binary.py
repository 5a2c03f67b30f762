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
from collections.abc import Callable
from typing import Final

from cdc import native

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


def py_zigzag(n: int) -> bytes:
    """Encode an int or long (any value in the signed 64-bit range): the reference.

    :data:`zigzag` is ``_cencode.zigzag`` where it is built, which writes the same
    bytes (tests/unit/serde/test_binary.py) without the per-size tables this module
    once held (1.5 MB of every worker's memory).
    """
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return _SMALL[z]
    if z >> 64:
        raise OverflowError(f"{n} is outside Avro's long range")
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_C = native.load("cdc.serde._cencode")
zigzag: Final[Callable[[int], bytes]] = _C.zigzag if _C is not None else py_zigzag


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
