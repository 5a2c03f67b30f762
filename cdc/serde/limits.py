"""Bounds on what one Avro record may decode into (a sink reads bytes anyone with
produce rights on a topic can write).

Most Avro values take at least one byte, so a record's size bounds what it
decodes into; array and map items of zero-width types (null, empty records,
``fixed(0)``) and nested block counts do not. Both readers (the generated
Python reader and the C reader) therefore count every array item and map entry
of a record against ``max_items`` before allocating them, and refuse bodies
longer than ``max_record_bytes``. A record over a bound is malformed
(:class:`cdc.errors.SerializationError`): a sink dead-letters it or stops, as
``errors.policy`` says, and its memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Per-record decoding bounds (the sink config's ``decoding`` section)."""

    #: array items plus map entries in one record, summed over all its arrays and maps
    max_items: int = 1_000_000
    #: the longest Avro body (without its 5-byte framing) read at all
    max_record_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_items < 0 or self.max_record_bytes < 0:
            raise ValueError("decoding limits must be >= 0")


DEFAULT_LIMITS: Final = DecodeLimits()
