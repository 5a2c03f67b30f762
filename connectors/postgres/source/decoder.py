"""Pure decoder for PostgreSQL's ``pgoutput`` logical replication protocol.

One concern, about 600 lines: parsing the protocol's bytes (the message
values themselves live in :mod:`.messages`).

It sits between the replication I/O shell (which moves CopyData payloads over
a psycopg connection and acknowledges LSNs) and the stream reader (which keeps
the relation cache and turns row messages into ``ChangeEvent`` values with
:mod:`connectors.postgres.types`). Nothing here does I/O or reads a clock
except :func:`pg_timestamp_now`, so the whole protocol is tested on captured
bytes and fuzzed (tests/unit/postgres/test_decoder.py).

Two layers, as on the wire:

* the streaming-replication CopyBoth framing: :func:`decode_copy_data` splits
  ``'w'`` XLogData and ``'k'`` primary keepalive messages, and
  :func:`encode_standby_status` builds the ``'r'`` reply;
* the pgoutput messages inside XLogData: :class:`PgOutputDecoder` (or the
  stateless :func:`decode_message`) for protocol versions 1 to 4, giving the
  message values of :mod:`.messages`; :func:`decode_row` is the hot path
  for row changes (no message object; parsed in C when built).

Protocol version 2 prefixes Relation, Type, Insert, Update, Delete, Truncate
and Message with an xid *only inside a Stream Start/Stop block*, so the bytes
alone are ambiguous: the stream state is explicit (``in_stream``), kept by
:class:`PgOutputDecoder` from the Stream Start/Stop messages it has seen.

Tuple values stay as the server sent them (``str`` for text, ``bytes`` for
binary, ``None`` for NULL, :data:`UNCHANGED_TOAST` for an unchanged
out-of-line value) - conversion to Python values is the type table's job.
Malformed or truncated input always raises
:class:`~cdc.errors.SerializationError` naming the message type and offset;
the decoder never returns a partial message.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from cdc import native
from cdc.errors import SerializationError
from connectors.postgres.position import Lsn
from connectors.postgres.source.messages import (
    UNCHANGED_TOAST,
    Begin,
    BeginPrepare,
    Commit,
    CommitPrepared,
    DataType,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    PgOutputMessage,
    Prepare,
    Relation,
    RelationColumn,
    RollbackPrepared,
    StreamAbort,
    StreamCommit,
    StreamPrepare,
    StreamStart,
    StreamStop,
    Truncate,
    TupleData,
    TupleValue,
    Update,
    pg_timestamp_to_unix_ms,
)

__all__ = [
    "PgOutputDecoder",
    "PrimaryKeepalive",
    "XLogData",
    "decode_copy_data",
    "decode_message",
    "encode_standby_status",
]

# --- decoding ---------------------------------------------------------------

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_U32_U8 = struct.Struct(">IB")
_COLUMN = struct.Struct(">Ii")  # type oid, typmod
_KIND_LEN = struct.Struct(">BI")  # tuple value kind + (for 't'/'b') length
_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">BQQq")
_STREAM_START = struct.Struct(">IB")
_STREAM_COMMIT = struct.Struct(">IBQQq")
_STREAM_ABORT = struct.Struct(">II")
_STREAM_ABORT_V4 = struct.Struct(">IIQq")
_BEGIN_PREPARE = struct.Struct(">QQqI")
_PREPARE = struct.Struct(">BQQqI")  # also Commit Prepared, Stream Prepare
_ROLLBACK_PREPARED = struct.Struct(">BQQqqI")
_MESSAGE = struct.Struct(">BQ")
_XLOGDATA = struct.Struct(">QQq")
_KEEPALIVE = struct.Struct(">QqB")
_STATUS = struct.Struct(">cQQQqB")

# Tuple parsing reads kind and length with one unpack; padding lets that read
# run past a trailing 'n'/'u' byte. Overruns are caught by the final bounds check.
_PAD = b"\0\0\0\0"

_NAMES: Final = {
    0x42: "Begin",
    0x43: "Commit",
    0x4F: "Origin",
    0x52: "Relation",
    0x59: "Type",
    0x49: "Insert",
    0x55: "Update",
    0x44: "Delete",
    0x54: "Truncate",
    0x4D: "Message",
    0x53: "Stream Start",
    0x45: "Stream Stop",
    0x63: "Stream Commit",
    0x41: "Stream Abort",
    0x62: "Begin Prepare",
    0x50: "Prepare",
    0x4B: "Commit Prepared",
    0x72: "Rollback Prepared",
    0x70: "Stream Prepare",
}


class _Malformed(Exception):
    """Internal: a parse step found bad input at ``offset``."""

    def __init__(self, offset: int, detail: str) -> None:
        super().__init__(detail)
        self.offset = offset
        self.detail = detail


def _cstring(buf: bytes, pos: int, what: str) -> tuple[str, int]:
    end = buf.find(b"\0", pos)
    if end < 0:
        raise _Malformed(pos, f"{what}: missing NUL terminator")
    try:
        return buf[pos:end].decode(), end + 1
    except UnicodeDecodeError as e:
        raise _Malformed(pos, f"{what}: not valid UTF-8 ({e.reason})") from None


def _expect_end(buf: bytes, pos: int) -> None:
    if pos != len(buf):
        if pos > len(buf):
            raise _Malformed(len(buf), "truncated")
        raise _Malformed(pos, f"{len(buf) - pos} unexpected trailing bytes")


def _need(buf: bytes, pos: int, n: int) -> None:
    if pos + n > len(buf):
        raise _Malformed(pos, f"truncated: needs {n} more bytes, has {len(buf) - pos}")


def _fixed(buf: bytes, s: struct.Struct) -> tuple[int, ...]:
    """Unpack a fixed-size message body that must fill the whole message."""
    if len(buf) != 1 + s.size:
        _expect_end(buf, 1 + s.size)
    return s.unpack_from(buf, 1)


def _read_tuple(buf: bytes, pos: int, end: int) -> tuple[TupleData, int]:
    """Parse TupleData at ``pos`` of ``buf`` (``buf`` padded; ``end`` = real length).

    This is the hot loop: one unpack per value, one slice and one UTF-8 decode
    per text value, bounds checked once at the end (slicing never raises).
    """
    if pos + 2 > end:
        raise _Malformed(pos, "truncated tuple: no column count")
    (ncols,) = _U16.unpack_from(buf, pos)
    pos += 2
    values: list[TupleValue] = []
    append = values.append
    unpack = _KIND_LEN.unpack_from
    try:
        for _ in range(ncols):
            kind, n = unpack(buf, pos)
            if kind == 0x74:  # 't' text
                start = pos + 5
                stop = start + n
                append(buf[start:stop].decode())
                pos = stop
            elif kind == 0x6E:  # 'n' null
                append(None)
                pos += 1
            elif kind == 0x75:  # 'u' unchanged toast
                append(UNCHANGED_TOAST)
                pos += 1
            elif kind == 0x62:  # 'b' binary
                start = pos + 5
                pos = start + n
                append(buf[start:pos])
            else:
                if pos >= end:
                    break
                raise _Malformed(pos, f"unknown tuple value kind {kind:#04x}")
    except UnicodeDecodeError as e:
        if pos + 5 + n > end:
            raise _Malformed(end, "truncated tuple value") from None
        raise _Malformed(pos, f"text value is not valid UTF-8 ({e.reason})") from None
    except struct.error:
        raise _Malformed(end, "truncated tuple data") from None
    if pos > end or len(values) != ncols:
        raise _Malformed(end, f"truncated tuple data ({len(values)} of {ncols} columns)")
    return tuple(values), pos


_C = native.load("connectors.postgres.source._cpgoutput")


def _tuple(buf: bytes, pos: int) -> tuple[TupleData, int]:
    """TupleData at ``pos`` of an unpadded message: the C parser, else the reference."""
    if _C is not None and buf.__class__ is bytes:
        try:
            return _C.read_tuple(buf, pos, UNCHANGED_TOAST)  # type: ignore[no-any-return]
        except ValueError:
            pass  # malformed: the Python parser below says where and why
    return _read_tuple(buf + _PAD, pos, len(buf))


def _xid_prefix(buf: bytes, in_stream: bool) -> tuple[int | None, int]:
    if not in_stream:
        return None, 1
    _need(buf, 1, 4)
    return _U32.unpack_from(buf, 1)[0], 5


def _begin(buf: bytes, in_stream: bool) -> Begin:
    lsn, ts, xid = _fixed(buf, _BEGIN)
    return Begin(Lsn(lsn), ts, xid)


def _commit(buf: bytes, in_stream: bool) -> Commit:
    flags, lsn, end, ts = _fixed(buf, _COMMIT)
    return Commit(flags, Lsn(lsn), Lsn(end), ts)


def _origin(buf: bytes, in_stream: bool) -> Origin:
    _need(buf, 1, 8)
    (lsn,) = _U64.unpack_from(buf, 1)
    name, pos = _cstring(buf, 9, "origin name")
    _expect_end(buf, pos)
    return Origin(Lsn(lsn), name)


def _relation(buf: bytes, in_stream: bool) -> Relation:
    xid, pos = _xid_prefix(buf, in_stream)
    _need(buf, pos, 4)
    (relid,) = _U32.unpack_from(buf, pos)
    namespace, pos = _cstring(buf, pos + 4, "namespace")
    name, pos = _cstring(buf, pos, "relation name")
    _need(buf, pos, 3)
    ident = buf[pos]
    (ncols,) = _U16.unpack_from(buf, pos + 1)
    pos += 3
    columns = []
    for i in range(ncols):
        _need(buf, pos, 1)
        flags = buf[pos]
        colname, pos = _cstring(buf, pos + 1, f"column {i} name")
        _need(buf, pos, 8)
        oid, typmod = _COLUMN.unpack_from(buf, pos)
        pos += 8
        columns.append(RelationColumn(flags, colname, oid, typmod))
    _expect_end(buf, pos)
    if ident not in b"dnfi":
        raise _Malformed(pos, f"unknown replica identity {ident:#04x}")
    return Relation(relid, namespace, name, chr(ident), tuple(columns), xid)


def _type(buf: bytes, in_stream: bool) -> DataType:
    xid, pos = _xid_prefix(buf, in_stream)
    _need(buf, pos, 4)
    (oid,) = _U32.unpack_from(buf, pos)
    namespace, pos = _cstring(buf, pos + 4, "type namespace")
    name, pos = _cstring(buf, pos, "type name")
    _expect_end(buf, pos)
    return DataType(oid, namespace, name, xid)


def _insert(buf: bytes, in_stream: bool) -> Insert:
    xid, pos = _xid_prefix(buf, in_stream)
    _need(buf, pos, 5)
    relid, marker = _U32_U8.unpack_from(buf, pos)
    if marker != 0x4E:  # 'N'
        raise _Malformed(pos + 4, f"expected 'N' before the new tuple, got {marker:#04x}")
    end = len(buf)
    new, pos = _tuple(buf, pos + 5)
    if pos != end:
        raise _Malformed(pos, f"{end - pos} unexpected trailing bytes")
    return Insert(relid, new, xid)


def _update(buf: bytes, in_stream: bool) -> Update:
    xid, pos = _xid_prefix(buf, in_stream)
    _need(buf, pos, 5)
    relid, marker = _U32_U8.unpack_from(buf, pos)
    pos += 5
    end = len(buf)
    old: TupleData | None = None
    old_kind: Literal["K", "O"] | None = None
    if marker == 0x4B or marker == 0x4F:  # 'K' key, 'O' old row
        old_kind = "K" if marker == 0x4B else "O"
        old, pos = _tuple(buf, pos)
        _need(buf, pos, 1)
        marker = buf[pos]
        pos += 1
    if marker != 0x4E:
        raise _Malformed(pos - 1, f"expected 'N' before the new tuple, got {marker:#04x}")
    new, pos = _tuple(buf, pos)
    if pos != end:
        raise _Malformed(pos, f"{end - pos} unexpected trailing bytes")
    return Update(relid, new, old, old_kind, xid)


def _delete(buf: bytes, in_stream: bool) -> Delete:
    xid, pos = _xid_prefix(buf, in_stream)
    _need(buf, pos, 5)
    relid, marker = _U32_U8.unpack_from(buf, pos)
    if marker != 0x4B and marker != 0x4F:
        raise _Malformed(pos + 4, f"expected 'K' or 'O' before the old tuple, got {marker:#04x}")
    end = len(buf)
    old, pos = _tuple(buf, pos + 5)
    if pos != end:
        raise _Malformed(pos, f"{end - pos} unexpected trailing bytes")
    return Delete(relid, old, "K" if marker == 0x4B else "O", xid)


def _truncate(buf: bytes, in_stream: bool) -> Truncate:
    xid, pos = _xid_prefix(buf, in_stream)
    _need(buf, pos, 5)
    nrels, options = _U32_U8.unpack_from(buf, pos)
    pos += 5
    if len(buf) - pos != 4 * nrels:
        raise _Malformed(pos, f"{nrels} relation ids need {4 * nrels} bytes, got {len(buf) - pos}")
    ids = struct.unpack_from(f">{nrels}I", buf, pos)
    return Truncate(ids, options, xid)


def _message(buf: bytes, in_stream: bool) -> LogicalMessage:
    xid, pos = _xid_prefix(buf, in_stream)
    _need(buf, pos, 9)
    flags, lsn = _MESSAGE.unpack_from(buf, pos)
    prefix, pos = _cstring(buf, pos + 9, "message prefix")
    _need(buf, pos, 4)
    (n,) = _U32.unpack_from(buf, pos)
    pos += 4
    if len(buf) - pos != n:
        raise _Malformed(pos, f"content length {n} but {len(buf) - pos} bytes follow")
    return LogicalMessage(bool(flags & 1), Lsn(lsn), prefix, buf[pos:], xid)


def _stream_start(buf: bytes, in_stream: bool) -> StreamStart:
    xid, first = _fixed(buf, _STREAM_START)
    return StreamStart(xid, first == 1)


def _stream_stop(buf: bytes, in_stream: bool) -> StreamStop:
    _expect_end(buf, 1)
    return StreamStop()


def _stream_commit(buf: bytes, in_stream: bool) -> StreamCommit:
    xid, flags, lsn, end, ts = _fixed(buf, _STREAM_COMMIT)
    return StreamCommit(xid, flags, Lsn(lsn), Lsn(end), ts)


def _stream_abort(buf: bytes, in_stream: bool) -> StreamAbort:
    # Protocol 4 with streaming 'parallel' appends abort LSN and timestamp.
    if len(buf) == 1 + _STREAM_ABORT_V4.size:
        xid, subxid, lsn, ts = _STREAM_ABORT_V4.unpack_from(buf, 1)
        return StreamAbort(xid, subxid, Lsn(lsn), ts)
    xid, subxid = _fixed(buf, _STREAM_ABORT)
    return StreamAbort(xid, subxid)


def _gid(buf: bytes, pos: int) -> str:
    gid, pos = _cstring(buf, pos, "gid")
    _expect_end(buf, pos)
    return gid


def _begin_prepare(buf: bytes, in_stream: bool) -> BeginPrepare:
    _need(buf, 1, _BEGIN_PREPARE.size)
    lsn, end, ts, xid = _BEGIN_PREPARE.unpack_from(buf, 1)
    return BeginPrepare(Lsn(lsn), Lsn(end), ts, xid, _gid(buf, 1 + _BEGIN_PREPARE.size))


def _prepare_fields(buf: bytes) -> tuple[int, Lsn, Lsn, int, int, str]:
    _need(buf, 1, _PREPARE.size)
    flags, lsn, end, ts, xid = _PREPARE.unpack_from(buf, 1)
    return flags, Lsn(lsn), Lsn(end), ts, xid, _gid(buf, 1 + _PREPARE.size)


def _prepare(buf: bytes, in_stream: bool) -> Prepare:
    return Prepare(*_prepare_fields(buf))


def _commit_prepared(buf: bytes, in_stream: bool) -> CommitPrepared:
    return CommitPrepared(*_prepare_fields(buf))


def _stream_prepare(buf: bytes, in_stream: bool) -> StreamPrepare:
    return StreamPrepare(*_prepare_fields(buf))


def _rollback_prepared(buf: bytes, in_stream: bool) -> RollbackPrepared:
    _need(buf, 1, _ROLLBACK_PREPARED.size)
    flags, pend, rend, pts, rts, xid = _ROLLBACK_PREPARED.unpack_from(buf, 1)
    gid = _gid(buf, 1 + _ROLLBACK_PREPARED.size)
    return RollbackPrepared(flags, Lsn(pend), Lsn(rend), pts, rts, xid, gid)


_PARSERS: Final[dict[int, Callable[[bytes, bool], PgOutputMessage]]] = {
    0x42: _begin,
    0x43: _commit,
    0x4F: _origin,
    0x52: _relation,
    0x59: _type,
    0x49: _insert,
    0x55: _update,
    0x44: _delete,
    0x54: _truncate,
    0x4D: _message,
    0x53: _stream_start,
    0x45: _stream_stop,
    0x63: _stream_commit,
    0x41: _stream_abort,
    0x62: _begin_prepare,
    0x50: _prepare,
    0x4B: _commit_prepared,
    0x72: _rollback_prepared,
    0x70: _stream_prepare,
}

RowMessage: TypeAlias = tuple[int, TupleData | None, TupleData | None, Literal["K", "O"] | None]


def decode_row(payload: bytes, in_stream: bool = False) -> RowMessage:
    """An Insert, Update or Delete as ``(relation id, new, old, old kind)``.

    The hot path of the stream: no message object, and the whole message is
    parsed in C when the native module is built. Anything the C parser
    refuses is decoded by :func:`decode_message`, which raises the precise error.
    """
    if _C is not None and payload.__class__ is bytes:
        try:
            return _C.parse_row(payload, in_stream, UNCHANGED_TOAST)  # type: ignore[no-any-return]
        except ValueError:
            pass
    msg = decode_message(payload, in_stream=in_stream)
    if isinstance(msg, Insert):
        return msg.relation_id, msg.new, None, None
    if isinstance(msg, Update):
        return msg.relation_id, msg.new, msg.old, msg.old_kind
    if isinstance(msg, Delete):
        return msg.relation_id, None, msg.old, msg.old_kind
    raise SerializationError(f"pgoutput {type(msg).__name__} message is not a row change")


# Messages that only ever come outside a Stream Start/Stop block; seeing one
# inside means the stream state (and so the xid prefixes) is wrong.
_OUTSIDE_STREAM: Final = frozenset(b"BCScAbPKrp")


def decode_message(
    data: bytes | bytearray | memoryview, *, in_stream: bool = False
) -> PgOutputMessage:
    """Decode one pgoutput message (the payload of an XLogData frame).

    ``in_stream`` says whether a Stream Start has been seen without its Stream
    Stop; it decides whether the xid prefix of protocol 2 is present. Use
    :class:`PgOutputDecoder` to have it tracked.
    """
    buf = data if data.__class__ is bytes else bytes(data)
    if not buf:
        raise SerializationError("empty pgoutput message")
    tag = buf[0]
    parse = _PARSERS.get(tag)
    if parse is None:
        raise SerializationError(
            f"unknown pgoutput message type {chr(tag)!r} ({tag:#04x}) at offset 0 "
            f"of a {len(buf)}-byte message",
            hint="the server speaks a newer pgoutput protocol than this decoder; "
            "request proto_version 1 to 4",
        )
    if in_stream:
        if tag in _OUTSIDE_STREAM:
            raise SerializationError(
                f"pgoutput {_NAMES[tag]} message inside a stream block (after Stream Start)"
            )
    elif tag == 0x45:
        raise SerializationError("pgoutput Stream Stop message outside a stream block")
    try:
        return parse(buf, in_stream)
    except _Malformed as e:
        raise SerializationError(
            f"malformed pgoutput {_NAMES[tag]} message at offset {e.offset} "
            f"of {len(buf)} bytes: {e.detail}"
        ) from None
    except (struct.error, ValueError, IndexError, OverflowError) as e:
        raise SerializationError(
            f"malformed pgoutput {_NAMES[tag]} message ({len(buf)} bytes): {e}"
        ) from None


class PgOutputDecoder:
    """Decodes one replication session's pgoutput messages, in order.

    The only state is whether a stream block is open, taken from the Stream
    Start/Stop messages themselves. One instance per START_REPLICATION.
    """

    __slots__ = ("in_stream", "stream_xid")

    def __init__(self) -> None:
        self.in_stream = False
        self.stream_xid: int | None = None

    def decode(self, data: bytes | bytearray | memoryview) -> PgOutputMessage:
        msg = decode_message(data, in_stream=self.in_stream)
        if msg.__class__ is StreamStart:
            self.in_stream = True
            self.stream_xid = msg.xid
        elif msg.__class__ is StreamStop:
            self.in_stream = False
            self.stream_xid = None
        return msg


# --- CopyBoth framing -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class XLogData:
    """A ``'w'`` frame. LSNs are plain ints (one frame per row: no Lsn objects)."""

    data_start: int
    wal_end: int
    server_clock: int
    payload: bytes

    @property
    def start_lsn(self) -> Lsn:
        return Lsn(self.data_start)

    @property
    def ts_ms(self) -> int:
        return pg_timestamp_to_unix_ms(self.server_clock)


@dataclass(frozen=True, slots=True)
class PrimaryKeepalive:
    """A ``'k'`` frame; answer at once when ``reply_requested``."""

    wal_end: int
    server_clock: int
    reply_requested: bool

    @property
    def ts_ms(self) -> int:
        return pg_timestamp_to_unix_ms(self.server_clock)


def decode_copy_data(data: bytes | bytearray | memoryview) -> XLogData | PrimaryKeepalive:
    """Split one CopyData payload of the replication stream."""
    buf = data if data.__class__ is bytes else bytes(data)
    if not buf:
        raise SerializationError("empty CopyData message in the replication stream")
    tag = buf[0]
    if tag == 0x77:  # 'w'
        if len(buf) < 1 + _XLOGDATA.size:
            raise SerializationError(
                f"truncated XLogData frame at offset {len(buf)}: "
                f"{len(buf)} bytes, header needs {1 + _XLOGDATA.size}"
            )
        start, end, clock = _XLOGDATA.unpack_from(buf, 1)
        return XLogData(start, end, clock, buf[1 + _XLOGDATA.size :])
    if tag == 0x6B:  # 'k'
        if len(buf) != 1 + _KEEPALIVE.size:
            raise SerializationError(
                f"malformed primary keepalive at offset {min(len(buf), 1 + _KEEPALIVE.size)}: "
                f"{len(buf)} bytes, expected {1 + _KEEPALIVE.size}"
            )
        end, clock, reply = _KEEPALIVE.unpack_from(buf, 1)
        return PrimaryKeepalive(end, clock, reply != 0)
    raise SerializationError(
        f"unknown replication CopyData message {chr(tag)!r} ({tag:#04x}) at offset 0"
    )


def encode_standby_status(
    write_lsn: Lsn | int,
    flush_lsn: Lsn | int,
    apply_lsn: Lsn | int,
    client_clock: int,
    reply_requested: bool = False,
) -> bytes:
    """Build a ``'r'`` standby status update.

    ``flush_lsn`` is what lets the server discard WAL (the slot's
    confirmed_flush_lsn): pass only positions durable downstream.
    ``client_clock`` is a protocol timestamp (:func:`pg_timestamp_now`).
    """
    return _STATUS.pack(
        b"r", int(write_lsn), int(flush_lsn), int(apply_lsn), client_clock, reply_requested
    )
