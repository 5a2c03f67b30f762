"""Positions are ordered values that survive serialisation unchanged."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.errors import PositionError
from cdc.positions import position_from_dict
from connectors.mysql.position import BinlogFile, GtidSet, MariaGtid, MySqlPosition
from connectors.postgres.position import Lsn, PgPosition

lsns = st.integers(min_value=0, max_value=(1 << 64) - 1).map(Lsn)
pg_positions = st.builds(PgPosition, lsn=lsns, index=st.integers(0, 1 << 40),
                         snapshot=st.booleans(), last_in_tx=st.booleans())
gtids = st.builds(MariaGtid, st.integers(0, 2**32 - 1), st.integers(1, 2**32 - 1),
                  st.integers(0, 2**63))
mysql_positions = st.builds(
    MySqlPosition,
    file=st.integers(1, 999999).map(lambda n: BinlogFile(f"mysql-bin.{n:06d}")),
    pos=st.integers(4, 2**40),
    index=st.integers(0, 1 << 30),
    gtid_set=st.lists(gtids, max_size=3).map(
        lambda gs: GtidSet(mariadb=tuple(sorted({g.domain: g for g in gs}.values())))),
    server_id=st.integers(0, 2**32 - 1),
    snapshot=st.booleans(),
)


def test_lsn_parse_and_print() -> None:
    lsn = Lsn.parse("16/B374D848")
    assert lsn.value == (0x16 << 32) | 0xB374D848
    assert str(lsn) == "16/B374D848"
    assert Lsn.parse("0/0") < Lsn.parse("0/1") < Lsn.parse("1/0")
    with pytest.raises(PositionError, match="not an LSN"):
        Lsn.parse("16-B374")


@settings(max_examples=300)
@given(pg_positions)
def test_pg_position_round_trips_through_json(p: PgPosition) -> None:
    back = position_from_dict(json.loads(json.dumps(p.to_dict())))
    assert back == p and back.last_in_tx == p.last_in_tx


@settings(max_examples=300)
@given(mysql_positions)
def test_mysql_position_round_trips_through_json(p: MySqlPosition) -> None:
    back = position_from_dict(json.loads(json.dumps(p.to_dict())))
    assert back == p
    assert isinstance(back, MySqlPosition) and back.gtid_set == p.gtid_set


@settings(max_examples=300)
@given(pg_positions, pg_positions)
def test_pg_ordering_is_total_and_consistent(a: PgPosition, b: PgPosition) -> None:
    assert (a == b) == (a.sort_key() == b.sort_key())
    assert (a < b) == (a.sort_key() < b.sort_key())
    assert (a <= b) == (not a > b)


def test_snapshot_reads_precede_streamed_changes_at_the_same_lsn() -> None:
    lsn = Lsn.parse("0/16B3748")
    assert PgPosition(lsn, 999_999, snapshot=True) < PgPosition(lsn, 0)
    assert PgPosition(lsn, 5) < PgPosition(Lsn(lsn.value + 1), 0, snapshot=True)


def test_binlog_files_order_by_sequence_number() -> None:
    assert BinlogFile("mysql-bin.000009") < BinlogFile("mysql-bin.000010")
    a = MySqlPosition(BinlogFile("mysql-bin.000009"), 99999, 3)
    b = MySqlPosition(BinlogFile("mysql-bin.000010"), 4, 0)
    assert a < b
    assert MySqlPosition(a.file, a.pos, 2) < a


def test_positions_of_different_kinds_do_not_compare() -> None:
    with pytest.raises(PositionError):
        _ = PgPosition(Lsn(1)) < MySqlPosition(BinlogFile("b.000001"), 4)


def test_gtid_sets() -> None:
    s = GtidSet.parse("0-1-8,1-2-5")
    assert str(s) == "0-1-8,1-2-5"
    assert s.contains(GtidSet.parse("0-1-7"))
    assert not s.contains(GtidSet.parse("0-1-9"))
    assert s.with_mariadb(MariaGtid(0, 1, 9)).contains(GtidSet.parse("0-1-9,1-2-5"))
    m = GtidSet.parse("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7")
    assert str(m) == "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7"
    assert m.contains(GtidSet.parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:2-4"))
    assert not m.contains(GtidSet.parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:6"))
    assert not GtidSet.parse("")


def test_bad_stored_positions_are_clear_errors() -> None:
    with pytest.raises(PositionError, match="unknown position kind"):
        position_from_dict({"kind": "oracle"})
    with pytest.raises(PositionError, match="newer than this cdc"):
        position_from_dict({"v": 99, "kind": "postgres", "lsn": "0/1"})
    with pytest.raises(PositionError, match="malformed"):
        position_from_dict({"v": 1, "kind": "mysql"})
