"""Snapshot replication's read of a PostgreSQL source: one consistent copy, no slot.

A normal connection opens a ``REPEATABLE READ READ ONLY`` transaction whose
first statement exports its snapshot (``pg_export_snapshot()``) and reads
the current WAL position; the captured tables are then read inside that
exported snapshot by the initial snapshot's :class:`SnapshotReader` (keyset
chunks, the same value conversion as the stream). Nothing is created on the
server (no replication slot, no publication): a copy holds no WAL once it is
done, and a killed reader leaves nothing behind. The WAL position is what
the copy is consistent with, recorded with the run (cdc.spi.CopiesTables).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import psycopg

from cdc.events import ChangeEvent, TableId
from cdc.spi import TableCopy
from connectors.postgres.position import Lsn, PgPosition
from connectors.postgres.source import catalog
from connectors.postgres.source.snapshot import SnapshotReader
from connectors.postgres.source.wire import classify

if TYPE_CHECKING:
    from connectors.postgres.source.connector import PostgresSource

log = logging.getLogger(__name__)


def copy_tables(source: PostgresSource) -> TableCopy:
    """Export a snapshot and return its position, tables and (lazily read) rows."""
    exporter: psycopg.Connection[Any] = source.connect_sql()
    try:
        exporter.autocommit = False
        exporter.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        exporter.read_only = True
        row = exporter.execute(
            "SELECT pg_export_snapshot(), (CASE WHEN pg_is_in_recovery() "
            "THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text").fetchone()
        assert row is not None
        exported, lsn_text = str(row[0]), str(row[1])
        server = catalog.server_facts(exporter)
        tables = catalog.captured_tables(exporter, source.config.tables)
        estimate = exporter.execute(
            "SELECT coalesce(sum(greatest(reltuples, 0)), 0)::bigint FROM pg_catalog.pg_class "
            "WHERE oid = ANY(%s)", ([oid for oid, _, _ in tables],)).fetchone()
    except psycopg.Error as e:
        exporter.close()
        raise classify(e, "cannot open a consistent copy") from e
    except BaseException:
        exporter.close()
        raise
    lsn = Lsn.parse(lsn_text)
    reader = SnapshotReader(
        source_name=source.config.topic_prefix,
        database=server.database,
        db_version=server.version,
        connect=source.connect_sql,
        tables=tables,
        chunk_size=source.config.snapshot.chunk_size,
        publication=None,
    )
    log.info("%s: consistent copy of %d tables at %s", source.name, len(tables), lsn)

    def close() -> None:
        if not exporter.closed:
            exporter.close()

    return TableCopy(
        position=PgPosition(lsn),
        tables=tuple(TableId(server.database, schema, table) for _, schema, table in tables),
        rows=cast("Iterator[ChangeEvent]", reader.read(exported, lsn, close)),  # no chunk marks
        close=close,
        estimated_rows=int(estimate[0]) if estimate else None,
    )
