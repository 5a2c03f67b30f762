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
        description="Longest a batch keeps gathering while records keep arriving (latency "
        "bound). A batch is applied before that as soon as the consumer has no more records "
        "fetched (after `min_wait_ms`) or it holds `max_rows`: under a steady trickle batches "
        "stay small and fast, under load they grow with the records that arrive while the "
        "previous batch applies.",
        examples=[200],
    )
    min_wait_ms: int = Field(
        default=20,
        ge=0,
        le=600_000,
        description="Shortest a batch gathers before it is applied when the consumer has no "
        "more records fetched. 20 (default): at 5,000 rows/s on an idle 2-core machine it gave "
        "a p99 commit-to-apply latency of 98-139 ms against 115-290 ms with 50, for about a "
        "third more sink CPU at that rate (docs/BENCHMARKS.md); a backlog still drains in "
        "full batches. 0 applies at once (more, smaller replica transactions); "
        "`min_wait_ms` = `max_wait_ms` gives fixed-time batches.",
        examples=[20],
    )

    @model_validator(mode="before")
    @classmethod
    def _default_min_wait_within_max(cls, data: Any) -> Any:
        """The default ``min_wait_ms`` never exceeds a ``max_wait_ms`` the user set lower
        (``max_wait_ms: 20`` alone stays valid); an explicit larger one is an error."""
        if isinstance(data, dict) and "min_wait_ms" not in data:
            top = data.get("max_wait_ms")
            if isinstance(top, str) and top.strip().isdigit():  # from a CDC_* variable
                top = int(top)
            if isinstance(top, int) and not isinstance(top, bool) and 0 <= top < 50:
                return {**data, "min_wait_ms": top}
        return data

    @model_validator(mode="after")
    def _waits_ordered(self) -> Self:
        if self.min_wait_ms > self.max_wait_ms:
            raise invalid(
                "min_wait_ms is larger than max_wait_ms",
                "make max_wait_ms >= min_wait_ms",
            )
        return self


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


Resolution = Literal["last_writer_wins", "priority", "keep_local"]


class ConflictTable(ConfigModel):
    """Conflict settings of one replica table (overrides the sink's)."""

    resolution: Resolution = Field(
        description="How a conflict on this table is resolved (see conflicts.resolution).",
        examples=["priority"],
    )


