"""Snapshot replication's read of a MariaDB/MySQL source: one consistent copy.

The initial snapshot's reader already does what a copy needs and keeps no
server-side state: ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` (MariaDB
reports the binlog position of that view; MySQL takes a brief global read
lock to read it) and keyset-chunked reads of the captured tables. This module
only hands its result over as a :class:`cdc.spi.TableCopy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from cdc.events import ChangeEvent
from cdc.spi import TableCopy
from connectors.mysql.source.snapshot import SnapshotReader

if TYPE_CHECKING:
    from connectors.mysql.source.connector import MySqlSource


def copy_tables(source: MySqlSource) -> TableCopy:
    """Open a consistent snapshot; its rows are read as the iterator is consumed."""
    reader = SnapshotReader(
        source.connect_kwargs,
        source_name=source.name,
        table_filter=source.captured,
        zero_date=source.zero_date,
        chunk_size=source.chunk_size,
        lock=source.snapshot_lock,
    )
    position, rows = reader.open()  # no chunk marks: rows only
    return TableCopy(position, tuple(t.schema.table for t in reader.tables),
                     cast("Iterator[ChangeEvent]", rows), reader.close,
                     estimated_rows=sum(t.estimated_rows for t in reader.tables))
