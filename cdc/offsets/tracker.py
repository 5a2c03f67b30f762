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
from collections.abc import Callable

from cdc.positions import Position


class Pending:
    """One registered event; also its own delivery callback (no closure per record).

    confluent-kafka calls ``on_delivery(err, msg)``: passing the token itself
    saves a closure and a dict lookup per record on the produce path.
    """

    __slots__ = ("acked", "boundary", "failed", "position", "tracker")

    def __init__(self, tracker: AckTracker, position: Position | None, boundary: bool) -> None:
        self.tracker = tracker
        self.position = position
        self.boundary = boundary
        self.acked = False
        self.failed: object = None

    def __call__(self, err: object, msg: object) -> None:
        if err is not None:
            self.tracker.on_failure(err, msg)
            return
        self.tracker.ack(self)


class Batch(Pending):
    """The token of events registered together (:meth:`AckTracker.register_many`)."""

    __slots__ = ("remaining",)

    def __init__(self, tracker: AckTracker, n: int) -> None:
        super().__init__(tracker, None, False)
        self.remaining = n

    def __call__(self, err: object, msg: object) -> None:
        if err is not None:
            self.tracker.on_failure(err, msg)
            return
        tracker = self.tracker
        if self.remaining <= 0 or self.acked:
            raise KeyError("a batch acknowledged more often than it has events")
        tracker._in_flight -= 1
        self.remaining -= 1
        if not self.remaining:
            tracker._settle(self)


class AckTracker:
    """Single-threaded by design: callers register and ack from the same thread.

    confluent-kafka runs delivery callbacks inside ``poll``/``flush`` on the
    caller's thread, so no lock is needed.
    """

    def __init__(self) -> None:
        self._pending: deque[Pending] = deque()
        self._in_flight = 0
        self._durable: Position | None = None
        self._durable_version = 0
        self.on_failure: Callable[[object, object], None] = _no_failure_handler

    def register(self, position: Position | None, *, boundary: bool) -> Pending:
        """Record an event about to be sent; returns its ack token (a delivery callback).

        ``boundary`` marks the last event of a transaction (or a heartbeat):
        only there can the durable position advance.
        """
        item = Pending(self, position, boundary)
        self._pending.append(item)
        self._in_flight += 1
        return item

    def mark(self, position: Position) -> None:
        """A position with no event (heartbeat, empty transaction): acked at once."""
        self.ack(self.register(position, boundary=True))

    def register_many(self, n: int) -> Batch:
        """Record ``n`` events sent together, none ending a transaction: one token,
        the delivery callback of each, settled when all ``n`` are acknowledged."""
        item = Batch(self, n)
        self._pending.append(item)
        self._in_flight += n
        return item

    def ack_batch(self, item: Batch) -> None:
        """Every event of ``item`` acknowledged at once (the sender knows that Kafka
        acknowledged them all without a callback per event)."""
        if item.acked or item.tracker is not self:
            raise KeyError("unknown or already acknowledged batch")
        self._in_flight -= item.remaining
        item.remaining = 0
        self._settle(item)

    def ack(self, item: Pending) -> None:
        if item.acked or item.tracker is not self:
            raise KeyError(f"unknown or already acknowledged event {item.position}")
        self._in_flight -= 1
        self._settle(item)

    def _settle(self, item: Pending) -> None:
        item.acked = True
        pending = self._pending
        if pending[0] is not item:
            return  # an earlier event is still unacknowledged
        while pending and pending[0].acked:
            head = pending.popleft()
            if head.boundary and head.position is not None:
                self._durable = head.position
                self._durable_version += 1

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def durable(self) -> Position | None:
        """The last position whose whole prefix is acknowledged (None: nothing yet)."""
        return self._durable

    @property
    def durable_version(self) -> int:
        """Increments whenever ``durable`` moves; cheap change detection."""
        return self._durable_version


def _no_failure_handler(err: object, msg: object) -> None:
    raise RuntimeError(f"a delivery failed and nothing handles it: {err}")
