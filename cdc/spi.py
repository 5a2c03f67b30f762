"""The small interfaces connectors implement; the engine depends only on these.

A connector package (``connectors/<db>/``) exposes one :class:`Connector`
object, registered under the ``cdc.connectors`` entry-point group, that
supplies a source (readers of the database's changes), a sink dialect (the
SQL differences of applying changes to that database), and the two things the
engine moves without understanding them (Debezium's model: each connector owns
its offset context and its source-info block):

* its **positions** (:class:`PositionCodec`): a :class:`~cdc.positions.Position`
  subclass of its own, stored as ``to_dict()`` in the offsets topic and the
  replica checkpoint rows, and as that dict's compact JSON in each record's
  ``source.cdc_position``; the engine finds the codec by the dict's ``kind``,
  which is the connector's :attr:`Connector.kind`;
* its Debezium **source block** (:class:`SourceBlock`): the Avro fields it adds
  to the common ones and the writer of their bytes.

A new database is a package implementing :class:`Connector` and declaring the
entry point; nothing under ``cdc/`` names it.

Sources are readers: they yield events and know nothing of Kafka or offsets.
The runtime decides order (snapshot, then stream), tracks delivery, and tells
the source how far it may let the database discard log via ``acknowledge``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, Protocol, runtime_checkable

from cdc.events import (
    ChangeEvent,
    Column,
    ColumnType,
    Kind,
    Op,
    SourceInfo,
    TableId,
    TableSchema,
    TransactionInfo,
)
from cdc.positions import Position as Position  # re-exported: connectors' positions derive from it


@dataclass(frozen=True, slots=True)
class Problem:
    """A prerequisite that is not met, with what to do about it.

    ``key`` is the config key (dotted, relative to the source's entry, e.g.
    ``connection``, ``tables.include``, ``slot_name``) the problem is about,
    or "" for the entry as a whole; ``cdc check`` prints it as a key path.
    """

    what: str
    fix: str
    fatal: bool = True
    key: str = ""

    def __str__(self) -> str:
        return f"{self.what}\n    fix: {self.fix}"


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Yielded by stream readers when idle, so the runtime can confirm progress.

    ``position`` is a point the source may be acknowledged to once every event
    before it is durable (it has no events of its own).
    """

    position: Position


@runtime_checkable
class ListsTables(Protocol):
    """A source that can name the tables its filter captures now (``cdc check``).

    Raises :class:`cdc.errors.CdcError` when the server cannot be asked.
    """

    def captured_tables(self) -> list[TableId]: ...


@dataclass(frozen=True, slots=True)
class KeyGenerator:
    """A column whose values a node generates by itself (a sequence, identity or
    auto-increment), as the set of values it may still produce: every value
    ``v`` with ``v % increment == residue`` and ``low <= v <= high``.

    Master-master ``cdc check`` compares these between nodes: two nodes whose
    sets intersect on one table's column can both create the same key.
    """

    table: str  # "<schema or database>.<table>", as in table filters
    column: str
    increment: int  # > 0
    residue: int  # 0 <= residue < increment
    low: int
    high: int
    what: str  # how the database names it, for messages ("sequence mm.t_id_seq")


@runtime_checkable
class ChecksMultiWriter(Protocol):
    """A source that can say what a master-master node needs (``cdc check``): its key
    generators on the captured tables, and tables it cannot replicate safely when
    several nodes write (e.g. without full before-images). Optional.

    Raises :class:`cdc.errors.CdcError` when the server cannot be asked.
    """

    def key_generators(self) -> list[KeyGenerator]: ...

    def multi_writer_problems(self) -> list[Problem]: ...


@runtime_checkable
class ReportsMetrics(Protocol):
    """A source with gauges of its own, exported as ``cdc_source_<key>`` when scraped.

    Called from the metrics server's thread: implementations must be thread-safe
    and quick (cache anything that queries the database). None: unknown now.
    """

    def metrics(self) -> Mapping[str, float | None]: ...


@runtime_checkable
class ChecksOrigin(Protocol):
    """A sink session that can tell, without side effects, whether it could mark its
    writes with an origin (``cdc check`` of a sink with ``origin``): the privileges
    and server settings ``set_origin`` needs. ``key`` of each Problem is ``origin``."""

    def origin_problems(self, origin: str) -> list[Problem]: ...


