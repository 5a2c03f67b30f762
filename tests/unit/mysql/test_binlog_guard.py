"""The binlog guardrail's decision: purged, close to the oldest binlog, or fine."""

from __future__ import annotations

import logging

import pytest

from cdc.runtime.guardrail import Level
from connectors.mysql.guardrail import BinlogGuard, BinlogWatch, judge
from connectors.mysql.position import BinlogFile, MySqlPosition

LOGS = [(BinlogFile(f"mysql-bin.{n:06}"), 1000) for n in (7, 8, 9, 10)]


def f(n: int) -> BinlogFile:
    return BinlogFile(f"mysql-bin.{n:06}")


def test_purged_is_the_limit() -> None:
    level, why = judge(LOGS, f(6), 4, BinlogGuard())
    assert level is Level.LIMIT and "mysql-bin.000006" in why and "mysql-bin.000007" in why


def test_close_to_the_oldest_warns() -> None:
    guard = BinlogGuard(warn_files=2)
    assert judge(LOGS, f(7), 500, guard)[0] is Level.WARN
    assert judge(LOGS, f(8), 0, guard)[0] is Level.WARN
    level, why = judge(LOGS, f(9), 0, guard)
    assert level is Level.OK and "2 older binlogs (2000 bytes)" in why
    # Sequence order, not text order: 000010 comes after 000009.
    assert judge(LOGS, f(10), 0, BinlogGuard(warn_files=3))[0] is Level.OK


def test_bytes_before_the_position() -> None:
    guard = BinlogGuard(warn_files=None, warn_bytes=2500)
    assert judge(LOGS, f(9), 499, guard)[0] is Level.WARN  # 2000 + 499 before it
    assert judge(LOGS, f(9), 500, guard)[0] is Level.OK
    assert judge(LOGS, f(7), 0, BinlogGuard(warn_files=None))[0] is Level.OK


def test_unknown_files_are_not_alarms() -> None:
    assert judge([], f(7), 0, BinlogGuard())[0] is Level.OK
    assert judge(LOGS, f(11), 0, BinlogGuard())[0] is Level.OK  # newer than the listing


class _Source:
    name = "my_main"


def test_watch_logs_warning_then_error_with_fix(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    watch = BinlogWatch(_Source(), BinlogGuard(warn_files=1),  # type: ignore[arg-type]
                        clock=lambda: now[0])
    caplog.set_level(logging.INFO, "connectors.mysql.guardrail")
    at = MySqlPosition(f(7), 120)
    assert watch.observe(LOGS, at) is Level.WARN
    assert watch.observe(LOGS, at) is Level.WARN  # not repeated at once
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert watch.observe(LOGS[1:], at) is Level.LIMIT
    error = caplog.records[-1]
    assert error.levelno == logging.ERROR
    text = error.getMessage()
    assert "purged" in text and "cdc reset-source FILE --name my_main" in text
    assert "binlog_expire_logs_seconds" in text
    now[0] += 61
    watch.observe(LOGS[1:], at)
    assert [r.levelno for r in caplog.records].count(logging.ERROR) == 2
