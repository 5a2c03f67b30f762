"""Transaction assembly: what the binlog reader keeps per transaction.

The binlog reader (:mod:`connectors.mysql.source.binlog`) opens a
:class:`BinlogTransaction` at a GTID event (or ``BEGIN``), splits each rows
event into changes (:func:`row_changes`, Debezium's rule for key changes; the C
``_crowimage.changes`` does the same), holds each change back one place
(:data:`HeldBackChange`) until the next change or the commit shows whether it
is the last, and moves its GTID set past the transaction (MySQL GTIDs:
:func:`with_mysql_gtid`). This module holds those values and rules; reading
the stream, resuming and building events stay in the reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from cdc.events import Op, TableSchema
from connectors.mysql.position import BinlogFile, GtidSet

__all__ = [
    "CHANGE_KINDS",
    "CHANGE_OPS",
    "FL_STANDALONE",
    "LOG_EVENT_SKIP_REPLICATION_F",
    "NEVER",
    "BinlogTransaction",
    "Change",
    "HeldBackChange",
    "row_changes",
    "with_mysql_gtid",
]

FL_STANDALONE: Final = 0x01  # MariaDB GTID flag: the group is one statement (DDL)
#: event header flag of MariaDB's ``skip_replication`` (set by cdc sinks with an origin)
LOG_EVENT_SKIP_REPLICATION_F: Final = 0x8000
#: ``skip_through`` of a transaction emitted whole before a restart
NEVER: Final = 1 << 62
#: rows event class -> its number in ``_crowimage.changes``; the ops it makes, in order
CHANGE_KINDS: Final = {WriteRowsEvent: 0, UpdateRowsEvent: 1, DeleteRowsEvent: 2}
CHANGE_OPS: Final = (Op.CREATE, Op.UPDATE, Op.DELETE)


Change = tuple[Op, "dict[str, Any] | None", "dict[str, Any] | None", "dict[str, Any] | None"]


def row_changes(key_names: tuple[str, ...], cls: type, images: list[Any]) -> list[Change]:
    """(op, key, before, after) of each row image of a rows event (pairs for updates)."""
    out: list[Change] = []
    if cls is WriteRowsEvent:
        for after in images:
            out.append(
                (Op.CREATE, ({k: after[k] for k in key_names} if key_names else None), None, after)
            )
    elif cls is DeleteRowsEvent:
        for before in images:
            out.append(
                (Op.DELETE, ({k: before[k] for k in key_names} if key_names else None), before, None)
            )
    else:
        for before, after in images:
            if not key_names:
                out.append((Op.UPDATE, None, before, after))
                continue
            old_key = {k: before[k] for k in key_names}
            new_key = {k: after[k] for k in key_names}
            if old_key == new_key:
                out.append((Op.UPDATE, new_key, before, after))
            else:
                # Debezium's rule: a key change is a delete of the old key and a
                # create of the new one, so per-key ordering and compaction hold.
                out.append((Op.DELETE, old_key, before, None))
                out.append((Op.CREATE, new_key, None, after))
    return out


def with_mysql_gtid(gset: GtidSet, gtid: str) -> GtidSet:
    """``gset`` plus one MySQL GTID ``uuid:n`` (intervals merged)."""
    sid, _, gno_text = gtid.rpartition(":")
    gno = int(gno_text)
    sid = sid.lower()
    spans = dict(gset.mysql)
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted([*spans.get(sid, ()), (gno, gno)]):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    spans[sid] = tuple(merged)
    return GtidSet(mariadb=gset.mariadb, mysql=tuple(sorted(spans.items())))


@dataclass(slots=True)
class BinlogTransaction:
    """A transaction being read: where it started, its GTID sets, its counters."""


    file: BinlogFile
    pos: int
    gtid: str | None
    gtid_before: GtidSet
    gtid_after: GtidSet
    ts_ms: int
    open: bool = False  # inside BEGIN..COMMIT (else the next statement is the whole group)
    index: int = 0  # next row index
    emitted: int = 0
    skip_through: int = -1  # rows up to this index were emitted before a restart
    per_table: dict[str, int] = field(default_factory=dict)
    tx_id: str = ""  # the GTID, else file:pos of the transaction's start
    vts: int = 0  # master-master version time (0: none; a flagged transaction has none)
    # what every event of the transaction shares (the reader's _begin, for _event)
    facts: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        self.tx_id = self.gtid if self.gtid is not None else f"{self.file}:{self.pos}"


#: A change held back until the next one (or the commit) shows whether it is the
#: last of its transaction: (op, schema, key, before, after, index in the
#: transaction, order in its table). A plain tuple: one is made per row.
HeldBackChange = tuple[Op, TableSchema, "dict[str, Any] | None", "dict[str, Any] | None",
              "dict[str, Any] | None", int, int]
