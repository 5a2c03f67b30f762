"""PostgreSQL's side of incremental snapshots: the signal table and chunk reads.

:class:`cdc.runtime.incremental.IncrementalSnapshotter` runs the watermark
algorithm; this module gives it what only PostgreSQL knows
(:class:`cdc.spi.SnapshotsIncrementally`): writing a signal row (the
watermarks travel through the slot like any insert of a published table),
reading one chunk of a table in primary-key order with an ordinary
autocommit ``SELECT`` (READ COMMITTED: it sees every transaction committed
before it), and positions right after the high watermark.

Rows are read as the initial snapshot reads them (:mod:`.snapshot`): the
server's text through the same per-column converters as pgoutput's, so a
chunk row and a streamed row of one key compare equal. The last key is kept
as the server's text of the key columns (JSON-safe), cast back to the
columns' types in the next chunk's ``WHERE (key) > (...)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from cdc import __version__
from cdc.errors import CdcError, ConfigError
from cdc.events import ChangeEvent, Op, SourceInfo, TableId
from cdc.spi import Chunk, Position
from connectors.postgres.position import Lsn, PgPosition
from connectors.postgres.source import catalog
from connectors.postgres.source.catalog import PublicationFacts, TableFacts
from connectors.postgres.source.changes import CONNECTOR_NAME
from connectors.postgres.source.wire import classify

log = logging.getLogger(__name__)

_OID_SQL = """
SELECT c.oid::int8 FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""
_PLACEHOLDER = PgPosition(Lsn(0), 0, False, False)

SIGNAL_TABLE_DDL = (
    "CREATE TABLE {table} (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, "
    "data varchar(2048))"
)


def split_name(name: str) -> tuple[str, str]:
    schema, dot, table = name.partition(".")
    if not dot or not schema or not table:
        raise ConfigError(f"{name!r} is not a schema.table name", hint="e.g. public.orders")
    return schema, table


class IncrementalReads:
    """Signal writes and chunk reads on a connection of their own (thread-safe)."""

    def __init__(
        self,
        *,
        source_name: str,
        connect: Callable[[], psycopg.Connection[Any]],
        signal_table: str,
        captured: Callable[[str], bool],
        publication: Callable[[], PublicationFacts | None],
    ) -> None:
        self.source_name = source_name
        self._connect = connect
        self.signal = split_name(signal_table)
        self._captured = captured
        self._publication = publication
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._facts: dict[str, tuple[TableFacts, Any, str | None]] = {}

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
            self._conn.autocommit = True
            self._facts.clear()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def write_signal(self, signal_id: str, signal_type: str, data: str | None) -> None:
        schema, table = self.signal
        stmt = sql.SQL("INSERT INTO {}.{} (id, type, data) VALUES (%s, %s, %s)").format(
            sql.Identifier(schema), sql.Identifier(table))
        with self._lock:
            try:
                self._connection().execute(stmt, (signal_id, signal_type, data))
            except psycopg.Error as e:
                self._drop()
                raise classify(e, f"cannot write to the signal table {schema}.{table} (it needs "
                               "columns id, type, data and INSERT for the source's user)") from e

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def resolve(self, name: str) -> TableId | None:
        try:
            schema, table = split_name(name)
        except ConfigError:
            return None
        if not self._captured(f"{schema}.{table}"):
            return None
        with self._lock:
            try:
                conn = self._connection()
                row = conn.execute(_OID_SQL, (schema, table)).fetchone()
                database = conn.info.dbname
            except psycopg.Error as e:
                self._drop()
                raise classify(e, f"cannot look up table {name}") from e
        return None if row is None else TableId(database, schema, table)

    def estimate(self, table: TableId) -> int:
        with self._lock:
            try:
                row = self._connection().execute(
                    "SELECT greatest(c.reltuples, 0)::int8 FROM pg_catalog.pg_class c "
                    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s", (table.schema, table.table)
                ).fetchone()
            except psycopg.Error:
                self._drop()
                return 0
        return int(row[0]) if row else 0

    def read_chunk(
        self, table: TableId, after: Sequence[Any] | None, limit: int, condition: str | None,
        *, db_version: str,
    ) -> Chunk:
        assert table.schema is not None
        with self._lock:
            try:
                return self._read(table, after, limit, condition, db_version)
            except psycopg.Error as e:
                self._drop()
                raise classify(e, f"cannot read a chunk of {table}") from e

    def _read(
        self, table: TableId, after: Sequence[Any] | None, limit: int, condition: str | None,
        db_version: str,
    ) -> Chunk:
        conn = self._connection()
        database = conn.info.dbname
        assert table.schema is not None
        row = conn.execute(_OID_SQL, (table.schema, table.table)).fetchone()
        if row is None:
            raise CdcError(f"table {table} does not exist")
        facts = catalog.table_facts(conn, int(row[0]))
        if facts is None:
            raise CdcError(f"table {table} does not exist")
        columns, row_filter = catalog.published_columns(self._publication(), facts.schema,
                                                        facts.name)
        shape = catalog.shape_from_facts(conn, database, facts, columns)
        key_names = shape.key_names
        if not key_names or (facts.replica_identity == "f" and not facts.primary_key):
            raise CdcError(f"table {table} has no primary key: an incremental snapshot reads "
                           "by key", hint="add a primary key, or re-run the initial snapshot")
        for c in facts.columns:
            conn.adapters.register_loader(c.type_oid, TextLoader)
        by_name = {c.name: c for c in facts.columns}
        select = sql.SQL(", ").join(sql.Identifier(n) for n in shape.names)
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in key_names)
        where: list[sql.Composable] = []
        params: list[Any] = []
        if after is not None:
            casts = sql.SQL(", ").join(
                sql.SQL("%s::{}").format(sql.SQL(by_name[k].sql_type)) for k in key_names)
            where.append(sql.SQL("({}) > ({})").format(keys, casts))
            params.extend(after)
        if row_filter:
            where.append(sql.SQL("({})").format(sql.SQL(row_filter)))
        if condition:
            where.append(sql.SQL("({})").format(sql.SQL(condition)))
        query = sql.SQL("SELECT {} FROM {}").format(select, facts.sql_name)
        if where:
            query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(where))
        query = sql.SQL("{} ORDER BY {} LIMIT {}").format(query, keys, sql.Literal(limit))
        rows = conn.execute(query, params).fetchall()
        read_ms = time.time_ns() // 1_000_000
        source = SourceInfo(CONNECTOR_NAME, self.source_name, __version__, db_version,
                            _PLACEHOLDER, read_ms, None, "incremental", None)
        build_row, build_key, schema = shape.row, shape.key, shape.schema
        events = []
        for r in rows:
            image = build_row(r)
            events.append(ChangeEvent(Op.READ, schema, build_key(image), None, image, source,
                                      read_ms))
        last: tuple[Any, ...] | None = None
        if len(rows) == limit:
            tail = rows[-1]
            last = tuple(tail[i] for i in shape.key_index)
        return Chunk(events, last)


def position_after(position: Position, offset: int, last: bool) -> PgPosition:
    """Inside the high watermark's transaction (same commit LSN), after its row."""
    if not isinstance(position, PgPosition):
        raise ConfigError(f"not a PostgreSQL position: {position!r}")
    return PgPosition(position.lsn, position.index + offset, False, last)
