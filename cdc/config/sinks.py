"""What every sink has: :class:`SinkConfigBase` and its batching, table, error and
decoding settings.

Each connector subclasses :class:`SinkConfigBase` in ``connectors/<db>/config.py``
with its own fields. The topic selection (names, ``*``/``?`` patterns or one
regex) and its translation to a consumer subscription live here; applying
records is :mod:`cdc.sink`'s business.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from cdc.config.base import (
    ConfigModel,
    Name,
    TopicName,
    TopicPattern,
    derived,
    fill_derived,
    invalid,
)
from cdc.config.connection import ConnectionConfig


class SinkBatch(ConfigModel):
    """How much a sink gathers before applying one replica transaction."""

    max_rows: int = Field(
        default=5_000, ge=1, le=1_000_000, description="Rows per transaction.", examples=[5000]
    )
    max_wait_ms: int = Field(
        default=200,
        ge=0,
        le=600_000,
        description="Longest wait to fill a batch (latency bound).",
        examples=[200],
    )


class ColumnFilter(ConfigModel):
    """Which columns of one table a sink writes: ``include`` or ``exclude``."""

    include: tuple[str, ...] | None = Field(
        default=None,
        description="Only these columns (key columns are always written).",
        examples=[["id", "status"]],
    )
    exclude: tuple[str, ...] = Field(
        default=(), description="All columns but these.", examples=[["internal_notes"]]
    )

    @model_validator(mode="after")
    def _one(self) -> Self:
        if self.include is not None and self.exclude:
            raise invalid("both include and exclude are set", "use one of them")
        return self


class SinkTables(ConfigModel):
    """How topics map to replica tables and how tables follow the source."""

    auto_create: bool = Field(
        default=True,
        description="Create missing replica tables from the event schema.",
        examples=[True],
    )
    auto_evolve: bool = Field(
        default=True,
        description="Add columns that appear in the source (never drops any).",
        examples=[True],
    )
    same_namespace: bool = Field(
        default=False,
        description="Write topic `<prefix>.<ns>.<table>` to table `<ns>.<table>` (the source "
        "table's schema or database) instead of the default schema, and let several topics "
        "write one table: what master-master sets, where every node's changes to a table "
        "meet in that table.",
        examples=[False],
    )
    name_map: dict[str, str] = Field(
        default_factory=dict,
        description="Replica table per topic; unmapped topics use the source table name.",
        examples=[{"pg_main.public.orders": "orders_copy"}],
    )
    columns: dict[str, ColumnFilter] = Field(
        default_factory=dict,
        description="Column filter per topic.",
        examples=[{"pg_main.public.users": {"exclude": ["password_hash"]}}],
    )

    @field_validator("name_map")
    @classmethod
    def _non_empty(cls, v: dict[str, str]) -> dict[str, str]:
        for topic, table in v.items():
            if not table.strip():
                raise invalid(
                    f"empty table name for '{topic}'", "give a table name, e.g. orders_copy"
                )
        return v


class RetryPolicy(ConfigModel):
    """Retries of retriable failures (lost connection, deadlock), with exponential backoff."""

    max_attempts: int = Field(
        default=10, ge=1, le=1_000, description="Attempts before giving up.", examples=[10]
    )
    initial_backoff_s: float = Field(
        default=0.5,
        gt=0,
        le=3600,
        description="Wait after the first failure; doubles each time.",
        examples=[0.5],
    )
    max_backoff_s: float = Field(
        default=30.0, gt=0, le=3600, description="Longest wait.", examples=[30]
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.initial_backoff_s > self.max_backoff_s:
            raise invalid(
                "initial_backoff_s is larger than max_backoff_s",
                "make max_backoff_s >= initial_backoff_s",
            )
        return self


class SinkErrors(ConfigModel):
    """What a sink does with a record it cannot apply."""

    policy: Literal["fail", "dead_letter"] = Field(
        default="fail",
        description="`fail`: stop the sink (nothing is skipped); `dead_letter`: send the record "
        "to `dead_letter_topic` with the error in its headers, and continue.",
        examples=["dead_letter"],
    )
    dead_letter_topic: TopicName = derived(
        "cdc.dlq.<name>",
        "Topic for records that could not be applied.",
        examples=["cdc.dlq.replica_pg"],
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy, description="Retries before a failure counts."
    )


class SinkDecoding(ConfigModel):
    """Bounds on what one consumed record may decode into (topics hold bytes anyone with
    produce rights wrote); a record over them is a bad record, handled as
    ``errors.policy`` says."""

    max_items: int = Field(
        default=1_000_000,
        ge=1,
        le=1_000_000_000,
        description="Array items plus map entries in one record, over all its arrays and maps.",
        examples=[1_000_000],
    )
    max_record_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        le=2**31 - 1,
        description="Longest Avro body (after the 5-byte framing) a record may have.",
        examples=[67_108_864],
    )


def _pattern_regex(pattern: str) -> str:
    """A wildcard topic pattern as an anchored regex that librdkafka understands."""
    out = []
    for c in pattern:
        out.append({"*": ".*", "?": ".", ".": "\\."}.get(c, c))
    return "^" + "".join(out) + "$"


class SinkConfigBase(ConfigModel):
    """What every sink has. Each connector subclasses it with its own fields."""

    derived_defaults: ClassVar[Mapping[str, str]] = {
        "consumer_group": "cdc-sink-{name}",
        "errors.dead_letter_topic": "cdc.dlq.{name}",
    }

    name: Name = Field(description="Unique name of the sink.", examples=["replica_pg"])
    kind: str = Field(description="Kind of the replica database.", examples=["postgres", "mysql"])
    topics: tuple[TopicPattern, ...] = Field(
        default=(),
        description="Topics to apply: names or `*`/`?` patterns. Set this or topic_regex.",
        examples=[["pg_main.public.*"]],
    )
    topic_regex: str | None = Field(
        default=None,
        description="Regular expression selecting topics, instead of topics.",
        examples=[r"pg_main\.public\.(orders|customers)"],
    )
    consumer_group: str = derived(
        "cdc-sink-<name>", "Kafka consumer group.", examples=["cdc-sink-replica_pg"]
    )
    target: ConnectionConfig = Field(description="The replica database.")
    batch: SinkBatch = Field(
        default_factory=SinkBatch, description="Batching of replica transactions."
    )
    tables: SinkTables = Field(default_factory=SinkTables, description="Topic to table mapping.")
    errors: SinkErrors = Field(default_factory=SinkErrors, description="Failure handling.")
    decoding: SinkDecoding = Field(
        default_factory=SinkDecoding, description="Bounds on decoding one record."
    )
    transactional: bool = Field(
        default=False,
        description="End batches only at source transaction ends, so a source transaction's "
        "rows that share a partition apply in one replica transaction (a batch may then "
        "exceed batch.max_rows).",
        examples=[False],
    )
    origin: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Tag written with each change the sink applies, so a source reading the "
        "replica can skip them (master-master loop prevention).",
        examples=["replica_pg"],
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_derived(cls, data: Any) -> Any:
        return fill_derived(cls.derived_defaults, data)

    @field_validator("topic_regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise invalid(
                    f"not a valid regular expression: {e}", "check escaping; e.g. pg_main\\..*"
                ) from None
        return v

    @model_validator(mode="after")
    def _one_selection(self) -> Self:
        if bool(self.topics) == (self.topic_regex is not None):
            raise invalid(
                "set exactly one of topics and topic_regex",
                'e.g. topics: ["pg_main.public.*"]',
            )
        return self

    def subscribes(self, topic: str) -> bool:
        """Whether this sink consumes ``topic``."""
        if self.topic_regex is not None:
            return re.fullmatch(self.topic_regex, topic) is not None
        return any(fnmatchcase(topic, p) for p in self.topics)

    def subscription(self) -> list[str]:
        """Topics for ``Consumer.subscribe``: names, and ``^``-anchored regexes for patterns."""
        if self.topic_regex is not None:
            rx = self.topic_regex
            return [rx if rx.startswith("^") else "^" + rx]
        return [_pattern_regex(p) if any(c in p for c in "*?") else p for p in self.topics]
