"""The logical replication stream: pgoutput over psycopg 3, turned into change events.

This is the I/O shell around the pure decoder (:mod:`.decoder`) and the type
table (:mod:`connectors.postgres.types`). It owns four things:

* **The wire.** A ``replication=database`` connection in COPY BOTH mode,
  driven with libpq's non-blocking copy calls and ``select`` on the socket
  (a blocking ``get_copy_data(0)`` would hold the GIL; MACHINE-NOTES.md).
  Keepalives that ask for a reply are answered at once and a standby status
  update goes out every ``status_interval_s`` even when idle. Its *flush*
  LSN is only ever the last position the runtime acknowledged, so the slot
  never moves past an event that is not durable in Kafka.
* **Transactions.** Events carry the transaction's commit *end* LSN, which
  pgoutput only reveals in the Commit (or Stream Commit) message. So the raw
  messages of a transaction are buffered - in memory, spilled to a temporary
  file past ``spill_bytes`` - and decoded into events when it commits,
  one event behind so the last one can be marked ``last_in_tx``. Streamed
  in-progress transactions use the same buffer per xid; Stream Abort drops
  a buffer (or, for a subtransaction, its changes). Memory stays flat
  however large a transaction is.
* **Progress.** When idle it yields :class:`~cdc.spi.Heartbeat` at least every
  ``idle_yield_s`` (so the runtime can checkpoint and stop), and - when no
  transaction is open or buffered - a heartbeat at the server's WAL end
  (from keepalives) at most every ``heartbeat_interval_s``, which is what
  lets ``confirmed_flush_lsn`` advance on a busy server whose captured
  tables are idle.
* **Reconnects.** A dropped connection (server restart, network) is retried
  with bounded exponential backoff and resumed from the last acknowledged
  position; transactions the server resends that were already yielded in
  this process are skipped, so a reconnect adds no duplicates. A slot that
  has disappeared or was invalidated is fatal, never papered over.

See SOURCE.md next to this package for the event semantics.
"""

from __future__ import annotations

import dataclasses
import logging
import select
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

import psycopg
from psycopg import pq, sql

from cdc import __version__, native
from cdc.config.models import TableFilter
from cdc.errors import (
    CdcError,
    PrerequisiteError,
    RetriableError,
    SerializationError,
    UnreachableError,
)
from cdc.events import ChangeEvent, Op, SourceInfo, TransactionInfo
from cdc.spi import Heartbeat, StreamItem
from connectors.postgres.position import Lsn, PgPosition
from connectors.postgres.source import catalog
from connectors.postgres.source.catalog import NullInNotNull, TableShape
from connectors.postgres.source.decoder import (
    UNCHANGED_TOAST,
    Begin,
    Commit,
    DataType,
    LogicalMessage,
    Origin,
    Relation,
    StreamAbort,
    StreamCommit,
    StreamStart,
    Truncate,
    TupleData,
    decode_message,
    decode_row,
    encode_standby_status,
    pg_timestamp_now,
)
from connectors.postgres.types import load_type_catalog

log = logging.getLogger(__name__)

CONNECTOR_NAME: Final = "postgresql"

# pgoutput message tags (first byte of an XLogData payload).
_BEGIN: Final = 0x42  # B
_COMMIT: Final = 0x43  # C
_STREAM_START: Final = 0x53  # S
_STREAM_STOP: Final = 0x45  # E
_INSERT: Final = 0x49  # I
_IUD: Final = frozenset(b"IUD")  # row changes: Insert, Update, Delete
_STREAM_COMMIT: Final = 0x63  # c
_STREAM_ABORT: Final = 0x41  # A
_MESSAGE: Final = 0x4D  # M
_RELATION: Final = 0x52  # R
_TYPE: Final = 0x59  # Y
# Messages that carry a (sub)transaction xid right after the tag inside a stream
# block, and that a subtransaction's abort drops.
_ROW_CHANGES: Final = frozenset(b"IUDTM")

_XLOGDATA_HEADER: Final = 25  # 'w' + dataStart + walEnd + sendTime
_KEEPALIVE: Final = struct.Struct(">QqB")
_LEN: Final = struct.Struct(">I")


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

    def start_options(self) -> str:
        opts = [
            f"proto_version '{self.proto_version}'",
            f"publication_names '\"{self.publication}\"'",
        ]
        if self.messages:
            opts.append("messages 'true'")
        if self.streaming and self.proto_version >= 2:
            opts.append("streaming 'on'")
        return ", ".join(opts)


@dataclass(frozen=True, slots=True)
class TransactionMarker:
    """A transaction boundary, for a Debezium-style transaction metadata topic.

    ``status`` BEGIN is reported just before the transaction's first event is
    yielded, END just after its last; ``event_count`` and ``data_collections``
    (``schema.table`` -> events) are filled on END only.
    """

    status: str  # "BEGIN" | "END"
    id: str
    position: PgPosition
    ts_ms: int
    event_count: int = 0
    data_collections: tuple[tuple[str, int], ...] = ()