class SourceConnector(Protocol):
    """A database source. Created from its validated config by the connector."""

    def check(self) -> list[Problem]:
        """Preflight against the live server: every unmet prerequisite, none raised.

        Connection failures, grants, server settings, slots or publications, and
        the tables the filter matches (none is a problem). ``cdc check`` prints
        them; a source runs them at start and refuses to start on a fatal one.
        Messages never contain a password.
        """

    def snapshot(self, resume: Position | None) -> tuple[Position, Iterator[ChangeEvent]]:
        """Open a consistent snapshot: the stream position it matches, and its rows.

        The runner always passes ``resume=None`` today: an interrupted snapshot
        is taken again from the start (no snapshot progress is stored). The
        parameter is kept for connectors that could resume one.
        """

    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        """Changes committed after ``start`` (None: from now), in commit order.

        When idle it must still yield a :class:`Heartbeat` at least every few
        seconds, so the runtime can checkpoint and notice a stop request.
        """

    def acknowledge(self, position: Position) -> None:
        """Everything up to ``position`` is durable: the database may discard it."""

    def close(self) -> None: ...


# --------------------------------------------------------------------------- sinks
#
# A sink dialect is one immutable object per replica database kind: type
# mapping, value conversion and SQL spelling. It opens sessions (one
# connection each), which run the statements and the database's fast paths
# (PostgreSQL COPY, MariaDB multi-row statements). The generic applier in
# cdc/sink decides *what* to apply; these decide *how* it is spelled.


class ErrorKind(StrEnum):
    """How the sink reacts to a database error; each dialect classifies its driver's."""

    UNAVAILABLE = "unavailable"  # replica unreachable or connection lost: reconnect, wait
    TRANSIENT = "transient"  # deadlock, serialization failure, lock timeout: retry (bounded)
    DATA = "data"  # these rows cannot be applied (constraint, value does not fit)
    FATAL = "fatal"  # anything else (privileges, a table changed behind the sink): stop


@dataclass(frozen=True, slots=True, order=True)
class TableName:
    """A table in a replica (or source) database.

    ``schema`` is the PostgreSQL schema or the MySQL database; None means
    the session's default (``search_path`` / the connection's database).
    """

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True, slots=True)
class ReplicaColumn:
    """A column as the database itself describes it (information_schema)."""

    name: str
    type_text: str  # the full type as DDL spells it: numeric(10,2), varchar(20)
    data_type: str  # the base type name, lower case: numeric, varchar, timestamp
    nullable: bool = True
    length: int | None = None  # character (or byte, for binary types) limit
    precision: int | None = None  # numeric precision
    scale: int | None = None  # numeric scale
    fraction: int | None = None  # fractional-second digits of time types
    kind: Kind | None = None  # the neutral kind its values correspond to, if known
    element: Kind | None = None  # for arrays: the element kind


@dataclass(frozen=True, slots=True)
class ReplicaTable:
    name: TableName
    columns: tuple[ReplicaColumn, ...]
    primary_key: tuple[str, ...]

    def column(self, name: str) -> ReplicaColumn | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None


# An integer key range [low, high) on one column, for chunked scans.
KeyRange = tuple[str, int, int]


