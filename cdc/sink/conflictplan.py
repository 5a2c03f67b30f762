"""The conflict-aware step of a master-master sink's batch, called from one place in the applier.

A sink with ``conflicts`` configured runs every prepared record of a batch
through :meth:`ConflictPlanner.plan` before the batch is reduced and applied:

1. one query reads (and locks) the version entries of every row the batch
   touches (:meth:`VersionStore.read`);
2. each record, in consumption order, becomes a :class:`~cdc.sink.conflicts.Write`
   (version from the position's version time, else ``source.ts_ms``;
   ``source.name`` and the source position;
   before/after-image hashes) and :func:`~cdc.sink.conflicts.decide` says
   whether it applies; records that do not apply keep no mutations (they are
   still consumed and checkpointed), own-topic records apply only to re-apply
   a local write that won, and only when its row (read with one query per
   table and 500 keys) still holds the entry it won over: a row that
   moved on holds a later local write, which a re-apply would hide for a while;
3. the new entries and the conflict records are handed back, and the applier
   writes them in the batch's transaction (:meth:`ConflictPlanner.save`).

Records this does not version pass through unchanged: truncates, tables
without a primary key, and update records whose key changed (cdc's sources
publish a key change as a delete and a create instead, versioned like any write).

Without ``conflicts`` none of this runs: the applier's one-way path is untouched.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cdc.events import Kind, Op
from cdc.serde import DecodedChange
from cdc.sink.checkpoint import encode_position
from cdc.sink.conflicts import Resolution, Rules, Write, WriteKind, decide
from cdc.sink.reduce import Delete, Mutation, Upsert
from cdc.sink.schema import TablePlan
from cdc.sink.versions import (
    COMPARABLE,
    Entry,
    Version,
    canonical_image,
    entry_id,
    from_canonical,
    image_hash,
    loose_value,
    row_key_text,
    same_row,
)
from cdc.sink.versionstore import ConflictRecord, VersionStore, utc_now
from cdc.spi import SinkSession
from cdc.transport.producer import EventProducer
from cdc.transport.topics import TopicManager, TopicSpec

log = logging.getLogger(__name__)

_KINDS: dict[Op, WriteKind] = {
    Op.CREATE: "insert", Op.READ: "insert", Op.UPDATE: "update", Op.DELETE: "delete",
}


@dataclass(frozen=True, slots=True)
class ConflictOptions:
    """The sink's ``conflicts`` settings, as the planner uses them."""

    node: str
    sink: str
    resolution: Resolution = "last_writer_wins"
    tables: dict[str, Resolution] = field(default_factory=dict)
    priority: tuple[str, ...] = ()
    max_clock_skew_ms: int = 60_000
    reject_skew: bool = False
    priority_window_ms: int = 10_000
    owns: Callable[[str], bool] = lambda topic: False

    def rules(self, table: str) -> Rules:
        r = self.tables.get(table)
        if r is None and "." in table:
            r = self.tables.get(table.split(".", 1)[1])
        return Rules(self.node, r or self.resolution, self.priority, self.max_clock_skew_ms,
                     self.reject_skew, self.priority_window_ms)


@dataclass(slots=True)
class Planned:
    """What a batch leaves for its transaction: entries to upsert, conflicts to log."""

    entries: dict[str, tuple[str, str, Entry]] = field(default_factory=dict)
    conflicts: list[ConflictRecord] = field(default_factory=list)
    applied: int = 0
    discarded: int = 0
    moved_on: int = 0  # own writes not re-applied: the row had moved on locally


@dataclass(slots=True)
class _Item:
    index: int
    table: str
    key_text: str
    eid: str
    write: Write
    key: Any
    plan: TablePlan
    kinds: dict[str, Kind]


@dataclass(frozen=True, slots=True)
class _Row:
    """A replica row as a batch sees it: read (``values``: column -> driver value, None
    when absent) or as an earlier record of the batch left it (``image``, canonical)."""

    image: str | None
    values: dict[str, Any] | None = None
    read: bool = False