TransactionListener = Callable[[TransactionMarker], None]


# --------------------------------------------------------------------------- errors


class ConnectionLost(RetriableError):
    """The replication or catalog connection dropped; the stream reconnects."""


# SQLSTATEs meaning "try again later": connection trouble, shutdown, slot busy.
_RETRIABLE_STATES: Final = frozenset({"57P01", "57P02", "57P03", "55006", "53300", "53400"})


def classify(e: BaseException, what: str) -> CdcError:
    """Map a psycopg error to retriable (:class:`ConnectionLost`) or fatal."""
    if isinstance(e, CdcError):
        return e
    state = getattr(getattr(e, "diag", None), "sqlstate", None) or getattr(e, "sqlstate", None)
    if isinstance(e, psycopg.OperationalError) and (
        state is None or state in _RETRIABLE_STATES or str(state).startswith("08")
    ):
        return ConnectionLost(f"{what}: {e}")
    if isinstance(e, (psycopg.InterfaceError, OSError)):
        return ConnectionLost(f"{what}: {e}")
    return PrerequisiteError(f"{what}: {e}" + (f" (SQLSTATE {state})" if state else ""))


# --------------------------------------------------------------------------- the wire


class ReplicationConnection:
    """A ``replication=database`` connection: slot commands, then the COPY BOTH stream."""

    def __init__(self, conninfo: str) -> None:
        try:
            self.conn: psycopg.Connection[Any] = psycopg.connect(conninfo, autocommit=True)
        except psycopg.Error as e:
            raise classify(e, "cannot open a replication connection") from e
        self.pgconn: pq.abc.PGconn = self.conn.pgconn
        self.streaming = False

    def identify_system(self) -> tuple[str, int, Lsn, str]:
        row = self.conn.execute("IDENTIFY_SYSTEM").fetchone()
        assert row is not None
        return str(row[0]), int(row[1]), Lsn.parse(row[2]), str(row[3])

    def create_slot(self, slot: str, *, temporary: bool, export: bool) -> tuple[Lsn, str | None]:
        """Create a pgoutput slot; with ``export`` also a snapshot of its consistent point.

        The exported snapshot stays importable until the next command on this
        connection, so the caller keeps it idle until the snapshot is imported.
        Uses the pre-15 keyword syntax, which every supported version accepts.
        """
        cmd = (
            f'CREATE_REPLICATION_SLOT "{slot}" {"TEMPORARY " if temporary else ""}LOGICAL pgoutput '
            f"{'EXPORT_SNAPSHOT' if export else 'NOEXPORT_SNAPSHOT'}"
        )
        try:
            row = self.conn.execute(cmd).fetchone()
        except psycopg.Error as e:
            raise classify(e, f"cannot create replication slot {slot}") from e
        assert row is not None
        return Lsn.parse(row[1]), row[2]

    def start(self, slot: str, lsn: Lsn, options: str) -> None:
        cmd = f'START_REPLICATION SLOT "{slot}" LOGICAL {lsn} ({options})'
        try:
            self.conn.execute(cmd)
        except psycopg.Error as e:
            raise classify(e, f"START_REPLICATION on slot {slot} failed") from e
        if self.pgconn.status != pq.ConnStatus.OK:
            raise ConnectionLost(f"START_REPLICATION on slot {slot}: connection is not usable")
        self.streaming = True

    def send_status(self, write: int, flush: int, apply: int, reply: bool = False) -> None:
        msg = encode_standby_status(write, flush, apply, pg_timestamp_now(), reply)
        pgconn = self.pgconn
        try:
            writable: select.poll | None = None
            deadline = 0.0
            queued = False
            while not queued or pgconn.flush() == 1:
                if not queued:
                    queued = pgconn.put_copy_data(msg) == 1
                    if queued:
                        continue
                # The non-blocking send buffer is full: wait until the socket drains.
                if writable is None:
                    writable = select.poll()
                    writable.register(pgconn.socket, select.POLLOUT)
                    deadline = time.monotonic() + 30
                elif time.monotonic() > deadline:
                    raise ConnectionLost("the server has not read a status update for 30s")
                writable.poll(1000)
        except (OSError, psycopg.Error) as e:
            raise ConnectionLost(f"cannot send a standby status update: {e}") from e

    def copy_error(self, cause: BaseException | None = None) -> CdcError:
        """Why the COPY stream ended: the server's error (with SQLSTATE) if it sent one."""
        pgconn = self.pgconn
        detail = pgconn.error_message.decode(errors="replace").strip() if pgconn.error_message else ""
        sqlstate: str | None = None
        try:
            for _ in range(8):  # the COPY's final result(s), then None
                res = pgconn.get_result()
                if res is None:
                    break
                if res.status == pq.ExecStatus.FATAL_ERROR:
                    detail = res.error_message.decode(errors="replace").strip() or detail
                    raw = res.error_field(pq.DiagnosticField.SQLSTATE)
                    sqlstate = raw.decode() if raw else None
        except psycopg.Error:
            pass  # the connection is gone: what we have is all there is to say
        text = detail or (str(cause) if cause else "the server ended the replication stream")
        if sqlstate is None or sqlstate in _RETRIABLE_STATES or sqlstate.startswith("08"):
            return ConnectionLost(f"replication stream ended: {text}")
        return PrerequisiteError(f"replication stream failed: {text} (SQLSTATE {sqlstate})")

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # closing a broken connection: nothing more to learn
            log.debug("closing the replication connection failed", exc_info=True)


