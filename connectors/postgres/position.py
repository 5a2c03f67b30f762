"""PostgreSQL positions: the LSN and where an event sits in the logical stream.

The connector's offset context (cdc/spi.py PositionCodec): :class:`PgPosition`
is what the source yields, the offsets topic and replica checkpoints store (as
``to_dict()``), and sinks compare. Its stored form never changes: existing
deployments resume from it. The compact ``cdc_position`` text and its fast
parsers live in :mod:`connectors.postgres.position_text`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import total_ordering
from typing import Any, ClassVar

from cdc.errors import PositionError
from cdc.positions import POSITION_FORMAT, Position


@total_ordering
@dataclass(frozen=True, slots=True)
class Lsn:
    """A PostgreSQL log sequence number (64-bit byte offset into the WAL)."""

    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.value < 1 << 64:
            raise PositionError(f"LSN out of range: {self.value}")

    @classmethod
    def parse(cls, text: str) -> Lsn:
        """Parse the ``XXXXXXXX/XXXXXXXX`` form PostgreSQL prints."""
        m = re.fullmatch(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})", text.strip())
        if not m:
            raise PositionError(f"not an LSN: {text!r} (expected e.g. '16/B374D848')")
        return cls((int(m.group(1), 16) << 32) | int(m.group(2), 16))

    def __str__(self) -> str:
        return f"{self.value >> 32:X}/{self.value & 0xFFFFFFFF:X}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Lsn):
            return NotImplemented
        return self.value < other.value

    def __int__(self) -> int:
        return self.value


Lsn.ZERO = Lsn(0)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True, eq=True)
class PgPosition(Position):
    """Where an event sits in PostgreSQL's logical stream.

    ``lsn`` is the commit end LSN of the event's transaction (what the slot is
    confirmed to once the whole transaction is durable); for snapshot reads it
    is the slot's consistent point. ``index`` orders events within it.
    ``last_in_tx`` marks the final event of a transaction: only there may the
    slot be confirmed up to ``lsn``.
    """

    kind: ClassVar[str] = "postgres"
    lsn: Lsn
    index: int = 0
    snapshot: bool = False
    last_in_tx: bool = field(default=True, compare=False)

    def sort_key(self) -> tuple[int, int]:
        # A snapshot read precedes every streamed change at the same LSN.
        return (self.lsn.value, self.index if self.snapshot else (1 << 62) + self.index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": POSITION_FORMAT,
            "kind": self.kind,
            "lsn": str(self.lsn),
            "index": self.index,
            "snapshot": self.snapshot,
            "last_in_tx": self.last_in_tx,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PgPosition:
        return cls(
            lsn=Lsn.parse(d["lsn"]),
            index=int(d.get("index", 0)),
            snapshot=bool(d.get("snapshot", False)),
            last_in_tx=bool(d.get("last_in_tx", True)),
        )

    def __hash__(self) -> int:
        return hash((self.lsn, self.index, self.snapshot))