@runtime_checkable
class TableReader(Protocol):
    """Read access to the tables of one database (a replica, or a source for verify)."""

    def list_tables(self) -> list[TableName]:
        """Every user table (system schemas left out)."""

    def describe(self, table: TableName) -> ReplicaTable | None:
        """The table's columns and primary key; None when it does not exist."""

    def count(self, table: TableName) -> int: ...

    def key_bounds(self, table: TableName, column: str) -> tuple[Any, Any]:
        """``(min, max)`` of a column (``(None, None)`` for an empty table)."""

    def scan(
        self, table: TableName, columns: Sequence[str], *, key_range: KeyRange | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Stream ``columns`` of every row (in no particular order), as driver values."""

    def close(self) -> None: ...


class SinkSession(TableReader, Protocol):
    """One connection to a replica, used by one worker at a time.

    Data-changing methods run inside ``begin()`` .. ``commit()``; DDL runs
    outside a data transaction (MySQL commits implicitly around DDL).
    """

    dialect: SinkDialect

    def execute_ddl(self, statements: Sequence[str]) -> None:
        """Run schema changes, each committed on its own."""

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def savepoint(self) -> None:
        """Open the (single) savepoint used to isolate one change."""

    def rollback_to_savepoint(self) -> None: ...

    def release_savepoint(self) -> None: ...

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def upsert(
        self, table: ReplicaTable, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert ``rows`` (values of ``columns``, which include the key), or update
        just those columns where the key exists."""

    def delete(self, table: ReplicaTable, keys: Sequence[Sequence[Any]]) -> None:
        """Delete by primary key (values in ``table.primary_key`` order)."""

    def truncate(self, table: ReplicaTable) -> None:
        """Remove every row, transactionally."""

    def move(
        self,
        table: ReplicaTable,
        old_key: Sequence[Any],
        columns: Sequence[str],
        row: Sequence[Any],
    ) -> bool:
        """UPDATE the row at ``old_key`` to ``row`` (a primary-key change that keeps
        columns the source did not send); False when no row had ``old_key``."""

    def delete_row(self, table: ReplicaTable, columns: Sequence[str], row: Sequence[Any]) -> bool:
        """Delete ONE row whose ``columns`` hold ``row`` (NULL-safe equality on every
        column: a table without a primary key); False when no row matched."""

    def update_row(
        self,
        table: ReplicaTable,
        columns: Sequence[str],
        row: Sequence[Any],
        set_columns: Sequence[str],
        values: Sequence[Any],
    ) -> bool:
        """Set ``set_columns`` to ``values`` in ONE row whose ``columns`` hold ``row``
        (as :meth:`delete_row` matches); False when no row matched."""

    def set_origin(self, origin: str) -> None:
        """Mark every transaction this session commits as coming from ``origin``."""

    def invalidate(self, table: TableName) -> None:
        """Forget what the session cached about ``table`` (after DDL)."""


@runtime_checkable
class InsertsNewRows(Protocol):
    """A :class:`SinkSession` with a faster write for rows whose keys should not exist yet.

    The applier calls it, instead of :meth:`SinkSession.upsert`, for a table whose
    every change in the batch is a source insert or snapshot read above the
    checkpoint, and for the empty shadow tables of snapshot replication: with
    exactly-once apply such keys cannot be in the replica, unless it diverged
    (rows written by hand, a second writer) or a table is snapshotted again into
    an existing replica table. The session tries a plain insert
    (no conflict handling) and, when a key exists after all, undoes only that
    attempt and upserts the same rows, so the result always equals ``upsert``.
    """

    def insert_new(
        self, table: ReplicaTable, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None: ...


class RunEncoder(Protocol):
    """Encodes runs of rows of one value schema for :class:`CopiesRuns` (compiled once):
    new rows, or (an update encoder) the after images of same-key updates."""

    @property
    def columns(self) -> tuple[str, ...]:
        """The replica columns of each encoded row, in order."""
        ...

    def encode(
        self, values: Sequence[bytes | None], start: int, stop: int, origin: str | None, header: int
    ) -> tuple[int, bytes, list[str]]:
        """``(rows, payload, position texts)`` of the longest prefix of
        ``values[start:stop]`` (framed change values, ``header`` bytes of framing)
        that are source inserts or snapshot reads of full rows (an update encoder:
        updates with a full after image and no before image or one with the same
        key), not of ``origin``, each key once, every value fitting its column
        exactly; never raises for the bytes (a record that does not qualify ends
        the run)."""
        ...


@runtime_checkable
class CopiesRuns(Protocol):
    """A :class:`SinkSession` that writes runs of rows straight from the record bytes.

    The applier's batch-level fast path: consecutive records of a partition that
    qualify (see :meth:`RunEncoder.encode`) become one payload, with no per-row
    objects in between. A run of new rows is written like
    :meth:`InsertsNewRows.insert_new` (a plain insert, the upsert when a key exists
    after all), a run of updates like :meth:`SinkSession.upsert` of full rows.
    """

    def run_encoder(
        self,
        envelope: Mapping[str, Any],
        named: Mapping[str, Any],
        row_columns: Sequence[Column],
        columns: Sequence[str],
        key: Sequence[str],
        replica: ReplicaTable,
        updates: bool = False,
    ) -> RunEncoder | None:
        """The encoder of values of the envelope schema ``envelope`` (its ``after`` row
        has ``row_columns``) into ``columns`` of ``replica``, of new rows or (``updates``)
        of same-key updates; None when it has none."""
        ...

    def insert_run(
        self, table: ReplicaTable, columns: Sequence[str], payload: bytes, rows: int
    ) -> None: ...

    def update_run(
        self, table: ReplicaTable, columns: Sequence[str], payload: bytes, rows: int
    ) -> None:
        """Upsert the full rows of ``payload`` (an update encoder's)."""
        ...


@runtime_checkable
class SinkDialect(Protocol):
    """How one replica database spells what the generic applier needs."""

    kind: str

    def quote(self, identifier: str) -> str: ...

    def table_sql(self, table: TableName) -> str:
        """The quoted, qualified table name."""

    def native_applies(self, connector: str) -> bool:
        """Whether events from ``connector`` (source.connector) carry this database's
        native type names, so DDL may recreate them exactly."""

    def column_ddl(self, column_type: ColumnType, *, native: bool = False, key: bool = False) -> str:
        """The replica's column type for a neutral type; SchemaError if there is none.

        ``key``: the column is part of the primary key (MySQL cannot index TEXT).
        """

    def create_table(
        self,
        table: TableName,
        columns: Sequence[tuple[str, str, bool]],
        primary_key: Sequence[str],
    ) -> list[str]:
        """DDL creating ``table`` from ``(name, type ddl, nullable)`` columns."""

    def add_columns(self, table: TableName, columns: Sequence[tuple[str, str]]) -> list[str]:
        """DDL adding nullable ``(name, type ddl)`` columns."""

    def widen(
        self, existing: ReplicaColumn, column_type: ColumnType, *, native: bool, key: bool = False
    ) -> str | None:
        """The wider type ddl ``existing`` needs to hold ``column_type`` values when
        that is a safe widening (longer varchar, bigger int, more digits); else None.

        Idempotent: for a column that :meth:`column_ddl` (same ``native`` and ``key``)
        created, or that an earlier widening produced, it returns None. For a key
        column (``key``) it never returns a type that cannot be part of a primary key."""

    def alter_column(
        self, table: TableName, column: ReplicaColumn, type_ddl: str | None, nullable: bool
    ) -> list[str]:
        """DDL changing a column's type (``type_ddl`` not None) and/or dropping NOT NULL."""

    def checkpoint_ddl(self, table: TableName) -> list[str]:
        """DDL creating the checkpoint table (see cdc.sink.checkpoint)."""

    def row_versions_ddl(self, table: TableName) -> list[str]:
        """DDL creating a master-master sink's row-version table (see cdc.sink.versionstore):
        ``entry_id`` (64 hex characters, the primary key), ``table_name`` and ``row_key``
        (text), ``ts_ms`` (bigint), ``node`` (up to 64 characters), ``position`` (text),
        ``deleted`` (boolean), ``row_hash`` (32 hex characters, nullable), ``row_image``
        (text, nullable), ``updated_at`` (timestamp)."""

    def conflicts_ddl(self, table: TableName) -> list[str]:
        """DDL creating a master-master sink's conflict log table (see cdc.sink.versionstore):
        ``id`` (64 hex characters, the primary key), ``detected_at`` (timestamp, indexed),
        ``sink``, ``table_name``, ``row_key``, ``conflict_type``, ``resolution``,
        ``decision``, ``local_origin``, ``remote_origin`` (short text), ``local_ts_ms``,
        ``remote_ts_ms`` (bigint), ``local_position``, ``remote_position``, ``local_image``,
        ``remote_image`` (text; nullable but ``id`` .. ``decision``) and ``published``
        (boolean: sent to the conflict topic)."""

    def upsert(self, table: TableName, columns: Sequence[str], key: Sequence[str], rows: int) -> str:
        """A multi-row statement upserting ``rows`` rows of ``columns`` (DB-API %s params)."""

    def delete(self, table: TableName, key: Sequence[str], rows: int) -> str:
        """A statement deleting ``rows`` rows by key."""

    def truncate(self, table: TableName) -> str:
        """A transactional statement removing every row."""

    def to_db(
        self, column_type: ColumnType, target: ReplicaColumn | None
    ) -> Callable[[Any], Any] | None:
        """A converter from canonical values (cdc.events) to driver values for a column
        of ``target``'s type (None: values pass unchanged). The converter raises
        ValueError for a value the column cannot hold exactly (never truncates)."""

    def from_db(
        self, column_type: ColumnType, target: ReplicaColumn | None
    ) -> Callable[[Any], Any] | None:
        """The inverse of ``to_db``: driver values read back to canonical values."""

    def classify(self, error: BaseException) -> ErrorKind: ...

    def default_schema(self, config: Any) -> str | None:
        """Where unqualified replica tables of a sink config live."""

    def connect(self, config: Any) -> SinkSession:
        """A session on the replica of a sink config of this kind."""

    def open_reader(self, connection: Any) -> TableReader:
        """A read-only reader on a connection config of this kind (cdc verify)."""


# --------------------------------------------------------------------------- positions
#
# A position is a frozen value of the connector's own Position subclass
# (cdc/positions.py: ``kind``, ``sort_key``, ``to_dict``, ``last_in_tx``). The engine stores
# ``to_dict()``, orders positions of one kind by ``sort_key()``, and asks the
# codec of the stored ``kind`` to read them back. Stored forms are forever:
# a codec reads every dict its connector ever wrote.


class PositionCodec(Protocol):
    """How a connector's positions are read back (parse, and the sinks' fast paths).

    ``kind`` is the connector's kind, and the ``kind`` class attribute of every
    position it makes (the ``"kind"`` entry of their ``to_dict()``). The fast
    paths answer only for texts of their own kind (None for anything else): the
    engine tries the codec that read the previous text first.
    """

    kind: str

    def from_dict(self, stored: Mapping[str, Any]) -> Position:
        """The position ``to_dict()`` produced (``stored["kind"]`` is this kind; ``v``
        was checked by the engine). Raise PositionError, KeyError, ValueError or
        TypeError for a malformed dict; the engine names the kind and the dict."""

    def parse_text(self, text: str) -> Position | None:
        """A fast parse of a ``cdc_position`` text (the compact JSON of ``to_dict()``,
        as this connector's source writer spells it), or None when the text is not
        in the exact form the fast parser knows: the engine then parses the JSON and
        calls :meth:`from_dict`. Must agree with that path; return None if there is
        no fast path. Called per record by sinks."""

    def text_sort_key(self, text: str) -> tuple[Any, ...] | None:
        """``parse_text(text).sort_key()`` without building the position, or None
        (then the sink's full path decides): the sinks' per-record duplicate check.
        Return None if there is no fast path."""


# --------------------------------------------------------------------------- source blocks
#
# Every change envelope has a ``source`` record, Debezium's: the common fields
# (version, connector, name, ts_ms, snapshot, db, sequence), then fields of the
# connector's own, then cdc's optional extensions (cdc_position, cdc_origin,
# cdc_db_version, cdc_tx_id); cdc/serde/envelope.py holds the common ones.


class SourceWriter(Protocol):
    """Writes the ``source`` record of one table's events (the source's hot path)."""

    def encode(self, source: SourceInfo) -> bytes:
        """The Avro binary of the whole ``source`` record of one event: the common
        fields, the block's own fields, then the extensions with ``cdc_position``
        the compact JSON of ``source.position.to_dict()`` (exactly: sinks parse it).
        Cache what is constant for a transaction; :mod:`cdc.serde.sourceblock` has
        the common parts' bytes and the position text. Raise SerializationError for
        a position of another kind."""


@runtime_checkable
class SourceBlock(Protocol):
    """One Debezium ``source`` record shape: its schema (by description) and writer.

    A connector may write several (MySQL and MariaDB name their blocks apart but
    share the fields). The Avro record is ``{"type": "record", "name": "Source",
    "namespace": namespace, "fields": [common..., *fields, extensions...],
    "connect.name": namespace + ".Source"}``: keep ``fields`` stable, since the
    registered schemas must stay compatible.
    """

    connector: str  # the block's "connector" value and SourceInfo.connector, e.g. "sqlserver"
    namespace: str  # the Source record's Avro namespace, e.g. "io.debezium.connector.sqlserver"
    fields: Sequence[Mapping[str, Any]]  # Avro fields after the common ones, in order

    def writer(self, table: TableId) -> SourceWriter:
        """A writer of this block for events of ``table`` (one per table schema version)."""


# --------------------------------------------------------------------------- the connector


@runtime_checkable
class Connector(Protocol):
    """What a ``connectors/<db>`` package registers (entry point ``cdc.connectors``).

    ``kind`` names it in configs (``kind: <kind>``) and is the kind of its positions.
    """

    kind: str

    def source_config_model(self) -> type[Any]:
        """The pydantic model of its source entries (a cdc.config.sources.SourceConfigBase
        subclass); raise NotImplementedError if it has no source."""

    def sink_config_model(self) -> type[Any]:
        """The model of its sink entries (SinkConfigBase); NotImplementedError: no sink."""

    def create_source(self, config: Any, *, name: str) -> SourceConnector: ...

    def release_source(self, config: Any, *, name: str) -> str | None:
        """Drop what the source holds on the server (e.g. a replication slot), on purpose.

        Returns what was released, or None. Never called implicitly.
        """

    def create_dialect(self) -> SinkDialect: ...

    def position_codec(self) -> PositionCodec:
        """How its positions are read back (one object, reused)."""

    def source_blocks(self) -> Sequence[SourceBlock]:
        """The source blocks its events carry (SourceInfo.connector names one)."""

    def table_id(self, table: TableName) -> TableId:
        """The captured-table id of a table its reader lists (``cdc verify`` maps a
        source table to its topic with it)."""

# --------------------------------------------------------------------------- operations


@runtime_checkable
class InspectsLag(Protocol):
    """A source that can say how far a stored position is behind its server (``cdc status``).

    Called on a source made by ``create_source`` that is not streaming (it may
    open and close its own connections). Keys become the ``lag`` of the
    source in ``cdc status --json``; ``lag_bytes``, when present, is the log
    the server keeps or has written past ``position`` (compared with
    ``status.max_source_lag_bytes``). None values: unknown. Raises
    :class:`cdc.errors.UnreachableError` when the server cannot be asked.
    """

    def inspect_lag(self, position: Position | None) -> Mapping[str, float | None]: ...

# --------------------------------------------------------------------------- snapshots
#
# Optional, for the initial snapshot (issue #13): a row estimate for its progress
# bar (cdc.observability.progress), and resuming an interrupted snapshot at its
# last finished chunk (cdc.runtime.source_runner stores the chunk marks with the
# offsets only once every row before them is acknowledged by Kafka).


@runtime_checkable
class EstimatesRows(Protocol):
    """A source that can estimate the rows its initial snapshot reads (statistics).

    Keys are the qualified table names (``TableId.qualified``); values may be
    off either way (PostgreSQL ``reltuples``, MySQL ``information_schema``'s
    ``TABLE_ROWS``); a table never analysed may be 0. Raises
    :class:`cdc.errors.CdcError` when the server cannot be asked.
    """

    def estimate_rows(self) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """Yielded by a resumable snapshot after the last row of each chunk it read.

    ``after``: the key (primary-key values in key order, each a str, bytes, int,
    float, bool or None) of the chunk's last row, after which a resumed read of
    ``table`` starts; ``done``: ``table`` is finished (``after`` is then None).
    A table read without a key yields only its ``done`` mark.
    """

    table: str
    after: tuple[Any, ...] | None = None
    done: bool = False


class TextForm(IntEnum):
    """What a column's text value is, for encoding it without its Python value.

    A source that hands the engine rows of text (:class:`SnapshotRows` ``texts``)
    names each column's form with the converter that turns the text into its value.
    The form promises: for a text in the form's plain spelling, the converter returns
    exactly the value written here. The engine writes plain spellings directly and
    passes every other text through the converter, as the per-row path would.
    """

    CALL = 0  # no promise: always the converter
    SAME = 1  # the text is the value (a string column)
    INT = 2  # [-]digits -> that integer
    BOOL = 3  # "t" / "f" -> True / False
    DECIMAL = 4  # [-]digits[.digits] -> Decimal(text)
    DATE = 5  # YYYY-MM-DD -> that date
    TIMESTAMP = 6  # YYYY-MM-DD HH:MM:SS[.f{1,6}] -> that naive datetime
    DOUBLE = 7  # what float() reads -> float(text)


class SnapshotRows:
    """Consecutive snapshot rows (``op=r``) of one table, yielded as one item.

    A source that batches its snapshot (:class:`BatchesSnapshot`) yields these
    instead of one :class:`~cdc.events.ChangeEvent` per row, so the runtime can
    encode and produce a chunk with no Python object per row beyond its values.
    Row ``i`` is exactly the event :meth:`event` builds: ``afters[i]`` and
    ``keys[i]`` with the source block ``source_at(i)`` (``source`` is row 0's;
    the others differ from it only in the position's place in the snapshot).
    No row of a batch ends the snapshot (the last row is yielded as an event).

    The rows come either as values (``afters`` and ``keys``) or as text tuples
    (``texts``, columns ``names``, each with its :class:`TextForm` and converter in
    ``forms``); then ``convert`` makes a text tuple the after image and ``key_of``
    the key of an after image, on demand only (the encoder reads the texts).
    """

    __slots__ = ("_afters", "_keys", "convert", "forms", "key_of", "names", "schema", "source",
                 "source_at", "texts", "ts_ms")

    def __init__(
        self,
        schema: TableSchema,
        source: SourceInfo,
        ts_ms: int,
        source_at: Callable[[int], SourceInfo],
        *,
        afters: Sequence[Mapping[str, Any]] | None = None,
        keys: Sequence[Mapping[str, Any] | None] | None = None,
        texts: list[tuple[Any, ...]] | None = None,
        names: Sequence[str] = (),
        forms: Sequence[tuple[TextForm, Callable[[str], Any]]] = (),
        convert: Callable[[Sequence[Any]], Mapping[str, Any]] | None = None,
        key_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None] | None = None,
    ) -> None:
        if afters is None and (texts is None or convert is None or key_of is None):
            raise ValueError("SnapshotRows needs afters, or texts with convert and key_of")
        self.schema = schema
        self.source = source
        self.ts_ms = ts_ms
        self.source_at = source_at
        self._afters = afters
        self._keys = keys
        self.texts = texts
        self.names = tuple(names)
        self.forms = tuple(forms)
        self.convert = convert
        self.key_of = key_of

    def __len__(self) -> int:
        return len(self.texts) if self.texts is not None else len(self.afters)

    @property
    def afters(self) -> Sequence[Mapping[str, Any]]:
        if self._afters is None:
            assert self.texts is not None and self.convert is not None
            self._afters = [self.convert(t) for t in self.texts]
        return self._afters

    @property
    def keys(self) -> Sequence[Mapping[str, Any] | None]:
        if self._keys is None:
            key_of = self.key_of
            assert key_of is not None
            self._keys = [key_of(a) for a in self.afters]
        return self._keys

    def event(self, i: int) -> ChangeEvent:
        """Row ``i`` as the event a per-row snapshot would have yielded."""
        if self._afters is None:  # one row's values only, not the batch's
            assert self.texts is not None and self.convert is not None and self.key_of
            after = self.convert(self.texts[i])
            key = self.key_of(after)
        else:
            after, key = self._afters[i], self.keys[i]
        return ChangeEvent(Op.READ, self.schema, key, None, after, self.source_at(i), self.ts_ms)


class StreamRows(SnapshotRows):
    """Consecutive inserts (``op=c``) of one table in one committed transaction, as one item.

    A source whose stream batches (:class:`BatchesStream`) yields these instead of
    an event per insert, so the runtime encodes the rows from their text (as a
    snapshot batch's) without a row dict, four value objects and an encoder's walk
    per row. Row ``i`` is exactly the event :meth:`event` builds: the insert of
    ``texts[i]``, source block ``source_at(i)``, transaction block ``tx_id``,
    ``first_order + i``, ``first_dc + i`` (the rows are consecutive events of one
    table, so both orders step by one). Only the last row may end the transaction
    (``last_in_tx``; its position then carries it).
    """

    __slots__ = ("first_dc", "first_order", "last_in_tx", "tx_id")

    def __init__(
        self,
        schema: TableSchema,
        source: SourceInfo,
        ts_ms: int,
        source_at: Callable[[int], SourceInfo],
        *,
        texts: list[tuple[Any, ...]],
        names: Sequence[str],
        forms: Sequence[tuple[TextForm, Callable[[str], Any]]],
        convert: Callable[[Sequence[Any]], Mapping[str, Any]],
        key_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None],
        tx_id: str,
        first_order: int,
        first_dc: int,
        last_in_tx: bool,
    ) -> None:
        super().__init__(schema, source, ts_ms, source_at, texts=texts, names=names,
                         forms=forms, convert=convert, key_of=key_of)  # fmt: skip
        self.tx_id = tx_id
        self.first_order = first_order
        self.first_dc = first_dc
        self.last_in_tx = last_in_tx

    def event(self, i: int) -> ChangeEvent:
        """Row ``i`` as the event an unbatched stream would have yielded."""
        assert self.texts is not None and self.convert is not None and self.key_of
        after = self.convert(self.texts[i])
        return ChangeEvent(Op.CREATE, self.schema, self.key_of(after), None, after,
                           self.source_at(i), self.ts_ms,
                           TransactionInfo(self.tx_id, self.first_order + i, self.first_dc + i))


