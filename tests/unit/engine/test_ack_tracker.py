"""The durable position never passes an unacknowledged event or a transaction's middle."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.offsets.tracker import AckTracker
from connectors.postgres.position import Lsn, PgPosition


def _pos(tx: int, index: int, last: bool) -> PgPosition:
    return PgPosition(Lsn(1000 + tx * 10), index, last_in_tx=last)


def test_durable_waits_for_prefix_and_boundary() -> None:
    t = AckTracker()
    a = t.register(_pos(1, 0, False), boundary=False)
    b = t.register(_pos(1, 1, True), boundary=True)
    c = t.register(_pos(2, 0, True), boundary=True)
    t.ack(c)
    assert t.durable is None  # a and b still out
    t.ack(a)
    assert t.durable is None  # mid-transaction
    t.ack(b)
    assert t.durable == _pos(2, 0, True)
    assert t.in_flight == 0


def test_marks_advance_only_after_earlier_events() -> None:
    t = AckTracker()
    a = t.register(_pos(1, 0, True), boundary=True)
    t.mark(_pos(2, 0, True))
    assert t.durable is None
    t.ack(a)
    assert t.durable == _pos(2, 0, True)


def test_double_ack_is_an_error() -> None:
    t = AckTracker()
    a = t.register(_pos(1, 0, True), boundary=True)
    t.ack(a)
    with pytest.raises(KeyError):
        t.ack(a)


@settings(max_examples=300)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=30), st.randoms())
def test_any_ack_order_yields_the_contiguous_boundary(tx_sizes: list[int], rnd: object) -> None:
    t = AckTracker()
    tokens: list[tuple[int, PgPosition, bool]] = []
    for tx, size in enumerate(tx_sizes):
        for i in range(size):
            pos = _pos(tx, i, i == size - 1)
            tokens.append((t.register(pos, boundary=i == size - 1), pos, i == size - 1))
    order = list(range(len(tokens)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    acked: set[int] = set()
    for idx in order:
        t.ack(tokens[idx][0])
        acked.add(idx)
        prefix = 0
        while prefix in acked:
            prefix += 1
        expected = None
        for j in range(prefix):
            if tokens[j][2]:
                expected = tokens[j][1]
        assert t.durable == expected
    assert t.durable == tokens[-1][1]


def test_a_batch_token_holds_the_durable_position_until_every_record_is_acked() -> None:
    t = AckTracker()
    batch = t.register_many(3)
    t.mark(_pos(1, 0, True))  # a chunk mark after the batch
    assert t.in_flight == 3
    batch(None, None)
    batch(None, None)
    assert t.durable is None and t.in_flight == 1
    batch(None, None)
    assert t.durable == _pos(1, 0, True) and t.in_flight == 0
    with pytest.raises(KeyError):
        batch(None, None)  # more deliveries than records


def test_a_failed_record_of_a_batch_is_reported_and_holds_the_position() -> None:
    t = AckTracker()
    failures: list[object] = []
    t.on_failure = lambda err, msg: failures.append(err)
    batch = t.register_many(2)
    t.mark(_pos(1, 0, True))
    batch(None, None)
    batch("broker said no", None)
    assert failures == ["broker said no"] and t.durable is None


def test_a_batch_acknowledged_at_once_releases_the_position_only_in_order() -> None:
    t = AckTracker()
    first = t.register_many(3)
    second = t.register_many(2)
    t.mark(_pos(1, 0, True))  # a chunk mark after both batches
    first(None, None)  # one record of the first batch acknowledged on its own
    t.ack_batch(second)
    assert t.durable is None and t.in_flight == 2  # the first batch still holds it
    t.ack_batch(first)
    assert t.durable == _pos(1, 0, True) and t.in_flight == 0
    with pytest.raises(KeyError):
        t.ack_batch(first)
