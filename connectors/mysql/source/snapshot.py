"""Consistent snapshot of the captured tables, matched to a binlog position.

The snapshot reads every captured table inside one ``REPEATABLE READ``
transaction started ``WITH CONSISTENT SNAPSHOT`` and returns the binlog
position of exactly that view, so the stream started there neither misses nor
repeats a change. Two ways to learn that position:

* ``lock="none"`` (MariaDB, the default there): no lock at all. MariaDB
  records the binlog position of a consistent snapshot in the session status
  ``binlog_snapshot_file``/``binlog_snapshot_position``, and
  ``BINLOG_GTID_POS(file, pos)`` gives its GTID state.
* ``lock="global"`` (MySQL, or when asked): ``FLUSH TABLES WITH READ LOCK``,
  start the transaction, read ``SHOW MASTER STATUS`` and the GTID state,
  ``UNLOCK TABLES`` - writes wait only for those few statements. Needs the
  RELOAD privilege; ``lock_wait_timeout_s`` bounds the wait for the lock.

Both are consistent only for transactional engines (InnoDB); MyISAM tables
are read as they are while the snapshot runs.

Tables are read in primary-key order with keyset pagination (``WHERE key >
last ORDER BY key LIMIT chunk``), each chunk one short query. Tables without
a primary key, or whose key has a column that does not sort the way it
compares (ENUM, SET, FLOAT, DOUBLE), are read in one unbuffered query instead.
Rows are converted by the same type table and codecs as the binlog reader
(:mod:`connectors.mysql.types`, :mod:`connectors.mysql.values`), from the server's text: the session time
zone is pinned to UTC so TIMESTAMP text is UTC. When the runtime asks for batches
(``cdc.spi.BatchesSnapshot``), a chunk's rows come as one ``SnapshotRows`` (their
values, no event per row) instead of an event each.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import pymysql.cursors
import pymysql.err

import cdc
from cdc.errors import PrerequisiteError
from cdc.events import ChangeEvent, Column, Op, SourceInfo, TableId, TableSchema
from cdc.spi import SnapshotChunk, SnapshotResume, SnapshotRows
from connectors.mysql.catalog import catalog_columns, catalog_primary_key
from connectors.mysql.position import BinlogFile, GtidSet, MySqlPosition
from connectors.mysql.source.server import (
    ServerInfo,
    connect,
    gtid_state,
    master_status,
    server_info,
)
from connectors.mysql.types import column_type_from_catalog
from connectors.mysql.values import TextRowDecoder, ZeroDatePolicy, make_codec, snapshot_conv

log = logging.getLogger(__name__)

__all__ = ["CannotResume", "SnapshotLock", "SnapshotReader", "SnapshotTable", "list_tables"]

SnapshotLock = Literal["auto", "none", "global"]
SYSTEM_SCHEMAS: Final = ("mysql", "information_schema", "performance_schema", "sys")
# A resumed attempt n numbers its rows from n << ATTEMPT_SHIFT: above every row of the
# attempts before it (2**40 rows each), below the stream's indexes (1 << 62).
ATTEMPT_SHIFT: Final = 40
_UNORDERED_KEY_TYPES: Final = frozenset({"enum", "set", "float", "double"})

_TABLES_SQL: Final = (
    "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
    "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ("
    + ",".join(f"'{s}'" for s in SYSTEM_SCHEMAS)
    + ") ORDER BY TABLE_SCHEMA, TABLE_NAME"
)


def quote(ident: str) -> str:
    return "`" + ident.replace("`", "``") + "`"


def list_tables(cur: Any, captured: Callable[[str, str], bool]) -> list[tuple[str, str, int]]:
    """Captured base tables as (database, table, estimated rows)."""
    cur.execute(_TABLES_SQL)
    out = []
    for db, table, rows in cur.fetchall():
        db = db.decode() if isinstance(db, bytes) else str(db)
        table = table.decode() if isinstance(table, bytes) else str(table)
        if captured(db, table):
            out.append((db, table, int(rows or 0)))
    return out


class CannotResume(Exception):
    """An interrupted snapshot cannot be resumed exactly; take a fresh one."""


@dataclass(frozen=True, slots=True)
class SnapshotTable:
    """A table as the snapshot reads it: schema, SELECT list and row decoder."""

    schema: TableSchema
    decode: TextRowDecoder
    estimated_rows: int
    chunked: bool  # keyset pagination (else one unbuffered query)
    key_index: tuple[int, ...]  # positions of the key columns in the SELECT list


class SnapshotReader:
    """Opens a consistent snapshot and yields its rows as ``op=r`` events."""

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        *,
        source_name: str,
        table_filter: Callable[[str, str], bool],
        zero_date: ZeroDatePolicy = "null",
        chunk_size: int = 10_000,
        lock: SnapshotLock = "auto",
        lock_wait_timeout_s: int = 30,
        progress_interval_s: float = 10.0,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self._kwargs = dict(connect_kwargs)
        self._kwargs.setdefault("charset", "utf8mb4")
        self.source_name = source_name
        self.table_filter = table_filter
        self.zero_date: ZeroDatePolicy = zero_date
        self.chunk_size = chunk_size
        self.lock: SnapshotLock = lock
        self.lock_wait_timeout_s = lock_wait_timeout_s
        self.progress_interval_s = progress_interval_s
        self.rows_done = 0
        # Yield a chunk's rows as SnapshotRows instead of an event each (the runtime asked
        # for them: cdc.spi.BatchesSnapshot).
        self.batches = False
        self.tables: list[SnapshotTable] = []
        self.server: ServerInfo | None = None
        self._conn: Any = None

    def open(
        self, *, marks: bool = False, resume: SnapshotResume | None = None
    ) -> tuple[MySqlPosition, Iterator[ChangeEvent | SnapshotChunk | SnapshotRows]]:
        """Start the snapshot transaction now; its rows are read as the iterator is consumed.

        ``marks``: a :class:`SnapshotChunk` after each chunk's rows and each table.
        ``resume``: skip its finished tables, start its table after its key, and
        position the rows at ``resume.start`` (the first attempt's binlog
        position, returned) with indexes above every earlier attempt's (SOURCE.md,
        "Resuming a snapshot"). Raises :class:`CannotResume` when a captured table
        is not read in key order: the caller then takes a fresh snapshot.
        """
        conn = connect(self._kwargs, conv=snapshot_conv())
        self._conn = conn
        try:
            cur = conn.cursor()
            self.server = info = server_info(cur)
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            lock = self.lock
            if lock == "auto":
                lock = "none" if info.mariadb else "global"
            captured = list_tables(cur, self.table_filter)
            t0 = time.time()
            if lock == "none":
                position = self._lockless(cur, info)
                self.tables = [self._table(cur, *t) for t in captured]
            else:
                cur.execute(f"SET SESSION lock_wait_timeout = {int(self.lock_wait_timeout_s)}")
                try:
                    cur.execute("FLUSH TABLES WITH READ LOCK")
                except (pymysql.err.OperationalError, pymysql.err.ProgrammingError) as e:
                    if e.args and e.args[0] in (1227, 1045, 1044):  # access denied
                        raise PrerequisiteError(
                            f"the global-lock snapshot needs the RELOAD privilege: {e.args[-1]}",
                            hint="GRANT RELOAD ON *.* TO <the cdc user>, or on MariaDB use "
                            "the lock-free snapshot (lock: none)",
                        ) from e
                    raise
                try:
                    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    file, pos = master_status(cur)
                    gset = gtid_state(cur, info.mariadb)
                    position = MySqlPosition(
                        file, pos, 0, gtid_set=gset, server_id=info.server_id, snapshot=True
                    )
                    self.tables = [self._table(cur, *t) for t in captured]
                finally:
                    cur.execute("UNLOCK TABLES")
                log.info("%s: global read lock held %.3fs", self.source_name, time.time() - t0)
            if resume is not None:
                unordered = [str(t.schema.table) for t in self.tables if not t.chunked]
                if unordered:
                    raise CannotResume(
                        f"table(s) {', '.join(unordered)} are not read in key order (no "
                        "primary key, or one that does not sort as it compares)")
                assert isinstance(resume.start, MySqlPosition)
                log.info("%s: resumed snapshot reads at %s; rows positioned at %s, the stream "
                         "starts there", self.source_name, position, resume.start)
                position = resume.start
        except BaseException:
            self.close()
            raise
        log.info(
            "%s: snapshot of %d tables (~%d rows) consistent with %s",
            self.source_name,
            len(self.tables),
            sum(t.estimated_rows for t in self.tables),
            position,
        )
        return position, self._rows(position, int(t0 * 1000), marks, resume)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # the connection may already be broken
                log.debug("closing the snapshot connection failed", exc_info=True)

    # ------------------------------------------------------------------ internals

    def _lockless(self, cur: Any, info: ServerInfo) -> MySqlPosition:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        cur.execute("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
        status = {str(k).lower(): v for k, v in cur.fetchall()}
        file = status.get("binlog_snapshot_file")
        pos = status.get("binlog_snapshot_position")
        if not file or pos is None:
            raise PrerequisiteError(
                "the server does not report the binlog position of a consistent snapshot "
                "(binlog_snapshot_file): lock-free snapshots need MariaDB with log_bin",
                hint="use the global-lock snapshot (lock: global), which needs RELOAD",
            )
        gset = GtidSet()
        if info.mariadb:
            cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, int(pos)))
            (text,) = cur.fetchone()
            gset = GtidSet.parse(text.decode() if isinstance(text, bytes) else str(text or ""))
        return MySqlPosition(
            BinlogFile(str(file)),
            int(pos),
            0,
            gtid_set=gset,
            server_id=info.server_id,
            snapshot=True,
        )

    def _table(self, cur: Any, database: str, table: str, estimated: int) -> SnapshotTable:
        assert self.server is not None
        where = f"{database}.{table}"
        cat = catalog_columns(cur, database, table, mariadb=self.server.mariadb)
        if not cat:
            raise PrerequisiteError(f"{where} disappeared while the snapshot started")
        key = catalog_primary_key(cur, database, table)
        codecs = [
            make_codec(
                c.shape(),
                column_type_from_catalog(c),
                nullable=c.nullable,
                table=where,
                zero_date=self.zero_date,
                charset=c.charset,
            )
            for c in cat
        ]
        columns = tuple(
            Column(c.name, codec.type, c.nullable, c.default)
            for c, codec in zip(cat, codecs, strict=True)
        )
        schema = TableSchema(TableId(database, None, table), columns, key)
        by_name = {c.name: c for c in cat}
        chunked = bool(key) and all(by_name[k].data_type not in _UNORDERED_KEY_TYPES for k in key)
        names = [c.name for c in cat]
        return SnapshotTable(
            schema, TextRowDecoder(codecs), estimated, chunked, tuple(names.index(k) for k in key)
        )

    def _rows(
        self, position: MySqlPosition, ts_ms: int, marks: bool = False,
        resume: SnapshotResume | None = None,
    ) -> Iterator[ChangeEvent | SnapshotChunk | SnapshotRows]:
        """All rows, one behind so the last one can say ``snapshot="last"``; chunk marks
        come right after the chunk's last row. With ``batches``, a chunk's rows but its
        last (held back as above) come as one :class:`SnapshotRows`: row ``i`` of it is
        exactly the event the per-row path yields, but for the event's ``ts_ms`` (the
        time the batch was made, not each row's)."""
        conn = self._conn
        assert conn is not None and self.server is not None
        version = getattr(cdc, "__version__", "0")
        db_version = self.server.version
        held: tuple[TableSchema, dict[str, Any]] | None = None
        marks_held: list[SnapshotChunk] = []
        index = (resume.attempt << ATTEMPT_SHIFT) if resume is not None else 0
        done_tables = set(resume.tables_done) if resume is not None else set()

        def event(schema: TableSchema, row: dict[str, Any], *, last: bool) -> ChangeEvent:
            pos = MySqlPosition(
                position.file,
                position.pos,
                index,
                gtid_set=position.gtid_set,
                server_id=position.server_id,
                snapshot=True,
                last_in_tx=last,
            )
            key = {k: row[k] for k in schema.primary_key} if schema.primary_key else None
            return ChangeEvent(
                op=Op.READ,
                schema=schema,
                key=key,
                before=None,
                after=row,
                source=SourceInfo(
                    "mysql",
                    self.source_name,
                    version,
                    db_version,
                    pos,
                    ts_ms,
                    snapshot="last" if last else "true",
                ),
                ts_ms=int(time.time() * 1000),
            )

        def source_at(first: int) -> Callable[[int], SourceInfo]:
            def at(i: int) -> SourceInfo:
                pos = MySqlPosition(position.file, position.pos, first + i,
                                    gtid_set=position.gtid_set, server_id=position.server_id,
                                    snapshot=True, last_in_tx=False)
                return SourceInfo("mysql", self.source_name, version, db_version, pos, ts_ms,
                                  snapshot="true")
            return at

        batches = self.batches
        try:
            for table in self.tables:
                qualified = table.schema.table.qualified
                if qualified in done_tables:
                    continue
                after = None
                if resume is not None and resume.table == qualified:
                    after = resume.after
                schema = table.schema
                key_names = schema.primary_key
                for rows in self._read_table(conn, table, after):
                    if type(rows) is SnapshotChunk:
                        if marks:
                            marks_held.append(rows)
                        continue
                    assert isinstance(rows, list)
                    n = len(rows)
                    if held is not None:
                        yield event(*held, last=False)
                    if marks_held:
                        yield from marks_held
                        marks_held.clear()
                    if batches and n > 1:
                        at = source_at(index + 1)
                        yield SnapshotRows(schema, at(0), int(time.time() * 1000), at,
                                           afters=rows[:-1], key_of=_key_of(key_names))
                        index += n - 1
                    else:
                        for row in rows[:-1]:
                            index += 1
                            yield event(schema, row, last=False)
                    index += 1
                    held = (schema, rows[-1])
            if held is not None:
                yield event(*held, last=True)
            yield from marks_held
            conn.cursor().execute("COMMIT")
            log.info("%s: snapshot read %d rows", self.source_name, self.rows_done)
        finally:
            self.close()

    def _read_table(
        self, conn: Any, table: SnapshotTable, start_after: Sequence[Any] | None = None
    ) -> Iterator[list[dict[str, Any]] | SnapshotChunk]:
        """The table's rows a chunk at a time (never an empty one), each chunk followed
        by its mark; the table's done mark at the end."""
        schema = table.schema
        cols = ", ".join(quote(c.name) for c in schema.columns)
        name = f"{quote(schema.table.database)}.{quote(schema.table.table)}"
        done, t0, last_log = 0, time.monotonic(), time.monotonic()
        decode = table.decode

        def progress(final: bool = False) -> None:
            nonlocal last_log
            now = time.monotonic()
            if final or now - last_log >= self.progress_interval_s:
                last_log = now
                rate = done / max(now - t0, 1e-9)
                log.info(
                    "%s: snapshot %s: %d/%s rows (%.0f rows/s)%s",
                    self.source_name,
                    schema.table,
                    done,
                    f"~{table.estimated_rows}",
                    rate,
                    " done" if final else "",
                )

        progress()
        if table.chunked:
            key_cols = [quote(k) for k in schema.primary_key]
            order = ", ".join(key_cols)
            last: Sequence[Any] | None = start_after
            if start_after is not None:
                log.info("%s: snapshot %s resumes after key %s", self.source_name, schema.table,
                         list(start_after))
            cur = conn.cursor()
            while True:
                if last is None:
                    cur.execute(
                        f"SELECT {cols} FROM {name} ORDER BY {order} LIMIT %s", (self.chunk_size,)
                    )
                else:
                    cond, params = _keyset(key_cols, last)
                    cur.execute(
                        f"SELECT {cols} FROM {name} WHERE {cond} ORDER BY {order} LIMIT %s",
                        (*params, self.chunk_size),
                    )
                rows = cur.fetchall()
                if rows:
                    yield [decode(raw) for raw in rows]
                done += len(rows)
                self.rows_done += len(rows)
                progress()
                if rows:
                    last = [rows[-1][i] for i in table.key_index]
                    yield SnapshotChunk(schema.table.qualified, tuple(last))
                if len(rows) < self.chunk_size:
                    break
        else:
            cur = conn.cursor(pymysql.cursors.SSCursor)
            try:
                cur.execute(f"SELECT {cols} FROM {name}")
                while True:
                    rows = cur.fetchmany(self.chunk_size)
                    if not rows:
                        break
                    yield [decode(raw) for raw in rows]
                    done += len(rows)
                    self.rows_done += len(rows)
                    progress()
            finally:
                cur.close()
        progress(final=True)
        yield SnapshotChunk(schema.table.qualified, None, True)


def _key_of(names: Sequence[str]) -> Callable[[Mapping[str, Any]], dict[str, Any] | None]:
    """The key of an after image, as the per-row event has it (None without a key)."""
    if not names:
        return lambda row: None
    return lambda row: {k: row[k] for k in names}


def _keyset(key_cols: Sequence[str], last: Sequence[Any]) -> tuple[str, list[Any]]:
    """``(a > x) OR (a = x AND b > y) ...``: the rows after ``last`` in key order.

    Spelled out rather than as a row comparison ``(a, b) > (x, y)`` so every
    server version turns it into index ranges.
    """
    terms, params = [], []
    for i, col in enumerate(key_cols):
        eq = [f"{key_cols[j]} = %s" for j in range(i)]
        terms.append("(" + " AND ".join([*eq, f"{col} > %s"]) + ")")
        params.extend([*last[:i], last[i]])
    return " OR ".join(terms), params
