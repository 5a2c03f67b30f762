"""Test-only pgoutput encoder: the inverse of the decoder, for round-trip tests.

Written from the protocol description, independently of the decoder's code,
so a shared misreading of the format would have to be made twice.
"""

from __future__ import annotations

import struct

from connectors.postgres.source import messages


def _cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def _xid(xid: int | None, in_stream: bool) -> bytes:
    if in_stream:
        assert xid is not None
        return struct.pack(">I", xid)
    assert xid is None
    return b""


def encode_tuple(values: messages.TupleData) -> bytes:
    out = [struct.pack(">H", len(values))]
    for v in values:
        if v is None:
            out.append(b"n")
        elif v is messages.UNCHANGED_TOAST:
            out.append(b"u")
        elif isinstance(v, str):
            raw = v.encode()
            out.append(b"t" + struct.pack(">I", len(raw)) + raw)
        else:
            assert isinstance(v, bytes)
            out.append(b"b" + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def encode(msg: messages.PgOutputMessage, in_stream: bool = False) -> bytes:
    if isinstance(msg, messages.Begin):
        return b"B" + struct.pack(">QqI", msg.final_lsn.value, msg.commit_ts, msg.xid)
    if isinstance(msg, messages.Commit):
        return b"C" + struct.pack(
            ">BQQq", msg.flags, msg.commit_lsn.value, msg.end_lsn.value, msg.commit_ts
        )
    if isinstance(msg, messages.Origin):
        return b"O" + struct.pack(">Q", msg.commit_lsn.value) + _cstr(msg.name)
    if isinstance(msg, messages.Relation):
        cols = b"".join(
            struct.pack(">B", c.flags)
            + _cstr(c.name)
            + struct.pack(">Ii", c.type_oid, c.type_modifier)
            for c in msg.columns
        )
        return (
            b"R"
            + _xid(msg.xid, in_stream)
            + struct.pack(">I", msg.relation_id)
            + _cstr(msg.namespace)
            + _cstr(msg.name)
            + msg.replica_identity.encode()
            + struct.pack(">H", len(msg.columns))
            + cols
        )
    if isinstance(msg, messages.DataType):
        return (
            b"Y"
            + _xid(msg.xid, in_stream)
            + struct.pack(">I", msg.type_oid)
            + _cstr(msg.namespace)
            + _cstr(msg.name)
        )
    if isinstance(msg, messages.Insert):
        return (
            b"I"
            + _xid(msg.xid, in_stream)
            + struct.pack(">I", msg.relation_id)
            + b"N"
            + encode_tuple(msg.new)
        )
    if isinstance(msg, messages.Update):
        old = b""
        if msg.old is not None:
            assert msg.old_kind is not None
            old = msg.old_kind.encode() + encode_tuple(msg.old)
        return (
            b"U"
            + _xid(msg.xid, in_stream)
            + struct.pack(">I", msg.relation_id)
            + old
            + b"N"
            + encode_tuple(msg.new)
        )
    if isinstance(msg, messages.Delete):
        return (
            b"D"
            + _xid(msg.xid, in_stream)
            + struct.pack(">I", msg.relation_id)
            + msg.old_kind.encode()
            + encode_tuple(msg.old)
        )
    if isinstance(msg, messages.Truncate):
        return (
            b"T"
            + _xid(msg.xid, in_stream)
            + struct.pack(">IB", len(msg.relation_ids), msg.options)
            + b"".join(struct.pack(">I", r) for r in msg.relation_ids)
        )
    if isinstance(msg, messages.LogicalMessage):
        return (
            b"M"
            + _xid(msg.xid, in_stream)
            + struct.pack(">BQ", int(msg.transactional), msg.lsn.value)
            + _cstr(msg.prefix)
            + struct.pack(">I", len(msg.content))
            + msg.content
        )
    if isinstance(msg, messages.StreamStart):
        return b"S" + struct.pack(">IB", msg.xid, int(msg.first_segment))
    if isinstance(msg, messages.StreamStop):
        return b"E"
    if isinstance(msg, messages.StreamCommit):
        return b"c" + struct.pack(
            ">IBQQq", msg.xid, msg.flags, msg.commit_lsn.value, msg.end_lsn.value, msg.commit_ts
        )
    if isinstance(msg, messages.StreamAbort):
        body = struct.pack(">II", msg.xid, msg.subxid)
        if msg.abort_lsn is not None:
            assert msg.abort_ts is not None
            body += struct.pack(">Qq", msg.abort_lsn.value, msg.abort_ts)
        return b"A" + body
    if isinstance(msg, messages.BeginPrepare):
        return (
            b"b"
            + struct.pack(
                ">QQqI", msg.prepare_lsn.value, msg.end_lsn.value, msg.prepare_ts, msg.xid
            )
            + _cstr(msg.gid)
        )
    if isinstance(msg, messages.Prepare | messages.CommitPrepared | messages.StreamPrepare):
        tag = {messages.Prepare: b"P", messages.CommitPrepared: b"K", messages.StreamPrepare: b"p"}[type(msg)]
        lsn = msg.commit_lsn if isinstance(msg, messages.CommitPrepared) else msg.prepare_lsn
        ts = msg.commit_ts if isinstance(msg, messages.CommitPrepared) else msg.prepare_ts
        return (
            tag
            + struct.pack(">BQQqI", msg.flags, lsn.value, msg.end_lsn.value, ts, msg.xid)
            + _cstr(msg.gid)
        )
    if isinstance(msg, messages.RollbackPrepared):
        return (
            b"r"
            + struct.pack(
                ">BQQqqI",
                msg.flags,
                msg.prepare_end_lsn.value,
                msg.rollback_end_lsn.value,
                msg.prepare_ts,
                msg.rollback_ts,
                msg.xid,
            )
            + _cstr(msg.gid)
        )
    raise TypeError(f"cannot encode {msg!r}")


def encode_xlogdata(start: int, end: int, clock: int, payload: bytes) -> bytes:
    return b"w" + struct.pack(">QQq", start, end, clock) + payload


def encode_keepalive(end: int, clock: int, reply: bool) -> bytes:
    return b"k" + struct.pack(">QqB", end, clock, int(reply))
