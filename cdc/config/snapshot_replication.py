"""The ``snapshot_replication`` block of a source: copies of its tables on a schedule.

A source with this block is not streamed: ``cdc source`` (and ``cdc run``)
runs its schedule instead, each run a consistent point-in-time copy of the
source's ``tables`` published to its topics; the sinks that subscribe to
those topics switch their replica tables to each new copy atomically
(:mod:`cdc.snapshot`). ``cdc snapshot run FILE`` performs one run on demand.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from cdc.config.base import ConfigModel, TopicName, invalid
from cdc.snapshot.schedule import Cron, CronError, Schedule


class SnapshotReplicationConfig(ConfigModel):
    """Snapshot replication: point-in-time copies of the source's tables, no change stream.

    Set at most one of ``interval_s`` and ``cron``; with neither, runs happen
    only on demand (``cdc snapshot run``).
    """

    interval_s: float | None = Field(
        default=None,
        gt=0,
        description="Run every this many seconds (counted from the start of the last run).",
        examples=[3600],
    )
    cron: str | None = Field(
        default=None,
        description="Run at the times of this five-field cron expression "
        "(minute hour day-of-month month day-of-week, UTC).",
        examples=["0 2 * * *"],
    )
    runs_topic: TopicName = Field(
        default="cdc.snapshot-runs",
        description="Compacted topic holding the run records (begin, end, each replica's switch) "
        "that `cdc snapshot list` shows and replicas follow.",
        examples=["cdc.snapshot-runs"],
    )
    switch_timeout_s: float = Field(
        default=900.0,
        gt=0,
        description="How long `cdc snapshot run` waits for every replica to switch to the new "
        "copy before it exits 1.",
        examples=[900],
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                Cron.parse(v)
            except CronError as e:
                raise invalid(f"not a valid cron expression: {e}",
                              "five fields, e.g. '0 2 * * *' (02:00 UTC every day)") from None
        return v

    @model_validator(mode="after")
    def _one(self) -> Self:
        if self.interval_s is not None and self.cron is not None:
            raise invalid("set at most one of interval_s and cron",
                          "e.g. interval_s: 3600, or cron: '0 2 * * *'")
        return self

    def schedule(self) -> Schedule | None:
        """The schedule, or None for on-demand runs only."""
        if self.cron is not None:
            return Schedule(cron=Cron.parse(self.cron))
        if self.interval_s is not None:
            return Schedule(interval_s=self.interval_s)
        return None
