"""Confluent wire framing: magic byte 0, 4-byte big-endian schema id, Avro body.

Every Avro key and value on our topics (and on Debezium's, with the Confluent
or Apicurio converter in its default mode) is framed this way, so a consumer
can fetch the writer schema by id before reading the body.
"""

from __future__ import annotations

import struct
from typing import Final

from cdc.errors import SerializationError

MAGIC: Final = 0
HEADER_SIZE: Final = 5
_HEADER = struct.Struct(">BI")


def frame_prefix(schema_id: int) -> bytes:
    """The 5 header bytes for ``schema_id``; the codec caches them per schema."""
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise SerializationError(f"schema id {schema_id} does not fit the 4-byte wire field")
    return _HEADER.pack(MAGIC, schema_id)


def frame(schema_id: int, body: bytes) -> bytes:
    return frame_prefix(schema_id) + body


def unframe(message: bytes | bytearray | memoryview) -> tuple[int, memoryview]:
    """Split a framed message into (schema id, Avro body) without copying the body."""
    view = memoryview(message)
    if len(view) < HEADER_SIZE:
        raise SerializationError(
            f"message of {len(view)} bytes is too short for Confluent framing "
            f"(needs at least {HEADER_SIZE}: magic byte + 4-byte schema id)"
        )
    magic, schema_id = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise SerializationError(
            f"unknown magic byte {magic:#04x} (expected 0x00): not a Confluent-framed "
            "Avro message (plain JSON, another converter, or a corrupt record?)"
        )
    return schema_id, view[HEADER_SIZE:]
