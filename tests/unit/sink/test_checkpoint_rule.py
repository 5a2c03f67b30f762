"""The skip rule: offsets first, then source positions (docs/SINK.md)."""

from __future__ import annotations

from cdc.sink.checkpoint import (
    NOTHING,
    Checkpoint,
    advance,
    decode_position,
    encode_position,
    is_duplicate,
)
from connectors.mysql.position import BinlogFile, MySqlPosition
from connectors.postgres.position import Lsn, PgPosition


def pg(lsn: int, index: int = 0, snapshot: bool = False) -> PgPosition:
    return PgPosition(Lsn(lsn), index, snapshot=snapshot)


def test_nothing_applied_skips_nothing() -> None:
    assert not is_duplicate(NOTHING, 0, pg(1))
    assert not is_duplicate(NOTHING, 0, None)


def test_offsets_at_or_below_the_checkpoint_are_duplicates() -> None:
    cp = Checkpoint(10, pg(100))
    assert is_duplicate(cp, 10, None)
    assert is_duplicate(cp, 3, pg(500))
    assert not is_duplicate(cp, 11, None)  # no position: offsets only (Debezium records)


def test_replayed_positions_at_new_offsets_are_duplicates() -> None:
    cp = Checkpoint(10, pg(100, 3))
    assert is_duplicate(cp, 50, pg(100, 3))  # the same event again
    assert is_duplicate(cp, 51, pg(100, 2))
    assert is_duplicate(cp, 52, pg(90, 9))
    assert not is_duplicate(cp, 53, pg(100, 4))
    assert not is_duplicate(cp, 54, pg(101))
    # Snapshot reads sort before streamed changes at the same LSN.
    assert is_duplicate(Checkpoint(1, pg(100, 0)), 2, pg(100, 7, snapshot=True))


def test_positions_of_another_kind_are_not_compared() -> None:
    cp = Checkpoint(10, pg(100))
    assert not is_duplicate(cp, 11, MySqlPosition(BinlogFile("b.000001"), 4))


def test_advance_keeps_the_highest_position_and_offset() -> None:
    cp = advance(NOTHING, 5, pg(100))
    assert cp == Checkpoint(5, pg(100))
    assert advance(cp, 6, None) == Checkpoint(6, pg(100))
    assert advance(cp, 7, pg(50)) == Checkpoint(7, pg(100))


def test_positions_round_trip_through_the_checkpoint_row() -> None:
    for p in (pg(1 << 40, 7, snapshot=True), MySqlPosition(BinlogFile("mysql-bin.000042"), 1234, 3)):
        assert decode_position(encode_position(p), "t") == p
    assert decode_position(None, "t") is None
