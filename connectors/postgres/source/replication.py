"""The PostgreSQL stream reader: pgoutput over psycopg 3, turned into change events.

:class:`StreamReader` is the I/O shell around the pure decoder
(:mod:`.decoder`) and the type table (:mod:`connectors.postgres.types`);
the source connector (:mod:`.connector`) drives it. Its parts, one concern
each:

* **The wire** (:mod:`.wire`): a ``replication=database`` connection in COPY
  BOTH mode. This module's session loop drives it with libpq's non-blocking
  copy calls and ``poll`` on the socket (a blocking ``get_copy_data(0)``
  would hold the GIL; MACHINE-NOTES.md). Keepalives that ask for a reply are
  answered at once and a standby status update goes out every
  ``status_interval_s`` even when idle. Its *flush* LSN is only ever the
  last position the runtime acknowledged, so the slot never moves past an
  event that is not durable in Kafka.
* **Transactions** (:mod:`.spill`): events carry the transaction's commit
  *end* LSN, which pgoutput only reveals in the Commit (or Stream Commit)
  message. So the raw messages of a transaction are buffered - in memory,
  spilled to a temporary file past ``spill_bytes`` - and decoded into events
  when it commits (:mod:`.changes`), one event behind so the last one can be
  marked ``last_in_tx``. Streamed in-progress transactions use the same
  buffer per xid; Stream Abort drops a buffer (or, for a subtransaction, its
  changes). Memory stays flat however large a transaction is.
* **Relations** (:mod:`.relations`): Relation messages become the table
  shapes rows are converted with.
* **Progress** (here): when idle it yields :class:`~cdc.spi.Heartbeat` at
  least every ``idle_yield_s`` (so the runtime can checkpoint and stop),
  and - when no transaction is open or buffered - a heartbeat at the
  server's WAL end (from keepalives) at most every ``heartbeat_interval_s``,
  which is what lets ``confirmed_flush_lsn`` advance on a busy server whose
  captured tables are idle.
* **Reconnects** (:mod:`.reconnect`): a dropped connection is retried with
  bounded exponential backoff and resumed from the last acknowledged
  position; transactions the server resends that were already yielded in
  this process are skipped, so a reconnect adds no duplicates. A slot that
  has disappeared or was invalidated is fatal, never papered over.

This module holds the settings, the reader's state and acknowledgements, and
the session loop (CopyData dispatch, messages outside a transaction, status
updates and heartbeats). See SOURCE.md next to this package for the event
semantics.
"""

from __future__ import annotations

import logging
import select
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from cdc.config.sources import TableFilter
from cdc.errors import CdcError, SerializationError
from cdc.spi import Heartbeat, StreamItem, TextForm
from connectors.postgres.position import Lsn, PgPosition
from connectors.postgres.source.catalog import TableShape
from connectors.postgres.source.changes import ChangeBuilder, TransactionListener
from connectors.postgres.source.decoder import decode_message
from connectors.postgres.source.messages import (
    Begin,
    Commit,
    Relation,
    StreamAbort,
    StreamCommit,
    StreamStart,
)
from connectors.postgres.source.reconnect import ReconnectPolicy, Session, lsn_of
from connectors.postgres.source.relations import RelationCache
from connectors.postgres.source.spill import TxBuffer
from connectors.postgres.source.wire import ConnectionLost, ReplicationConnection, classify

log = logging.getLogger(__name__)

# pgoutput message tags (first byte of an XLogData payload).
_BEGIN: Final = 0x42  # B
_COMMIT: Final = 0x43  # C
_STREAM_START: Final = 0x53  # S
_STREAM_STOP: Final = 0x45  # E
_STREAM_COMMIT: Final = 0x63  # c
_STREAM_ABORT: Final = 0x41  # A
_MESSAGE: Final = 0x4D  # M
_RELATION: Final = 0x52  # R
_TYPE: Final = 0x59  # Y

