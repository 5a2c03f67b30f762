"""Turns out-of-order delivery reports into a durable source position.

Events are registered in source order; Kafka acknowledges them per partition,
so acks arrive out of order. The durable position is the position of the last
event such that it and every event before it are acknowledged, and that ends
a transaction: a source resumed there replays no partial transaction and
skips nothing. The bound on unacknowledged events is the pipeline's
backpressure.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cdc.positions import MySqlPosition, PgPosition

Position = PgPosition | MySqlPosition


@dataclass(slots=True)
class _Pending:
    seq: int
    position: Position | None
    boundary: bool
    acked: bool = False


class AckTracker:
    """Single-threaded by design: callers register and ack from the same thread.

    confluent-kafka runs delivery callbacks inside ``poll``/``flush`` on the
    caller's thread, so no lock is needed.
    """

    def __init__(self) -> None:
        self._pending: deque[_Pending] = deque()
        self._by_seq: dict[int, _Pending] = {}
        self._next_seq = 0
        self._durable: Position | None = None
        self._durable_version = 0

    def register(self, position: Position | None, *, boundary: bool) -> int:
        """Record an event about to be sent; returns its ack token.

        ``boundary`` marks the last event of a transaction (or a heartbeat):
        only there can the durable position advance.
        """
        seq = self._next_seq
        self._next_seq += 1
        item = _Pending(seq, position, boundary)
        self._pending.append(item)
        self._by_seq[seq] = item
        return seq

    def mark(self, position: Position) -> None:
        """A position with no event (heartbeat, empty transaction): acked at once."""
        self.ack(self.register(position, boundary=True))

    def ack(self, seq: int) -> None:
        item = self._by_seq.pop(seq, None)
        if item is None:
            raise KeyError(f"unknown or already acknowledged event {seq}")
        item.acked = True
        pending = self._pending
        while pending and pending[0].acked:
            head = pending.popleft()
            if head.boundary and head.position is not None:
                self._durable = head.position
                self._durable_version += 1

    @property
    def in_flight(self) -> int:
        return len(self._by_seq)

    @property
    def durable(self) -> Position | None:
        """The last position whose whole prefix is acknowledged (None: nothing yet)."""
        return self._durable

    @property
    def durable_version(self) -> int:
        """Increments whenever ``durable`` moves; cheap change detection."""
        return self._durable_version
