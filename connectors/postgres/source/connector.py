"""The PostgreSQL source: preflight checks, publication and slot set-up, and the readers.

:class:`PostgresSource` is what ``CONNECTOR.create_source`` returns to the
runtime (:class:`cdc.spi.SourceConnector`). It decides *what* to read and
prepares the server for it; :mod:`.snapshot` and :mod:`.replication` do the
reading.

Set-up rules (SOURCE.md has the operator's view):

* The publication is created or extended only with ``create_publication``;
  otherwise a missing publication or table is a fatal error that prints the
  statement to run.
* The slot is created when absent - together with the snapshot that matches
  it - and never dropped or re-created behind the operator's back: a slot
  that vanished while offsets exist is fatal. :func:`drop_slot` is the one
  explicit way to drop it.
* A snapshot when the slot already exists (snapshot mode ``always``, or a
  crash during the first snapshot) exports its snapshot from a *temporary*
  slot created for the purpose; the stream then starts at that temporary
  slot's consistent point on the permanent slot, whose confirmed position is
  never ahead of it. Nothing is dropped, and the hand-over is exact.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import make_conninfo

from cdc.errors import ConfigError, PrerequisiteError
from cdc.events import ChangeEvent, TableId
from cdc.spi import (
    Chunk,
    KeyGenerator,
    Position,
    Problem,
    SnapshotChunk,
    SnapshotResume,
    SnapshotRows,
    StreamItem,
    TableCopy,
)
from connectors.postgres import guardrail
from connectors.postgres.config import PostgresSourceConfig
from connectors.postgres.position import PgPosition
from connectors.postgres.source import catalog, multiwriter
from connectors.postgres.source.catalog import PublicationFacts, ServerFacts
from connectors.postgres.source.changes import TransactionListener
from connectors.postgres.source.incremental import SIGNAL_TABLE_DDL, IncrementalReads, split_name
from connectors.postgres.source.incremental import position_after as _position_after
from connectors.postgres.source.replication import StreamReader, StreamSettings
from connectors.postgres.source.snapshot import SnapshotReader
from connectors.postgres.source.wire import ReplicationConnection, classify
from connectors.postgres.types import libpq_options

log = logging.getLogger(__name__)

_OPERATIONS = ("insert", "update", "delete", "truncate")
# 12: the catalog queries read pg_attribute.attgenerated.
MIN_VERSION_NUM = 120000


def conninfo(config: PostgresSourceConfig, name: str, *, replication: bool = False) -> str:
    """libpq connection string with the type table's session settings pinned.

    pgoutput and snapshot values are the server's text output, which depends
    on DateStyle, TimeZone and friends: :func:`connectors.postgres.types.libpq_options`.
    A user-given ``options`` keyword is kept (ours come last and win).

    Built with psycopg's ``make_conninfo`` from ``connect_kwargs`` rather than
    ``PostgresConnection.conninfo``: the latter appends keywords to a URI dsn
    with ``urlencode``, whose ``+`` for spaces libpq does not decode.
    """
    c = config.connection
    options = " ".join(x for x in (c.options.get("options"), libpq_options()) if x)
    extra: dict[str, str | int | None] = {"options": options}
    if c.application_name is None:
        extra["application_name"] = f"cdc-{name}"
    if replication:
        extra["replication"] = "database"
    kwargs = dict(c.connect_kwargs(**extra))
    base = str(kwargs.pop("conninfo", "") or "")
    return make_conninfo(base, **kwargs)


def _where(config: PostgresSourceConfig) -> str:
    c = config.connection
    return f"{c.host}:{c.port}/{c.database}" if c.dsn is None else "the configured dsn"


def publication_statement(
    config: PostgresSourceConfig, tables: list[tuple[int, str, str]], version_num: int
) -> sql.Composed:
    """``CREATE PUBLICATION`` for the configured tables, as narrow as the filter allows.

    ``*.*`` without excludes -> FOR ALL TABLES; only ``schema.*`` patterns
    without excludes (PostgreSQL 15+) -> FOR TABLES IN SCHEMA, so tables
    created later are published too; anything else -> FOR TABLE with the
    tables that match now.
    """
    name = sql.Identifier(config.publication_name)
    include, exclude = config.tables.include, config.tables.exclude
    if not exclude and "*.*" in include:
        return sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(name)
    schemas = [p[:-2] for p in include if p.endswith(".*")]
    if (
        not exclude
        and version_num >= 150000
        and len(schemas) == len(include)
        and not any(ch in s for s in schemas for ch in "*?[")
    ):
        return sql.SQL("CREATE PUBLICATION {} FOR TABLES IN SCHEMA {}").format(
            name, sql.SQL(", ").join(sql.Identifier(s) for s in schemas)
        )
    if not tables:
        return sql.SQL("CREATE PUBLICATION {}").format(name)
    return sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
        name, sql.SQL(", ").join(_table_ident(s, t) for _, s, t in tables)
    )


def _table_ident(schema: str, table: str) -> sql.Composed:
    return sql.SQL(".").join([sql.Identifier(schema), sql.Identifier(table)])


def _render(conn: psycopg.Connection[Any], stmt: sql.Composable) -> str:
    return stmt.as_string(conn)


def drop_slot(config: PostgresSourceConfig, name: str | None = None) -> bool:
    """Drop the source's replication slot (the explicit ``cdc reset-source --release``).

    Returns False when there is no such slot. Refuses while a reader uses
    it: stop the source first. After this the source's stored offsets are
    useless; reset them so the next start snapshots again.
    """
    with psycopg.connect(conninfo(config, name or config.name), autocommit=True) as conn:
        slot = catalog.slot_facts(conn, config.slot_name)
        if slot is None:
            return False
        if slot.active_pid is not None:
            raise PrerequisiteError(
                f"replication slot {slot.name} is in use by server process {slot.active_pid}",
                hint="stop the source (or whatever reads the slot) first",
            )
        conn.execute("SELECT pg_catalog.pg_drop_replication_slot(%s)", (slot.name,))
        log.warning("dropped replication slot %s", slot.name)
        return True


class PostgresSource:
    """A PostgreSQL database captured through a pgoutput slot (cdc.spi.SourceConnector)."""

    def __init__(
        self,
        config: PostgresSourceConfig,
        *,
        name: str,
        on_transaction: TransactionListener | None = None,
        settings: StreamSettings | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.on_transaction = on_transaction
        self.settings = settings or StreamSettings(
            slot=config.slot_name,
            publication=config.publication_name,
            proto_version=config.proto_version,
            streaming=config.streaming,
            status_interval_s=config.status_interval_s,
            heartbeat_interval_s=config.heartbeat_interval_s,
            skip_replicated=config.skip_replicated_changes,
        )
        self._server: ServerFacts | None = None
        self._tables: list[tuple[int, str, str]] = []
        self._publication: PublicationFacts | None = None
        self._reader: StreamReader | None = None
        self._snapshot_repl: ReplicationConnection | None = None  # created the slot; reused
        self._repl_lock = threading.Lock()
        self._metrics_conn: psycopg.Connection[Any] | None = None
        self._metrics_lock = threading.Lock()
        self.snapshot_reader: SnapshotReader | None = None
        self._batch_snapshot = False  # cdc.spi.BatchesSnapshot
        self._batch_stream = False  # cdc.spi.BatchesStream
        self._incremental: IncrementalReads | None = None

    # -- connections --------------------------------------------------------------------------

    def connect_sql(self) -> psycopg.Connection[Any]:
        return psycopg.connect(conninfo(self.config, self.name), autocommit=True)

    def connect_replication(self) -> ReplicationConnection:
        return ReplicationConnection(conninfo(self.config, self.name, replication=True))

    # -- preflight ------------------------------------------------------------------------------

    def check(self) -> list[Problem]:
        """Every unmet prerequisite, each with the statement or setting that fixes it."""
        try:
            conn = self.connect_sql()
        except psycopg.Error as e:
            return [Problem(
                f"cannot connect to PostgreSQL at {_where(self.config)}: {e}",
                "check host, port, database, user and password, and that pg_hba.conf admits "
                "this host",
                key="connection",
            )]
        try:
            return self._check(conn)
        except psycopg.Error as e:
            return [Problem(f"checking PostgreSQL at {_where(self.config)} failed: {e}",
                            "see the error; the user needs to read pg_catalog")]
        finally:
            conn.close()

    def captured_tables(self) -> list[TableId]:
        """cdc.spi.ListsTables: the tables the filter captures now."""
        try:
            with self.connect_sql() as conn:
                database = conn.info.dbname
                return [TableId(database, schema, table)
                        for _, schema, table in catalog.captured_tables(conn, self.config.tables)]
        except psycopg.Error as e:
            raise classify(e, "cannot list the captured tables") from e

    def key_generators(self) -> list[KeyGenerator]:
        """cdc.spi.ChecksMultiWriter: sequences feeding the captured tables' columns."""
        try:
            with self.connect_sql() as conn:
                tables = [(s, t) for _, s, t in catalog.captured_tables(conn, self.config.tables)]
                return multiwriter.key_generators(conn, tables)
        except psycopg.Error as e:
            raise classify(e, "cannot read the sequences") from e

    def multi_writer_problems(self) -> list[Problem]:
        """cdc.spi.ChecksMultiWriter: captured tables without REPLICA IDENTITY FULL."""
        try:
            with self.connect_sql() as conn:
                tables = [(s, t) for _, s, t in catalog.captured_tables(conn, self.config.tables)]
                return multiwriter.identity_problems(conn, tables)
        except psycopg.Error as e:
            raise classify(e, "cannot read the tables' replica identity") from e

    def _check(self, conn: psycopg.Connection[Any]) -> list[Problem]:
        cfg = self.config
        problems: list[Problem] = []
        server = catalog.server_facts(conn)
        if server.version_num < MIN_VERSION_NUM:
            problems.append(Problem(f"PostgreSQL {server.version} is too old for this source",
                                    "use PostgreSQL 12 or newer (14+ for proto_version 2)"))
            return problems
        if cfg.proto_version >= 2 and server.version_num < 140000:
            problems.append(Problem(
                f"proto_version {cfg.proto_version} needs PostgreSQL 14+, the server is "
                f"{server.version}", "set proto_version: 1 and streaming: false"))
        if server.wal_level != "logical":
            problems.append(Problem(
                f"wal_level is {server.wal_level!r}, logical decoding needs 'logical'",
                "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"))
        if not (server.superuser or server.replication):
            problems.append(Problem(
                f"user {server.user} has neither the REPLICATION attribute nor superuser",
                f"ALTER ROLE {sql.Identifier(server.user).as_string(conn)} REPLICATION;",
                key="connection.user"))
        slot = catalog.slot_facts(conn, cfg.slot_name)
        if slot is None:
            if server.used_replication_slots >= server.max_replication_slots:
                problems.append(Problem(
                    f"all {server.max_replication_slots} replication slots are in use, "
                    f"so slot {cfg.slot_name} cannot be created",
                    "raise max_replication_slots (needs a restart), or drop unused slots "
                    "(SELECT slot_name FROM pg_replication_slots WHERE NOT active)",
                    key="slot_name"))
        else:
            if slot.plugin != "pgoutput" or slot.slot_type != "logical":
                problems.append(Problem(
                    f"slot {slot.name} exists but is a {slot.slot_type} slot of plugin "
                    f"{slot.plugin!r}", "choose another slot_name (or drop that slot)",
                    key="slot_name"))
            elif slot.database != server.database:
                problems.append(Problem(
                    f"slot {slot.name} belongs to database {slot.database}",
                    "choose another slot_name", key="slot_name"))
            if slot.lost:
                problems.append(Problem(
                    f"slot {slot.name} was invalidated (wal_status=lost): changes are missing",
                    "cdc reset-source FILE --name <source> --release (drops the slot and the "
                    "offsets: the next start snapshots again); raise max_slot_wal_keep_size",
                    key="slot_name"))
            if slot.active_pid is not None:
                problems.append(Problem(
                    f"slot {slot.name} is in use by server process {slot.active_pid}",
                    "stop the other reader of the slot (or this source, if it is running)",
                    fatal=False, key="slot_name"))
        if server.used_wal_senders >= server.max_wal_senders:
            problems.append(Problem(
                f"all {server.max_wal_senders} WAL senders are busy",
                "raise max_wal_senders (needs a restart)"))
        tables = catalog.captured_tables(conn, cfg.tables)
        if cfg.signal is not None and tuple(split_name(cfg.signal.table)) not in {
                (s, t) for _, s, t in tables}:
            schema, table = split_name(cfg.signal.table)
            name = _table_ident(schema, table).as_string(conn)
            problems.append(Problem(
                f"signal table {cfg.signal.table} does not exist: incremental snapshots cannot "
                "be signalled", f"{SIGNAL_TABLE_DDL.format(table=name)}; and GRANT INSERT, "
                f"SELECT ON {name} TO <the source's user>", key="signal.table"))
        if not tables:
            problems.append(Problem(
                f"no table matches tables.include {list(cfg.tables.include)} "
                f"(exclude {list(cfg.tables.exclude)}) in database {server.database}",
                "fix the patterns (schema.table, shell wildcards, case-sensitive)",
                fatal=False, key="tables.include"))
        for oid, schema, table in tables:
            facts = catalog.table_facts(conn, oid)
            if facts is not None and not facts.has_identity:
                name = _table_ident(schema, table).as_string(conn)
                problems.append(Problem(
                    f"table {schema}.{table} has no primary key and no replica identity: "
                    "PostgreSQL rejects its UPDATEs and DELETEs once it is published",
                    f"ALTER TABLE {name} ADD PRIMARY KEY (...); or "
                    f"ALTER TABLE {name} REPLICA IDENTITY FULL;", key="tables"))
        pub = catalog.publication_facts(conn, cfg.publication_name, server.version_num)
        create = _render(conn, publication_statement(cfg, tables, server.version_num))
        if pub is None:
            if not cfg.create_publication:
                problems.append(Problem(
                    f"publication {cfg.publication_name} does not exist "
                    "(and create_publication is false)", f"{create};", key="publication_name"))
            elif "ALL TABLES" in create and not server.superuser:
                problems.append(Problem(
                    f"creating publication {cfg.publication_name} FOR ALL TABLES needs a superuser",
                    f"have a superuser run: {create}; or narrow tables.include",
                    key="publication_name"))
        else:
            missing = [(s, t) for _, s, t in tables if (s, t) not in pub.tables]
            if missing:
                add = self._alter_add(conn, missing)
                problems.append(Problem(
                    f"publication {pub.name} lacks captured tables "
                    f"{', '.join(f'{s}.{t}' for s, t in missing)}",
                    f"{add};" + (" (create_publication is true: cdc runs this at start)"
                                 if cfg.create_publication else ""),
                    fatal=not cfg.create_publication, key="publication_name"))
            lacking = [op for op in _OPERATIONS if op not in pub.operations]
            if lacking:
                problems.append(Problem(
                    f"publication {pub.name} does not publish {', '.join(lacking)}: those "
                    "changes would never reach Kafka",
                    f"ALTER PUBLICATION {sql.Identifier(pub.name).as_string(conn)} "
                    "SET (publish = 'insert, update, delete, truncate');",
                    fatal=any(op != "truncate" for op in lacking), key="publication_name"))
            if pub.via_root:
                problems.append(Problem(
                    f"publication {pub.name} sets publish_via_partition_root: changes would be "
                    "named after partitioned parents, which the snapshot does not read",
                    f"ALTER PUBLICATION {sql.Identifier(pub.name).as_string(conn)} "
                    "SET (publish_via_partition_root = false);", key="publication_name"))
        return problems

    def _alter_add(self, conn: psycopg.Connection[Any], missing: list[tuple[str, str]]) -> str:
        return _render(conn, sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
            sql.Identifier(self.config.publication_name),
            sql.SQL(", ").join(_table_ident(s, t) for s, t in missing)))

    # -- set-up -----------------------------------------------------------------------------------

    def prepare(self) -> ServerFacts:
        """Check the hard prerequisites and make the publication match the config.

        Raises :class:`PrerequisiteError` with the statement to run when the
        operator has to act (create_publication false, wal_level...).
        """
        try:
            with self.connect_sql() as conn:
                return self._prepare(conn)
        except psycopg.Error as e:
            raise classify(e, f"PostgreSQL at {_where(self.config)}") from e

    def _prepare(self, conn: psycopg.Connection[Any]) -> ServerFacts:
        cfg = self.config
        server = catalog.server_facts(conn)
        if server.version_num < MIN_VERSION_NUM:
            raise PrerequisiteError(
                f"PostgreSQL {server.version} is too old for this source",
                hint="use PostgreSQL 12 or newer (14+ for proto_version 2)")
        if server.wal_level != "logical":
            raise PrerequisiteError(
                f"wal_level is {server.wal_level!r} on {_where(cfg)}; logical decoding needs "
                "'logical'", hint="ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL")
        if cfg.proto_version >= 2 and server.version_num < 140000:
            raise PrerequisiteError(
                f"proto_version {cfg.proto_version} needs PostgreSQL 14+ (server: "
                f"{server.version})", hint="set proto_version: 1 and streaming: false")
        tables = catalog.captured_tables(conn, cfg.tables)
        for oid, schema, table in tables:
            facts = catalog.table_facts(conn, oid)
            if facts is not None and not facts.has_identity:
                log.warning(
                    "%s: table %s.%s has no primary key and no replica identity; its UPDATEs "
                    "and DELETEs fail on the server once published (ALTER TABLE ... REPLICA "
                    "IDENTITY FULL, or add a primary key)", self.name, schema, table)
        pub = catalog.publication_facts(conn, cfg.publication_name, server.version_num)
        if pub is None:
            stmt = publication_statement(cfg, tables, server.version_num)
            if not cfg.create_publication:
                raise PrerequisiteError(
                    f"publication {cfg.publication_name} does not exist and create_publication "
                    "is false", hint=f"run: {_render(conn, stmt)};")
            conn.execute(stmt)
            log.info("%s: %s", self.name, _render(conn, stmt))
            pub = catalog.publication_facts(conn, cfg.publication_name, server.version_num)
            assert pub is not None
        missing = [(s, t) for _, s, t in tables if (s, t) not in pub.tables]
        if missing:
            add = self._alter_add(conn, missing)
            if not cfg.create_publication or pub.all_tables:
                raise PrerequisiteError(
                    f"publication {pub.name} does not include the captured table(s) "
                    f"{', '.join(f'{s}.{t}' for s, t in missing)}: their changes would be lost",
                    hint=f"run: {add}; (or narrow tables.include/exclude)")
            conn.execute(add)
            log.info("%s: %s", self.name, add)
            pub = catalog.publication_facts(conn, cfg.publication_name, server.version_num)
            assert pub is not None
        lacking = [op for op in ("insert", "update", "delete") if op not in pub.operations]
        if lacking:
            raise PrerequisiteError(
                f"publication {pub.name} does not publish {', '.join(lacking)}",
                hint=f"run: ALTER PUBLICATION {sql.Identifier(pub.name).as_string(conn)} "
                "SET (publish = 'insert, update, delete, truncate');")
        self._server = server
        self._tables = [t for t in tables if (t[1], t[2]) in pub.tables]
        self._publication = pub
        return server

    def _check_slot(self, slot: catalog.SlotFacts, server: ServerFacts) -> None:
        if slot.plugin != "pgoutput" or slot.slot_type != "logical" or (
            slot.database is not None and slot.database != server.database
        ):
            raise PrerequisiteError(
                f"replication slot {slot.name} exists but is not a pgoutput slot of database "
                f"{server.database} (type {slot.slot_type}, plugin {slot.plugin!r}, database "
                f"{slot.database})", hint="choose another slot_name")
        if slot.lost:
            raise PrerequisiteError(
                f"replication slot {slot.name} was invalidated (wal_status=lost)",
                hint="cdc reset-source FILE --name <source> --release (drops the slot and "
                "the offsets: the next start snapshots again)")

    # -- SourceConnector ----------------------------------------------------------------------

    def copy_tables(self) -> TableCopy:
        """cdc.spi.CopiesTables: one consistent copy for snapshot replication."""
        from connectors.postgres.source.copy_run import copy_tables

        return copy_tables(self)

    def batch_snapshot(self) -> None:
        """cdc.spi.BatchesSnapshot: later snapshots yield a chunk's rows as SnapshotRows."""
        self._batch_snapshot = True

    def batch_stream(self) -> None:
        """cdc.spi.BatchesStream: later streams yield runs of inserts as StreamRows."""
        self._batch_stream = True

    def snapshot(self, resume: Position | None) -> tuple[Position, Iterator[ChangeEvent]]:
        """Create the slot (or a temporary one) with an exported snapshot and read it.

        ``resume`` is ignored: the runner resumes through :meth:`resumable_snapshot`.
        """
        start, items = self._snapshot(None, marks=False)
        return start, _events(items)

    def resumable_snapshot(
        self, resume: SnapshotResume | None
    ) -> tuple[Position, Iterator[ChangeEvent | SnapshotChunk | SnapshotRows]]:
        """cdc.spi.ResumesSnapshot: the snapshot with chunk marks, or its remaining chunks.

        Resuming reads the remaining chunks in a new exported snapshot (of a
        temporary slot) and returns the first attempt's point, where the
        permanent slot still is: changes since then are replayed over rows that
        may contain them already (SOURCE.md, "Resuming a snapshot").
        """
        if resume is not None:
            if not isinstance(resume.start, PgPosition):
                raise ConfigError(f"{self.name}: cannot resume a snapshot at {resume.start!r}")
            server = self.prepare()
            keyless = self._keyless_tables()
            if keyless:
                log.warning("%s: the interrupted snapshot is taken again from the start: "
                            "table(s) %s have no primary key, so rows changed since %s could "
                            "not be told from rows read again", self.name,
                            ", ".join(keyless), resume.start.lsn)
                return self._snapshot(None, marks=True)
            try:
                with self.connect_sql() as conn:
                    slot = catalog.slot_facts(conn, self.config.slot_name)
            except psycopg.Error as e:
                raise classify(e, "cannot read pg_replication_slots") from e
            if slot is None:
                raise PrerequisiteError(
                    f"replication slot {self.config.slot_name} vanished during the snapshot: the "
                    "changes since it began are gone",
                    hint="cdc reset-source FILE --name <source> (the next start snapshots again)")
            self._check_slot(slot, server)
        return self._snapshot(resume, marks=True)

    def _keyless_tables(self) -> list[str]:
        try:
            with self.connect_sql() as conn:
                out = []
                for oid, schema, table in self._tables:
                    facts = catalog.table_facts(conn, oid)
                    if facts is not None and not facts.primary_key:
                        out.append(f"{schema}.{table}")
                return out
        except psycopg.Error as e:
            raise classify(e, "cannot read the captured tables") from e

    def estimate_rows(self) -> dict[str, int]:
        """cdc.spi.EstimatesRows: ``pg_class.reltuples`` of the captured tables."""
        if self._server is None:
            self.prepare()
        try:
            with self.connect_sql() as conn:
                out = {}
                for oid, schema, table in self._tables:
                    facts = catalog.table_facts(conn, oid)
                    if facts is not None:
                        out[f"{schema}.{table}"] = max(0, facts.estimated_rows)
                return out
        except psycopg.Error as e:
            raise classify(e, "cannot read the table statistics") from e

    def _snapshot(
        self, resume: SnapshotResume | None, *, marks: bool
    ) -> tuple[Position, Iterator[ChangeEvent | SnapshotChunk | SnapshotRows]]:
        server = self.prepare()
        repl = self.connect_replication()
        try:
            with self.connect_sql() as conn:
                slot = catalog.slot_facts(conn, self.config.slot_name)
            if slot is None:
                consistent, exported = repl.create_slot(self.config.slot_name, temporary=False,
                                                        export=True)
                log.info("%s: created replication slot %s at %s", self.name,
                         self.config.slot_name, consistent)
                keep = True
            else:
                self._check_slot(slot, server)
                temp = f"{self.config.slot_name}_snap_{os.getpid()}"[:63]
                consistent, exported = repl.create_slot(temp, temporary=True, export=True)
                log.info("%s: slot %s exists (confirmed to %s); snapshot exported from temporary "
                         "slot %s at %s", self.name, slot.name, slot.confirmed_flush, temp,
                         consistent)
                keep = False
        except psycopg.Error as e:
            repl.close()
            raise classify(e, "cannot prepare the snapshot") from e
        except BaseException:
            repl.close()
            raise
        if exported is None:
            repl.close()
            raise PrerequisiteError("the server did not export a snapshot for the new slot")

        def done() -> None:
            # The exporting connection idled until the snapshot was read; the one
            # that created the permanent slot goes on to stream it.
            with self._repl_lock:
                if keep and self._snapshot_repl is None and repl.pgconn.status == pq.ConnStatus.OK:
                    self._snapshot_repl = repl
                else:
                    repl.close()

        reader = self.snapshot_reader = SnapshotReader(
            source_name=self.config.topic_prefix,
            database=server.database,
            db_version=server.version,
            connect=self.connect_sql,
            tables=self._tables,
            chunk_size=self.config.snapshot.chunk_size,
            publication=self._publication,
        )
        reader.batches = self._batch_snapshot
        if resume is not None:
            assert isinstance(resume.start, PgPosition)
            start = resume.start
            log.info("%s: resumed snapshot reads at %s; rows positioned at %s, the stream "
                     "starts there", self.name, consistent, start.lsn)
            return start, reader.read(exported, start.lsn, done, marks=marks, resume=resume)
        # The stream starts right after the consistent point: transactions
        # committing later are streamed, earlier ones are in the snapshot.
        return PgPosition(consistent), reader.read(exported, consistent, done, marks=marks)

    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        if start is not None and not isinstance(start, PgPosition):
            raise ConfigError(f"{self.name}: a PostgreSQL source cannot resume from {start!r}")
        server = self._server or self.prepare()
        with self._repl_lock:
            repl, self._snapshot_repl = self._snapshot_repl, None
        if start is None and repl is None:
            try:
                with self.connect_sql() as conn:
                    slot = catalog.slot_facts(conn, self.config.slot_name)
            except psycopg.Error as e:
                raise classify(e, "cannot read pg_replication_slots") from e
            if slot is None:
                repl = self.connect_replication()
                try:
                    lsn, _ = repl.create_slot(self.config.slot_name, temporary=False, export=False)
                except BaseException:
                    repl.close()
                    raise
                log.info("%s: created replication slot %s at %s (no snapshot)", self.name,
                         self.config.slot_name, lsn)
            else:
                self._check_slot(slot, server)
        # pgoutput's `messages` option exists from PostgreSQL 14 on, `origin` from 16 on.
        settings = dataclasses.replace(
            self.settings, messages=self.settings.messages and server.version_num >= 140000,
            origin_filter=server.version_num >= 160000, batch_inserts=self._batch_stream,
        )
        reader = self._reader = StreamReader(
            settings,
            source_name=self.config.topic_prefix,
            database=server.database,
            db_version=server.version,
            tables=self.config.tables,
            connect_sql=self.connect_sql,
            connect_replication=self.connect_replication,
            on_transaction=self.on_transaction,
        )
        return guardrail.guard(self, reader.stream(start, repl=repl))

    def acknowledge(self, position: Position) -> None:
        if not isinstance(position, PgPosition):
            raise ConfigError(f"{self.name}: cannot acknowledge {position!r}")
        if self._reader is not None:
            self._reader.acknowledge(position)

    def close(self) -> None:
        if self._incremental is not None:
            self._incremental.close()
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception as e:  # closing must go on; nothing is lost by a failed close
                log.warning("%s: closing the replication stream failed: %s", self.name, e)
        with self._repl_lock:
            repl, self._snapshot_repl = self._snapshot_repl, None
        if repl is not None:
            repl.close()
        with self._metrics_lock:
            if self._metrics_conn is not None:
                self._metrics_conn.close()
                self._metrics_conn = None

    # -- incremental snapshots (cdc.spi.SnapshotsIncrementally) -------------------------------

    def _reads(self) -> IncrementalReads:
        signal = self.config.signal
        if signal is None:
            raise ConfigError(f"{self.name}: no signal table is configured",
                              hint="set signal.table in the source's entry")
        if self._incremental is None:
            self._incremental = IncrementalReads(
                source_name=self.config.topic_prefix,
                connect=self.connect_sql,
                signal_table=signal.table,
                captured=self.config.tables.matches,
                publication=lambda: self._publication,
            )
        return self._incremental

    def signal_table(self) -> TableId | None:
        signal = self.config.signal
        if signal is None:
            return None
        schema, table = split_name(signal.table)
        database = self._server.database if self._server is not None else (
            self.config.connection.database or "")
        return TableId(database, schema, table)

    def write_signal(self, signal_id: str, signal_type: str, data: str | None) -> None:
        self._reads().write_signal(signal_id, signal_type, data)

    def resolve_table(self, name: str) -> TableId | None:
        return self._reads().resolve(name)

    def table_rows_estimate(self, table: TableId) -> int:
        return self._reads().estimate(table)

    def read_chunk(self, table: TableId, after: Sequence[Any] | None, limit: int,
                   condition: str | None) -> Chunk:
        version = self._server.version if self._server is not None else ""
        return self._reads().read_chunk(table, after, limit, condition, db_version=version)

    def position_after(self, position: Position, offset: int, last: bool) -> Position:
        return _position_after(position, offset, last)

    # -- metrics ------------------------------------------------------------------------------------

    def metrics(self) -> dict[str, float | None]:
        """cdc.spi.ReportsMetrics: the WAL this source's slot keeps on the server."""
        retained = self.retained_wal_bytes()
        return {"postgres_slot_retained_wal_bytes": retained, **guardrail.gauges(self, retained)}

    def inspect_lag(self, position: Position | None) -> Mapping[str, float | None]:
        """cdc.spi.InspectsLag: WAL the slot keeps (the stored position does not change it)."""
        return guardrail.inspect_lag(self)

    def retained_wal_bytes(self) -> int | None:
        """WAL the slot keeps on the server (``pg_current_wal_lsn() - restart_lsn``).

        Thread-safe (a connection of its own); None when the slot does not
        exist or the server cannot be reached.
        """
        with self._metrics_lock:
            try:
                if self._metrics_conn is None or self._metrics_conn.closed:
                    self._metrics_conn = self.connect_sql()
                return catalog.retained_wal_bytes(self._metrics_conn, self.config.slot_name)
            except psycopg.Error as e:
                log.debug("retained WAL query failed: %s", e)
                if self._metrics_conn is not None:
                    self._metrics_conn.close()
                    self._metrics_conn = None
                return None

    @property
    def acknowledged(self) -> PgPosition | None:
        return self._reader.acknowledged if self._reader is not None else None


def _events(items: Iterator[ChangeEvent | SnapshotChunk | SnapshotRows]) -> Iterator[ChangeEvent]:
    """A snapshot's events only: no chunk marks, batches as their events."""
    for item in items:
        if type(item) is SnapshotRows:
            yield from (item.event(i) for i in range(len(item)))
        elif type(item) is not SnapshotChunk:
            assert isinstance(item, ChangeEvent)
            yield item
