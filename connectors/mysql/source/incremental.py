"""MySQL/MariaDB's side of incremental snapshots: the signal table and chunk reads.

:class:`cdc.runtime.incremental.IncrementalSnapshotter` runs the watermark
algorithm; this module gives it what only MySQL knows
(:class:`cdc.spi.SnapshotsIncrementally`): writing a signal row (the
watermarks reach the source through the binlog like any captured insert),
reading one chunk of a table in primary-key order with one autocommit
``SELECT`` under READ COMMITTED (a fresh view: every transaction committed
before it), and positions right after the high watermark.

Tables are described and rows decoded exactly as the initial snapshot does
(:class:`.snapshot.SnapshotReader`'s table description and text decoders, the
same codecs as the binlog reader's), so a chunk row and a streamed row of one
key compare equal. The last key is kept as the server's text of the key
columns (bytes for binary keys), which the next chunk compares against.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pymysql.err

import cdc
from cdc.errors import CdcError, PositionError
from cdc.events import ChangeEvent, Op, SourceInfo, TableId
from cdc.spi import Chunk, Position
from connectors.mysql.position import BinlogFile, MySqlPosition
from connectors.mysql.source.server import connect, server_info
from connectors.mysql.source.snapshot import SnapshotReader, _keyset, quote
from connectors.mysql.values import ZeroDatePolicy, snapshot_conv

log = logging.getLogger(__name__)

_PLACEHOLDER = MySqlPosition(BinlogFile("placeholder.000000"), 0, 0, last_in_tx=False)

SIGNAL_TABLE_DDL = (
    "CREATE TABLE {table} (id VARCHAR(42) PRIMARY KEY, type VARCHAR(32) NOT NULL, "
    "data VARCHAR(2048)) DEFAULT CHARSET=utf8mb4"
)


def split_name(name: str) -> tuple[str, str] | None:
    database, dot, table = name.partition(".")
    return (database, table) if dot and database and table else None


class IncrementalReads:
    """Signal writes and chunk reads on a connection of their own (thread-safe)."""

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        *,
        source_name: str,
        signal_table: str,
        captured: Callable[[str, str], bool],
        zero_date: ZeroDatePolicy,
    ) -> None:
        self._kwargs = {"charset": "utf8mb4", **dict(connect_kwargs)}
        self.source_name = source_name
        parts = split_name(signal_table)
        if parts is None:
            raise CdcError(f"signal table {signal_table!r} is not database.table")
        self.signal = parts
        self._captured = captured
        self._describer = SnapshotReader(self._kwargs, source_name=source_name,
                                         table_filter=captured, zero_date=zero_date)
        self._conn: Any = None
        self._lock = threading.Lock()

    def _cursor(self) -> Any:
        if self._conn is None:
            conn = connect(self._kwargs, conv=snapshot_conv())
            cur = conn.cursor()
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            self._describer.server = server_info(cur)
            self._conn = conn
        return self._conn.cursor()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken
                log.debug("closing the incremental snapshot connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _run(self, what: str, fn: Callable[[Any], Any]) -> Any:
        with self._lock:
            try:
                return fn(self._cursor())
            except (pymysql.err.Error, OSError) as e:
                self._drop()
                raise CdcError(f"{self.source_name}: {what}: {e}") from e

    def write_signal(self, signal_id: str, signal_type: str, data: str | None) -> None:
        database, table = self.signal
        self._run(
            f"cannot write to the signal table {database}.{table} (it needs columns id, type, "
            "data and INSERT for the source's user)",
            lambda cur: cur.execute(
                f"INSERT INTO {quote(database)}.{quote(table)} (id, type, data) "
                "VALUES (%s, %s, %s)", (signal_id, signal_type, data)))

    def _exists(self, cur: Any, database: str, table: str) -> int | None:
        cur.execute("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                    "AND TABLE_NAME = %s AND TABLE_TYPE = 'BASE TABLE'", (database, table))
        row = cur.fetchone()
        return None if row is None else int(row[0] or 0)

    def resolve(self, name: str) -> TableId | None:
        parts = split_name(name)
        if parts is None or not self._captured(*parts):
            return None
        found = self._run(f"cannot look up table {name}", lambda cur: self._exists(cur, *parts))
        return None if found is None else TableId(parts[0], None, parts[1])

    def estimate(self, table: TableId) -> int:
        return int(self._run(f"cannot estimate {table}",
                             lambda cur: self._exists(cur, table.database, table.table)) or 0)

    def read_chunk(
        self, table: TableId, after: Sequence[Any] | None, limit: int, condition: str | None
    ) -> Chunk:
        return self._run(f"cannot read a chunk of {table}",  # type: ignore[no-any-return]
                         lambda cur: self._read(cur, table, after, limit, condition))

    def _read(self, cur: Any, table: TableId, after: Sequence[Any] | None, limit: int,
              condition: str | None) -> Chunk:
        # The initial snapshot's description (columns, codecs, key): one source of truth.
        # Described again for every chunk, so a table altered meanwhile is read as it is now.
        described = self._describer._table(cur, table.database, table.table, 0)
        schema = described.schema
        if not schema.primary_key or not described.chunked:
            raise CdcError(f"table {table} has no primary key that sorts as it compares: an "
                           "incremental snapshot reads by key",
                           hint="add a primary key, or re-run the initial snapshot")
        cols = ", ".join(quote(c.name) for c in schema.columns)
        name = f"{quote(table.database)}.{quote(table.table)}"
        key_cols = [quote(k) for k in schema.primary_key]
        where: list[str] = []
        params: list[Any] = []
        if after is not None:
            cond, keyparams = _keyset(key_cols, list(after))
            where.append(f"({cond})")
            params.extend(keyparams)
        if condition:
            where.append(f"({condition})")
        query = f"SELECT {cols} FROM {name}"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += f" ORDER BY {', '.join(key_cols)} LIMIT %s"
        cur.execute(query, (*params, limit))
        rows = cur.fetchall()
        read_ms = int(time.time() * 1000)
        assert self._describer.server is not None
        source = SourceInfo("mysql", self.source_name, getattr(cdc, "__version__", "0"),
                            self._describer.server.version, _PLACEHOLDER, read_ms,
                            snapshot="incremental")
        decode = described.decode
        keys = schema.primary_key
        events = []
        for raw in rows:
            image = decode(raw)
            events.append(ChangeEvent(Op.READ, schema, {k: image[k] for k in keys}, None, image,
                                      source, read_ms))
        last: tuple[Any, ...] | None = None
        if len(rows) == limit:
            tail = rows[-1]
            last = tuple(tail[i] for i in described.key_index)
        return Chunk(events, last)


def position_after(position: Position, offset: int, last: bool) -> MySqlPosition:
    """Inside the high watermark's transaction (its binlog coordinates), after its row."""
    if not isinstance(position, MySqlPosition):
        raise PositionError(f"not a MySQL position: {position!r}")
    return dataclasses.replace(position, index=position.index + offset, snapshot=False,
                               last_in_tx=last)
