"""The two tables a master-master sink keeps in its replica: row versions and the conflict log.

``cdc_row_versions`` (:class:`~cdc.sink.versions.Entry` per row) and
``cdc_conflicts`` (:class:`ConflictRecord` per detected conflict) are created
by the sink (DDL from the dialect: ``row_versions_ddl``/``conflicts_ddl``) and
written inside the batch's replica transaction, with the data and the
checkpoint: a sink killed at any instant leaves the data, the versions and
the conflict log consistent with each other. Conflict ids are derived from
the sink, the row and the write, so a replayed write can never log twice
(the rows are upserted by id).

The conflict topic is fed from the table as an outbox: rows are produced
after the commit and then marked ``published``; rows a crashed sink did not
mark are produced again at its next start (a consumer may see one twice,
with the same id). Retention deletes rows older than the configured hours.

The statements are plain SQL through the dialect's quoting, like
:mod:`cdc.sink.checkpoint`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from cdc.sink.create import create_table
from cdc.sink.versions import Entry, Version
from cdc.spi import ReplicaTable, SinkSession, TableName

_CHUNK: Final = 500
_ENTRY_COLUMNS: Final = (
    "entry_id", "table_name", "row_key", "ts_ms", "node", "position", "deleted", "row_hash",
    "row_image", "updated_at",
)
_CONFLICT_COLUMNS: Final = (
    "id", "detected_at", "sink", "table_name", "row_key", "conflict_type", "resolution",
    "decision", "local_origin", "local_ts_ms", "local_position", "remote_origin",
    "remote_ts_ms", "remote_position", "local_image", "remote_image",
)


@dataclass(frozen=True, slots=True)
class ConflictRecord:
    """One detected conflict, as the table and the topic hold it.

    ``local_*`` describe the row's entry on the node (what it had), ``remote_*``
    the incoming write (for an own write learnt late: that write)."""

    id: str
    detected_at: dt.datetime
    sink: str
    table_name: str
    row_key: str
    conflict_type: str
    resolution: str
    decision: str
    local_origin: str | None
    local_ts_ms: int | None
    local_position: str | None
    remote_origin: str
    remote_ts_ms: int
    remote_position: str
    local_image: str | None
    remote_image: str | None

    @staticmethod
    def make(
        sink: str, table: str, key_text: str, ctype: str, resolution: str, decision: str,
        local: Entry | None, remote: Version, remote_image: str | None, now: dt.datetime,
    ) -> ConflictRecord:
        rid = hashlib.sha256(
            f"{sink}\x1f{table}\x1f{key_text}\x1f{ctype}\x1f{remote.node}\x1f{remote.position_text}"
            f"\x1f{remote.ts_ms}".encode()
        ).hexdigest()
        lv = None if local is None else local.version
        return ConflictRecord(
            rid, now, sink, table, key_text, ctype, resolution, decision,
            None if lv is None else lv.node, None if lv is None else lv.ts_ms,
            None if lv is None else lv.position_text, remote.node, remote.ts_ms,
            remote.position_text, None if local is None else local.image, remote_image,
        )

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c) for c in _CONFLICT_COLUMNS)

    def to_json(self) -> bytes:
        """The topic record's value (images as JSON objects, not strings)."""
        d = asdict(self)
        d["detected_at"] = self.detected_at.replace(tzinfo=dt.UTC).isoformat()
        for k in ("local_image", "remote_image"):
            d[k] = None if d[k] is None else json.loads(d[k])
        d["row_key"] = json.loads(self.row_key)
        return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()

    def topic_key(self) -> bytes:
        return json.dumps([self.table_name, json.loads(self.row_key)],
                          separators=(",", ":"), ensure_ascii=False).encode()


