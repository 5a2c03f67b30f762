"""When snapshot replication runs: a fixed interval or a five-field cron expression.

Pure logic, no I/O: :class:`Schedule` answers "the first run time after t"
for the scheduler loop (:mod:`cdc.snapshot.service`) and the config checks
(an invalid expression is a config error naming the field). The cron dialect
is the classic one: ``minute hour day-of-month month day-of-week`` with
``*``, lists ``a,b``, ranges ``a-b``, steps ``*/n`` / ``a-b/n``, month and day
names (``jan``, ``mon``), Sunday as 0 or 7, and Vixie cron's rule that when
both day fields are restricted a day matches either of them. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

_MONTHS: Final = {m: i + 1 for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_DAYS: Final = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, low, high, names)
_FIELDS: Final[tuple[tuple[str, int, int, dict[str, int]], ...]] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
# A cron expression that matches nothing (February 30th) must not loop forever.
_SEARCH_DAYS: Final = 366 * 5


class CronError(ValueError):
    """An invalid cron expression; the message names the field and what is wrong."""


def _value(text: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    t = text.lower()
    if t in names:
        return names[t]
    if not t.isdigit():
        raise CronError(f"{field}: {text!r} is not a number" + (
            f" or a name ({', '.join(names)})" if names else ""))
    v = int(t)
    if not low <= v <= high:
        raise CronError(f"{field}: {v} is outside {low}-{high}")
    return v


def _field(text: str, low: int, high: int, names: dict[str, int], field: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{field}: step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first = _value(a, low, high, names, field)
            last = _value(b, low, high, names, field)
            if first > last:
                raise CronError(f"{field}: range {base!r} runs backwards")
        else:
            first = _value(base, low, high, names, field)
            last = high if slash else first
        out.update(range(first, last + 1, step))
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed five-field cron expression (UTC)."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *

    @classmethod
    def parse(cls, text: str) -> Cron:
        parts = text.split()
        if len(parts) != 5:
            raise CronError(
                f"{text!r} has {len(parts)} fields; a cron expression has five: "
                "minute hour day-of-month month day-of-week (e.g. '0 2 * * *')")
        sets = [_field(p, lo, hi, names, f) for p, (f, lo, hi, names) in zip(parts, _FIELDS,
                                                                             strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        return cls(text, sets[0], sets[1], sets[2], sets[3], weekdays,
                   parts[2].startswith("*"), parts[4].startswith("*"))

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow  # both restricted: either matches (Vixie cron)

    def next_after(self, t: datetime) -> datetime:
        """The first matching minute strictly after ``t`` (aware; returned in UTC)."""
        t = t.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = t.replace(hour=0, minute=0)
        hours = sorted(self.hours)
        minutes = sorted(self.minutes)
        for _ in range(_SEARCH_DAYS):
            if self._day_matches(day):
                for h in hours:
                    for m in minutes:
                        candidate = day.replace(hour=h, minute=m)
                        if candidate >= t:
                            return candidate
            day += timedelta(days=1)
        raise CronError(f"{self.text!r} matches no time in the next five years")


@dataclass(frozen=True, slots=True)
class Schedule:
    """Every ``interval_s`` seconds (from the last run's start), or at ``cron`` times."""

    interval_s: float | None = None
    cron: Cron | None = None

    def next_after(self, t: datetime) -> datetime:
        if self.cron is not None:
            return self.cron.next_after(t)
        assert self.interval_s is not None
        return t.astimezone(UTC) + timedelta(seconds=self.interval_s)