# What a stream yields: events, heartbeats and, where the runtime asked for them
# (BatchesStream), runs of inserts.
StreamItem = ChangeEvent | Heartbeat | StreamRows


@runtime_checkable
class BatchesStream(Protocol):
    """A source whose stream can yield :class:`StreamRows` for runs of inserts.

    The runtime calls :meth:`batch_stream` before :meth:`SourceConnector.stream`
    when it handles them and needs no event per insert (no transaction metadata
    topic, no incremental snapshot to merge by key); without that call the stream
    yields events only.
    """

    def batch_stream(self) -> None: ...


@runtime_checkable
class BatchesSnapshot(Protocol):
    """A source whose snapshot can yield :class:`SnapshotRows` instead of events.

    The runtime calls :meth:`batch_snapshot` before asking for the snapshot when
    it handles batches; without that call the snapshot yields events only.
    """

    def batch_snapshot(self) -> None: ...


@runtime_checkable
class WritesSourceRuns(Protocol):
    """A :class:`SourceWriter` that writes the source blocks of a :class:`SnapshotRows`
    in one call (a snapshot's hot path)."""

    def encode_run(self, rows: SnapshotRows) -> Sequence[bytes]:
        """``[encode(rows.source_at(i)) for i in range(len(rows))]``, byte for byte."""
        ...