_XLOGDATA_HEADER: Final = 25  # 'w' + dataStart + walEnd + sendTime
_KEEPALIVE: Final = struct.Struct(">QqB")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What the stream reader needs from the source config, plus tuning constants."""

    slot: str
    publication: str
    proto_version: int = 1
    streaming: bool = False
    status_interval_s: float = 10.0
    heartbeat_interval_s: float = 10.0
    idle_yield_s: float = 1.0
    spill_bytes: int = 16 << 20
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 10.0
    reconnect_timeout_s: float = 300.0
    messages: bool = True
    # Loop prevention (skip_replicated_changes): leave out transactions that carry a
    # replication origin. ``origin_filter`` asks pgoutput to (PostgreSQL 16+);
    # without it the reader drops the transactions that start with an Origin message.
    skip_replicated: bool = False
    origin_filter: bool = False
    # Yield runs of inserts as cdc.spi.StreamRows (the runtime asked: BatchesStream).
    batch_inserts: bool = False

    def start_options(self) -> str:
        opts = [
            f"proto_version '{self.proto_version}'",
            f"publication_names '\"{self.publication}\"'",
        ]
        if self.messages:
            opts.append("messages 'true'")
        if self.skip_replicated and self.origin_filter:
            opts.append("origin 'none'")
        if self.streaming and self.proto_version >= 2:
            opts.append("streaming 'on'")
        return ", ".join(opts)


class StreamReader(ReconnectPolicy, ChangeBuilder):
    """Streams a slot's committed transactions as events, across reconnects.

    ``connect_sql`` opens a normal connection (catalog lookups, slot checks);
    ``connect_replication`` a replication one. Both must pin the session
    settings of :data:`connectors.postgres.types.SESSION_SETTINGS`, which the
    text values of pgoutput depend on.

    The entry point :meth:`stream` and the slot checks come from
    :class:`~.reconnect.ReconnectPolicy`, the events of a committed
    transaction from :class:`~.changes.ChangeBuilder`; this class holds the
    state they share and the session loop.
    """

    def __init__(
        self,
        settings: StreamSettings,
        *,
        source_name: str,
        database: str,
        db_version: str,
        tables: TableFilter,
        connect_sql: Callable[[], psycopg.Connection[Any]],
        connect_replication: Callable[[], ReplicationConnection],
        on_transaction: TransactionListener | None = None,
    ) -> None:
        self.settings = settings
        self.source_name = source_name
        self.database = database
        self.db_version = db_version
        self.tables = tables
        self._connect_sql = connect_sql
        self._connect_replication = connect_replication
        self.on_transaction = on_transaction
        self._forms: dict[TableShape, list[tuple[TextForm, Callable[[str], Any]]]] = {}
        self._sql: psycopg.Connection[Any] | None = None
        self._session: Session | None = None
        self._relation_cache = RelationCache(source_name=source_name, database=database,
                                             tables=tables, sql=self.sql)
        # Positions: what the runtime acknowledged (the slot's flush LSN), and
        # the last position yielded (everything up to it is in the runtime's hands).
        self._acked: PgPosition | None = None
        self._ack_dirty = False
        self._yielded: PgPosition | None = None
        # The last yielded position that ends a transaction (or a heartbeat):
        # the only kind a heartbeat may repeat, since the runtime records it.
        self._boundary: PgPosition | None = None
        self._progress = 0  # highest LSN safe to offer as a heartbeat
        self._last_yield = 0.0
        self._last_progress_yield = 0.0
        self._closed = False
        self.stats = {"transactions": 0, "events": 0, "streamed_transactions": 0,
                      "spilled_transactions": 0, "reconnects": 0,
                      "skipped_transactions": 0}

    # -- acknowledgements -------------------------------------------------------------------

    def acknowledge(self, position: PgPosition) -> None:
        """Let the slot advance to ``position`` (called between iterations).

        Only transaction boundaries move the flush LSN: confirming the LSN of
        a half-delivered transaction would make the server skip its rest.
        """
        if not (position.last_in_tx or position.snapshot):
            return
        if self._acked is None or position.lsn > self._acked.lsn:
            self._acked = position
            self._ack_dirty = True

    @property
    def acknowledged(self) -> PgPosition | None:
        return self._acked

    # -- connections -----------------------------------------------------------------------------

    def sql(self) -> psycopg.Connection[Any]:
        conn = self._sql
        if conn is None or conn.closed or conn.broken:
            try:
                conn = self._sql = self._connect_sql()
            except psycopg.Error as e:
                raise classify(e, "cannot open a catalog connection") from e
        return conn

    def close(self) -> None:
        self._closed = True
        s, self._session = self._session, None
        if s is not None:
            if s.repl.streaming and self._acked is not None:
                try:  # a last word, so the slot reflects the final acknowledgement at once
                    s.repl.send_status(max(s.received, self._acked.lsn.value),
                                       self._acked.lsn.value, self._acked.lsn.value)
                except CdcError:
                    log.debug("final status update failed", exc_info=True)
            s.close()
        if self._sql is not None:
            try:
                self._sql.close()
            finally:
                self._sql = None

    # -- the session loop ---------------------------------------------------------------------------

    def _status(self, s: Session, reply: bool = False) -> None:
        flush = lsn_of(self._acked)
        s.repl.send_status(max(s.received, flush), flush, flush, reply)
        s.last_status = time.monotonic()
        self._ack_dirty = False

    def _send_status_if_due(self, s: Session, now: float) -> None:
        """Send a status update if one is due (periodic, or a fresh acknowledgement)."""
        if now - s.last_status >= self.settings.status_interval_s or (
            self._ack_dirty and now - s.last_status >= 0.1
        ):
            self._status(s)

    def _idle_item(self, s: Session, now: float) -> Heartbeat | None:
        """The heartbeat to yield now, if any (rate limits in the module docstring)."""
        quiet = s.tx is None and s.block is None and not s.streams
        if (
            quiet
            and self._progress > lsn_of(self._yielded)
            and now - self._last_progress_yield >= self.settings.heartbeat_interval_s
        ):
            self._last_progress_yield = self._last_yield = now
            self._yielded = self._boundary = PgPosition(Lsn(self._progress))
            return Heartbeat(self._yielded)
        if now - self._last_yield >= self.settings.idle_yield_s and self._boundary is not None:
            self._last_yield = now
            return Heartbeat(self._boundary)
        return None

    def _run(self, s: Session) -> Iterator[StreamItem]:
        try:
            yield from self._loop(s)
        except psycopg.Error as e:
            raise s.repl.copy_error(e) from e

    def _loop(self, s: Session) -> Iterator[StreamItem]:
        pgconn = s.repl.pgconn
        get = pgconn.get_copy_data
        # poll, not select: select fails on descriptors above 1023.
        readable = select.poll()
        readable.register(pgconn.socket, select.POLLIN)
        idle_yield = self.settings.idle_yield_s
        status_every = self.settings.status_interval_s
        header = _XLOGDATA_HEADER
        counter = 0
        while True:
            n, data = get(1)
            if n > 0:
                tag = data[0]
                if tag == 0x77:  # 'w' XLogData
                    payload = bytes(data[header:])
                    block = s.block
                    if block is not None:
                        if payload[0] == _STREAM_STOP:
                            s.block = None
                        else:
                            block.add(payload)
                    elif s.tx is not None:
                        if payload[0] == _COMMIT:
                            yield from self._commit(s, payload)
                        else:
                            s.tx.add(payload)
                    else:
                        yield from self._control(s, payload)
                elif tag == 0x6B:  # 'k' keepalive
                    wal_end, _clock, reply = _KEEPALIVE.unpack_from(data, 1)
                    if wal_end > s.wal_end:
                        s.wal_end = wal_end
                    if s.tx is None and s.block is None:
                        # Every transaction committed before wal_end has been sent.
                        if wal_end > s.received:
                            s.received = wal_end
                        if not s.streams and wal_end > self._progress:
                            self._progress = wal_end
                    if reply:
                        self._status(s)
                else:
                    raise SerializationError(
                        f"unknown replication message {chr(tag)!r} ({tag:#04x}) from the server"
                    )
                counter += 1
                if counter >= 512:
                    counter = 0
                    now = time.monotonic()
                    self._send_status_if_due(s, now)
                    if now - self._last_yield >= idle_yield:
                        item = self._idle_item(s, now)
                        if item is not None:
                            yield item
                continue
            if n == 0:
                now = time.monotonic()
                self._send_status_if_due(s, now)
                item = self._idle_item(s, now)
                if item is not None:
                    yield item
                    continue
                wait = min(
                    idle_yield - (now - self._last_yield),
                    status_every - (now - s.last_status),
                )
                if self._ack_dirty:
                    wait = min(wait, 0.1)
                try:
                    readable.poll(max(10, int(wait * 1000)))
                    pgconn.consume_input()
                except (OSError, psycopg.Error) as e:
                    raise ConnectionLost(f"replication connection lost: {e}") from e
                continue
            raise s.repl.copy_error()

    # -- pgoutput messages outside a transaction -------------------------------------------------

    def _control(self, s: Session, payload: bytes) -> Iterator[StreamItem]:
        tag = payload[0]
        if tag == _BEGIN:
            msg = decode_message(payload)
            assert isinstance(msg, Begin)
            s.tx = TxBuffer(msg.xid, streamed=False, limit=self.settings.spill_bytes)
            s.tx_begin = msg
        elif tag == _STREAM_START:
            start = decode_message(payload)
            assert isinstance(start, StreamStart)
            buf = s.streams.get(start.xid)
            if buf is None:
                if not start.first_segment:
                    raise SerializationError(
                        f"pgoutput Stream Start of transaction {start.xid} continues a stream "
                        "this session never saw begin"
                    )
                buf = s.streams[start.xid] = TxBuffer(start.xid, streamed=True,
                                                      limit=self.settings.spill_bytes)
            s.block = buf
        elif tag == _STREAM_COMMIT:
            commit = decode_message(payload)
            assert isinstance(commit, StreamCommit)
            buf = s.streams.pop(commit.xid, None)
            self.stats["streamed_transactions"] += 1
            if buf is None:
                raise SerializationError(
                    f"pgoutput Stream Commit of transaction {commit.xid} that was never streamed"
                )
            try:
                yield from self._emit(s, buf, commit.end_lsn, commit.ts_ms, commit.xid)
            finally:
                buf.close()
        elif tag == _STREAM_ABORT:
            abort = decode_message(payload)
            assert isinstance(abort, StreamAbort)
            buf = s.streams.get(abort.xid)
            if buf is not None:
                if abort.subxid == abort.xid:
                    del s.streams[abort.xid]
                    buf.close()
                else:
                    buf.aborted.add(abort.subxid)
        elif tag == _MESSAGE:
            # A non-transactional logical decoding message: not a row change.
            return
        elif tag == _RELATION:
            rel = decode_message(payload)
            assert isinstance(rel, Relation)
            self._relation_cache.describe(rel)
        elif tag == _TYPE:
            return
        else:
            msg = decode_message(payload)
            raise SerializationError(
                f"unexpected pgoutput {type(msg).__name__} message outside a transaction"
            )

    def _commit(self, s: Session, payload: bytes) -> Iterator[StreamItem]:
        commit = decode_message(payload)
        assert isinstance(commit, Commit)
        buf, begin = s.tx, s.tx_begin
        s.tx = s.tx_begin = None
        assert buf is not None and begin is not None
        try:
            yield from self._emit(s, buf, commit.end_lsn, commit.ts_ms, begin.xid)
        finally:
            buf.close()

