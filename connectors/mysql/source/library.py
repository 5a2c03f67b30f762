"""mysql-replication, adapted: the one module that knows the library's inside.

The binlog reader (:mod:`connectors.mysql.source.binlog`) keeps mysql-replication
for what it does well - the handshake (checksum negotiation, heartbeat period,
file/position and both GTID dump commands), rotation, its table map, and the
parse of every event the raw packet reader (:mod:`~connectors.mysql.source.packets`)
leaves to it. What cdc needs beyond the library's public API is here, in a
subclass pinned to the versions it was tested with:

* :class:`BinlogStream` (a ``BinLogStreamReader``) also asks for the
  FormatDescriptionEvent, and keeps from it (public attributes of that event)
  the post-header lengths and whether events carry a CRC32 - what the raw packet
  reader needs to find an event's body - instead of reading the reader's
  private ``__use_checksum``/``__post_header_lengths``. It hands out the stream
  connection (the library's ``_stream_connection``, which cdc created through
  ``pymysql_wrapper``) and fails loudly, never silently, when that is not so.
* :class:`ReplayConnection` is that connection: the raw packet reader reads each
  packet first and hands back the ones the library must parse.
* Two fixes on the row events the library parses (tables the native decoder
  does not take), set on each event :class:`BinlogStream` returns, not on the
  library's classes: mysql-replication 1.0.17 decodes negative TIME values with
  fractional seconds wrongly (its ``__read_time2`` is replaced by
  :func:`connectors.mysql.values.decode_time2`), and reads MySQL's latin1 as
  strict cp1252, which stops at the five bytes cp1252 leaves undefined
  (``charset_to_encoding`` maps it to :data:`~connectors.mysql.latin1.MYSQL_LATIN1`).

The installed version is checked at import against :data:`TESTED_VERSIONS` (also
the range declared in pyproject.toml). ``tests/unit/mysql/test_library.py``
asserts every attribute and method named here still exists with the expected
signature: run it (and the MySQL integration tests) before widening the range.
"""

from __future__ import annotations

import importlib.metadata
from types import MethodType
from typing import Any, Final

import pymysql.connections
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import FormatDescriptionEvent, HeartbeatLogEvent, RotateEvent
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    RowsEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from connectors.mysql.latin1 import MYSQL_LATIN1
from connectors.mysql.source.server import StreamConnection
from connectors.mysql.values import decode_time2

__all__ = [
    "TESTED_VERSIONS",
    "BinlogStream",
    "LibraryMismatch",
    "ReplayConnection",
    "check_version",
    "fix_rows_event",
    "stream_format",
]

#: The mysql-replication versions this module was tested with (pyproject.toml says the same).
TESTED_VERSIONS: Final = ">=1.0.17,<1.0.18"
INSTALLED_VERSION: Final = importlib.metadata.version("mysql-replication")


class LibraryMismatch(RuntimeError):
    """The installed mysql-replication does not behave as the tested versions did."""


def check_version(installed: str) -> None:
    """Raise ImportError naming the tested range when ``installed`` is outside it."""
    if Version(installed) not in SpecifierSet(TESTED_VERSIONS):
        raise ImportError(
            f"mysql-replication {installed} is installed, but cdc's MySQL source is tested "
            f"with mysql-replication{TESTED_VERSIONS} (it subclasses the library's stream "
            f"reader): install a version in that range (pip install "
            f"'mysql-replication{TESTED_VERSIONS}')"
        )


check_version(INSTALLED_VERSION)


def _mismatch(what: str) -> LibraryMismatch:
    return LibraryMismatch(
        f"mysql-replication {INSTALLED_VERSION}: {what}; cdc's MySQL source is tested with "
        f"mysql-replication{TESTED_VERSIONS}"
    )


class ReplayConnection(StreamConnection):
    """The reader's connections: the next read can be handed back a packet.

    The raw packet reader reads every packet of the stream first; one it does
    not take is put in :attr:`replay`, and the library's ``fetchone`` reads it
    from there as if from the socket.
    """

    #: a packet the raw packet reader already read and hands back to the library
    replay: Any

    def __init__(self, **kwargs: Any) -> None:
        self.replay = None
        super().__init__(**kwargs)

    def _read_packet(self, packet_type: Any = pymysql.connections.MysqlPacket) -> Any:
        pkt = self.replay
        if pkt is not None:
            self.replay = None
            return pkt
        return super()._read_packet(packet_type)


