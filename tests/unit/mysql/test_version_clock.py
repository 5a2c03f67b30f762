"""The master-master version clock of the MariaDB binlog reader (connectors/mysql/source/
binlog.py, "Version clock"): local transactions sort after every version the node's sink
applied, within one binlog second, and a restart resumes the clock from the position."""

from __future__ import annotations

from pymysqlreplication.row_event import UpdateRowsEvent, WriteRowsEvent

from connectors.mysql.position import BinlogFile, GtidSet, MySqlPosition
from connectors.mysql.source import binlog
from connectors.mysql.source.transaction import NEVER


def _reader(clock: bool = True) -> binlog.BinlogReader:
    r = binlog.BinlogReader({"host": "x"}, server_id=9, source_name="maria",
                            skip_replicated=clock)
    r._file = BinlogFile("mysql-bin.000001")
    return r


def test_local_writes_sort_after_applied_versions_within_one_second() -> None:
    r = _reader()
    second = 1_700_000_000
    t1 = r._begin(100, "0-1-1", GtidSet.parse("0-1-1"), second, True)
    assert t1.vts == second * 1000
    # the sink applied a PostgreSQL write made at ...321 ms (flagged: dropped)
    t2 = r._begin(200, "0-1-2", GtidSet.parse("0-1-2"), second, True, flagged=True)
    assert t2.vts == 0 and t2.skip_through == NEVER
    r._versions_applied(WriteRowsEvent, [{"ts_ms": second * 1000 + 321, "node": "pg"}])
    r._versions_applied(UpdateRowsEvent, [({"ts_ms": 1, "node": "pg"},
                                           {"ts_ms": second * 1000 + 5, "node": "pg"})])
    # the node's own versions, read back by its sink, do not move the clock
    r._versions_applied(WriteRowsEvent, [{"ts_ms": second * 1000 + 900, "node": "maria"}])
    t3 = r._begin(300, "0-1-3", GtidSet.parse("0-1-3"), second, True)
    assert t3.vts == second * 1000 + 322
    t4 = r._begin(400, "0-1-4", GtidSet.parse("0-1-4"), second, True)
    assert t4.vts == second * 1000 + 322  # (same node: ordered by position)
    t5 = r._begin(500, "0-1-5", GtidSet.parse("0-1-5"), second + 2, True)
    assert t5.vts == (second + 2) * 1000


def test_a_restart_resumes_the_clock_and_a_reread_transaction_keeps_its_time() -> None:
    r = _reader()
    r._skip = MySqlPosition(BinlogFile("mysql-bin.000001"), 300, 2, gtid="0-1-3",
                            last_in_tx=False, vts=5_322)
    r._vfloor = 5_322  # (what stream() takes from the start position)
    t = r._begin(300, "0-1-3", GtidSet.parse("0-1-3"), 5, True)
    assert t.vts == 5_322 and t.skip_through == 2
    assert r._begin(400, "0-1-4", GtidSet.parse("0-1-4"), 5, True).vts == 5_322


def test_without_skip_replicated_nothing_is_stamped() -> None:
    r = _reader(clock=False)
    assert r._begin(100, "0-1-1", GtidSet.parse("0-1-1"), 5, True).vts == 0
    assert "vts" not in MySqlPosition(BinlogFile("mysql-bin.000001"), 4).to_dict()
    p = MySqlPosition(BinlogFile("mysql-bin.000001"), 4, vts=7)
    assert MySqlPosition.from_dict(p.to_dict()).vts == 7 and p.version_ts_ms == 7