# --------------------------------------------------------------------------- transaction buffers


class TxBuffer:
    """The raw pgoutput messages of one transaction, spilled to a temp file when large.

    Raw bytes are what is kept because they are the most compact form (a
    10-column row is ~100 bytes) and trivially written to disk; decoding
    happens once, at commit. ``streamed`` buffers hold messages with the xid
    prefix of stream blocks; ``aborted`` lists subtransactions whose changes
    are dropped at replay (Stream Abort of a subxact).
    """

    __slots__ = (
        "aborted",
        "file",
        "items",
        "limit",
        "size",
        "streamed",
        "xid",
    )

    def __init__(self, xid: int, *, streamed: bool, limit: int) -> None:
        self.xid = xid
        self.streamed = streamed
        self.limit = limit
        self.items: list[bytes] = []
        self.size = 0
        self.file: IO[bytes] | None = None
        self.aborted: set[int] = set()

    def add(self, payload: bytes) -> None:
        if self.file is not None:
            self.file.write(_LEN.pack(len(payload)))
            self.file.write(payload)
            return
        self.items.append(payload)
        self.size += len(payload)
        if self.size > self.limit:
            self._spill()

    def _spill(self) -> None:
        # Lives as long as the buffer (closed by close()); deleted by the OS on close.
        f = tempfile.TemporaryFile(prefix=f"cdc-pg-tx{self.xid}-", buffering=1 << 20)  # noqa: SIM115
        pack = _LEN.pack
        for p in self.items:
            f.write(pack(len(p)))
            f.write(p)
        log.info("transaction %d: %d messages (%d bytes) spilled to disk", self.xid,
                 len(self.items), self.size)
        self.items = []
        self.file = f

    @property
    def spilled(self) -> bool:
        return self.file is not None

    def __iter__(self) -> Iterator[bytes]:
        f = self.file
        if f is None:
            yield from self.items
            return
        f.flush()
        f.seek(0)
        read = f.read
        unpack = _LEN.unpack
        while True:
            head = read(4)
            if not head:
                return
            if len(head) != 4:
                raise SerializationError(f"transaction {self.xid}: truncated spill file")
            (n,) = unpack(head)
            payload = read(n)
            if len(payload) != n:
                raise SerializationError(f"transaction {self.xid}: truncated spill file")
            yield payload

    def close(self) -> None:
        self.items = []
        if self.file is not None:
            self.file.close()
            self.file = None


# --------------------------------------------------------------------------- the reader


def _lsn_of(position: PgPosition | None) -> int:
    return position.lsn.value if position is not None else 0


@dataclass(slots=True)
class _Session:
    """Per-connection state; discarded on reconnect (the server resends from the ack)."""

    repl: ReplicationConnection
    tx: TxBuffer | None = None
    tx_begin: Begin | None = None
    streams: dict[int, TxBuffer] = field(default_factory=dict)
    block: TxBuffer | None = None  # the stream block being received
    received: int = 0  # highest LSN known received (write LSN)
    wal_end: int = 0  # WAL end from the last keepalive
    last_status: float = 0.0

    def close(self) -> None:
        if self.tx is not None:
            self.tx.close()
        for b in self.streams.values():
            b.close()
        self.streams.clear()
        self.repl.close()