class ConflictPlanner:
    """Decides, per batch, which records of a master-master sink apply."""

    def __init__(self, options: ConflictOptions, store: VersionStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.store = store
        self._clock = clock
        self._rules: dict[str, Rules] = {}

    def _write(self, topic: str, d: DecodedChange, plan: TablePlan,
               mutations: Sequence[Mutation]) -> tuple[Any, Write] | None:
        """The row key and the write of one change; None when it is not versioned."""
        kind = _KINDS.get(d.op)
        if kind is None or plan.keyless or len(mutations) != 1:
            return None
        m = mutations[0]
        if type(m) is Upsert or type(m) is Delete:
            key = m.key
        else:
            return None
        s = d.source
        pos = d.position
        # The version time: the source's version clock when it stamps one (master-master
        # MariaDB sources, in cdc_position), else the commit time.
        vts = None if pos is None else pos.version_ts_ms
        version = Version(
            int(vts or s.get("ts_ms") or d.ts_ms or 0),
            str(s.get("name") or ""),
            () if pos is None else pos.sort_key(),
            str(s.get("cdc_position") or "") or encode_position(pos) or "",
        )
        names = {c.name for c in d.schema.columns}
        before = d.before
        # Only a full before-image can be compared (PostgreSQL needs REPLICA IDENTITY FULL).
        bhash = image_hash(canonical_image(before)) if before is not None and set(before) >= names else None
        image = None if kind == "delete" else canonical_image(d.after)
        return key, Write(kind, version, bhash, image, image_hash(image), self.options.owns(topic))

    def plan(self, session: SinkSession,
             work: Sequence[tuple[str, TablePlan, DecodedChange | None, Sequence[Mutation]]],
             ) -> tuple[list[Sequence[Mutation] | None], Planned]:
        """For each ``(topic, plan, change, mutations)`` of a batch: the mutations to apply
        instead (None: unchanged), and what the transaction must write."""
        out: list[Sequence[Mutation] | None] = [None] * len(work)
        items: list[_Item] = []
        for i, (topic, plan, d, mutations) in enumerate(work):
            if d is None:
                continue
            got = self._write(topic, d, plan, mutations)
            if got is None:
                continue
            key, w = got
            table = str(plan.name)
            key_text = row_key_text(key)
            kinds = {c.name: c.type.kind for c in d.schema.columns}
            items.append(_Item(i, table, key_text, entry_id(table, key_text), w, key, plan, kinds))
        planned = Planned()
        if not items:
            return out, planned
        ids = sorted({it.eid for it in items})  # (sorted: rows lock in one order everywhere)
        entries: dict[str, Entry | None] = dict(self.store.read(session, ids))
        # What the replica rows of own writes hold now: a re-apply needs it.
        rows = self._rows(session, [it for it in items if it.write.own])
        now_ms = int(self._clock() * 1000)
        now = utc_now()
        o = self.options
        for it in items:
            rules = self._rules.get(it.table)
            if rules is None:
                rules = self._rules[it.table] = o.rules(it.table)
            entry = entries.get(it.eid)
            w = it.write
            outcome = decide(entry, w, rules, now_ms)
            if outcome.apply and w.own and self._moved_on(it, entry, rows):
                # The row no longer holds what the sink last let stand: a later local
                # write is there (and on its way through the own topic); re-applying this
                # one would show an earlier value. Only the entry moves on.
                planned.moved_on += 1
                out[it.index] = ()
            elif outcome.apply:
                planned.applied += 1
                # (an own write that wins is re-applied: its mutations are its after-image)
                rows[it.eid] = _Row(w.image)
            else:
                planned.discarded += 1
                out[it.index] = () if not outcome.restore else self._restore(it, entry)
                if outcome.restore and out[it.index] and entry is not None:
                    rows[it.eid] = _Row(entry.image)
            if outcome.entry is not None:
                entries[it.eid] = outcome.entry
                planned.entries[it.eid] = (it.table, it.key_text, outcome.entry)
            for ctype in outcome.conflicts:
                planned.conflicts.append(ConflictRecord.make(
                    o.sink, it.table, it.key_text, ctype, rules.resolution, outcome.decision,
                    entry, w.version, w.image, now,
                ))
        return out, planned

    def _rows(self, session: SinkSession, items: Sequence[_Item]) -> dict[str, _Row]:
        """The replica rows of ``items``' keys (one query per table and 500 keys). A table whose key or columns cannot be compared reliably is left out
        (its own writes are re-applied as before)."""
        out: dict[str, _Row] = {}
        by_table: dict[str, list[_Item]] = {}
        for it in items:
            by_table.setdefault(it.table, []).append(it)
        d = session.dialect
        for group in by_table.values():
            plan, kinds = group[0].plan, group[0].kinds
            if not plan.key or any(kinds.get(k) not in COMPARABLE for k in plan.key):
                continue
            todo = sorted({it.eid: it for it in group}.values(), key=lambda it: it.eid)
            cols = ", ".join(d.quote(c) for c in plan.columns)
            keys = ", ".join(d.quote(k) for k in plan.key)
            pos = [plan.columns.index(k) for k in plan.key]
            # Not locked (FOR UPDATE): on MariaDB it takes gap locks on absent keys, held
            # for the whole batch (docs/MASTER-MASTER.md, "Own writes"). A local write committed
            # between this read and the batch's commit may be overwritten by the re-apply;
            # read back later, it finds the row holding the entry and is re-applied itself.
            one = " AND ".join(f"{d.quote(k)} = %s" for k in plan.key)
            for i in range(0, len(todo), 500):
                chunk = todo[i : i + 500]
                where = (f"{keys} IN ({', '.join(['%s'] * len(chunk))})" if len(plan.key) == 1
                         else " OR ".join([f"({one})"] * len(chunk)))
                sql = f"SELECT {cols} FROM {d.table_sql(plan.name)} WHERE {where}"
                found = {}
                for r in session.query(sql, [v for it in chunk for v in it.key]):
                    found[tuple(loose_value(r[j]) for j in pos)] = dict(
                        zip(plan.columns, r, strict=True))
                for it in chunk:
                    got = found.get(tuple(loose_value(v) for v in it.key))
                    out[it.eid] = _Row(None, got, True)
        return out

    @staticmethod
    def _moved_on(it: _Item, entry: Entry | None, rows: dict[str, _Row]) -> bool:
        """Whether the row of own write ``it`` no longer holds ``entry``'s image (nor, if
        the batch wrote it, what the batch wrote): then a later local write is there."""
        row = rows.get(it.eid)
        if row is None:
            return False  # not known: re-apply (the safe side)
        if entry is None:
            return True  # the sink never wrote this row: it holds local writes only
        want = None if entry.deleted else entry.image
        if row.read:  # as read from the replica
            if row.values is None or want is None:
                return (row.values is None) != (want is None)
            return not same_row(want, row.values, it.kinds)
        return row.image != want  # as the batch left it (canonical images)

    def _restore(self, it: _Item, entry: Entry | None) -> Sequence[Mutation]:
        """The mutations writing ``entry``'s row back over a local write that lost."""
        if entry is None:
            return ()
        if entry.deleted or entry.image is None:
            return (Delete(it.key),)
        row = from_canonical(entry.image, it.kinds)
        got = None if row is None else it.plan.full_row(row)
        if got is None:
            log.warning(
                "sink %s: %s key %s: a local write lost a conflict, but the winning row "
                "cannot be rebuilt from its stored image (column types); the replica keeps "
                "the local row: compare the nodes with cdc verify", self.options.sink,
                it.table, it.key_text,
            )
            return ()
        return (Upsert(got[0], it.plan.columns, got[1]),)

    def save(self, session: SinkSession, planned: Planned) -> None:
        """Write the batch's entries and conflict rows (inside its transaction)."""
        if planned.entries:
            self.store.write(session, [(eid, t, k, e) for eid, (t, k, e) in planned.entries.items()])
        if planned.conflicts:
            self.store.log(session, planned.conflicts)


class ConflictLog:
    """The conflict log's other two outputs: the topic (fed from the table after each
    commit, as an outbox) and the counts behind ``cdc_sink_conflicts_total``; and its
    retention (hourly purge of old rows)."""

    def __init__(self, store: VersionStore, topic: str | None, retention_hours: int,
                 producer_config: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.topic = topic
        self.retention_hours = retention_hours
        self._producer_config = producer_config
        self._producer: EventProducer | None = None
        self._clock = clock
        self._next_purge = 0.0
        self._backlog = True  # rows a previous run did not publish: look once at start
        self.counts: dict[tuple[str, str, str], int] = {}

    def count(self, records: Sequence[ConflictRecord]) -> None:
        for r in records:
            k = (r.table_name, r.conflict_type, r.resolution)
            self.counts[k] = self.counts.get(k, 0) + 1

    def _send(self, records: Sequence[ConflictRecord]) -> None:
        if self.topic is None or self._producer_config is None or not records:
            return
        if self._producer is None:
            conf = dict(self._producer_config)
            bootstrap = str(conf.pop("bootstrap.servers"))
            admin = {k: v for k, v in conf.items() if k.startswith(("security.", "sasl.", "ssl."))}
            retention = str(self.retention_hours * 3_600_000)
            TopicManager(bootstrap, admin).ensure(
                [self.topic], TopicSpec(partitions=1, config={"retention.ms": retention}))
            self._producer = EventProducer(bootstrap, conf, max_in_flight=10_000)
        for r in records:
            self._producer.send(self.topic, r.topic_key(), r.to_json())
        self._producer.flush(30.0)

    def after_commit(self, session: SinkSession, records: Sequence[ConflictRecord]) -> None:
        """Publish the batch's conflicts (and any backlog), mark them, purge when due."""
        self.count(records)
        try:
            todo = list(records)
            if self._backlog:
                session.begin()
                try:
                    todo = self.store.unpublished(session, 10_000)
                    session.commit()  # (a read; a rollback would make the session drop caches)
                except BaseException:
                    session.rollback()
                    raise
            if todo and self.topic is not None:
                self._send(todo)
                session.begin()
                try:
                    self.store.mark_published(session, [r.id for r in todo])
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
            self._backlog = False
        except Exception as e:  # the rows stay unpublished; sent on a later batch
            self._backlog = True
            log.warning("conflict log: publishing to %s failed (%s); will retry", self.topic, e)
        if self._clock() >= self._next_purge:
            self._next_purge = self._clock() + 3600
            session.begin()
            try:
                cutoff = utc_now() - dt.timedelta(hours=self.retention_hours)
                n = self.store.purge(session, cutoff)
                session.commit()
            except BaseException:
                session.rollback()
                raise
            if n:
                log.info("conflict log: %d rows older than %d hours deleted", n,
                         self.retention_hours)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None

