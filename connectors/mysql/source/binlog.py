"""The binlog stream reader: row events -> ChangeEvents with resumable positions.

Sits on mysql-replication (protocol, event headers, TableMaps) through
:class:`~connectors.mysql.source.library.BinlogStream`; row images are decoded
by :mod:`connectors.mysql.source.rowimage` (about 3x faster than the library's
parser, which stays the fallback for types and events it does not cover). This
module adds what a CDC source needs on top. It is one concern at ~800 lines:
the read loop of :class:`BinlogReader`, which assembles transactions, decides
resume skips and heartbeats, and builds each event in place (one function, its
state in locals, because it runs per row), with the connection lifecycle that
restarts it.

* **Transactions.** A transaction starts at its GTID event (or ``BEGIN`` on a
  binlog without GTIDs) and ends at its XID event, a ``COMMIT``/``ROLLBACK``
  query (non-transactional tables), or right after a standalone statement
  (DDL). Every captured row change gets ``MySqlPosition(file, pos, index)``
  with file/pos = the transaction's first event and index = its order in the
  transaction. Rows are emitted **one behind**: the held row is released when
  the next one arrives (``last_in_tx=False``) or when the commit is seen
  (``last_in_tx=True``), so memory stays constant for any transaction size.
* **Commit time.** ``source.ts_ms`` is the header time of the transaction's
  GTID event. MariaDB (and MySQL) write that event at commit, so it equals
  the XID event's time (verified on MariaDB 10.11: rows inside a 3 s
  transaction carry their statement times, the GTID event the commit time)
  and every row of a transaction carries the same value. Binlog headers hold
  whole seconds, so ts_ms is a multiple of 1000. Without GTIDs the ``BEGIN``
  event's time is used (the first statement's time).
* **Version clock** (``skip_replicated_changes``, i.e. master-master). Binlog
  times are whole seconds, so a local write made 0.3 s after a remote write it
  read would sort before it (docs/MASTER-MASTER.md, "Versions"). The reader
  therefore stamps each local transaction with a version time ``vts =
  max(commit ms, floor)`` (carried in the position, ``cdc_position.vts``,
  which master-master sinks order by; ``source.ts_ms`` stays the commit time)
  and then ``floor = vts``. The floor also moves past every version a cdc sink
  applied: a flagged transaction is still dropped, but the rows it wrote to a
  table with the row-version columns (``cdc_row_versions``, any name) raise
  the floor to their ``ts_ms + 1`` (other nodes' versions only). The sink
  writes them in its apply transaction, so they are in the binlog before any
  local write that read the applied row. Positions between transactions carry
  the floor, so a restart resumes the clock exactly (a transaction re-read
  from its start keeps the version time its position holds).
* **Resume.** A stored position ``last_in_tx=True`` means "after that
  transaction", ``last_in_tx=False`` "after row ``index`` of it", and
  ``snapshot=True`` "at file/pos, skip nothing" (the snapshot's consistent
  point, or the server's position when streaming starts with no position).
  By GTID (``gtid_set`` after/before the transaction) when GTIDs are in use,
  else by file/pos; a transaction re-read from its start skips the rows
  already emitted.
* **Heartbeats.** The reader asks the server for replication heartbeats
  (``MASTER_HEARTBEAT_PERIOD``) every ``heartbeat_s`` so a blocking read
  returns at least that often when the server is idle; between transactions
  the generator then yields ``Heartbeat(last completed transaction)``. A
  socket read timeout (several heartbeat periods) detects a dead server.
* **Reconnect.** mysql-replication's own reconnect (from the last event, i.e.
  mid-transaction, or from the initial GTID state) is disabled by
  :class:`~connectors.mysql.source.server.StreamConnection`; this reader
  reconnects with bounded exponential backoff from the last row it emitted,
  yielding heartbeats while it waits, and gives up with UnreachableError after
  ``reconnect_timeout_s``.
* **Filters.** ``database.table`` shell patterns, applied at the TableMap so
  rows of other tables are never parsed.
* **Where the rest lives.** mysql-replication is used through the pinned
  subclass in :mod:`~connectors.mysql.source.library` (which also fixes two
  decoding faults of its row events); rows events of natively decoded tables,
  TableMaps already in effect, XID and MariaDB GTID events are read from the
  packet bytes by :mod:`~connectors.mysql.source.packets` (the library keeps
  handshake, checksums, rotation and every other event); per-transaction state
  and the row-change rules are :mod:`~connectors.mysql.source.transaction`;
  query classification and the statement regexes
  :mod:`~connectors.mysql.source.statements`. This module reads the stream,
  assembles transactions, resumes and reconnects, and builds the events (the
  C ``Maker``/``EventBuilder`` when built).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import pymysql.err
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

import cdc
from cdc import native
from cdc.errors import PrerequisiteError, SchemaError, UnreachableError
from cdc.events import ChangeEvent, Op, SourceInfo, TableSchema, TransactionInfo
from cdc.spi import Heartbeat, StreamItem
from connectors.mysql.position import BinlogFile, GtidSet, MariaGtid, MySqlPosition
from connectors.mysql.source.library import BinlogStream, ReplayConnection
from connectors.mysql.source.packets import RawPackets
from connectors.mysql.source.schema import (
    Catalog,
    ResolvedTable,
    SchemaResolver,
    primary_key_names,
)
from connectors.mysql.source.server import (
    ER_BINLOG_POSITION_GONE,
    RESNAPSHOT_HINT,
    ConnectionLost,
    ServerInfo,
    binary_logs,
    check_position_available,
    connect,
    gtid_state,
    is_disconnect,
    master_status,
    server_info,
)
from connectors.mysql.source.statements import DML, TRUNCATE, query_kind, table_of
from connectors.mysql.source.transaction import (
    CHANGE_KINDS,
    CHANGE_OPS,
    FL_STANDALONE,
    LOG_EVENT_SKIP_REPLICATION_F,
    NEVER,
    BinlogTransaction,
    HeldBackChange,
    row_changes,
    with_mysql_gtid,
)
from connectors.mysql.types import BinlogColumn
from connectors.mysql.values import ZeroDatePolicy

log = logging.getLogger(__name__)

__all__ = ["BinlogMetrics", "BinlogReader", "TableFilter"]

#: (database, table) -> captured?
TableFilter = Callable[[str, str], bool]

_ROW_EVENTS: Final = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)
#: the columns that mark a cdc sink's row-version table (cdc.sink.versionstore)
_VERSION_COLUMNS: Final = frozenset(("entry_id", "table_name", "row_key", "ts_ms", "node",
                                     "position", "row_hash"))


_native: Any = native.load("connectors.mysql.source._crowimage")
_slots: Any = native.load("cdc._cslots")
_new_position = native.positional_constructor(MySqlPosition)
_new_source = native.positional_constructor(SourceInfo)
_new_event = native.positional_constructor(ChangeEvent)
_new_transaction = native.positional_constructor(TransactionInfo)
_NOTHING_UNCHANGED: Final = frozenset[str]()
# With the C extension: one call builds an event and its position (_event), and
# transaction.row_changes runs in C; the Python code is the reference and the fallback.
_build_event: Any = (
    _native.EventBuilder(_new_position, _new_source, _new_event, _new_transaction)
    if _native is not None and _slots is not None and all(
        isinstance(m, _slots.Maker)
        for m in (_new_position, _new_source, _new_event, _new_transaction)
    )
    else None
)


@dataclass(slots=True)
class BinlogMetrics:
    """Counters the reader updates as it goes (read them from any thread)."""

    events: int = 0  # change events emitted
    transactions: int = 0  # transactions seen (captured or not)
    heartbeats: int = 0  # server heartbeats received
    reconnects: int = 0
    file: str = ""  # where the reader is: end of the last event read
    pos: int = 0
    last_event_ts: float = 0.0  # header time of the last event read (epoch seconds)
    caught_up: bool = False  # the last thing read was a server heartbeat
    fast_images: int = 0  # rows (update: before+after pairs) decoded by cdc, not the library
    raw_events: int = 0  # rows events read from the packet bytes, without the library
    skipped_transactions: int = 0  # left out by skip_replicated_changes


class BinlogReader:
    """Streams a MySQL/MariaDB binlog as ChangeEvents (see the module docstring).

    ``connect_kwargs`` are PyMySQL arguments (``MySqlConnection.pymysql_kwargs()``).
    ``use_gtid`` None means: resume by GTID when the server has GTIDs (always
    on MariaDB, ``gtid_mode=ON`` on MySQL) and the start position carries a set.
    """

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        *,
        server_id: int,
        source_name: str,
        table_filter: TableFilter = lambda _db, _table: True,
        zero_date: ZeroDatePolicy = "null",
        use_gtid: bool | None = None,
        heartbeat_s: float = 1.0,
        read_timeout_s: float = 30.0,
        reconnect_timeout_s: float = 120.0,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 5.0,
        fast_decode: bool = True,
        skip_replicated: bool = False,
    ) -> None:
        self._kwargs = {k: v for k, v in connect_kwargs.items() if k not in ("database", "db")}
        self._kwargs.setdefault("charset", "utf8mb4")
        self.server_id = server_id
        self.source_name = source_name
        self.table_filter = table_filter
        self.zero_date: ZeroDatePolicy = zero_date
        self.use_gtid = use_gtid
        self.heartbeat_s = heartbeat_s
        self.read_timeout_s = max(read_timeout_s, 3 * heartbeat_s)
        self.reconnect_timeout_s = reconnect_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.fast_decode = fast_decode
        # skip_replicated_changes: drop transactions a cdc sink wrote (skip_replication flag)
        self.skip_replicated = skip_replicated
        # Master-master version clock (module docstring, "Version clock"): on with
        # skip_replicated. _vfloor = the least version time the next local transaction
        # may take (max version time the node's sink applied, plus 1).
        self._vfloor = 0
        # id() -> the resolved row-version tables of this stream (held, so ids stay unique)
        self._vtables: dict[int, ResolvedTable] = {}
        self.metrics = BinlogMetrics()
        self.server: ServerInfo | None = None
        self._closed = threading.Event()
        self._reader: Any = None
        self._catalog: Catalog | None = None
        self._resolver: SchemaResolver | None = None
        self._gtid = False
        self._version = getattr(cdc, "__version__", "0")
        self._server_id = 0
        self._db_version = ""
        # stream state
        self._file = BinlogFile("")
        self._gtid_set = GtidSet()
        self._boundary: MySqlPosition | None = None  # last completed transaction (or start)
        self._resume: MySqlPosition | None = None  # last emitted row, or _boundary
        self._skip: MySqlPosition | None = None
        self._tables: dict[int, ResolvedTable | None] = {}
        # table id -> the TableMap body its entry in _tables was resolved from (RawPackets)
        self._mapped: dict[int, bytes | None] = {}
        self._last_yield = 0.0

    # ------------------------------------------------------------------ public

    @property
    def resolver(self) -> SchemaResolver:
        if self._resolver is None:
            raise RuntimeError("the reader has not connected yet")
        return self._resolver

    @property
    def position(self) -> MySqlPosition | None:
        """Where a new reader would resume: after the last row emitted."""
        return self._resume

    @property
    def seconds_behind(self) -> float:
        """Now minus the time of the last event read; 0 when caught up (idle)."""
        m = self.metrics
        if m.caught_up or not m.last_event_ts:
            return 0.0
        return max(0.0, time.time() - m.last_event_ts)

    def bytes_behind(self) -> int | None:
        """Binlog bytes the server has written past this reader (a query; None if unknown)."""
        m = self.metrics
        if not m.file:
            return None
        conn = connect(self._kwargs)
        try:
            with conn.cursor() as cur:
                logs = binary_logs(cur)
        finally:
            conn.close()
        ours = BinlogFile(m.file)
        behind = 0
        for f, size in logs:
            if f == ours:
                behind += max(0, size - m.pos)
            elif ours < f:
                behind += size
        return behind

    def close(self) -> None:
        """Stop streaming; a generator blocked on the socket ends without error."""
        self._closed.set()
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except Exception:  # closing a socket another thread reads; best effort
                log.debug("closing the binlog reader failed", exc_info=True)
        if self._catalog is not None:
            self._catalog.close()

    def current_position(self) -> MySqlPosition:
        """The server's position now, as a "start here" position (snapshot=True)."""
        conn = connect(self._kwargs)
        try:
            with conn.cursor() as cur:
                info = server_info(cur)
                file, pos = master_status(cur)
                gset = gtid_state(cur, info.mariadb) if info.mariadb or self.use_gtid else GtidSet()
        finally:
            conn.close()
        return MySqlPosition(
            file, pos, 0, gtid_set=gset, server_id=info.server_id, snapshot=True, last_in_tx=True
        )

    def stream(self, start: MySqlPosition | None) -> Iterator[StreamItem]:
        """Changes committed after ``start`` (None: from now); see the module docstring."""
        self._closed.clear()
        self._setup()
        if start is None:
            start = self.current_position()
        if not isinstance(start, MySqlPosition):
            raise PrerequisiteError(f"a MySQL source cannot resume from {start!r}")
        assert self.server is not None
        if (
            start.server_id
            and start.server_id != self.server.server_id
            and not (self._gtid and start.gtid_set)
        ):
            log.warning(
                "%s: resuming by file/position %s:%s recorded on server_id %s, but the "
                "source is server_id %s; positions are only valid on the server that "
                "wrote them (use GTIDs to follow a failover)",
                self.source_name,
                start.file,
                start.pos,
                start.server_id,
                self.server.server_id,
            )
        self._boundary = self._resume = start
        if self.skip_replicated:
            self._vfloor = max(self._vfloor, start.vts)
        self._file = start.file
        self._gtid_set = start.gtid_set
        self._skip = None if start.snapshot else start
        deadline: float | None = None
        delay = self.backoff_initial_s
        self._last_yield = time.monotonic()
        while not self._closed.is_set():
            resume = self._resume
            assert resume is not None
            try:
                self._reader = self._open(resume)
                progressed = False
                for item in self._read(self._reader):
                    if not progressed:
                        progressed, deadline, delay = True, None, self.backoff_initial_s
                    self._last_yield = time.monotonic()
                    yield item
                return  # _read ends only when closed
            except Exception as e:
                if self._closed.is_set():
                    return
                if (
                    isinstance(e, pymysql.err.OperationalError)
                    and e.args
                    and e.args[0] == ER_BINLOG_POSITION_GONE
                ):
                    raise PrerequisiteError(
                        f"the source cannot stream from {resume}: {e.args[-1]}",
                        hint=RESNAPSHOT_HINT,
                    ) from e
                if not is_disconnect(e):
                    raise
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.reconnect_timeout_s
                if now >= deadline:
                    raise UnreachableError(
                        f"the MySQL source stayed unreachable for {self.reconnect_timeout_s:.0f}s: {e}",
                        hint="check the server; cdc resumes from the last transaction it emitted",
                    ) from e
                self.metrics.reconnects += 1
                log.warning(
                    "%s: binlog connection lost (%s); reconnecting in %.2fs from %s",
                    self.source_name,
                    e,
                    delay,
                    resume,
                )
                yield from self._wait(min(delay, deadline - now))
                delay = min(delay * 2, self.backoff_max_s)
            finally:
                reader, self._reader = self._reader, None
                if reader is not None:
                    reader.close()

    # ------------------------------------------------------------------ internals

    def _setup(self) -> None:
        conn = connect(self._kwargs)
        try:
            with conn.cursor() as cur:
                self.server = info = server_info(cur)
                if self.use_gtid is None:
                    if info.mariadb:
                        self._gtid = True
                    else:
                        cur.execute("SELECT @@GLOBAL.gtid_mode")
                        self._gtid = str(cur.fetchone()[0]).upper() == "ON"
                else:
                    self._gtid = self.use_gtid
        finally:
            conn.close()
        if info.server_id == self.server_id:
            raise PrerequisiteError(
                f"server_id {self.server_id} is the source server's own id",
                hint="give cdc a server_id no server or replica in the topology uses",
            )
        if self._catalog is None:
            self._catalog = Catalog(lambda: connect(self._kwargs), mariadb=info.mariadb)
            self._resolver = SchemaResolver(
                self._catalog, zero_date=self.zero_date, fast_decode=self.fast_decode
            )

    def _wait(self, seconds: float) -> Iterator[StreamItem]:
        end = time.monotonic() + seconds
        while not self._closed.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            self._closed.wait(min(left, self.heartbeat_s))
            if (
                self._boundary is not None
                and time.monotonic() - self._last_yield >= self.heartbeat_s
            ):
                self._last_yield = time.monotonic()
                yield Heartbeat(self._boundary)

    def _open(self, resume: MySqlPosition) -> Any:
        by_gtid = self._gtid and bool(resume.gtid_set)
        if not by_gtid:
            conn = connect(self._kwargs)
            try:
                with conn.cursor() as cur:
                    check_position_available(binary_logs(cur), resume.file, resume.pos)
            finally:
                conn.close()
        assert self.server is not None
        settings = {**self._kwargs, "read_timeout": self.read_timeout_s}
        only_events = [
            MariadbGtidEvent,
            GtidEvent,
            QueryEvent,
            XidEvent,
            RotateEvent,
            TableMapEvent,
            WriteRowsEvent,
            UpdateRowsEvent,
            DeleteRowsEvent,
            HeartbeatLogEvent,
        ]
        common: dict[str, Any] = {
            "connection_settings": settings,
            "server_id": self.server_id,
            "blocking": True,
            "only_events": only_events,
            # Twice as often as we yield, so an idle generator yields every
            # heartbeat_s..1.5 * heartbeat_s rather than every 2 * heartbeat_s.
            "slave_heartbeat": self.heartbeat_s / 2,
            "enable_logging": False,
        }
        self._tables = {}
        self._mapped = {}
        if by_gtid and self.server.mariadb:
            reader = BinlogStream(
                is_mariadb=True, auto_position=str(resume.gtid_set), **common
            )
        elif by_gtid:
            reader = BinlogStream(
                is_mariadb=False, auto_position=str(resume.gtid_set), **common
            )
        else:
            reader = BinlogStream(
                is_mariadb=False,
                log_file=resume.file.name,
                log_pos=resume.pos,
                resume_stream=True,
                **common,
            )
        return reader

    def _captured(self, database: str, table: str) -> bool:
        return self.table_filter(database, table)

    def _read(self, reader: Any) -> Iterator[StreamItem]:
        tx: BinlogTransaction | None = None
        held: HeldBackChange | None = None
        metrics = self.metrics
        tables = self._tables
        mapped = self._mapped
        assert self.server is not None and self._resolver is not None
        self._server_id = self.server.server_id
        self._db_version = self.server.version
        mariadb_gtid = MariadbGtidEvent
        # Rows events of natively decoded tables, repeated TableMaps, XID and MariaDB
        # GTID events are read straight from the packet bytes; the rest by the library.
        # (the unit tests feed parsed events through a reader of their own)
        raw = RawPackets(tables, mapped, metrics) if isinstance(reader, BinlogStream) else None
        conn: ReplayConnection | None = None
        ev: Any = None
        packet: Any = None
        while True:
            fast: tuple[Any, ...] | None = None
            if conn is not None:
                pkt = conn._read_packet()
                if self._closed.is_set():
                    return
                assert raw is not None
                fast = raw.parse(pkt)
                if fast is None:
                    conn.replay = pkt  # the library reads this packet again, in fetchone
            if fast is not None:
                cls = fast[0]
                ev = packet = None
                if cls in _ROW_EVENTS:
                    _, table, images, start = fast
                elif cls is TableMapEvent:  # a TableMap this reader already resolved
                    cls = None
            else:
                ev = reader.fetchone()
                if self._closed.is_set():
                    return
                if ev is None:
                    raise ConnectionLost("the server ended the binlog stream")
                if raw is not None:
                    conn = raw.attach(reader)
                cls = type(ev)
                packet = ev.packet
                if ev.timestamp:
                    metrics.last_event_ts = ev.timestamp
                    metrics.caught_up = False
                if packet.log_pos:
                    metrics.pos = packet.log_pos
                if cls in _ROW_EVENTS:
                    table = tables.get(ev.table_id)
                    images = None
                    start = packet.log_pos - packet.event_size
            if cls in _ROW_EVENTS:
                if self._vtables and table is not None and id(table) in self._vtables:
                    if tx is not None and tx.skip_through == NEVER and tx.vts == 0:
                        if images is None:
                            images = self._images(table, cls, ev)
                        self._versions_applied(cls, images)
                elif table is None or tx is None:
                    if table is not None:
                        raise SchemaError(
                            f"row event outside a transaction at {self._file}:{start}"
                        )
                else:
                    if images is None:
                        images = self._images(table, cls, ev)
                    schema = table.schema
                    name = schema.table.table
                    per_table = tx.per_table
                    skip = tx.skip_through
                    changes = (
                        row_changes(table.key, cls, images)
                        if _native is None
                        else _native.changes(CHANGE_KINDS[cls], table.key, images, CHANGE_OPS)
                    )
                    for op, key, before, after in changes:
                        index = tx.index
                        tx.index = index + 1
                        if index <= skip:
                            continue
                        order = per_table[name] = per_table.get(name, 0) + 1
                        if held is not None:
                            yield self._event(tx, held, False)
                        held = (op, schema, key, before, after, index, order)
            elif cls is TableMapEvent:  # parsed by the library: resolve its table
                tables[ev.table_id] = self._table_map(ev)
                mapped[ev.table_id] = None if raw is None else raw.take_table_map(ev.table_id)
            elif cls is mariadb_gtid or cls is GtidEvent:
                if tx is not None:
                    log.warning(
                        "%s: transaction %s at %s:%s has no commit event before the next "
                        "GTID (XA?); treating it as committed",
                        self.source_name,
                        tx.tx_id,
                        tx.file,
                        tx.pos,
                    )
                    yield from self._commit(tx, held)
                    held = None
                if ev is None:  # read from the packet (MariaDB's GTID event)
                    assert fast is not None
                    _, domain, server, seq, flags, ts, start, marks = fast
                else:
                    start = packet.log_pos - packet.event_size
                    ts = ev.timestamp
                    marks = packet.flags
                    if cls is mariadb_gtid:
                        domain, server, seq, flags = (
                            ev.domain_id, ev.server_id, ev.gtid_seq_no, ev.flags,
                        )
                if cls is mariadb_gtid:
                    gtid = f"{domain}-{server}-{seq}"
                    after_set = self._gtid_set.with_mariadb(MariaGtid(domain, server, seq))
                    # MariaDB's GTID event is the BEGIN unless the group is one statement.
                    is_open = not flags & FL_STANDALONE
                else:
                    gtid = ev.gtid
                    after_set = with_mysql_gtid(self._gtid_set, gtid)
                    is_open = False  # MySQL: a BEGIN query follows for DML
                tx = self._begin(start, gtid, after_set, ts, is_open,
                                 bool(marks & LOG_EVENT_SKIP_REPLICATION_F))
            elif cls is XidEvent:
                if tx is not None:
                    yield from self._commit(tx, held)
                    tx, held = None, None
            elif cls is QueryEvent:
                assert ev is not None and packet is not None
                kind = query_kind(ev.query)
                if kind == "begin":
                    if tx is None:  # no GTID event: BEGIN opens the transaction
                        start = packet.log_pos - packet.event_size
                        tx = self._begin(start, None, self._gtid_set, ev.timestamp, True,
                                         bool(packet.flags & LOG_EVENT_SKIP_REPLICATION_F))
                    tx.open = True
                elif kind == "commit":
                    if tx is not None:
                        yield from self._commit(tx, held)
                        tx, held = None, None
                elif kind == "statement":
                    if tx is None:  # neither GTID nor BEGIN: the statement is its own group
                        start = packet.log_pos - packet.event_size
                        tx = self._begin(start, None, self._gtid_set, ev.timestamp, False)
                    truncated = self._statement(ev, tx)
                    if truncated is not None:
                        index = tx.index
                        tx.index += 1
                        if index > tx.skip_through:
                            held = (Op.TRUNCATE, truncated, None, None, None, index, 1)
                    if not tx.open:
                        yield from self._commit(tx, held)
                        tx, held = None, None
            elif cls is RotateEvent:
                assert ev is not None
                self._file = BinlogFile(ev.next_binlog)
                metrics.file = ev.next_binlog
                metrics.pos = ev.position
                if ev.timestamp:  # a real rotation (or restart): table ids may be reused
                    tables.clear()
                    mapped.clear()
                    self._vtables.clear()
            elif cls is HeartbeatLogEvent:
                assert ev is not None
                metrics.heartbeats += 1
                metrics.caught_up = True
                if ev.ident:
                    metrics.file = ev.ident
            if (
                held is None
                and (tx is None or tx.emitted == 0)
                and time.monotonic() - self._last_yield >= self.heartbeat_s
            ):
                assert self._boundary is not None
                self._last_yield = time.monotonic()
                yield Heartbeat(self._boundary)

    def _begin(
        self, start: int, gtid: str | None, after: GtidSet, ts: int, is_open: bool,
        flagged: bool = False,
    ) -> BinlogTransaction:
        tx = BinlogTransaction(self._file, start, gtid, self._gtid_set, after, ts * 1000, is_open)
        skip = self._skip
        if skip is not None:
            self._skip = None
            same = (
                (skip.gtid == gtid)
                if (skip.gtid and gtid)
                else (skip.file == tx.file and skip.pos == start)
            )
            if same:
                tx.skip_through = NEVER if skip.last_in_tx else skip.index
                if skip.vts and not flagged:
                    # Re-read from its start: the version time it had (stored in the position)
                    tx.vts = skip.vts
        if flagged and self.skip_replicated:
            self._drop(tx)
        elif self.skip_replicated and not tx.vts:
            # Version clock: after every version the node's sink applied (read from the
            # flagged transactions before this one), and never before its commit second.
            tx.vts = max(tx.ts_ms, self._vfloor)
            self._vfloor = tx.vts
        tx.facts = (
            tx.file,
            start,
            tx.gtid_before,
            after,
            gtid,
            self._server_id,
            "mysql",
            self.source_name,
            self._version,
            self._db_version,
            tx.ts_ms,
            tx.tx_id,
            _NOTHING_UNCHANGED,
            tx.vts,
        )
        self.metrics.transactions += 1
        return tx

    def _versions_applied(self, cls: type, images: list[Any]) -> None:
        """Row-version rows a cdc sink wrote in a flagged transaction: the version clock
        moves past the newest version time among them (after-images; not deletes)."""
        if cls is DeleteRowsEvent:
            return
        pairs = cls is UpdateRowsEvent
        top = self._vfloor - 1
        me = self.source_name
        for img in images:
            after = img[1] if pairs else img
            ts = after.get("ts_ms")
            # (the node's own versions, read back by its sink, are left out: they are
            # ordered by position already, and counting them would run the clock ahead
            # one ms per local write)
            if isinstance(ts, int) and ts > top and after.get("node") != me:
                top = ts
        self._vfloor = top + 1

    def _drop(self, tx: BinlogTransaction) -> None:
        """Leave out every row of ``tx`` (written by a cdc sink: skip_replicated_changes).

        Its statements still update the schema history, and its commit still
        moves the resume position past it (``_commit`` with nothing held)."""
        tx.skip_through = NEVER
        self.metrics.skipped_transactions += 1

    def _commit(self, tx: BinlogTransaction, held: HeldBackChange | None) -> Iterator[ChangeEvent]:
        self._gtid_set = tx.gtid_after
        if held is not None:
            event = self._event(tx, held, True)
            self._boundary = self._resume = event.source.position  # type: ignore[assignment]
            yield event
        else:
            self._boundary = self._resume = MySqlPosition(
                tx.file,
                tx.pos,
                max(tx.index - 1, 0),
                gtid_set=tx.gtid_after,
                gtid=tx.gtid,
                server_id=self.server.server_id if self.server else 0,
                last_in_tx=True,
                vts=self._vfloor if self.skip_replicated else 0,
            )

    def _event(self, tx: BinlogTransaction, h: HeldBackChange, last: bool) -> ChangeEvent:
        op, schema, key, before, after, index, order = h
        tx.emitted += 1
        self.metrics.events += 1
        if _build_event is not None:
            built: tuple[ChangeEvent, MySqlPosition] = _build_event(
                op, schema, key, before, after, index, order, last, tx.facts
            )
            if not last:
                self._resume = built[1]
            return built[0]
        position = _new_position(
            tx.file,
            tx.pos,
            index,
            tx.gtid_after if last else tx.gtid_before,
            tx.gtid,
            self._server_id,
            False,  # snapshot
            last,
            tx.vts,
        )
        source = _new_source(
            "mysql",
            self.source_name,
            self._version,
            self._db_version,
            position,
            tx.ts_ms,
            tx.gtid,
            "false",  # snapshot
            None,  # origin
        )
        if not last:
            self._resume = position
        event: ChangeEvent = _new_event(
            op,
            schema,
            key,
            before,
            after,
            source,
            int(time.time() * 1000),
            _new_transaction(tx.tx_id, index + 1, order),
            _NOTHING_UNCHANGED,
        )
        return event

    def _images(self, table: ResolvedTable, cls: type, ev: Any) -> list[Any]:
        """Canonical row images of a rows event (pairs for updates)."""
        pairs = cls is UpdateRowsEvent
        fast = table.fast
        if fast is not None and fast.handles(ev):
            images = fast.images(ev, pairs)
            self.metrics.fast_images += len(images)
            return images
        decode = table.decode
        if pairs:
            return [
                (
                    decode(r["before_values"], r["before_none_sources"]),
                    decode(r["after_values"], r["after_none_sources"]),
                )
                for r in ev.rows
            ]
        return [decode(r["values"], r["none_sources"]) for r in ev.rows]

    def _table_map(self, ev: Any) -> ResolvedTable | None:
        database, table = ev.schema, ev.table
        if not self._captured(database, table):
            return self._version_table(ev) if self.skip_replicated else None
        mask = ev.null_bitmask
        cols = [
            BinlogColumn.from_replication(c, bool(mask[i >> 3] & (1 << (i & 7))))
            for i, c in enumerate(ev.columns)
        ]
        names = [c.name for c in cols]
        if not all(names):
            raise PrerequisiteError(
                f"{database}.{table}: the binlog's TableMap has no column names",
                hint="set binlog_row_metadata=FULL on the server (MariaDB >= 10.5, MySQL >= 8.0.14)",
            )
        key = primary_key_names(names, ev.optional_metadata)
        assert self._resolver is not None
        return self._resolver.resolve(database, table, cols, key)

    def _version_table(self, ev: Any) -> ResolvedTable | None:
        """A table not captured that has a cdc sink's row-version columns (any name, so
        a sink's ``conflicts.versions_table`` need not be configured here): resolved, so
        that flagged transactions' rows of it move the version clock; else None."""
        names = {getattr(c, "name", None) for c in ev.columns}
        if not names >= _VERSION_COLUMNS:
            return None
        mask = ev.null_bitmask
        cols = [
            BinlogColumn.from_replication(c, bool(mask[i >> 3] & (1 << (i & 7))))
            for i, c in enumerate(ev.columns)
        ]
        assert self._resolver is not None
        resolved = self._resolver.resolve(ev.schema, ev.table, cols,
                                          primary_key_names([c.name for c in cols],
                                                            ev.optional_metadata))
        self._vtables[id(resolved)] = resolved
        return resolved

    def _statement(self, ev: Any, tx: BinlogTransaction) -> TableSchema | None:
        """A query that is not transaction control: DDL, TRUNCATE, statement-logged DML.

        Returns the table's schema for a TRUNCATE of a captured table.
        """
        query: str = ev.query
        schema = ev.schema
        default_db = schema.decode() if isinstance(schema, bytes) else str(schema or "")
        assert self._resolver is not None
        for pattern in DML:
            m = pattern.match(query)
            if m is None:
                continue
            database, table = table_of(m, default_db)
            if self._captured(database, table):
                raise PrerequisiteError(
                    f"{database}.{table} was changed by a statement-logged query at "
                    f"{tx.file}:{tx.pos} ({query[:80]!r}); its rows are not in the binlog",
                    hint="use binlog_format=ROW for every session (no SET SESSION "
                    "binlog_format=STATEMENT) and re-snapshot the table",
                )
            return None
        # DDL: whatever it changed must be looked up again.
        self._resolver.forget_mentioned(query)
        self._mapped.clear()  # resolve the next TableMaps again, even unchanged ones
        m = TRUNCATE.match(query)
        if m is None:
            return None
        database, table = table_of(m, default_db)
        if not self._captured(database, table):
            return None
        table_schema = self._resolver.schema_for(database, table)
        if table_schema is None:
            log.warning(
                "%s: TRUNCATE of %s.%s at %s:%s, but the table no longer exists; no truncate event",
                self.source_name,
                database,
                table,
                tx.file,
                tx.pos,
            )
        return table_schema