@dataclass(frozen=True, slots=True)
class SnapshotResume:
    """Where an interrupted snapshot stopped, as the runner recorded it.

    ``start``: the consistent position of the FIRST attempt, where the stream
    starts after the snapshot (so every change since then is replayed over the
    rows read later). ``attempt``: 1 for the first resume; rows of attempt n get
    positions above every position of attempts before it (the sinks' replay
    check must not take them for duplicates). ``table`` None or ``after`` None:
    that table starts from its first row.
    """

    start: Position
    tables_done: tuple[str, ...]
    table: str | None
    after: tuple[Any, ...] | None
    rows: int
    attempt: int


@runtime_checkable
class ResumesSnapshot(Protocol):
    """A source whose initial snapshot can resume at its last finished chunk.

    ``resumable_snapshot(None)`` is the snapshot of :meth:`SourceConnector.snapshot`
    with :class:`SnapshotChunk` marks between the rows. With ``resume``, it skips
    ``tables_done``, reads ``resume.table`` after ``resume.after`` and the tables not
    begun, at a new consistent point, and returns ``resume.start`` as the position
    the stream starts from. Its rows carry positions at ``resume.start`` whose order
    within the snapshot (the position's index) is above those of earlier attempts.
    When it cannot resume exactly (e.g. a table without a key, whose replayed
    inserts could not be told from rows read already), it takes a fresh snapshot
    instead and returns that snapshot's consistent position: the runner then
    starts its progress afresh.
    """

    def resumable_snapshot(
        self, resume: SnapshotResume | None
    ) -> tuple[Position, Iterator[ChangeEvent | SnapshotChunk | SnapshotRows]]:
        """(:class:`SnapshotRows` only after :meth:`BatchesSnapshot.batch_snapshot`.)"""
        ...

