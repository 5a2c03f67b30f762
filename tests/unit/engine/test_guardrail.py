"""The retained-log budget: the decision, the logging rhythm and the stop action."""

from __future__ import annotations

import logging

import pytest

from cdc.config.operations import LogBudget
from cdc.errors import NeedsOperatorError
from cdc.runtime.guardrail import ERROR_REPEAT_S, WARN_REPEAT_S, BudgetWatch, Level, judge, watched


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_judge_edges() -> None:
    b = LogBudget(max_bytes=1000, warn_fraction=0.8)
    assert judge(None, b) is Level.OK
    assert judge(0, b) is Level.OK
    assert judge(799, b) is Level.OK
    assert judge(800, b) is Level.WARN
    assert judge(999, b) is Level.WARN
    assert judge(1000, b) is Level.LIMIT
    assert judge(10**15, b) is Level.LIMIT
    full = LogBudget(max_bytes=1000, warn_fraction=1.0)
    assert judge(999, full) is Level.OK and judge(1000, full) is Level.LIMIT


def test_warn_action_logs_with_rhythm(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    watch = BudgetWatch("pg_main", "WAL retained by slot s", LogBudget(max_bytes=100),
                        "fix it", clock=clock)
    caplog.set_level(logging.INFO, "cdc.runtime.guardrail")

    def said(level: int) -> int:
        return sum(1 for r in caplog.records if r.levelno == level)

    assert watch.observe(10) is Level.OK and not caplog.records
    assert watch.observe(85) is Level.WARN and said(logging.WARNING) == 1
    clock.now += WARN_REPEAT_S / 2
    watch.observe(90)
    assert said(logging.WARNING) == 1  # not repeated yet
    clock.now += WARN_REPEAT_S
    watch.observe(90)
    assert said(logging.WARNING) == 2
    assert watch.observe(100) is Level.LIMIT and said(logging.ERROR) == 1  # keeps going
    clock.now += ERROR_REPEAT_S - 1
    watch.observe(150)
    assert said(logging.ERROR) == 1
    clock.now += 1
    watch.observe(150)
    assert said(logging.ERROR) == 2
    error = next(r for r in caplog.records if r.levelno == logging.ERROR).getMessage()
    assert "pg_main" in error and "still streaming (action: warn)" in error and "fix it" in error
    assert watch.observe(5) is Level.OK
    assert "back under 80%" in caplog.records[-1].getMessage()


def test_stop_action_raises_needs_operator() -> None:
    watch = BudgetWatch("pg_main", "WAL", LogBudget(max_bytes=100, action="stop"), "fix it")
    assert watch.observe(99) is Level.WARN
    with pytest.raises(NeedsOperatorError) as info:
        watch.observe(100)
    assert info.value.hint == "fix it" and "budget" in str(info.value)


def test_watched_checks_on_schedule_and_closes() -> None:
    clock = Clock()
    checks: list[float] = []
    closed: list[bool] = []

    def items() -> object:
        try:
            for i in range(10):
                clock.now += 1
                yield i
        finally:
            closed.append(True)

    gen = watched(items(), lambda: checks.append(clock.now), 3.0, clock=clock)  # type: ignore[arg-type]
    assert [next(gen) for _ in range(7)] == list(range(7))
    assert checks == [1000.0, 1003.0, 1006.0]
    gen.close()
    assert closed == [True]
