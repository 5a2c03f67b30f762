"""The small interfaces connectors implement; the engine depends only on these.

A connector package (``connectors/<db>/``) exposes one :class:`Connector`
object, registered under the ``cdc.connectors`` entry-point group, that
supplies a source (readers of the database's changes) and a sink dialect (the
SQL differences of applying changes to that database).

Sources are readers: they yield events and know nothing of Kafka or offsets.
The runtime decides order (snapshot, then stream), tracks delivery, and tells
the source how far it may let the database discard log via ``acknowledge``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from cdc.events import ChangeEvent, ColumnType, TableId, TableSchema
from cdc.positions import MySqlPosition, PgPosition

Position = PgPosition | MySqlPosition


@dataclass(frozen=True, slots=True)
class Problem:
    """A prerequisite that is not met, with what to do about it."""

    what: str
    fix: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.what}\n    fix: {self.fix}"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Yielded by stream readers when idle, so the runtime can confirm progress.

    ``position`` is a point the source may be acknowledged to once every event
    before it is durable (it has no events of its own).
    """

    position: Position


@dataclass(frozen=True, slots=True)
class SnapshotProgress:
    table: TableId
    rows_done: int
    rows_estimated: int


StreamItem = ChangeEvent | Heartbeat


@runtime_checkable
class SourceConnector(Protocol):
    """A database source. Created from its validated config by the connector."""

    def check(self) -> list[Problem]:
        """Preflight: every unmet prerequisite, none raised."""

    def snapshot(self, resume: Position | None) -> tuple[Position, Iterator[ChangeEvent]]:
        """Open a consistent snapshot: the stream position it matches, and its rows.

        ``resume`` is the last durable snapshot position when resuming an
        interrupted snapshot (rows up to it need not be read again).
        """

    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        """Changes committed after ``start`` (None: from now), in commit order.

        When idle it must still yield a :class:`Heartbeat` at least every few
        seconds, so the runtime can checkpoint and notice a stop request.
        """

    def acknowledge(self, position: Position) -> None:
        """Everything up to ``position`` is durable: the database may discard it."""

    def close(self) -> None: ...


@runtime_checkable
class SinkDialect(Protocol):
    """How one replica database spells the operations the generic applier needs."""

    def column_ddl(self, column_type: ColumnType) -> str:
        """The replica's column type for a neutral type; raise SchemaError if none."""

    def create_table(self, schema: TableSchema, name: str) -> str: ...

    def add_columns(self, schema: TableSchema, name: str, columns: Sequence[str]) -> str: ...

    def upsert(self, schema: TableSchema, name: str, columns: Sequence[str], rows: int) -> str:
        """A statement upserting ``rows`` rows of ``columns`` (multi-row)."""

    def delete(self, schema: TableSchema, name: str, rows: int) -> str: ...

    def truncate(self, name: str) -> str: ...

    def to_db(self, column_type: ColumnType, value: Any) -> Any:
        """Convert a canonical value into what the driver accepts for the column."""


@runtime_checkable
class Connector(Protocol):
    """What a ``connectors/<db>`` package registers."""

    kind: str

    def source_config_model(self) -> type[Any]: ...

    def sink_config_model(self) -> type[Any]: ...

    def create_source(self, config: Any, *, name: str) -> SourceConnector: ...

    def create_dialect(self) -> SinkDialect: ...