# --------------------------------------------------------------------------- snapshot replication
#
# Issue #13, sn-run: optional interfaces of snapshot replication (cdc/snapshot/).
# A source that implements CopiesTables can serve `cdc snapshot run`; a sink
# dialect that implements SwapsTables can switch a replica to a new copy atomically.


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One consistent copy of a source's captured tables.

    ``position`` is the source's log position the copy is consistent with,
    ``tables`` every table copied (empty ones included), and ``rows`` their
    rows as ``op=r`` events, consumed once. ``close`` ends the read (idempotent).
    """

    position: Position
    tables: tuple[TableId, ...]
    rows: Iterator[ChangeEvent]
    close: Callable[[], None]
    estimated_rows: int | None = None  # the server's estimate of the rows, for progress


@runtime_checkable
class CopiesTables(Protocol):
    """A source that reads its captured tables at one consistent point and sets up
    nothing for a stream (no replication slot, no stored position)."""

    def copy_tables(self) -> TableCopy: ...


@runtime_checkable
class SwapsTables(Protocol):
    """A sink dialect that can load into shadow tables and swap them in atomically."""

    def clone_table(self, table: TableName, like: TableName) -> list[str]:
        """DDL creating the empty ``table`` with the columns and keys of ``like``."""

    def drop_table(self, table: TableName) -> list[str]:
        """DDL dropping ``table`` if it exists."""

    def swap_tables(
        self, swaps: Sequence[tuple[TableName, TableName, TableName | None]]
    ) -> list[str]:
        """Statements renaming, for each ``(live, shadow, old)``, ``live`` to ``old`` and
        ``shadow`` to ``live``, such that run in one transaction every reader sees all
        old tables or all new ones. ``old`` is None for a ``live`` table that does not
        exist yet (nothing to move aside)."""

    def try_lock(self, name: str) -> str:
        """A query returning one row whose first value is true when this session took
        the named session-level lock (never waits)."""

    def unlock(self, name: str) -> str:
        """A query releasing the lock :meth:`try_lock` took."""


# --------------------------------------------------------------------------- incremental snapshots
#
# Optional (issue #13): a source that can copy tables while it streams, by the
# watermark algorithm of Netflix's DBLog (cdc/runtime/incremental.py runs it).
# The engine recognises the source's signal table in the stream, writes the
# window's low and high watermarks into that table, reads chunks through
# ``read_chunk`` between them and emits the chunk rows that no streamed change
# touched, at positions ``position_after`` makes right after the high watermark.


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rows of one table read in primary-key order after a key.

    ``events`` are ``op=r`` events (``source.snapshot`` "incremental") whose
    positions the engine replaces; ``last_key`` is the key to continue after, as
    JSON-compatible values of the connector's choosing (stored with the
    offsets), or None when the table has no rows after this chunk.
    """

    events: Sequence[ChangeEvent]
    last_key: tuple[Any, ...] | None


