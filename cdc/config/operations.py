"""Operations settings: ``cdc status`` thresholds and source high availability.

``status`` (a root key) holds the limits ``cdc status`` compares the live
pipeline with: past any of them it exits 1, so cron jobs and alerting can use
it. ``ha`` (a key of every source entry) runs a source as an active/standby
pair that shares a Kafka lease (see :mod:`cdc.runtime.lease`).
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from cdc.config.base import ConfigModel, invalid


class StatusThresholds(ConfigModel):
    """Limits for ``cdc status``: exit 1 when the pipeline is past any of them (unset: none)."""

    max_sink_lag_records: int | None = Field(
        default=None,
        ge=0,
        description="Most records any sink partition may lag behind its topic's end.",
        examples=[10_000],
    )
    max_sink_lag_seconds: float | None = Field(
        default=None,
        ge=0,
        description="Oldest age (seconds since it was produced) an unapplied record may have.",
        examples=[300],
    )
    max_checkpoint_age_seconds: float | None = Field(
        default=None,
        ge=0,
        description="Longest time since a source last recorded its position in the offsets "
        "topic (a streaming source records one at least every heartbeat).",
        examples=[120],
    )
    max_dead_letters: int | None = Field(
        default=None,
        ge=0,
        description="Most records a sink's dead-letter topic may hold.",
        examples=[0],
    )
    max_source_lag_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Most log a source's stored position may be behind its server (PostgreSQL: "
        "WAL retained by the slot; MySQL: binlog bytes after the position).",
        examples=[1_073_741_824],
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="How long `cdc status` waits for each server before reporting it "
        "unreachable (exit 3).",
        examples=[10],
    )


class SourceHa(ConfigModel):
    """Active/standby processes of one source, with a Kafka consumer group as the lock.

    Start the same ``cdc source FILE --name N`` twice (two hosts, two pods): the
    process that holds the lease (partition 0 of ``<offsets_topic>.lease``,
    assigned by Kafka to one member of the group ``cdc-lease-<name>``)
    captures; the other waits and takes over when the active one stops or
    dies.
    """

    enabled: bool = Field(
        default=False,
        description="Run as an active/standby pair: only the process holding the source's "
        "Kafka lease captures.",
        examples=[True],
    )
    session_timeout_ms: int = Field(
        default=10_000,
        ge=6_000,
        le=60_000,
        description="How long Kafka waits for a silent active process before handing the "
        "lease to the standby (the takeover time after a crash is about this plus a few "
        "seconds). The active one stops capturing before this much time passes without "
        "Kafka confirming its lease.",
        examples=[10_000],
    )
    renew_interval_ms: int = Field(
        default=2_000,
        ge=200,
        le=20_000,
        description="How often the active process confirms its lease with Kafka.",
        examples=[2_000],
    )

    @model_validator(mode="after")
    def _renew_fits(self) -> Self:
        if self.renew_interval_ms * 3 > self.session_timeout_ms:
            raise invalid(
                "renew_interval_ms must be at most a third of session_timeout_ms",
                "the active process must confirm its lease several times per session; "
                "lower renew_interval_ms or raise session_timeout_ms",
            )
        return self


class LogBudget(ConfigModel):
    """How much log a source may make its server keep, and what happens at the limit.

    The source measures it every ``check_interval_s`` while streaming: at
    ``warn_fraction`` of ``max_bytes`` it logs a WARNING; at ``max_bytes``
    ``warn`` keeps streaming and logs an ERROR every minute, ``stop`` stops the
    source with exit status 78 (a supervisor does not restart it) so an operator
    decides. Stopping does not free the log: the server keeps it until the source
    catches up or its slot is dropped (``cdc reset-source --release``).
    """

    max_bytes: int = Field(
        ge=1,
        description="The most log (bytes) the source may make its server keep.",
        examples=[10_737_418_240],
    )
    warn_fraction: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Log a WARNING from this fraction of max_bytes on.",
        examples=[0.8],
    )
    action: Literal["warn", "stop"] = Field(
        default="warn",
        description="At max_bytes: `warn` keeps streaming and logs an ERROR every minute; "
        "`stop` stops the source with exit status 78 (not restarted by `cdc run`).",
        examples=["stop"],
    )
    check_interval_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How often the source measures the log it holds back.",
        examples=[10],
    )
