"""The pgoutput message values: what each logical replication message carries.

Immutable dataclasses, one per pgoutput message type of protocol versions 1
to 4 (Begin, Commit, Relation, Insert, Stream Start, Prepare...), the union
:data:`PgOutputMessage`, the tuple value types (with :data:`UNCHANGED_TOAST`
for an out-of-line value the server did not resend), and the protocol's
timestamp arithmetic. :mod:`.decoder` builds them from bytes; the stream
reader (:mod:`.replication`, :mod:`.changes`) and the tests read them.

No parsing and no I/O here (only :func:`pg_timestamp_now` reads the clock).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal, TypeAlias

from connectors.postgres.position import Lsn

__all__ = [
    "PG_EPOCH_UNIX_US",
    "UNCHANGED_TOAST",
    "Begin",
    "BeginPrepare",
    "Commit",
    "CommitPrepared",
    "DataType",
    "Delete",
    "Insert",
    "LogicalMessage",
    "Origin",
    "PgOutputMessage",
    "Prepare",
    "Relation",
    "RelationColumn",
    "RollbackPrepared",
    "StreamAbort",
    "StreamCommit",
    "StreamPrepare",
    "StreamStart",
    "StreamStop",
    "Truncate",
    "TupleData",
    "TupleValue",
    "UnchangedToast",
    "Update",
    "pg_timestamp_now",
    "pg_timestamp_to_unix_ms",
]

#: PostgreSQL timestamps count microseconds from 2000-01-01 00:00 UTC.
PG_EPOCH_UNIX_US: Final = 946_684_800_000_000


def pg_timestamp_to_unix_ms(pg_us: int) -> int:
    """Protocol timestamp (µs since 2000-01-01 UTC) -> unix epoch milliseconds."""
    return (pg_us + PG_EPOCH_UNIX_US) // 1000


def pg_timestamp_now() -> int:
    """The current time as a protocol timestamp, for standby status updates."""
    return time.time_ns() // 1000 - PG_EPOCH_UNIX_US


class UnchangedToast(Enum):
    """Type of :data:`UNCHANGED_TOAST` (an enum so it is a typed, picklable singleton)."""

    UNCHANGED_TOAST = "u"

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"


#: A column the server did not send because its out-of-line (TOAST) value did
#: not change. Distinct from ``None`` (SQL NULL): the replica keeps its value.
UNCHANGED_TOAST: Final = UnchangedToast.UNCHANGED_TOAST

TupleValue: TypeAlias = str | bytes | UnchangedToast | None
TupleData: TypeAlias = tuple[TupleValue, ...]


# --- messages ---------------------------------------------------------------
# Timestamps are kept raw (µs since 2000-01-01 UTC) so nothing is lost;
# ``ts_ms`` gives unix milliseconds, what event envelopes carry.


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: Lsn
    commit_ts: int
    xid: int

    @property
    def ts_ms(self) -> int:
        return pg_timestamp_to_unix_ms(self.commit_ts)


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: Lsn
    end_lsn: Lsn
    commit_ts: int

    @property
    def ts_ms(self) -> int:
        return pg_timestamp_to_unix_ms(self.commit_ts)


@dataclass(frozen=True, slots=True)
class Origin:
    """The transaction was replayed from replication origin ``name``.

    Inside a stream block (first segment) ``commit_lsn`` is ``Lsn(0)``.
    """

    commit_lsn: Lsn
    name: str


@dataclass(frozen=True, slots=True)
class RelationColumn:
    flags: int  # bit 1: part of the replica identity key
    name: str
    type_oid: int
    type_modifier: int  # atttypmod, -1 when none

    @property
    def is_key(self) -> bool:
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class Relation:
    """A table's shape, sent before its first change in a session and after DDL."""

    relation_id: int
    namespace: str
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[RelationColumn, ...]
    xid: int | None = None  # only inside a stream block

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.flags & 1)


@dataclass(frozen=True, slots=True)
class DataType:
    """pgoutput's Type message: names a non-built-in type used by a later Relation."""

    type_oid: int
    namespace: str
    name: str
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Insert:
    relation_id: int
    new: TupleData
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """``old`` is the key ('K') or whole old row ('O'), or None when not sent.

    Without an old image the key did not change (REPLICA IDENTITY DEFAULT/INDEX)
    or the table has REPLICA IDENTITY NOTHING.
    """

    relation_id: int
    new: TupleData
    old: TupleData | None = None
    old_kind: Literal["K", "O"] | None = None
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    relation_id: int
    old: TupleData
    old_kind: Literal["K", "O"]
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class Truncate:
    relation_ids: tuple[int, ...]
    options: int  # bit 1 CASCADE, bit 2 RESTART IDENTITY
    xid: int | None = None

    @property
    def cascade(self) -> bool:
        return bool(self.options & 1)

    @property
    def restart_identity(self) -> bool:
        return bool(self.options & 2)


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """``pg_logical_emit_message`` output (sent only with ``messages 'true'``)."""

    transactional: bool
    lsn: Lsn
    prefix: str
    content: bytes
    xid: int | None = None


@dataclass(frozen=True, slots=True)
class StreamStart:
    xid: int
    first_segment: bool


@dataclass(frozen=True, slots=True)
class StreamStop:
    pass


@dataclass(frozen=True, slots=True)
class StreamCommit:
    xid: int
    flags: int
    commit_lsn: Lsn
    end_lsn: Lsn
    commit_ts: int

    @property
    def ts_ms(self) -> int:
        return pg_timestamp_to_unix_ms(self.commit_ts)


@dataclass(frozen=True, slots=True)
class StreamAbort:
    """A streamed (sub)transaction aborted: drop what was streamed for ``subxid``.

    ``subxid == xid`` means the whole transaction. ``abort_lsn``/``abort_ts``
    are present only with protocol 4 and ``streaming 'parallel'``.
    """

    xid: int
    subxid: int
    abort_lsn: Lsn | None = None
    abort_ts: int | None = None


# Two-phase commit (protocol 3, ``two_phase 'on'``).


@dataclass(frozen=True, slots=True)
class BeginPrepare:
    prepare_lsn: Lsn
    end_lsn: Lsn
    prepare_ts: int
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class Prepare:
    flags: int
    prepare_lsn: Lsn
    end_lsn: Lsn
    prepare_ts: int
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class CommitPrepared:
    flags: int
    commit_lsn: Lsn
    end_lsn: Lsn
    commit_ts: int
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class RollbackPrepared:
    flags: int
    prepare_end_lsn: Lsn
    rollback_end_lsn: Lsn
    prepare_ts: int
    rollback_ts: int
    xid: int
    gid: str


@dataclass(frozen=True, slots=True)
class StreamPrepare:
    flags: int
    prepare_lsn: Lsn
    end_lsn: Lsn
    prepare_ts: int
    xid: int
    gid: str


PgOutputMessage: TypeAlias = (
    Begin
    | Commit
    | Origin
    | Relation
    | DataType
    | Insert
    | Update
    | Delete
    | Truncate
    | LogicalMessage
    | StreamStart
    | StreamStop
    | StreamCommit
    | StreamAbort
    | BeginPrepare
    | Prepare
    | CommitPrepared
    | RollbackPrepared
    | StreamPrepare
)