def utc_now() -> dt.datetime:
    """Naive UTC (both replicas' sessions run in UTC)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class VersionStore:
    """Reads and writes one sink's row versions and conflict log in its replica."""

    def __init__(self, versions: TableName, conflicts: TableName, sink: str) -> None:
        self.versions = versions
        self.conflicts = conflicts
        self.sink = sink
        self._described: dict[TableName, ReplicaTable] = {}

    def ensure_tables(self, session: SinkSession) -> None:
        d = session.dialect
        for name, ddl in ((self.versions, d.row_versions_ddl), (self.conflicts, d.conflicts_ddl)):
            table = session.describe(name)
            if table is None:
                create_table(session, name, ddl(name))
                table = session.describe(name)
            if table is not None:
                self._described[name] = table

    def read(self, session: SinkSession, ids: Sequence[str]) -> dict[str, Entry]:
        """The entries of ``ids`` (locked for the transaction): one query per 500 rows."""
        d = session.dialect
        out: dict[str, Entry] = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            sql = (
                "SELECT entry_id, ts_ms, node, position, deleted, row_hash, row_image "
                f"FROM {d.table_sql(self.versions)} WHERE entry_id IN "
                f"({','.join(['%s'] * len(chunk))}) FOR UPDATE"
            )
            # The stored position's sort key is left out (): a stored entry only ties with
            # an incoming write of the same node and millisecond, which came after it
            # (per-origin order), and () sorts first.
            for eid, ts, node, pos, deleted, h, image in session.query(sql, list(chunk)):
                out[str(eid)] = Entry(
                    Version(int(ts), str(node), (), str(pos)),
                    bool(deleted), image, None if h is None else str(h),
                )
        return out

    def write(self, session: SinkSession, rows: Iterable[tuple[str, str, str, Entry]]) -> int:
        """Upsert ``(entry id, table, key text, entry)`` rows."""
        now = utc_now()
        values = [
            (eid, table, key, e.version.ts_ms, e.version.node, e.version.position_text,
             e.deleted, e.hash, e.image, now)
            for eid, table, key, e in rows
        ]
        self._upsert(session, self.versions, _ENTRY_COLUMNS, "entry_id", values)
        return len(values)

    def log(self, session: SinkSession, records: Sequence[ConflictRecord]) -> None:
        """Insert conflict rows (idempotent by id)."""
        self._upsert(session, self.conflicts, _CONFLICT_COLUMNS, "id", [r.row() for r in records])

    def _upsert(self, session: SinkSession, table: TableName, columns: Sequence[str], key: str,
                values: Sequence[tuple[Any, ...]]) -> None:
        described = self._described.get(table)
        if described is not None:  # the session's bulk path (COPY, literal statements)
            session.upsert(described, columns, values)
            return
        d = session.dialect
        for i in range(0, len(values), _CHUNK):
            chunk = values[i : i + _CHUNK]
            session.execute(d.upsert(table, columns, (key,), len(chunk)),
                            [v for row in chunk for v in row])

    def unpublished(self, session: SinkSession, limit: int = 1000) -> list[ConflictRecord]:
        """Conflict rows not yet produced to the topic (own short read)."""
        d = session.dialect
        rows = session.query(
            f"SELECT {', '.join(_CONFLICT_COLUMNS)} FROM {d.table_sql(self.conflicts)} "
            f"WHERE published = %s AND sink = %s ORDER BY detected_at LIMIT {int(limit)}",
            [False, self.sink],
        )
        out = []
        for r in rows:
            m: Mapping[str, Any] = dict(zip(_CONFLICT_COLUMNS, r, strict=True))
            detected = m["detected_at"]
            if isinstance(detected, dt.datetime) and detected.tzinfo is not None:
                detected = detected.astimezone(dt.UTC).replace(tzinfo=None)
            out.append(ConflictRecord(**{**m, "detected_at": detected,
                                         "id": str(m["id"]).strip()}))
        return out

    def mark_published(self, session: SinkSession, ids: Sequence[str]) -> None:
        d = session.dialect
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            session.execute(
                f"UPDATE {d.table_sql(self.conflicts)} SET published = %s "
                f"WHERE id IN ({','.join(['%s'] * len(chunk))})", [True, *chunk],
            )

    def purge(self, session: SinkSession, older_than: dt.datetime) -> int:
        """Delete this sink's conflict rows detected before ``older_than`` (naive UTC)."""
        d = session.dialect
        return session.execute(
            f"DELETE FROM {d.table_sql(self.conflicts)} WHERE detected_at < %s AND sink = %s",
            [older_than, self.sink],
        )

