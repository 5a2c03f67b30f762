"""Raw rows packets: the hot binlog events read from their bytes, not by the library.

The binlog reader (:mod:`connectors.mysql.source.binlog`) reads every packet of
the stream through :class:`RawPackets` first once the stream's format is known
(:class:`~connectors.mysql.source.library.BinlogStream`): rows events of tables
the native row-image program decodes (``_crowimage``, see rowimage.py), TableMaps
already in effect, XID and MariaDB GTID events come back as small tuples; every
other packet goes back to mysql-replication through the connection's replay
slot. This module parses packet headers and post-headers and calls the row-image
program; it keeps no transaction state and builds no events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from pymysqlreplication.event import MariadbGtidEvent, XidEvent
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

if TYPE_CHECKING:
    from connectors.mysql.source.binlog import BinlogMetrics
    from connectors.mysql.source.library import BinlogStream, ReplayConnection
    from connectors.mysql.source.schema import ResolvedTable

__all__ = ["RawPackets"]

# Rows event type -> (class, post-header length): v1 (MariaDB), v2 (MySQL 5.6+).
_RAW_ROWS: Final = {
    23: (WriteRowsEvent, 8),
    24: (UpdateRowsEvent, 8),
    25: (DeleteRowsEvent, 8),
    30: (WriteRowsEvent, 10),
    31: (UpdateRowsEvent, 10),
    32: (DeleteRowsEvent, 10),
}
_TABLE_MAP_EVENT: Final = 19
_XID_EVENT: Final = 16
_MARIADB_GTID_EVENT: Final = 162


class RawPackets:
    """Reads the hot events from the packet bytes, skipping the library's parse.

    In a stream of small transactions (GTID, TableMap, rows, XID) each row
    change costs the library a packet wrapper and an event object per event,
    more than decoding the row. For a rows event of a table this reader
    decodes with a native program (full images, standard post-header),
    ``parse`` decodes the body in one C call; a TableMap whose body was
    already parsed and resolved for the same table id is skipped; XID and
    MariaDB GTID events are read from their few fixed bytes. Every other
    packet - queries, rotate, heartbeat, format description, first TableMaps,
    MySQL GTIDs, tables on the library path - is handed back to the library
    (the connection replays it to ``fetchone``), which keeps handshake,
    checksums, rotation and its table map exactly as before.

    ``mapped`` (shared with the reader) holds, per table id, the TableMap body
    the reader resolved that id from (None: not known); the reader clears it
    when a DDL or a rotation may have changed what an id means.
    """

    def __init__(
        self,
        tables: dict[int, ResolvedTable | None],
        mapped: dict[int, bytes | None],
        metrics: BinlogMetrics,
    ) -> None:
        self.tables = tables
        self.mapped = mapped
        self.metrics = metrics
        self.checksum = 0
        self.post_header: tuple[int, ...] | None = None
        #: the body of the last TableMap handed back to the library (see take_table_map)
        self.table_map_body: bytes | None = None

    def attach(self, stream: BinlogStream) -> ReplayConnection | None:
        """The stream's connection once its format is known (a FormatDescriptionEvent
        was read), else None; takes the checksum length and post-header lengths.
        Call it after every event the library returns (a rotation brings a new format)."""
        if stream.checksum_bytes is None:
            return None
        self.checksum = stream.checksum_bytes
        self.post_header = stream.post_header_lengths
        return stream.stream_connection

    def take_table_map(self, table_id: int) -> bytes | None:
        """The body of the TableMap of ``table_id`` the library just parsed, if this
        reader saw its packet first (else None: the next one is parsed again)."""
        body, self.table_map_body = self.table_map_body, None
        if body is not None and int.from_bytes(body[:6], "little") == table_id:
            return body
        return None

    def parse(self, pkt: Any) -> tuple[Any, ...] | None:
        """What the reader needs of a hot event, first the event class, or None for
        a packet the library must read: ``(cls, table, images, start)`` of a rows
        event, ``(TableMapEvent,)`` for a TableMap already in effect,
        ``(XidEvent,)``, ``(MariadbGtidEvent, domain, server, seq, flags, ts, start,
        header flags)``."""
        data: bytes = pkt._data
        if len(data) < 20 or data[0] != 0:
            return None
        etype = data[5]
        size = int.from_bytes(data[10:14], "little")
        if len(data) != size + 1:
            return None
        end = len(data) - self.checksum
        if etype == _TABLE_MAP_EVENT:
            return self._table_map(data, end)
        if etype == _XID_EVENT:
            self._progress(data)
            return (XidEvent,)
        if etype == _MARIADB_GTID_EVENT:
            if end < 33:  # seq_no (8), domain_id (4), flags (1)
                return None
            self._progress(data)
            return (
                MariadbGtidEvent,
                int.from_bytes(data[28:32], "little"),  # domain_id
                int.from_bytes(data[6:10], "little"),  # server_id, from the header
                int.from_bytes(data[20:28], "little"),  # seq_no
                data[32],  # flags
                int.from_bytes(data[1:5], "little"),  # timestamp
                int.from_bytes(data[14:18], "little") - size,  # start
                int.from_bytes(data[18:20], "little"),  # header flags (skip_replication)
            )
        spec = _RAW_ROWS.get(etype)
        if spec is None:
            return None
        cls, post_len = spec
        if end < 31:
            return None
        post = self.post_header
        if post and etype <= len(post) and post[etype - 1] != post_len:
            return None
        table_id = int.from_bytes(data[20:26], "little")
        if table_id not in self.tables:
            return None
        table = self.tables[table_id]
        images = None
        if table is not None:
            fast = table.fast
            if fast is None or fast.program is None:
                return None
            program = fast.program
            off = 28
            if post_len == 10:  # v2: extra data, its length includes its own 2 bytes
                extra = data[28] | data[29] << 8
                if extra < 2:
                    return None
                off = 28 + extra
            if off >= end:
                return None
            n = data[off]
            if n < 251:
                off += 1
            elif n == 252:
                n, off = data[off + 1] | data[off + 2] << 8, off + 3
            else:
                return None
            if n != fast.ncols:
                return None
            nb = (n + 7) // 8
            every = fast.all_columns
            # padding bits past the last column are ignored
            if int.from_bytes(data[off : off + nb], "little") & every != every:
                return None
            off += nb
            pairs = cls is UpdateRowsEvent
            if pairs:
                if int.from_bytes(data[off : off + nb], "little") & every != every:
                    return None
                off += nb
            if off > end:
                return None
            images = program.decode(data, off, end, pairs)
            self.metrics.fast_images += len(images)
            self.metrics.raw_events += 1
        self._progress(data)
        log_pos = int.from_bytes(data[14:18], "little")
        return cls, table, images, log_pos - size

    def _table_map(self, data: bytes, end: int) -> tuple[Any, ...] | None:
        body = data[20:end]
        if self.mapped.get(int.from_bytes(data[20:26], "little")) != body:
            self.table_map_body = body  # the library parses it; the reader maps it
            return None
        self._progress(data)
        return (TableMapEvent,)

    def _progress(self, data: bytes) -> None:
        m = self.metrics
        ts = int.from_bytes(data[1:5], "little")
        if ts:
            m.last_event_ts = ts
            m.caught_up = False
        log_pos = int.from_bytes(data[14:18], "little")
        if log_pos:
            m.pos = log_pos