class ConflictLog(ConfigModel):
    """Where detected conflicts are recorded, and for how long."""

    table: str = Field(
        default="cdc_conflicts",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Table of the replica (in the sink's default schema) that records each "
        "conflict, written in the same transaction as the change.",
        examples=["cdc_conflicts"],
    )
    topic: TopicName | None = Field(
        default=None,
        description="Kafka topic that receives each conflict as JSON after the replica commit "
        "(keyed by table and row key); default `cdc_conflicts.<sink name>`.",
        examples=["cdc_conflicts.node_a"],
    )
    retention_hours: int = Field(
        default=168,
        ge=1,
        le=87_600,
        description="Conflict rows older than this are deleted by the sink (hourly); the topic "
        "gets the same retention.ms.",
        examples=[168],
    )


class ConflictSettings(ConfigModel):
    """Master-master conflict handling: row versions, detection, resolution, conflict log.

    Set on the sink of each node of a master-master pipeline (with ``origin``, the node's
    name). Absent: the sink applies every change as a one-way replica does."""

    resolution: Resolution = Field(
        default="last_writer_wins",
        description="`last_writer_wins`: the write with the higher version (origin commit "
        "time in ms, then node name, then source position) wins; `priority`: the write of the "
        "node listed first in `priority` wins a conflict within `priority_window_ms`, later "
        "writes by version; `keep_local`: the "
        "node's own row is kept and the remote write only logged (nodes may then differ).",
        examples=["last_writer_wins"],
    )
    tables: dict[str, ConflictTable] = Field(
        default_factory=dict,
        description="Per replica table (`schema.table`, or `table` in the default schema): "
        "its own resolution.",
        examples=[{"mm.accounts": {"resolution": "priority"}}],
    )
    priority: tuple[str, ...] = Field(
        default=(),
        description="Node names, highest priority first (policy `priority`); unlisted nodes "
        "come last.",
        examples=[["node_a", "node_b"]],
    )
    priority_window_ms: int = Field(
        default=10_000,
        ge=0,
        le=86_400_000,
        description="Policy `priority`: each rank step of a node counts as this much later "
        "in the order of writes, so a higher-ranked node's write beats a lower-ranked one "
        "made up to this long after it (later ones win as usual).",
        examples=[10000],
    )
    own_topics: tuple[TopicPattern, ...] = Field(
        default=(),
        description="Topics of this node's own source (names or `*`/`?` patterns): consumed "
        "to learn the versions of local writes, never applied as such.",
        examples=[["node_a.mm.*"]],
    )
    own_topic_regex: str | None = Field(
        default=None,
        description="Regular expression selecting the own topics, instead of own_topics.",
        examples=[r"node_a\.mm\..*"],
    )
    versions_table: str = Field(
        default="cdc_row_versions",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Table of the replica (in the sink's default schema) holding the version "
        "of the last write seen per row.",
        examples=["cdc_row_versions"],
    )
    max_clock_skew_ms: int = Field(
        default=60_000,
        ge=0,
        le=86_400_000,
        description="A write whose origin timestamp is further than this ahead of the sink's "
        "clock is a `clock_skew` conflict.",
        examples=[60000],
    )
    on_clock_skew: Literal["flag", "reject"] = Field(
        default="flag",
        description="`flag`: log the write and resolve it as usual; `reject`: log it and do "
        "not apply it (nodes may then differ until an operator acts).",
        examples=["flag"],
    )
    log: ConflictLog = Field(default_factory=ConflictLog, description="The conflict log.")

    @field_validator("own_topic_regex")
    @classmethod
    def _own_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise invalid(
                    f"not a valid regular expression: {e}", "check escaping; e.g. node_a\\..*"
                ) from None
        return v

    @model_validator(mode="after")
    def _own_selection(self) -> Self:
        if self.own_topics and self.own_topic_regex is not None:
            raise invalid("both own_topics and own_topic_regex are set", "use one of them")
        if len(set(self.priority)) != len(self.priority):
            raise invalid("a node is listed twice in priority", "list each node once")
        return self

    def resolution_of(self, table: str) -> str:
        """The resolution of a replica table (``schema.table``), or the sink's."""
        t = self.tables.get(table)
        if t is None and "." in table:
            t = self.tables.get(table.split(".", 1)[1])
        return self.resolution if t is None else t.resolution

    def owns(self, topic: str) -> bool:
        """Whether ``topic`` is one of this node's own topics."""
        if self.own_topic_regex is not None:
            return re.fullmatch(self.own_topic_regex, topic) is not None
        return any(fnmatchcase(topic, p) for p in self.own_topics)


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

    conflicts: ConflictSettings | None = Field(
        default=None,
        description="Master-master conflict handling (needs `origin`, the node's name); "
        "see docs/MASTER-MASTER.md.",
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

    @model_validator(mode="after")
    def _conflicts_need_origin(self) -> Self:
        if self.conflicts is not None and self.origin is None:
            raise invalid(
                "conflicts is set but origin is not",
                "set origin to this node's name (its source's name), e.g. origin: node_a",
            )
        return self

    def subscribes(self, topic: str) -> bool:
        """Whether this sink consumes ``topic``."""
        if self.conflicts is not None and self.conflicts.owns(topic):
            return True
        if self.topic_regex is not None:
            return re.fullmatch(self.topic_regex, topic) is not None
        return any(fnmatchcase(topic, p) for p in self.topics)

    def subscription(self) -> list[str]:
        """Topics for ``Consumer.subscribe``: names, and ``^``-anchored regexes for patterns."""
        if self.topic_regex is not None:
            rx = self.topic_regex
            out = [rx if rx.startswith("^") else "^" + rx]
        else:
            out = [_pattern_regex(p) if any(c in p for c in "*?") else p for p in self.topics]
        c = self.conflicts
        if c is not None:  # the node's own topics: consumed to learn local versions
            if c.own_topic_regex is not None:
                rx = c.own_topic_regex
                out.append(rx if rx.startswith("^") else "^" + rx)
            else:
                out += [_pattern_regex(p) if any(ch in p for ch in "*?") else p
                        for p in c.own_topics if p not in out]
        return out
