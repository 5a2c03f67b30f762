"""The consistent initial snapshot: every captured row as of the slot's consistent point.

The slot creation (``CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT``, done by
:mod:`.connector`) exports a snapshot that sees exactly the transactions
committed before the slot's consistent point; the stream then starts at that
point. Reading every table inside that one snapshot (``REPEATABLE READ`` +
``SET TRANSACTION SNAPSHOT``) therefore hands over to the stream with no gap
and no overlap, however busy the database is.

Tables are read in primary-key order in chunks (keyset pagination: each
chunk is an index range scan after the last key read, so no chunk rereads or
skips rows and the server never holds a huge result); a thread reads the
next chunk while the runner encodes and produces the current one. A table without a
primary key (REPLICA IDENTITY FULL) is read through one server-side cursor.
Values come back as the server's text output (every column's type gets a
raw-text loader) and go through the same per-column converters as the
stream's pgoutput text, so snapshot and stream values are identical.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from cdc import __version__
from cdc.events import ChangeEvent, Op, SourceInfo, TableId
from cdc.spi import SnapshotChunk, SnapshotResume, SnapshotRows, TextForm
from connectors.postgres.position import Lsn, PgPosition
from connectors.postgres.source import catalog
from connectors.postgres.source.catalog import (
    PublicationFacts,
    TableFacts,
    TableShape,
    text_forms,
)
from connectors.postgres.source.changes import CONNECTOR_NAME
from connectors.postgres.types import TextConverter

log = logging.getLogger(__name__)
_T = TypeVar("_T")

PROGRESS_LOG_S = 5.0
# A resumed attempt n numbers its rows from n << ATTEMPT_SHIFT: above every row of the
# attempts before it (2**40 rows each), below the stream's indexes (1 << 62).
ATTEMPT_SHIFT = 40
# Keyed chunks read ahead by a thread while the runner encodes and produces the current
# one: the server's scan and the transfer overlap the runner's work (psycopg waits on the
# network without the GIL). The runner takes one chunk at a time, so more than one ahead
# would only hold memory. Measured gain: within the noise on the shared machine
# (docs/BENCHMARKS.md); 0 turns it off.
PREFETCH_CHUNKS = 1

# A chunk of rows as the server's text: shape, text forms, rows, read time (ms).
_Chunk = tuple[TableShape, list[tuple[TextForm, TextConverter]], list[tuple[Any, ...]], int]

class SnapshotReader:
    """Reads captured tables inside an exported snapshot and yields ``op=r`` events.

    ``connect`` opens a normal connection pinned to the type table's session
    settings. ``tables`` are ``(oid, schema, table)`` triples;
    ``publication`` supplies column lists and row filters so the snapshot
    holds exactly what the publication would stream.
    """

    def __init__(
        self,
        *,
        source_name: str,
        database: str,
        db_version: str,
        connect: Callable[[], psycopg.Connection[Any]],
        tables: Sequence[tuple[int, str, str]],
        chunk_size: int,
        publication: PublicationFacts | None = None,
    ) -> None:
        self.source_name = source_name
        self.database = database
        self.db_version = db_version
        self._connect = connect
        self.tables = list(tables)
        self.chunk_size = chunk_size
        self.publication = publication
        self.rows = 0
        # Yield SnapshotRows for a chunk's rows instead of an event each (the runtime
        # asked for them: cdc.spi.BatchesSnapshot).
        self.batches = False
        # Chunks a thread reads ahead of the one being encoded and produced (0: read
        # each only when the previous one is done; see _ahead).
        self.prefetch = PREFETCH_CHUNKS

    def read(
        self,
        snapshot_name: str,
        consistent: Lsn,
        on_done: Callable[[], None] | None = None,
        *,
        marks: bool = False,
        resume: SnapshotResume | None = None,
    ) -> Iterator[ChangeEvent | SnapshotChunk | SnapshotRows]:
        """Every row of every table, the last one marked ``last_in_tx``/``snapshot=last``.

        ``on_done`` runs once the snapshot transaction is over (or failed):
        the exporting replication connection may then be used again.
        ``marks``: yield a :class:`SnapshotChunk` after each chunk's rows (and when a
        table is done). ``resume``: skip its finished tables, start its table after its
        key; rows are positioned at ``consistent`` (the first attempt's point) with
        indexes above every earlier attempt's (SOURCE.md, "Resuming a snapshot").
        """
        conn = self._connect()
        try:
            # psycopg opens the transaction (BEGIN ISOLATION LEVEL REPEATABLE READ READ
            # ONLY) before the first statement, which must import the snapshot.
            conn.autocommit = False
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_name)))
            held: tuple[TableShape, dict[str, Any] | None, dict[str, Any], int] | None = None
            marks_held: list[SnapshotChunk] = []
            base = (resume.attempt << ATTEMPT_SHIFT) if resume is not None else 0
            index = base
            version = __version__
            name = self.source_name
            db_version = self.db_version
            done_tables = set(resume.tables_done) if resume is not None else set()

            def source(at: int, last: bool, read_ms: int) -> SourceInfo:
                return SourceInfo(CONNECTOR_NAME, name, version, db_version,
                                  PgPosition(consistent, at, True, last), read_ms, None,
                                  "last" if last else "true", None)

            def make(parts: tuple[TableShape, dict[str, Any] | None, dict[str, Any], int],
                     at: int, last: bool) -> ChangeEvent:
                shape, key, after, read_ms = parts
                return ChangeEvent(Op.READ, shape.schema, key, None, after,
                                   source(at, last, read_ms), read_ms)

            batches = self.batches
            t0 = time.monotonic()
            for oid, schema, table in self.tables:
                qualified = f"{schema}.{table}"
                if qualified in done_tables:
                    continue
                facts = catalog.table_facts(conn, oid)
                if facts is None:
                    log.warning("%s: table %s.%s disappeared before the snapshot; skipped",
                                self.source_name, schema, table)
                    if marks:
                        marks_held.append(SnapshotChunk(qualified, None, True))
                    continue
                start_after = None
                if resume is not None and resume.table == qualified:
                    start_after = resume.after
                for part in self._table(conn, facts, start_after):
                    if type(part) is SnapshotChunk:
                        if marks:
                            marks_held.append(part)
                        continue
                    assert isinstance(part, tuple)
                    shape, forms, texts, read_ms = part
                    n = len(texts)
                    if not n:
                        continue
                    if held is not None:
                        # One row behind: only the very last row is marked last.
                        yield make(held, index - 1, False)
                    if marks_held:
                        yield from marks_held
                        marks_held.clear()
                    # The chunk's rows but its last, which is held back as above.
                    build_row, build_key = shape.row, shape.key
                    if batches and n > 1:
                        def at(i: int, first: int = index, ms: int = read_ms) -> SourceInfo:
                            return source(first + i, False, ms)
                        yield SnapshotRows(shape.schema, at(0), read_ms, at, texts=texts[:-1],
                                           names=shape.names, forms=forms, convert=build_row,
                                           key_of=build_key)  # fmt: skip
                    else:
                        for i in range(n - 1):
                            after = build_row(texts[i])
                            yield make((shape, build_key(after), after, read_ms), index + i, False)
                    index += n
                    after = build_row(texts[-1])
                    held = (shape, build_key(after), after, read_ms)
            if held is not None:
                yield make(held, index - 1, True)
            yield from marks_held
            conn.commit()
            elapsed = time.monotonic() - t0
            log.info("%s: snapshot read %d rows from %d tables in %.1fs (%.0f rows/s), "
                     "consistent at %s", self.source_name, index - base, len(self.tables),
                     elapsed, (index - base) / elapsed if elapsed > 0 else 0.0, consistent)
        finally:
            try:
                conn.close()
            finally:
                if on_done is not None:
                    on_done()

    def _table(
        self, conn: psycopg.Connection[Any], facts: TableFacts,
        start_after: tuple[Any, ...] | None = None,
    ) -> Iterator[_Chunk | SnapshotChunk]:
        columns, row_filter = catalog.published_columns(self.publication, facts.schema, facts.name)
        shape = catalog.shape_from_facts(conn, self.database, facts, columns)
        by_name = {c.name: c for c in facts.columns}
        for c in facts.columns:
            # Raw server text for every column, whatever psycopg would make of it.
            conn.adapters.register_loader(c.type_oid, TextLoader)
        names = shape.names
        key_names = shape.key_names
        key_index = shape.key_index
        forms = text_forms(shape)
        select = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        where = sql.SQL("({})").format(sql.SQL(row_filter)) if row_filter else None
        table_id: TableId = shape.table
        qualified = f"{facts.schema}.{facts.name}"
        estimated = max(facts.estimated_rows, 0)
        done = 0
        t0 = last_log = time.monotonic()
        if start_after is not None and key_names:
            log.info("%s: snapshot of %s resumes after key %s (about %d rows in the table)",
                     self.source_name, table_id, list(start_after), estimated)
        else:
            start_after = None
            log.info("%s: snapshot of %s (about %d rows)", self.source_name, table_id, estimated)
        for rows in self._chunks(conn, facts, select, where, [by_name[k].sql_type for k in key_names],
                                 key_names, key_index, start_after):
            yield shape, forms, rows, time.time_ns() // 1_000_000
            if key_names:
                tail = rows[-1]
                yield SnapshotChunk(qualified, tuple(tail[i] for i in key_index))
            done += len(rows)
            self.rows += len(rows)
            now = time.monotonic()
            if now - last_log >= PROGRESS_LOG_S:
                last_log = now
                log.info("%s: snapshot of %s: %d of about %d rows (%.0f rows/s)",
                         self.source_name, table_id, done, max(estimated, done),
                         done / (now - t0))
        yield SnapshotChunk(qualified, None, True)
        log.info("%s: snapshot of %s done: %d rows in %.1fs", self.source_name, table_id, done,
                 time.monotonic() - t0)

    def _chunks(
        self,
        conn: psycopg.Connection[Any],
        facts: TableFacts,
        select: sql.Composable,
        where: sql.Composable | None,
        key_types: Sequence[str],
        key_names: Sequence[str],
        key_index: Sequence[int],
        start_after: Sequence[Any] | None = None,
    ) -> Iterator[list[tuple[Any, ...]]]:
        table = facts.sql_name
        chunk = self.chunk_size
        if not key_names:
            query = sql.SQL("SELECT {} FROM {}").format(select, table)
            if where is not None:
                query = sql.SQL("{} WHERE {}").format(query, where)
            with conn.cursor(name=f"cdc_snapshot_{facts.oid}") as cur:
                cur.itersize = chunk
                cur.execute(query)
                while True:
                    rows = cur.fetchmany(chunk)
                    if not rows:
                        return
                    yield rows
        keys = sql.SQL(", ").join(sql.Identifier(k) for k in key_names)
        params = sql.SQL(", ").join(
            sql.SQL("%s::{}").format(sql.SQL(t)) for t in key_types
        )
        order = sql.SQL(" ORDER BY {} LIMIT {}").format(keys, sql.Literal(chunk))
        first = sql.SQL("SELECT {} FROM {}").format(select, table)
        after = sql.SQL("SELECT {} FROM {} WHERE ({}) > ({})").format(select, table, keys, params)
        if where is not None:
            first = sql.SQL("{} WHERE {}").format(first, where)
            after = sql.SQL("{} AND {}").format(after, where)
        first += order
        after += order
        last: list[Any] | None = list(start_after) if start_after is not None else None

        def fetch() -> Iterator[list[tuple[Any, ...]]]:
            nonlocal last
            with conn.cursor() as cur:
                while True:
                    if last is None:
                        cur.execute(first)
                    else:
                        cur.execute(after, last)
                    rows = cur.fetchall()
                    if not rows:
                        return
                    yield rows
                    if len(rows) < chunk:
                        return
                    tail = rows[-1]
                    last = [tail[i] for i in key_index]

        if self.prefetch <= 0:
            yield from fetch()
        else:
            yield from _ahead(fetch(), self.prefetch, f"{self.source_name}-snapshot-read")


_END: Final = object()


def _ahead(chunks: Iterator[_T], depth: int, thread_name: str) -> Iterator[_T]:
    """``chunks``, with up to ``depth`` of them read ahead by a thread.

    The thread alone drives ``chunks`` (and so the connection behind it) until it is
    exhausted; the caller gets them in order, and a failure of the read is raised in
    the caller at the place of the chunk that failed. Closing the iterator early stops
    the thread and waits for it, so the connection is free again afterwards.
    """
    out: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for c in chunks:
                if not put(c):
                    return
            put(_END)
        except BaseException as e:  # handed to the caller, raised there
            put(e)
        finally:
            if stop.is_set():
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()

    thread = threading.Thread(target=run, name=thread_name, daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
