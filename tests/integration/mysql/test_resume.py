"""Resuming: across ALTER TABLE (schema history from the TableMap), mid-transaction,
by GTID and by file/position, and the clear error for a purged position."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from cdc.errors import PrerequisiteError
from cdc.events import Kind, Op
from connectors.mysql.position import BinlogFile, GtidSet, MySqlPosition
from connectors.mysql.source import MySqlSource
from tests.integration.mysql.conftest import drain

pytestmark = pytest.mark.integration


def _pos(e: Any) -> MySqlPosition:
    p = e.position
    assert isinstance(p, MySqlPosition)
    return p


@pytest.mark.parametrize("gtid_mode", ["on", "off"])
def test_alter_table_mid_stream_with_a_restart_before_it(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    unique_name: str,
    gtid_mode: str,
) -> None:
    t = unique_name
    first = make_source(include=[f"cdc_source.{t}"], gtid_mode=gtid_mode)
    start = first.reader.current_position()
    # The whole history is written before streaming starts: when the old rows are
    # read, information_schema already shows the final table.
    sql(f"CREATE TABLE {t} (id INT PRIMARY KEY, a INT, b VARCHAR(10))")
    sql(f"INSERT INTO {t} VALUES (1, 10, 'x')")
    sql(f"ALTER TABLE {t} ADD COLUMN c DECIMAL(5,2) DEFAULT 1.50")
    sql(f"INSERT INTO {t} VALUES (2, 20, 'y', 2.5)")
    sql(f"ALTER TABLE {t} DROP COLUMN a")
    sql(f"INSERT INTO {t} VALUES (3, 'z', 3.5)")
    sql(f"ALTER TABLE {t} MODIFY b VARCHAR(20)")
    sql(f"UPDATE {t} SET b = 'a-longer-value' WHERE id = 3")
    sql(f"ALTER TABLE {t} ADD COLUMN j JSON")
    sql(f"INSERT INTO {t} VALUES (4, 'w', 4.5, '{{\"k\": 1}}')")

    head = drain(first.stream(start), lambda ev: len(ev) >= 2)
    first.close()  # "restart": the stored position is after id 2, before DROP COLUMN a
    assert [e.after for e in head] == [
        {"id": 1, "a": 10, "b": "x"},
        {"id": 2, "a": 20, "b": "y", "c": Decimal("2.50")},
    ]
    b_old = head[0].schema.column("b").type
    assert (b_old.kind, b_old.length) == (Kind.STRING, 10)  # the row's, not today's varchar(20)
    resume = _pos(head[-1])
    assert resume.last_in_tx

    second = make_source(include=[f"cdc_source.{t}"], gtid_mode=gtid_mode)
    tail = drain(second.stream(resume), lambda ev: len(ev) >= 3)
    assert [(e.op, e.after) for e in tail] == [
        (Op.CREATE, {"id": 3, "b": "z", "c": Decimal("3.50")}),
        (Op.UPDATE, {"id": 3, "b": "a-longer-value", "c": Decimal("3.50")}),
        (Op.CREATE, {"id": 4, "b": "w", "c": Decimal("4.50"), "j": '{"k": 1}'}),
    ]
    assert tail[0].schema.column("b").type.length == 10
    assert tail[1].schema.column("b").type.length == 20
    assert tail[2].schema.column("j").type.kind is Kind.JSON  # typed from the catalog
    positions = [_pos(e) for e in head + tail]
    assert positions == sorted(positions) and len(set(positions)) == 5


@pytest.mark.parametrize("gtid_mode", ["on", "off"])
def test_resume_mid_transaction(
    make_source: Callable[..., MySqlSource],
    sql: Callable[..., Any],
    unique_name: str,
    gtid_mode: str,
) -> None:
    t = unique_name
    sql(f"CREATE TABLE {t} (id INT PRIMARY KEY)")
    src = make_source(include=[f"cdc_source.{t}"], gtid_mode=gtid_mode)
    start = src.reader.current_position()
    sql("BEGIN")
    for i in range(1, 6):
        sql(f"INSERT INTO {t} VALUES ({i})")
    sql("COMMIT")
    sql(f"INSERT INTO {t} VALUES (6)")
    events = drain(src.stream(start), lambda ev: len(ev) >= 6)
    assert [_pos(e).last_in_tx for e in events] == [False] * 4 + [True, True]
    assert len({(_pos(e).file, _pos(e).pos) for e in events[:5]}) == 1
    src.close()

    mid = _pos(events[1])
    again = make_source(include=[f"cdc_source.{t}"], gtid_mode=gtid_mode)
    rest = drain(again.stream(mid), lambda ev: len(ev) >= 4)
    assert [e.key for e in rest] == [{"id": i} for i in (3, 4, 5, 6)]
    assert [_pos(e) for e in rest] == [_pos(e) for e in events[2:]]


def test_purged_binlog_position_is_a_clear_error(make_source: Callable[..., MySqlSource]) -> None:
    src = make_source(gtid_mode="off")
    gone = MySqlPosition(BinlogFile("mysql-bin.000000"), 4)
    with pytest.raises(PrerequisiteError, match="purged") as err:
        drain(src.stream(gone), lambda ev: True, timeout=10)
    assert "snapshot" in str(err.value)


def test_unknown_gtid_state_is_a_clear_error(make_source: Callable[..., MySqlSource]) -> None:
    src = make_source(gtid_mode="on")
    gone = MySqlPosition(BinlogFile("mysql-bin.000001"), 4, gtid_set=GtidSet.parse("0-77-5"))
    with pytest.raises(PrerequisiteError, match="cannot stream from") as err:
        drain(src.stream(gone), lambda ev: True, timeout=10)
    assert "snapshot" in str(err.value)