def _read_time2(self: Any, column: Any) -> Any:
    return decode_time2(self.packet.read(3 + (column.fsp + 1) // 2), column.fsp)


_library_charset_to_encoding: Final = RowsEvent.charset_to_encoding


def charset_to_encoding(name: str) -> str:
    """mysql-replication's charset -> Python codec, except that MySQL's latin1 is not
    strict cp1252 (PyMySQL's mapping): five bytes cp1252 leaves undefined are stored
    and read back as U+0081... (latin1.MYSQL_LATIN1, also used by cdc's decoders).
    The library passes the Python name it found for the column's charset, which for
    latin1 is "cp1252" (MySQL has no other charset that maps to cp1252)."""
    if name in ("latin1", "cp1252"):
        return MYSQL_LATIN1
    encoding: str = _library_charset_to_encoding(name)
    return encoding


#: The name RowsEvent calls its TIME2 decoder by (``self.__read_time2(column)``).
READ_TIME2: Final = "_RowsEvent__read_time2"
_ROWS_EVENTS: Final = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)
#: BinLogStreamReader's attribute holding the stream connection it made with pymysql_wrapper.
STREAM_CONNECTION: Final = "_stream_connection"
#: The header plus the CRC32 the library takes off an event's size when events carry one.
_HEADER_AND_CHECKSUM: Final = 23


def stream_format(event: FormatDescriptionEvent) -> tuple[int, tuple[int, ...]]:
    """(checksum bytes per event, post-header lengths) of the stream, from its
    FormatDescriptionEvent: the library passes every event its size without the
    header and, when the stream carries one, the CRC32; the packet keeps the
    header's size."""
    taken = event.packet.event_size - event.event_size
    return (4 if taken == _HEADER_AND_CHECKSUM else 0), tuple(event.post_header_len)


def fix_rows_event(event: RowsEvent) -> None:
    """The module docstring's two fixes, on this event only (before its rows are read)."""
    event.charset_to_encoding = charset_to_encoding
    setattr(event, READ_TIME2, MethodType(_read_time2, event))


class BinlogStream(BinLogStreamReader):  # type: ignore[misc]
    """``BinLogStreamReader`` that learns the stream's format from its
    FormatDescriptionEvents and fixes the row events it parses (module docstring).

    :attr:`checksum_bytes` (4 with CRC32, else 0) and :attr:`post_header_lengths`
    are None until the first FormatDescriptionEvent of the connection.
    """

    def __init__(self, *, only_events: list[type], **kwargs: Any) -> None:
        super().__init__(
            only_events=[*only_events, FormatDescriptionEvent],
            pymysql_wrapper=ReplayConnection,
            **kwargs,
        )
        self.checksum_bytes: int | None = None
        self.post_header_lengths: tuple[int, ...] | None = None

    def fetchone(self) -> Any:
        while True:
            event = super().fetchone()
            cls = type(event)
            if cls is FormatDescriptionEvent:
                self.checksum_bytes, self.post_header_lengths = stream_format(event)
                continue
            if (
                self.checksum_bytes is None
                and event is not None
                and cls is not RotateEvent
                and cls is not HeartbeatLogEvent
            ):
                raise _mismatch(
                    f"the stream returned a {cls.__name__} before its FormatDescriptionEvent"
                )
            if cls in _ROWS_EVENTS:
                fix_rows_event(event)
            return event

    @property
    def stream_connection(self) -> ReplayConnection:
        """The connection the binlog arrives on (after the first ``fetchone``)."""
        conn = self.__dict__.get(STREAM_CONNECTION)
        if not isinstance(conn, ReplayConnection):
            raise _mismatch(
                f"BinLogStreamReader.{STREAM_CONNECTION} is {type(conn).__name__}, not the "
                "connection cdc passed as pymysql_wrapper"
            )
        return conn