@runtime_checkable
class SnapshotsIncrementally(Protocol):
    """A source with a signal table that can read chunks of a table while it streams.

    Every method may be called from the thread that iterates ``stream`` and
    opens connections of its own (never the streaming one).
    """

    def signal_table(self) -> TableId | None:
        """The signal table (as the stream's events name it), or None: not configured."""

    def write_signal(self, signal_id: str, signal_type: str, data: str | None) -> None:
        """Insert one row into the signal table, committed on its own (autocommit)."""

    def resolve_table(self, name: str) -> TableId | None:
        """The captured table a signal's ``schema.table`` (``database.table``) names;
        None when the table does not exist or the source does not capture it."""

    def table_rows_estimate(self, table: TableId) -> int:
        """The server's estimate of a table's rows (0 when unknown)."""

    def read_chunk(
        self, table: TableId, after: Sequence[Any] | None, limit: int, condition: str | None
    ) -> Chunk:
        """Up to ``limit`` rows of ``table`` with keys after ``after`` (None: from the
        first), in key order, that satisfy ``condition`` (SQL, None: all); each read
        sees every transaction committed before it started (READ COMMITTED).
        Raises :class:`cdc.errors.CdcError` for a table without a primary key."""

    def position_after(self, position: Position, offset: int, last: bool) -> Position:
        """A position ``offset`` (>= 1) events after ``position`` (the high watermark's,
        which ends its transaction) and before whatever the stream yields next,
        ``last_in_tx`` when ``last``; the runtime resumes after it as after
        ``position`` itself."""
