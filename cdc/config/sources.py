"""What every source has: :class:`SourceConfigBase`, its table filter and snapshot mode.

Each connector subclasses :class:`SourceConfigBase` in
``connectors/<db>/config.py`` with its own fields; ``kind`` selects the
subclass (see :func:`cdc.config.loader.config_model`). Topic names of a
source's tables (:meth:`SourceConfigBase.topic_for`) are decided here. This
module names no database beyond the wording of its help texts.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from fnmatch import fnmatchcase
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from cdc.config.base import ConfigModel, Name, TopicName, derived, fill_derived, invalid
from cdc.config.connection import ConnectionConfig
from cdc.config.operations import SourceHa
from cdc.config.snapshot_replication import SnapshotReplicationConfig
from cdc.events import TableId


def _check_table_pattern(v: str) -> str:
    left, dot, right = v.partition(".")
    if not dot or not left or not right:
        raise invalid(
            "not a schema.table pattern",
            "write schema.table (PostgreSQL) or database.table (MySQL), with * wildcards, e.g. public.*",
        )
    return v


TablePattern = Annotated[str, AfterValidator(_check_table_pattern)]


class TableFilter(ConfigModel):
    """Which tables a source captures: ``include`` minus ``exclude``.

    Patterns are ``schema.table`` (PostgreSQL) or ``database.table`` (MySQL)
    with shell wildcards (``*``, ``?``, ``[abc]``), matched case-sensitively.
    """

    include: tuple[TablePattern, ...] = Field(
        default=("*.*",),
        min_length=1,
        description="Tables to capture.",
        examples=[["public.*", "inventory.orders"]],
    )
    exclude: tuple[TablePattern, ...] = Field(
        default=(),
        description="Tables to leave out even if included.",
        examples=[["public.audit_*"]],
    )

    def matches(self, qualified: str) -> bool:
        """Whether ``schema.table`` (or ``database.table``) is captured."""
        return any(fnmatchcase(qualified, p) for p in self.include) and not any(
            fnmatchcase(qualified, p) for p in self.exclude
        )


class SnapshotConfig(ConfigModel):
    """The initial copy of existing rows, before streaming changes."""

    mode: Literal["initial", "never", "initial_only", "always"] = Field(
        default="initial",
        description="`initial`: snapshot when there is no stored position, then stream; "
        "`never`: stream only, from the current position; `initial_only`: snapshot, then stop; "
        "`always`: snapshot at every start, then stream.",
        examples=["initial"],
    )
    chunk_size: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Rows read per query while snapshotting.",
        examples=[10_000],
    )


def _check_signal_table(v: str) -> str:
    _check_table_pattern(v)
    if any(ch in v for ch in "*?["):
        raise invalid("the signal table is one table, not a pattern",
                      "name it exactly, e.g. public.cdc_signal (database.cdc_signal on MySQL)")
    return v


class SignalConfig(ConfigModel):
    """A signal table in the source database (Debezium's shape: id, type, data).

    Rows inserted there reach the source through its own change stream: an
    ``execute-snapshot`` row starts an incremental snapshot of the tables it
    names while the stream goes on, ``stop-snapshot`` stops it. The source
    also writes its snapshot windows' watermarks there. The table must be
    captured (``tables.include``) and is never published to Kafka.
    """

    table: Annotated[str, AfterValidator(_check_signal_table)] = Field(
        description="The signal table, `schema.table` (PostgreSQL) or `database.table` (MySQL); "
        "columns `id` (primary key, varchar(42)), `type` (varchar(32)), `data` (varchar(2048)).",
        examples=["public.cdc_signal"],
    )
    chunk_size: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="Rows read per chunk of an incremental snapshot (one watermark window each).",
        examples=[1024],
    )
    max_backlog: int | None = Field(
        default=None,
        ge=0,
        description="An incremental snapshot reads its next chunk only when every consumer "
        "group of the table's topic (stable, assigned to it, committing offsets as cdc sinks "
        "do) is at most this many records behind, so the stream's changes never queue behind "
        "more than about a chunk and a half of rows; unset: half of `chunk_size`; 0: never "
        "waits.",
        examples=[512],
    )


class SourceConfigBase(ConfigModel):
    """What every source has. Each connector subclasses it with its own fields.

    ``kind`` selects the subclass; ``derived_defaults`` fills name-based
    defaults so two sources never share a slot, topic prefix or group by
    accident.
    """

    derived_defaults: ClassVar[Mapping[str, str]] = {"topic_prefix": "{name}"}

    name: Name = Field(
        description="Unique name of the source (lower-case letters, digits, `_`).",
        examples=["pg_main"],
    )
    kind: str = Field(description="Connector kind.", examples=["postgres", "mysql"])
    topic_prefix: TopicName = derived(
        "<name>",
        "Prefix of this source's topics: `<prefix>.<schema>.<table>`.",
        examples=["pg_main"],
    )
    connection: ConnectionConfig = Field(description="How to reach the source database.")
    tables: TableFilter = Field(default_factory=TableFilter, description="Which tables to capture.")
    snapshot: SnapshotConfig = Field(
        default_factory=SnapshotConfig, description="Initial copy of existing rows."
    )
    heartbeat_interval_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="How often an idle source confirms its position, so the database can "
        "discard log even when captured tables do not change.",
        examples=[10],
    )
    tombstones_on_delete: bool = Field(
        default=True,
        description="Follow each delete with a tombstone (null value) so compaction can drop the key "
        "(not for tables without a primary key: they have no key).",
        examples=[True],
    )
    transaction_topic: bool = Field(
        default=False,
        description="Also write transaction BEGIN/END markers to `<prefix>.transaction`.",
        examples=[False],
    )
    skip_replicated_changes: bool = Field(
        default=False,
        description="Publish only changes made locally: leave out every transaction a cdc sink "
        "with an `origin` applied to this database (PostgreSQL: every transaction that carries a "
        "replication origin). Master-master replication sets it on every node's source so changes do "
        "not loop; one-way pipelines leave it off.",
        examples=[False],
    )
    ha: SourceHa = Field(default_factory=SourceHa, description="Active/standby processes.")
    snapshot_replication: SnapshotReplicationConfig | None = Field(
        default=None,
        description="Make this a snapshot-replication source: instead of streaming changes, copy "
        "its tables at one consistent point per run, on a schedule or on demand "
        "(`cdc snapshot run`); replicas switch to each copy atomically.",
        examples=[{"interval_s": 3600}],
    )
    signal: SignalConfig | None = Field(
        default=None,
        description="A signal table that triggers incremental snapshots while streaming "
        "(none: no signals).",
        examples=[{"table": "public.cdc_signal"}],
    )

    @model_validator(mode="before")
    @classmethod
    def _fill_derived(cls, data: Any) -> Any:
        return fill_derived(cls.derived_defaults, data)

    @model_validator(mode="after")
    def _signal_captured(self) -> SourceConfigBase:
        if self.signal is not None and not self.tables.matches(self.signal.table):
            raise invalid(
                f"signal.table {self.signal.table} is not captured by tables",
                f"add {self.signal.table} to tables.include (the source sees signals "
                "through its change stream)",
            )
        return self

    def topic_for(self, table: TableId) -> str:
        """The data topic of a table: ``<prefix>.<schema or database>.<table>``."""
        return f"{self.topic_prefix}.{table.qualified}"

    @property
    def transaction_topic_name(self) -> str:
        return f"{self.topic_prefix}.transaction"

    def unique_keys(self) -> Mapping[str, Hashable]:
        """Fields that must not repeat among sources of this kind, with the comparison key.

        The engine reports duplicates without knowing what the fields mean
        (a replication slot per database, a MySQL server id...).
        """
        return {}
