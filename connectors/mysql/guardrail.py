"""The binlog guardrail and lag inspection of a MySQL/MariaDB source.

A binlog reader holds nothing on the server: the server purges binlogs on its
own schedule (``binlog_expire_logs_seconds`` / ``expire_logs_days``, or
``PURGE BINARY LOGS``), whether cdc has read them or not. A source whose
durable position falls into a purged binlog cannot resume (it must snapshot
again). With ``binlog_guard`` set, the streaming source compares its durable
position with ``SHOW BINARY LOGS`` every ``check_interval_s``: a WARNING when
the position's binlog is among the ``warn_files`` oldest the server keeps, or
fewer than ``warn_bytes`` of binlog precede it; an ERROR naming the fix (every
minute) when its binlog is already purged, so the operator acts before the
next restart fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field

from cdc.config.base import ConfigModel
from cdc.errors import CdcError, UnreachableError
from cdc.runtime.guardrail import ERROR_REPEAT_S, WARN_REPEAT_S, Level, watched
from connectors.mysql.position import BinlogFile, MySqlPosition

if TYPE_CHECKING:
    from connectors.mysql.source.connector import MySqlSource

log = logging.getLogger(__name__)
T = TypeVar("T")


class BinlogGuard(ConfigModel):
    """How close to the server's oldest binlog a source's durable position may be."""

    warn_files: int | None = Field(
        default=2,
        ge=1,
        description="Warn when the position's binlog is among this many oldest binlogs the "
        "server keeps (1: only the oldest).",
        examples=[2],
    )
    warn_bytes: int | None = Field(
        default=None,
        ge=1,
        description="Warn when less binlog than this (bytes) precedes the position on the "
        "server (what the next purge could remove).",
        examples=[1_073_741_824],
    )
    check_interval_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How often the source compares its position with SHOW BINARY LOGS.",
        examples=[30],
    )


def judge(logs: Sequence[tuple[BinlogFile, int]], file: BinlogFile, pos: int,
          guard: BinlogGuard) -> tuple[Level, str]:
    """Where a position stands against the binlogs the server keeps (oldest first).

    ``Level.LIMIT``: its binlog is purged; ``WARN``: close to the oldest; the text
    says why (pure; unit tested).
    """
    if not logs:
        return Level.OK, "the server lists no binary logs"
    names = [f for f, _ in logs]
    oldest = names[0]
    if file < oldest:
        return Level.LIMIT, (f"binlog {file} of the durable position has been purged from the "
                             f"server (oldest kept: {oldest})")
    if file not in names:
        return Level.OK, f"binlog {file} is not (yet) listed by the server"
    index = names.index(file)
    before = sum(size for _, size in logs[:index]) + pos
    if guard.warn_files is not None and index < guard.warn_files:
        return Level.WARN, (f"the durable position {file}:{pos} is in binlog {index + 1} of "
                            f"{len(names)} the server keeps (warn_files: {guard.warn_files}); "
                            "the next purge may remove it")
    if guard.warn_bytes is not None and before < guard.warn_bytes:
        return Level.WARN, (f"only {before} bytes of binlog precede the durable position "
                            f"{file}:{pos} on the server (warn_bytes: {guard.warn_bytes})")
    return Level.OK, f"{index} older binlogs ({before} bytes) precede {file}:{pos}"


def _fix(source: MySqlSource) -> str:
    return ("Keep binlogs longer on the server (binlog_expire_logs_seconds / expire_logs_days) "
            "and find why the source is behind; once its binlog is purged the source cannot "
            f"resume: `cdc reset-source FILE --name {source.name}` makes its next start "
            "snapshot again")


def _binary_logs(source: MySqlSource) -> list[tuple[BinlogFile, int]]:
    from connectors.mysql.source.server import binary_logs, connect

    kwargs = source.connect_kwargs
    try:
        conn = connect(kwargs)
        try:
            with conn.cursor() as cur:
                return binary_logs(cur)
        finally:
            conn.close()
    except CdcError:
        raise
    except Exception as e:  # a driver error: the server is away or refuses us
        where = f"{kwargs.get('host')}:{kwargs.get('port')}"
        raise UnreachableError(f"cannot list the binlogs of the MySQL source at {where}: "
                               f"{type(e).__name__}: {e}") from None


class BinlogWatch:
    """Logs what :func:`judge` finds, at most once per repeat interval per level."""

    def __init__(self, source: MySqlSource, guard: BinlogGuard,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.guard = guard
        self.clock = clock
        self.level = Level.OK
        self._last_said = -1e18

    def observe(self, logs: Sequence[tuple[BinlogFile, int]], position: MySqlPosition) -> Level:
        level, why = judge(logs, position.file, position.pos, self.guard)
        now = self.clock()
        changed = level is not self.level
        self.level = level
        if level is Level.WARN and (changed or now - self._last_said >= WARN_REPEAT_S):
            log.warning("%s: %s; %s", self.source.name, why, _fix(self.source))
            self._last_said = now
        elif level is Level.LIMIT and (changed or now - self._last_said >= ERROR_REPEAT_S):
            log.error("%s: %s: a restart could not resume; %s", self.source.name, why,
                      _fix(self.source))
            self._last_said = now
        return level


def guard(source: MySqlSource, items: Iterator[T], start: Any) -> Iterator[T]:
    """The stream, with the durable position checked against the server's binlogs."""
    config = source.guard
    if config is None:
        return items
    watch = BinlogWatch(source, config)

    def check() -> None:
        position = source.acknowledged or start
        if not isinstance(position, MySqlPosition):
            return
        try:
            logs = _binary_logs(source)
        except CdcError as e:
            log.debug("%s: binlog guard skipped: %s", source.name, e)
            return
        watch.observe(logs, position)

    return watched(items, check, config.check_interval_s)


def inspect_lag(source: MySqlSource, position: Any) -> Mapping[str, float | None]:
    """``cdc status``: binlog bytes the server holds after ``position``, and whether its
    binlog is purged."""
    logs = _binary_logs(source)
    if not isinstance(position, MySqlPosition) or not logs:
        return {"lag_bytes": None, "binlog_files_before": None, "binlog_purged": None}
    names = [f for f, _ in logs]
    if position.file < names[0]:
        return {"lag_bytes": None, "binlog_files_before": 0, "binlog_purged": 1}
    after = 0
    for f, size in logs:
        if f == position.file:
            after += max(0, size - position.pos)
        elif position.file < f:
            after += size
    before = names.index(position.file) if position.file in names else None
    return {"lag_bytes": after, "binlog_files_before": before, "binlog_purged": 0}
