"""mysql-replication still is what connectors/mysql/source/library.py was written against.

Each test names the library attribute or method cdc overrides, calls or reads;
when an upgrade renames or reshapes one, the test fails naming it (and the
import-time version check refuses versions outside the tested range anyway).
Run this file and tests/integration/mysql before widening ``TESTED_VERSIONS``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pymysql.connections
import pytest
from pymysql.protocol import MysqlPacket
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import FormatDescriptionEvent
from pymysqlreplication.packet import BinLogPacketWrapper
from pymysqlreplication.row_event import RowsEvent, WriteRowsEvent

from connectors.mysql.latin1 import MYSQL_LATIN1
from connectors.mysql.source import library
from connectors.mysql.values import decode_time2


def params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_the_installed_version_is_in_the_tested_range() -> None:
    library.check_version(library.INSTALLED_VERSION)
    with pytest.raises(ImportError, match=r"mysql-replication 1\.1\.0 .*>=1\.0\.17,<1\.0\.18"):
        library.check_version("1.1.0")
    with pytest.raises(ImportError, match="tested with"):
        library.check_version("1.0.16")


def test_stream_reader_arguments_cdc_passes() -> None:
    """BinLogStreamReader.__init__ takes every keyword the binlog reader and BinlogStream pass."""
    names = params(BinLogStreamReader.__init__)
    for name in (
        "connection_settings", "server_id", "blocking", "only_events", "slave_heartbeat",
        "pymysql_wrapper", "enable_logging", "is_mariadb", "auto_position", "log_file",
        "log_pos", "resume_stream",
    ):
        assert name in names, f"BinLogStreamReader.__init__ has no parameter {name!r}"
    assert params(BinLogStreamReader.fetchone) == ["self"], "BinLogStreamReader.fetchone(self)"


def test_stream_connection_is_the_pymysql_wrapper_connection() -> None:
    """BinlogStream.stream_connection reads BinLogStreamReader._stream_connection, which the
    library sets to ``self.pymysql_wrapper(...)`` and reads packets from with ``_read_packet()``."""
    source = inspect.getsource(BinLogStreamReader)
    assert f"self.{library.STREAM_CONNECTION} = self.pymysql_wrapper(" in source, (
        "BinLogStreamReader no longer creates _stream_connection with pymysql_wrapper"
    )
    assert f"self.{library.STREAM_CONNECTION}._read_packet()" in source, (
        "BinLogStreamReader no longer reads the stream with _stream_connection._read_packet()"
    )
    # ReplayConnection and StreamConnection override PyMySQL's _read_packet(packet_type)
    assert params(pymysql.connections.Connection._read_packet) == ["self", "packet_type"]
    # RawPackets reads a packet's bytes from PyMySQL's MysqlPacket._data
    assert MysqlPacket(b"\x00abc", "utf8")._data == b"\x00abc", "MysqlPacket._data"


def test_row_event_fixes_replace_what_the_library_calls() -> None:
    read_time2 = getattr(RowsEvent, library.READ_TIME2, None)
    assert read_time2 is not None, f"RowsEvent.{library.READ_TIME2} is gone"
    assert params(read_time2) == ["self", "column"], f"RowsEvent.{library.READ_TIME2}(self, column)"
    assert isinstance(inspect.getattr_static(RowsEvent, "charset_to_encoding"), staticmethod), (
        "RowsEvent.charset_to_encoding is no longer a staticmethod(name)"
    )
    assert params(RowsEvent.charset_to_encoding) == ["name"]
    source = inspect.getsource(RowsEvent)
    # the library calls both through the instance, so a per-event attribute replaces them
    assert "self.__read_time2(column)" in source, "RowsEvent no longer calls self.__read_time2"
    assert "self.charset_to_encoding(" in source, "RowsEvent no longer calls self.charset_to_encoding"
    # rows are parsed when first read (after BinlogStream.fetchone fixed the event)
    assert isinstance(inspect.getattr_static(RowsEvent, "rows"), property), "RowsEvent.rows"


class _Packet:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def test_fixes_apply_to_one_event_not_to_the_library() -> None:
    event: Any = object.__new__(WriteRowsEvent)
    library.fix_rows_event(event)
    assert event.charset_to_encoding("cp1252") == MYSQL_LATIN1
    assert event.charset_to_encoding("utf8mb4") == RowsEvent.charset_to_encoding("utf8mb4")
    assert RowsEvent.charset_to_encoding("cp1252") == "cp1252"  # the class is untouched
    # a negative TIME2 with a fraction (fsp 1): the library's own decoder gets it wrong
    raw = bytes.fromhex("7fffff") + bytes([0xFB])
    event.packet = _Packet(raw)
    column: Any = type("Column", (), {"fsp": 1})()
    assert getattr(event, library.READ_TIME2)(column) == decode_time2(raw, 1)
    assert getattr(RowsEvent, library.READ_TIME2) is not library._read_time2


class _Control:
    """What BinLogPacketWrapper asks of the control connection (charset, dbms)."""

    charset = "utf8mb4"

    def _get_dbms(self) -> str:
        return "mariadb"


def format_description(checksum: bool, post_header: bytes) -> Any:
    """A FormatDescriptionEvent as the library parses it from the wire."""
    body = (4).to_bytes(2, "little") + b"10.11.19-MariaDB".ljust(50, b"\x00")
    body += (0).to_bytes(4, "little") + bytes([19]) + post_header + bytes([1 if checksum else 0])
    body += b"\xaa" * 4  # its CRC32 (a FormatDescriptionEvent carries one either way)
    size = 19 + len(body)
    head = bytes(4) + bytes([15]) + (1).to_bytes(4, "little") + size.to_bytes(4, "little")
    head += size.to_bytes(4, "little") + bytes(2)
    wrapper = BinLogPacketWrapper(
        MysqlPacket(b"\x00" + head + body, "utf8"), {}, _Control(), (0, 0, 0), checksum,
        frozenset([FormatDescriptionEvent]), None, None, None, None, False, False, False,
        False, False,
    )
    assert type(wrapper.event) is FormatDescriptionEvent
    return wrapper.event


@pytest.mark.parametrize("checksum", [False, True])
def test_stream_format_from_the_format_description_event(checksum: bool) -> None:
    """The FormatDescriptionEvent's public attributes give what the library keeps privately
    (``__use_checksum``, ``__post_header_lengths``): event_size, packet.event_size, post_header_len."""
    post = bytes([56, 13, 0, 8, 0, 18, 0, 4, 4, 4, 4, 18, 0, 0, 84, 0, 4, 26, 8, 0, 0, 0, 8, 8, 8])
    event = format_description(checksum, post)
    assert library.stream_format(event) == ((4 if checksum else 0), tuple(post))
