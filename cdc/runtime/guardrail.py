"""Retained-log guardrail: what a source does when its server keeps too much log for it.

A connector measures the log its position holds back on the server (WAL kept
by a slot, for example) and feeds it to a :class:`BudgetWatch` built from the
source's :class:`cdc.config.operations.LogBudget`. The watch decides (pure
:func:`judge`) and acts: a WARNING when entering the warning band (repeated
every ``WARN_REPEAT_S`` while there), at the limit an ERROR every
``ERROR_REPEAT_S`` (action ``warn``) or :class:`cdc.errors.NeedsOperatorError`
(action ``stop``), which ``cdc source`` turns into exit status 78.

:func:`watched` runs such a check every ``check_interval_s`` between the items
of a stream, which yields at least every heartbeat, so no thread is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Final, TypeVar

from cdc.config.operations import LogBudget
from cdc.errors import NeedsOperatorError

log = logging.getLogger(__name__)

WARN_REPEAT_S: Final = 300.0
ERROR_REPEAT_S: Final = 60.0

T = TypeVar("T")


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"  # at or past warn_fraction of the budget
    LIMIT = "limit"  # at or past the budget


def judge(retained: int | None, budget: LogBudget) -> Level:
    """Where ``retained`` bytes stand against ``budget`` (None, unknown: OK)."""
    if retained is None:
        return Level.OK
    if retained >= budget.max_bytes:
        return Level.LIMIT
    if retained >= budget.warn_fraction * budget.max_bytes:
        return Level.WARN
    return Level.OK


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB" if n >= 1048576 else f"{n} bytes"


class BudgetWatch:
    """Logs and acts on measurements of one source's retained log.

    ``what`` names the log and its holder in messages (e.g. "WAL retained by
    slot cdc_pg_main"); ``fix`` says what an operator can do.
    """

    def __init__(self, source: str, what: str, budget: LogBudget, fix: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.what = what
        self.budget = budget
        self.fix = fix
        self.clock = clock
        self.level = Level.OK
        self.retained: int | None = None
        self._last_said = -1e18

    def observe(self, retained: int | None) -> Level:
        """Record one measurement; raises NeedsOperatorError at the limit with ``stop``."""
        self.retained = retained
        level = judge(retained, self.budget)
        now = self.clock()
        changed = level is not self.level
        self.level = level
        if level is Level.OK:
            if changed:
                log.info("%s: %s is back under %.0f%% of its budget", self.source, self.what,
                         self.budget.warn_fraction * 100)
            return level
        assert retained is not None
        amount = (f"{self.what} is {_mib(retained)} of a {_mib(self.budget.max_bytes)} budget "
                  f"(warning from {self.budget.warn_fraction:.0%})")
        if level is Level.WARN:
            if changed or now - self._last_said >= WARN_REPEAT_S:
                log.warning("%s: %s", self.source, amount)
                self._last_said = now
            return level
        if self.budget.action == "stop":
            log.error("%s: %s: limit reached, stopping (action: stop). %s", self.source,
                      amount, self.fix)
            raise NeedsOperatorError(
                f"{self.what} reached its budget ({_mib(retained)} >= "
                f"{_mib(self.budget.max_bytes)}): stopped (action: stop)", hint=self.fix)
        if changed or now - self._last_said >= ERROR_REPEAT_S:
            log.error("%s: %s: limit reached, still streaming (action: warn). %s",
                      self.source, amount, self.fix)
            self._last_said = now
        return level


def watched(items: Iterator[T], check: Callable[[], None], interval_s: float,
            clock: Callable[[], float] = time.monotonic) -> Iterator[T]:
    """``items``, calling ``check`` first and then every ``interval_s`` between items.

    Closing the result closes ``items`` (the stream's connections end with it).
    """
    try:
        check()
        due = clock() + interval_s
        for item in items:
            yield item
            if clock() >= due:
                check()
                due = clock() + interval_s
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