class StreamReader:
    """Streams a slot's committed transactions as events, across reconnects.

    ``connect_sql`` opens a normal connection (catalog lookups, slot checks);
    ``connect_replication`` a replication one. Both must pin the session
    settings of :data:`connectors.postgres.types.SESSION_SETTINGS`, which the
    text values of pgoutput depend on.
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
        self._sql: psycopg.Connection[Any] | None = None
        self._session: _Session | None = None
        self._shapes: dict[int, TableShape | None] = {}  # relation id -> shape (None: not captured)
        self._relations: dict[int, Relation] = {}
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
                      "spilled_transactions": 0, "reconnects": 0}

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

    # -- the stream -----------------------------------------------------------------------------

    def stream(
        self, start: PgPosition | None, *, repl: ReplicationConnection | None = None
    ) -> Iterator[StreamItem]:
        """Yield committed changes after ``start`` forever (see module docstring).

        ``repl`` is an already open replication connection to reuse (the one
        that created the slot for the snapshot). Never returns: a stream that
        cannot continue raises.
        """
        self._yielded = start
        self._boundary = start if start is not None and (start.last_in_tx or start.snapshot) else None
        self._acked = start if start is not None and (start.last_in_tx or start.snapshot) else None
        self._progress = _lsn_of(start) if start is not None and (start.last_in_tx or start.snapshot) else 0
        items: Iterator[StreamItem] | None = None
        failures = 0
        first_failure = 0.0
        first = True
        while True:
            if self._closed:
                raise RetriableError("the PostgreSQL source was closed while streaming")
            try:
                try:
                    if items is None:
                        handed, repl = repl, None  # a failed open closes it: use it once
                        items = self._open(start if first else None, handed)
                        first = False
                    item = next(items)
                except psycopg.Error as e:
                    raise classify(e, "PostgreSQL connection failed") from e
            except StopIteration:
                raise CdcError("the replication stream ended without an error") from None
            except CdcError as e:
                if not e.retriable:
                    self._drop_session()
                    raise
                self._drop_session()
                items = None
                now = time.monotonic()
                if failures == 0:
                    first_failure = now
                    log.warning("%s: %s; reconnecting", self.source_name, e)
                if now - first_failure > self.settings.reconnect_timeout_s:
                    raise UnreachableError(
                        f"PostgreSQL replication connection lost and not back after "
                        f"{self.settings.reconnect_timeout_s:.0f}s: {e}",
                        hint="check that the server is up and reachable; the source resumes "
                        "from its last durable position when restarted",
                    ) from e
                delay = min(self.settings.reconnect_max_s,
                            self.settings.reconnect_initial_s * (2 ** min(failures, 20)))
                failures += 1
                self.stats["reconnects"] += 1
                yield from self._wait(delay)
                continue
            if failures:
                log.info("%s: replication stream resumed after %d attempt(s)", self.source_name,
                         failures)
                failures = 0
            yield item

    def _wait(self, delay: float) -> Iterator[StreamItem]:
        """Sleep ``delay`` seconds while still yielding heartbeats (stop requests)."""
        deadline = time.monotonic() + delay
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, self.settings.idle_yield_s))
            if self._boundary is not None:
                self._last_yield = time.monotonic()
                yield Heartbeat(self._boundary)

    def _drop_session(self) -> None:
        s, self._session = self._session, None
        if s is not None:
            s.close()
        if self._sql is not None:
            try:
                self._sql.close()
            except Exception:
                log.debug("closing the catalog connection failed", exc_info=True)
            self._sql = None

    def _open(
        self, start: PgPosition | None, repl: ReplicationConnection | None
    ) -> Iterator[StreamItem]:
        """Check the slot, START_REPLICATION, and return the session's item iterator.

        ``start`` is given on the first open only: it is checked against the
        slot. Reconnects resume from the acknowledged position instead.
        """
        try:
            start_lsn = self._start_lsn(start)
        except BaseException:
            if repl is not None:
                repl.close()
            raise
        if repl is None:
            repl = self._connect_replication()
        self._session = session = _Session(repl)
        try:
            repl.start(self.settings.slot, Lsn(start_lsn), self.settings.start_options())
        except CdcError:
            self._drop_session()
            raise
        session.received = start_lsn
        session.last_status = time.monotonic()
        log.info("%s: streaming slot %s from %s", self.source_name, self.settings.slot,
                 Lsn(start_lsn))
        return self._run(session)

    def _start_lsn(self, start: PgPosition | None) -> int:
        """Check the slot (fatal if gone, foreign or invalidated); the LSN to start at."""
        conn = self.sql()
        try:
            slot = catalog.slot_facts(conn, self.settings.slot)
        except psycopg.Error as e:
            raise classify(e, "cannot read pg_replication_slots") from e
        resume = self._acked if self._acked is not None else start
        if slot is None:
            raise PrerequisiteError(
                f"replication slot {self.settings.slot} does not exist, but this source has a "
                f"stored position ({resume}): the changes since then are gone",
                hint="cdc never re-creates a slot silently. Reset the source's offsets (cdc "
                "reset-source FILE --name <source>) and let it snapshot again (the slot is "
                "then created), or restore the slot",
            )
        if slot.plugin != "pgoutput" or slot.slot_type != "logical":
            raise PrerequisiteError(
                f"replication slot {slot.name} is a {slot.slot_type} slot of plugin "
                f"{slot.plugin!r}, not a logical pgoutput slot",
                hint="use another slot_name, or, if it is cdc's, drop it with "
                "cdc reset-source FILE --name <source> --release",
            )
        if slot.database is not None and slot.database != self.database:
            raise PrerequisiteError(
                f"replication slot {slot.name} belongs to database {slot.database}, "
                f"not {self.database}",
                hint="use another slot_name for this source",
            )
        if slot.lost:
            raise PrerequisiteError(
                f"replication slot {slot.name} was invalidated (wal_status=lost): the server "
                "removed WAL the slot still needed, so changes are missing",
                hint="cdc reset-source FILE --name <source> --release (drops the slot and the "
                "offsets: the next start snapshots again); raise max_slot_wal_keep_size to "
                "avoid it",
            )
        confirmed = slot.confirmed_flush.value if slot.confirmed_flush is not None else 0
        if resume is not None and (resume.last_in_tx or resume.snapshot):
            if start is not None and confirmed > start.lsn.value:
                raise PrerequisiteError(
                    f"replication slot {slot.name} is confirmed up to {slot.confirmed_flush}, "
                    f"past this source's stored position {resume.lsn}: the changes between "
                    "them were consumed by someone else and would be missing",
                    hint="make sure only this source uses the slot; then reset the source's "
                    "offsets and snapshot again",
                )
            start_lsn = resume.lsn.value
        else:
            start_lsn = confirmed
        if self._yielded is None and confirmed:
            self._yielded = self._boundary = PgPosition(Lsn(confirmed))
        self._progress = max(self._progress, start_lsn)
        if self._acked is None and start_lsn:
            self._acked = PgPosition(Lsn(start_lsn))
        return start_lsn

    # -- the session loop ---------------------------------------------------------------------------

    def _status(self, s: _Session, reply: bool = False) -> None:
        flush = _lsn_of(self._acked)
        s.repl.send_status(max(s.received, flush), flush, flush, reply)
        s.last_status = time.monotonic()
        self._ack_dirty = False

    def _due(self, s: _Session, now: float) -> None:
        """Send a status update if one is due (periodic, or a fresh acknowledgement)."""
        if now - s.last_status >= self.settings.status_interval_s or (
            self._ack_dirty and now - s.last_status >= 0.1
        ):
            self._status(s)

    def _idle_item(self, s: _Session, now: float) -> Heartbeat | None:
        """The heartbeat to yield now, if any (rate limits in the module docstring)."""
        quiet = s.tx is None and s.block is None and not s.streams
        if (
            quiet
            and self._progress > _lsn_of(self._yielded)
            and now - self._last_progress_yield >= self.settings.heartbeat_interval_s
        ):
            self._last_progress_yield = self._last_yield = now
            self._yielded = self._boundary = PgPosition(Lsn(self._progress))
            return Heartbeat(self._yielded)
        if now - self._last_yield >= self.settings.idle_yield_s and self._boundary is not None:
            self._last_yield = now
            return Heartbeat(self._boundary)
        return None

    def _run(self, s: _Session) -> Iterator[StreamItem]:
        try:
            yield from self._loop(s)
        except psycopg.Error as e:
            raise s.repl.copy_error(e) from e

    def _loop(self, s: _Session) -> Iterator[StreamItem]:
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
                    self._due(s, now)
                    if now - self._last_yield >= idle_yield:
                        item = self._idle_item(s, now)
                        if item is not None:
                            yield item
                continue
            if n == 0:
                now = time.monotonic()
                self._due(s, now)
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

    def _control(self, s: _Session, payload: bytes) -> Iterator[StreamItem]:
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
            self._on_relation(rel)
        elif tag == _TYPE:
            return
        else:
            msg = decode_message(payload)
            raise SerializationError(
                f"unexpected pgoutput {type(msg).__name__} message outside a transaction"
            )

    def _commit(self, s: _Session, payload: bytes) -> Iterator[StreamItem]:
        commit = decode_message(payload)
        assert isinstance(commit, Commit)
        buf, begin = s.tx, s.tx_begin
        s.tx = s.tx_begin = None
        assert buf is not None and begin is not None
        try:
            yield from self._emit(s, buf, commit.end_lsn, commit.ts_ms, begin.xid)
        finally:
            buf.close()

    # -- relations ---------------------------------------------------------------------------------

    def _on_relation(self, rel: Relation) -> None:
        """Cache the table shape a Relation message describes (a new one after DDL).

        A Relation message repeated unchanged (each session resends them)
        keeps the existing shape object, so downstream caches keyed by it hold.
        """
        old = self._relations.get(rel.relation_id)
        if old is not None and old == rel and rel.relation_id in self._shapes:
            return
        self._relations[rel.relation_id] = rel
        qualified = f"{rel.namespace}.{rel.name}"
        if not self.tables.matches(qualified):
            self._shapes[rel.relation_id] = None
            return
        conn = self.sql()
        try:
            facts = catalog.table_facts(conn, rel.relation_id)
            types = load_type_catalog(conn, [c.type_oid for c in rel.columns])
        except psycopg.Error as e:
            raise classify(e, f"cannot read the catalog for {qualified}") from e
        flagged = rel.key_columns
        names = [c.name for c in rel.columns]
        if rel.replica_identity in ("d", "i"):
            key: tuple[str, ...] = flagged
            if facts is not None:
                wanted = catalog.stream_key(facts.replica_identity, facts.primary_key,
                                            facts.identity_key)
                if set(wanted) == set(flagged):
                    key = wanted  # same columns, in the index's order (as the snapshot has them)
        else:
            key = tuple(facts.primary_key) if facts is not None else ()
            if not set(key) <= set(names):
                key = ()
        shape = catalog.build_shape(
            self.database, rel.namespace, rel.name,
            [(c.name, c.type_oid, c.type_modifier) for c in rel.columns],
            facts, key, types, relation=rel,
        )
        if old is not None:
            log.info("%s: schema of %s changed (relation %d): %s", self.source_name, qualified,
                     rel.relation_id, ", ".join(names))
        self._shapes[rel.relation_id] = shape

    def _emit(
        self, s: _Session, buf: TxBuffer, end_lsn: Lsn, ts_ms: int, xid: int
    ) -> Iterator[StreamItem]:
        """Yield the events of a committed transaction, unless already yielded.

        Events are built one behind the buffer's messages: only when the next
        one exists is the previous yielded, so the last can be marked
        ``last_in_tx`` without holding the transaction in memory.
        """
        self.stats["transactions"] += 1
        if buf.spilled:
            self.stats["spilled_transactions"] += 1
        end = end_lsn.value
        if end > s.received:
            s.received = end
        skip_through = -1
        done = self._yielded
        if done is not None:
            if end < done.lsn.value or (
                end == done.lsn.value and (done.last_in_tx or done.snapshot)
            ):
                return  # already yielded (resent after a reconnect) or before the start position
            if end == done.lsn.value:
                skip_through = done.index  # resume inside a transaction
        xid_text = str(xid)
        name = self.source_name
        db_version = self.db_version
        version = __version__
        origin: str | None = None
        streamed = buf.streamed
        aborted = buf.aborted
        listener = self.on_transaction
        shapes = self._shapes
        counts: dict[int, int] = {}  # relation id -> events (data_collection_order)
        new_position, new_source, new_tx, new_event = _POSITION, _SOURCE, _TX, _EVENT
        no_unchanged: frozenset[str] = frozenset()
        prev: ChangeEvent | None = None
        index = 0
        checks = 0
        now_ms = time.time_ns() // 1_000_000
        rows: list[tuple[Op, TableShape, Any, Any, Any, frozenset[str], int]]
        for payload in buf:
            tag = payload[0]
            if streamed and aborted and tag in _ROW_CHANGES and (
                int.from_bytes(payload[1:5], "big") in aborted
            ):
                continue
            if tag in _IUD:
                rid, new_tuple, old_tuple, old_kind = decode_row(payload, streamed)
                try:
                    shape = shapes[rid]
                except KeyError:
                    raise _undescribed(rid) from None
                if shape is None:
                    continue
                if tag == _INSERT:
                    try:
                        after = shape.row(new_tuple)  # type: ignore[arg-type]
                    except NullInNotNull:
                        shape, after = self._relaxed_row(rid, new_tuple)  # type: ignore[arg-type]
                    rows = [(Op.CREATE, shape, shape.key(after), None, after, no_unchanged, rid)]
                else:
                    change = self._change(rid, shape, new_tuple, old_tuple, old_kind)
                    if change[5] and _key_changed(change):
                        rows = self._key_change_reselected(
                            change, new_tuple, old_tuple, old_kind, xid)  # type: ignore[arg-type]
                    else:
                        rows = _split_key_change(change)
            else:
                msg = decode_message(payload, in_stream=streamed)
                cls = msg.__class__
                if cls is Relation:
                    self._on_relation(msg)  # type: ignore[arg-type]
                    continue
                elif cls is Truncate:
                    rows = []
                    for rid in msg.relation_ids:  # type: ignore[union-attr]
                        try:
                            shape = shapes[rid]
                        except KeyError:
                            raise _undescribed(rid) from None
                        if shape is not None:
                            rows.append((Op.TRUNCATE, shape, None, None, None, no_unchanged, rid))
                    if not rows:
                        continue
                elif cls is Origin:
                    origin = msg.name  # type: ignore[union-attr]
                    continue
                elif cls is DataType or cls is LogicalMessage:
                    # Types are read from the catalog with the Relation; logical
                    # decoding messages are not row changes (SOURCE.md).
                    continue
                else:
                    raise SerializationError(
                        f"unexpected pgoutput {cls.__name__} message inside transaction {xid}"
                    )
            for op, shape, key, before, after, unchanged, rid in rows:
                dc = counts.get(rid, 0) + 1
                counts[rid] = dc
                if index > skip_through:
                    event = new_event(
                        op, shape.schema, key, before, after,
                        new_source(CONNECTOR_NAME, name, version, db_version,
                                   new_position(end_lsn, index, False, False), ts_ms, xid_text,
                                   "false", origin),
                        now_ms, new_tx(xid_text, index + 1, dc), unchanged,
                    )
                    if prev is not None:
                        if listener is not None and prev.transaction.total_order == 1:  # type: ignore[union-attr]
                            listener(TransactionMarker(
                                "BEGIN", xid_text, PgPosition(end_lsn, 0, False, False), ts_ms))
                        self._yielded = prev.source.position  # type: ignore[assignment]
                        yield prev
                    prev = event
                index += 1
            checks += 1
            if checks >= 512:
                checks = 0
                self._due(s, time.monotonic())
                now_ms = time.time_ns() // 1_000_000
        if prev is None:
            if index == 0 and not s.streams and end > self._progress:
                # Nothing captured (other tables of the publication): still progress.
                self._progress = end
            return
        last_position = new_position(end_lsn, index - 1, False, True)
        src = prev.source
        last = new_event(
            prev.op, prev.schema, prev.key, prev.before, prev.after,
            new_source(src.connector, src.name, src.version, src.db_version, last_position,
                       src.ts_ms, src.tx_id, src.snapshot, src.origin),
            prev.ts_ms, prev.transaction, prev.unchanged,
        )
        if listener is not None and index == 1:
            listener(TransactionMarker("BEGIN", xid_text, PgPosition(end_lsn, 0, False, False),
                                       ts_ms))
        self._yielded = self._boundary = last_position
        self._last_yield = time.monotonic()
        self.stats["events"] += index
        yield last
        if listener is not None:
            names = {rid: shapes[rid] for rid in counts}
            listener(TransactionMarker(
                "END", xid_text, last_position, ts_ms, event_count=index,
                data_collections=tuple(
                    (shape.table.qualified if shape is not None else str(rid), n)
                    for rid, n in counts.items() for shape in (names[rid],)
                ),
            ))

    def _key_change_reselected(
        self, change: tuple[Op, TableShape, Any, Any, Any, frozenset[str], int],
        new_tuple: TupleData, old_tuple: TupleData | None, old_kind: str | None, xid: int,
    ) -> list[tuple[Op, TableShape, Any, Any, Any, frozenset[str], int]]:
        """A key change whose new row lacks unchanged TOAST values: read them from the table.

        Published as one update keyed by the new key, the change would leave
        the old key's row on every replica and the new row without those
        values. As a delete plus a create it needs the values, and the server
        did not send them (REPLICA IDENTITY DEFAULT sends only the old key).
        So they are read from the table now, by the new key. The row may have
        changed since this transaction committed; any later change of it is a
        later event of the same key, so the replica still ends at the source's
        state. A row that is gone by now needs no create: its later delete (or
        key change) follows. The server may send a commit a moment before the
        transaction is visible to other sessions, so the read waits for that
        first: "gone" must not be "not visible yet".
        """
        _op, shape, key, before, _after, unchanged, rid = change
        old_key = {k: before[k] for k in key}
        missing = [n for n in shape.names if n in unchanged]
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(n)) for n in missing),
            sql.Identifier(shape.table.schema or shape.table.database, shape.table.table),
            sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k))
                                  for k in shape.key_names),
        )
        try:
            conn = self.sql()
            _wait_visible(conn, xid)
            found = conn.execute(query, [new_tuple[i] for i in shape.key_index]).fetchone()
        except psycopg.Error as e:
            raise classify(e, f"cannot read unchanged TOAST values of {shape.table}") from e
        delete: tuple[Op, TableShape, Any, Any, Any, frozenset[str], int] = (
            Op.DELETE, shape, old_key, before, None, frozenset(), rid)
        self.stats["toast_reselects"] = self.stats.get("toast_reselects", 0) + 1
        if found is None:
            return [delete]
        values = dict(zip(missing, found, strict=True))
        filled = tuple(values[n] if v is UNCHANGED_TOAST else v
                       for n, v in zip(shape.names, new_tuple, strict=True))
        _op, shape, key, _before, after, _unchanged, rid = self._change(
            rid, shape, filled, old_tuple, old_kind)
        return [delete, (Op.CREATE, shape, key, None, after, frozenset(), rid)]

    def _relaxed_row(
        self, relation_id: int, values: Sequence[Any]
    ) -> tuple[TableShape, dict[str, Any]]:
        """Build a row whose NULL breaks a NOT NULL the catalog shows today (see relaxed())."""
        while True:
            shape = self._shapes[relation_id]
            assert shape is not None
            try:
                return shape, shape.row(values)
            except NullInNotNull as e:
                self._shapes[relation_id] = shape.relaxed(e.index)

    def _change(
        self, rid: int, shape: TableShape, new_tuple: TupleData | None,
        old_tuple: TupleData | None, old_kind: str | None,
    ) -> tuple[Op, TableShape, Any, Any, Any, frozenset[str], int]:
        """``(op, shape, key, before, after, unchanged, relation id)`` of an update or delete."""
        before: dict[str, Any] | None = None
        if new_tuple is None:  # a delete
            assert old_tuple is not None
            if old_kind == "O":  # REPLICA IDENTITY FULL: the whole old row
                try:
                    old = shape.row(old_tuple)
                except NullInNotNull:
                    shape, old = self._relaxed_row(rid, old_tuple)
                return (Op.DELETE, shape, shape.key(old), old, None, frozenset(), rid)
            before = shape.key_from_tuple(old_tuple)
            return (Op.DELETE, shape, before, before, None, frozenset(), rid)
        new = new_tuple
        old_row: dict[str, Any] | None = None
        if old_tuple is not None:
            if old_kind == "O":
                try:
                    old_row = shape.row(old_tuple)
                except NullInNotNull:
                    shape, old_row = self._relaxed_row(rid, old_tuple)
                before = old_row
            else:
                before = shape.key_from_tuple(old_tuple)
        unchanged: frozenset[str] = frozenset()
        if UNCHANGED_TOAST in new:
            missing = [n for n, v in zip(shape.names, new, strict=True) if v is UNCHANGED_TOAST]
            if old_row is not None and old_tuple is not None:
                # REPLICA IDENTITY FULL: the old row (flattened by the server) has
                # the text of the value that did not change.
                new = tuple(o if v is UNCHANGED_TOAST else v
                            for v, o in zip(new, old_tuple, strict=True))
            else:
                unchanged = frozenset(missing)
                if unchanged & set(shape.key_names):
                    raise SerializationError(
                        f"{shape.table}: an update without the key's value (unchanged TOAST "
                        f"in key column(s) {sorted(unchanged & set(shape.key_names))})")
        try:
            after = shape.row(new)
        except NullInNotNull:
            shape, after = self._relaxed_row(rid, new)
        if unchanged:
            after = {k: v for k, v in after.items() if k not in unchanged}
        return (Op.UPDATE, shape, shape.key(after), before, after, unchanged, rid)


def _wait_visible(conn: psycopg.Connection[Any], xid: int, timeout_s: float = 30.0) -> None:
    """Wait until transaction ``xid`` (32 bits, as pgoutput sends it) is visible to ``conn``.

    A snapshot is ``xmin:xmax:in-progress xids`` in 64-bit xids; ``xid`` is
    widened to the 64-bit xid nearest ``xmax`` with the same low 32 bits. It is
    visible when below ``xmax`` and not in progress.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        row = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
        assert row is not None
        _xmin, xmax_s, xip_s = str(row[0]).split(":")
        xmax = int(xmax_s)
        distance = (xid - xmax) & 0xFFFFFFFF
        full = xmax + (distance - (1 << 32) if distance >= 1 << 31 else distance)
        if full < xmax and full not in {int(x) for x in xip_s.split(",") if x}:
            return
        if time.monotonic() > deadline:
            raise RetriableError(f"transaction {xid} committed but is not visible after "
                                 f"{timeout_s:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _key_changed(change: tuple[Op, TableShape, Any, Any, Any, frozenset[str], int]) -> bool:
    """Whether an update moves its row to another primary key."""
    op, _shape, key, before, _after, _unchanged, _rid = change
    return (op is Op.UPDATE and before is not None and key is not None
            and any(before[k] != v for k, v in key.items()))


def _split_key_change(
    change: tuple[Op, TableShape, Any, Any, Any, frozenset[str], int],
) -> list[tuple[Op, TableShape, Any, Any, Any, frozenset[str], int]]:
    """A primary-key change becomes a delete of the old key and a create of the new one.

    Debezium's rule: each key keeps its whole history in its own partition, so
    the old key's delete cannot overtake its earlier changes. A key change whose
    new row lacks unchanged TOAST values never comes here: the values are read
    first (``StreamReader._key_change_reselected``).
    """
    op, shape, key, before, after, unchanged, rid = change
    if op is not Op.UPDATE or before is None or key is None or unchanged:
        return [change]
    old_key = {k: before[k] for k in key}
    if old_key == key:
        return [change]
    return [(Op.DELETE, shape, old_key, before, None, frozenset(), rid),
            (Op.CREATE, shape, key, None, after, unchanged, rid)]


def _undescribed(relation_id: int) -> SerializationError:
    return SerializationError(
        f"pgoutput sent a change for relation {relation_id} before describing it"
    )


_SLOTS = native.load("cdc._cslots")


def _fast_init(cls: type[Any]) -> Callable[..., Any]:
    """A constructor for frozen slotted dataclass ``cls`` taking every field positionally.

    The stream builds four such objects per event (position, source,
    transaction, event); a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, which costs about as much again as
    setting the slots directly. This sets the slot descriptors instead, and
    falls back to the real constructor if the class ever gains a
    ``__post_init__`` (whose checks must not be skipped).
    """
    if hasattr(cls, "__post_init__") or not hasattr(cls, "__slots__"):
        return cls
    fields = [f.name for f in dataclasses.fields(cls)]
    if _SLOTS is not None:  # the same, in C (cdc/_cslots.c)
        return _SLOTS.Maker(cls, tuple(fields))  # type: ignore[no-any-return]
    ns: dict[str, Any] = {"new": object.__new__, "cls": cls}
    body = []
    for i, f in enumerate(fields):
        ns[f"set{i}"] = getattr(cls, f).__set__
        body.append(f"    set{i}(o, {f})")
    src = f"def make({', '.join(fields)}):\n    o = new(cls)\n" + "\n".join(body) + "\n    return o\n"
    exec(compile(src, f"<fast init {cls.__name__}>", "exec"), ns)
    make: Callable[..., Any] = ns["make"]
    return make


_POSITION: Final = _fast_init(PgPosition)
_SOURCE: Final = _fast_init(SourceInfo)
_TX: Final = _fast_init(TransactionInfo)
_EVENT: Final = _fast_init(ChangeEvent)
