"""Event building: a committed transaction's pgoutput messages -> change events.

The per-event hot path of the PostgreSQL source. The stream reader
(:mod:`.replication`) calls :meth:`ChangeBuilder._emit` when a transaction
commits, with the transaction's :class:`~.spill.TxBuffer`; this decodes each
row message (:mod:`.decoder`), converts its tuples with the table shape of
the relation cache (:mod:`.relations`) and yields :class:`~cdc.events.ChangeEvent`
values one behind, so the last is marked ``last_in_tx``. When the runtime asked
(``StreamSettings.batch_inserts``), consecutive inserts of one table come instead
as one :class:`cdc.spi.StreamRows` of their text tuples, exactly the events it
stands for (:meth:`ChangeBuilder._insert_run`). Here also: the
Debezium rule that a primary-key change is a delete plus a create (reading
unchanged TOAST values back from the table when the new row lacks them),
unchanged TOAST values in updates, transaction markers for the transaction
metadata topic, and skipping what a reconnect resends.

:class:`ChangeBuilder` is a part of :class:`~.replication.StreamReader`
(a base class, so no call per event goes through another object): it reads
and advances the reader's positions and counters, declared below for the
type checker. It does no I/O of its own except the rare TOAST re-read.
The value objects are built with :func:`cdc.native.positional_constructor`,
bound once at import.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import sql

from cdc import __version__, native
from cdc.errors import RetriableError, SerializationError
from cdc.events import ChangeEvent, Op, SourceInfo, TransactionInfo
from cdc.spi import StreamItem, StreamRows, TextForm
from connectors.postgres.origin import tag_of
from connectors.postgres.position import Lsn, PgPosition
from connectors.postgres.source.catalog import NullInNotNull, TableShape, text_forms
from connectors.postgres.source.decoder import decode_message, decode_row
from connectors.postgres.source.messages import (
    UNCHANGED_TOAST,
    DataType,
    LogicalMessage,
    Origin,
    Relation,
    Truncate,
    TupleData,
)
from connectors.postgres.source.spill import TxBuffer
from connectors.postgres.source.wire import classify

if TYPE_CHECKING:
    from connectors.postgres.source.reconnect import Session
    from connectors.postgres.source.relations import RelationCache
    from connectors.postgres.source.replication import StreamSettings

CONNECTOR_NAME: Final = "postgresql"

# pgoutput message tags (first byte of an XLogData payload).
_INSERT: Final = 0x49  # I
_IUD: Final = frozenset(b"IUD")  # row changes: Insert, Update, Delete
# Messages that carry a (sub)transaction xid right after the tag inside a stream
# block, and that a subtransaction's abort drops.
_ROW_CHANGES: Final = frozenset(b"IUDTM")


@dataclass(frozen=True, slots=True)
class TransactionMarker:
    """A transaction boundary, for a Debezium-style transaction metadata topic.

    ``status`` BEGIN is reported just before the transaction's first event is
    yielded, END just after its last; ``event_count`` and ``data_collections``
    (``schema.table`` -> events) are filled on END only.
    """

    status: str  # "BEGIN" | "END"
    id: str
    position: PgPosition
    ts_ms: int
    event_count: int = 0
    data_collections: tuple[tuple[str, int], ...] = ()


TransactionListener = Callable[[TransactionMarker], None]


class ChangeBuilder:
    """Builds and yields the events of committed transactions (see module docstring)."""

    if TYPE_CHECKING:  # the reader's state this reads and advances (replication.StreamReader)
        settings: StreamSettings
        _forms: dict[TableShape, list[tuple[TextForm, Callable[[str], Any]]]]
        source_name: str
        db_version: str
        on_transaction: TransactionListener | None
        stats: dict[str, int]
        _relation_cache: RelationCache
        _yielded: PgPosition | None
        _boundary: PgPosition | None
        _progress: int
        _last_yield: float

        def sql(self) -> psycopg.Connection[Any]: ...

        def _send_status_if_due(self, s: Session, now: float) -> None: ...

    def _emit(
        self, s: Session, buf: TxBuffer, end_lsn: Lsn, ts_ms: int, xid: int
    ) -> Iterator[StreamItem]:
        """Yield the events of a committed transaction, unless already yielded.

        Events are built one behind the buffer's messages: only when the next
        one exists is the previous yielded, so the last can be marked
        ``last_in_tx`` without holding the transaction in memory.
        """
        self.stats["transactions"] += 1
        if buf.spilled:
            self.stats["spilled_transactions"] += 1
        end = end_lsn.value
        if end > s.received:
            s.received = end
        skip_through = -1
        done = self._yielded
        if done is not None:
            if end < done.lsn.value or (
                end == done.lsn.value and (done.last_in_tx or done.snapshot)
            ):
                return  # already yielded (resent after a reconnect) or before the start position
            if end == done.lsn.value:
                skip_through = done.index  # resume inside a transaction
        xid_text = str(xid)
        name = self.source_name
        db_version = self.db_version
        version = __version__
        origin: str | None = None
        # skip_replicated_changes without pgoutput's origin filter (PostgreSQL 15):
        # an Origin message (sent before the first change) drops the transaction's
        # changes; its Relation messages still describe tables for later ones.
        drop_replicated = self.settings.skip_replicated and not self.settings.origin_filter
        dropping = False
        streamed = buf.streamed
        aborted = buf.aborted
        listener = self.on_transaction
        shapes = self._relation_cache.shapes
        counts: dict[int, int] = {}  # relation id -> events (data_collection_order)
        new_position, new_source, new_tx, new_event = _POSITION, _SOURCE, _TX, _EVENT
        no_unchanged: frozenset[str] = frozenset()
        prev: ChangeEvent | None = None
        # Runs of inserts, when the runtime takes them (cdc.spi.BatchesStream): the pending
        # run's texts, shape (one relation's), first index and data collection order. A run and
        # ``prev`` are never both pending: whichever comes next yields the other.
        batching = self.settings.batch_inserts and listener is None
        run: list[TupleData] | None = None
        run_shape: TableShape | None = None
        run_first = run_dc = run_ms = 0
        index = 0
        checks = 0
        now_ms = time.time_ns() // 1_000_000
        rows: Sequence[tuple[Op, TableShape, Any, Any, Any, frozenset[str], int]]
        for payload in buf:
            tag = payload[0]
            if streamed and aborted and tag in _ROW_CHANGES and (
                int.from_bytes(payload[1:5], "big") in aborted
            ):
                continue
            if tag in _IUD:
                if dropping:
                    continue
                rid, new_tuple, old_tuple, old_kind = decode_row(payload, streamed)
                try:
                    shape = shapes[rid]
                except KeyError:
                    raise _undescribed(rid) from None
                if shape is None:
                    continue
                if tag == _INSERT and batching and shape.key_names and index > skip_through and (
                    None not in new_tuple  # type: ignore[operator]
                    or all(new_tuple[i] is not None for i in shape.not_null_index)  # type: ignore[index]
                ):  # (a NULL in a NOT NULL column relaxes the shape: the event's own path)
                    dc = counts.get(rid, 0) + 1
                    counts[rid] = dc
                    if run is not None and run_shape is shape:
                        run.append(new_tuple)  # type: ignore[arg-type]
                    else:
                        if run is not None:
                            yield self._insert_run(run, run_shape, run_first, run_dc, False,
                                                   end_lsn, ts_ms, xid_text, origin, run_ms)
                        elif prev is not None:
                            self._yielded = prev.source.position  # type: ignore[assignment]
                            yield prev
                            prev = None
                        run = [new_tuple]  # type: ignore[list-item]
                        run_shape, run_first, run_dc, run_ms = shape, index, dc, now_ms
                    index += 1
                    rows = _NO_ROWS
                elif tag == _INSERT:
                    try:
                        after = shape.row(new_tuple)  # type: ignore[arg-type]
                    except NullInNotNull:
                        shape, after = self._relation_cache.relaxed_row(rid, new_tuple)  # type: ignore[arg-type]
                    rows = [(Op.CREATE, shape, shape.key(after), None, after, no_unchanged, rid)]
                else:
                    change = self._change(rid, shape, new_tuple, old_tuple, old_kind)
                    if change[5] and _key_changed(change):
                        rows = self._key_change_reselected(
                            change, new_tuple, old_tuple, old_kind, xid)  # type: ignore[arg-type]
                    else:
                        rows = _split_key_change(change)
            else:
                msg = decode_message(payload, in_stream=streamed)
                cls = msg.__class__
                if cls is Relation:
                    self._relation_cache.describe(msg)  # type: ignore[arg-type]
                    continue
                elif cls is Truncate:
                    if dropping:
                        continue
                    rows = []
                    for rid in msg.relation_ids:  # type: ignore[union-attr]
                        try:
                            shape = shapes[rid]
                        except KeyError:
                            raise _undescribed(rid) from None
                        if shape is not None:
                            rows.append((Op.TRUNCATE, shape, None, None, None, no_unchanged, rid))
                    if not rows:
                        continue
                elif cls is Origin:
                    origin = tag_of(msg.name)  # type: ignore[union-attr]
                    if drop_replicated:
                        dropping = True
                        self.stats["skipped_transactions"] += 1
                    continue
                elif cls is DataType or cls is LogicalMessage:
                    # Types are read from the catalog with the Relation; logical
                    # decoding messages are not row changes (SOURCE.md).
                    continue
                else:
                    raise SerializationError(
                        f"unexpected pgoutput {cls.__name__} message inside transaction {xid}"
                    )
            for op, shape, key, before, after, unchanged, rid in rows:
                dc = counts.get(rid, 0) + 1
                counts[rid] = dc
                if index > skip_through:
                    event = new_event(
                        op, shape.schema, key, before, after,
                        new_source(CONNECTOR_NAME, name, version, db_version,
                                   new_position(end_lsn, index, False, False), ts_ms, xid_text,
                                   "false", origin),
                        now_ms, new_tx(xid_text, index + 1, dc), unchanged,
                    )
                    if run is not None:
                        yield self._insert_run(run, run_shape, run_first, run_dc, False,
                                               end_lsn, ts_ms, xid_text, origin, run_ms)
                        run = None
                    elif prev is not None:
                        if listener is not None and prev.transaction.total_order == 1:  # type: ignore[union-attr]
                            listener(TransactionMarker(
                                "BEGIN", xid_text, PgPosition(end_lsn, 0, False, False), ts_ms))
                        self._yielded = prev.source.position  # type: ignore[assignment]
                        yield prev
                    prev = event
                index += 1
            checks += 1
            if checks >= 512:
                checks = 0
                self._send_status_if_due(s, time.monotonic())
                now_ms = time.time_ns() // 1_000_000
        if run is not None:  # the transaction ends with a run (no listener: no markers)
            item = self._insert_run(run, run_shape, run_first, run_dc, True,
                                    end_lsn, ts_ms, xid_text, origin, run_ms)
            self._boundary = self._yielded
            self._last_yield = time.monotonic()
            self.stats["events"] += index
            yield item
            return
        if prev is None:
            if index == 0 and not s.streams and end > self._progress:
                # Nothing captured (other tables of the publication): still progress.
                self._progress = end
            return
        last_position = new_position(end_lsn, index - 1, False, True)
        src = prev.source
        last = new_event(
            prev.op, prev.schema, prev.key, prev.before, prev.after,
            new_source(src.connector, src.name, src.version, src.db_version, last_position,
                       src.ts_ms, src.tx_id, src.snapshot, src.origin),
            prev.ts_ms, prev.transaction, prev.unchanged,
        )
        if listener is not None and index == 1:
            listener(TransactionMarker("BEGIN", xid_text, PgPosition(end_lsn, 0, False, False),
                                       ts_ms))
        self._yielded = self._boundary = last_position
        self._last_yield = time.monotonic()
        self.stats["events"] += index
        yield last
        if listener is not None:
            names = {rid: shapes[rid] for rid in counts}
            listener(TransactionMarker(
                "END", xid_text, last_position, ts_ms, event_count=index,
                data_collections=tuple(
                    (shape.table.qualified if shape is not None else str(rid), n)
                    for rid, n in counts.items() for shape in (names[rid],)
                ),
            ))

    def _insert_run(
        self, texts: list[TupleData], shape: TableShape | None, first: int, first_dc: int,
        last_in_tx: bool, end_lsn: Lsn, ts_ms: int, xid_text: str, origin: str | None,
        now_ms: int,
    ) -> StreamRows:
        """A run of inserts as one item, exactly the events ``_emit`` would have built for
        them (:class:`cdc.spi.StreamRows`); records its last position as yielded."""
        assert shape is not None
        n = len(texts)
        name, version, db_version = self.source_name, __version__, self.db_version
        new_source, new_position = _SOURCE, _POSITION

        def at(i: int) -> SourceInfo:
            position = new_position(end_lsn, first + i, False, last_in_tx and i == n - 1)
            source: SourceInfo = new_source(CONNECTOR_NAME, name, version, db_version, position,
                                            ts_ms, xid_text, "false", origin)
            return source

        forms = self._forms.get(shape)
        if forms is None:
            if len(self._forms) >= 1024:  # old schema versions
                self._forms.clear()
            forms = self._forms[shape] = text_forms(shape)
        first_source = at(0)
        self._yielded = first_source.position if n == 1 else at(n - 1).position  # type: ignore[assignment]
        return StreamRows(shape.schema, first_source, now_ms, at, texts=texts,
                          names=shape.names, forms=forms, convert=shape.row, key_of=shape.key,
                          tx_id=xid_text, first_order=first + 1, first_dc=first_dc,
                          last_in_tx=last_in_tx)

    def _key_change_reselected(
        self, change: tuple[Op, TableShape, Any, Any, Any, frozenset[str], int],
        new_tuple: TupleData, old_tuple: TupleData | None, old_kind: str | None, xid: int,
    ) -> list[tuple[Op, TableShape, Any, Any, Any, frozenset[str], int]]:
        """A key change whose new row lacks unchanged TOAST values: read them from the table.

        Published as one update keyed by the new key, the change would leave
        the old key's row on every replica and the new row without those
        values. As a delete plus a create it needs the values, and the server
        did not send them (REPLICA IDENTITY DEFAULT sends only the old key).
        So they are read from the table now, by the new key. The row may have
        changed since this transaction committed; any later change of it is a
        later event of the same key, so the replica still ends at the source's
        state. The server may send a commit a moment before the transaction
        is visible to other sessions, so the read waits for that first: "gone"
        must not be "not visible yet".

        Always two events, whatever the read finds: resume (``skip_through``)
        and the sinks' replay check know an event by its index in the
        transaction, and a transaction decoded again after a restart must give
        every event the index it had, though the table has moved on. The
        second is the new key's: the create of the whole row when the row is
        there, else a delete of the new key. A row gone by now was removed by
        a later change (in this transaction or a later one), whose delete (or
        key change) of the new key follows in the stream, so the replica ends
        without it either way (a master-master sink takes the two deletes as
        one node's writes in a row, not a conflict: docs/MASTER-MASTER.md);
        a create in its place would need the values the server did not send,
        and a replica would have to invent them (NULL or a default, or fail on
        NOT NULL). The delete carries only the key and invents nothing.
        """
        _op, shape, key, before, _after, unchanged, rid = change
        old_key = {k: before[k] for k in key}
        missing = [n for n in shape.names if n in unchanged]
        query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(n)) for n in missing),
            sql.Identifier(shape.table.schema or shape.table.database, shape.table.table),
            sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k))
                                  for k in shape.key_names),
        )
        try:
            conn = self.sql()
            _wait_visible(conn, xid)
            found = conn.execute(query, [new_tuple[i] for i in shape.key_index]).fetchone()
        except psycopg.Error as e:
            raise classify(e, f"cannot read unchanged TOAST values of {shape.table}") from e
        delete: tuple[Op, TableShape, Any, Any, Any, frozenset[str], int] = (
            Op.DELETE, shape, old_key, before, None, frozenset(), rid)
        self.stats["toast_reselects"] = self.stats.get("toast_reselects", 0) + 1
        if found is None:  # gone: the new key's slot still holds one event (docstring)
            return [delete, _new_key_event(shape, key, None, rid)]
        values = dict(zip(missing, found, strict=True))
        filled = tuple(values[n] if v is UNCHANGED_TOAST else v
                       for n, v in zip(shape.names, new_tuple, strict=True))
        _op, shape, key, _before, after, _unchanged, rid = self._change(
            rid, shape, filled, old_tuple, old_kind)
        return [delete, _new_key_event(shape, key, after, rid)]

    def _change(
        self, rid: int, shape: TableShape, new_tuple: TupleData | None,
        old_tuple: TupleData | None, old_kind: str | None,
    ) -> tuple[Op, TableShape, Any, Any, Any, frozenset[str], int]:
        """``(op, shape, key, before, after, unchanged, relation id)`` of an update or delete."""
        before: dict[str, Any] | None = None
        if new_tuple is None:  # a delete
            assert old_tuple is not None
            if old_kind == "O":  # REPLICA IDENTITY FULL: the whole old row
                try:
                    old = shape.row(old_tuple)
                except NullInNotNull:
                    shape, old = self._relation_cache.relaxed_row(rid, old_tuple)
                return (Op.DELETE, shape, shape.key(old), old, None, frozenset(), rid)
            before = shape.key_from_tuple(old_tuple)
            return (Op.DELETE, shape, before, before, None, frozenset(), rid)
        new = new_tuple
        old_row: dict[str, Any] | None = None
        if old_tuple is not None:
            if old_kind == "O":
                try:
                    old_row = shape.row(old_tuple)
                except NullInNotNull:
                    shape, old_row = self._relation_cache.relaxed_row(rid, old_tuple)
                before = old_row
            else:
                before = shape.key_from_tuple(old_tuple)
        unchanged: frozenset[str] = frozenset()
        if UNCHANGED_TOAST in new:
            missing = [n for n, v in zip(shape.names, new, strict=True) if v is UNCHANGED_TOAST]
            if old_row is not None and old_tuple is not None:
                # REPLICA IDENTITY FULL: the old row (flattened by the server) has
                # the text of the value that did not change.
                new = tuple(o if v is UNCHANGED_TOAST else v
                            for v, o in zip(new, old_tuple, strict=True))
            else:
                unchanged = frozenset(missing)
                if unchanged & set(shape.key_names):
                    raise SerializationError(
                        f"{shape.table}: an update without the key's value (unchanged TOAST "
                        f"in key column(s) {sorted(unchanged & set(shape.key_names))})")
        try:
            after = shape.row(new)
        except NullInNotNull:
            shape, after = self._relation_cache.relaxed_row(rid, new)
        if unchanged:
            after = {k: v for k, v in after.items() if k not in unchanged}
        return (Op.UPDATE, shape, shape.key(after), before, after, unchanged, rid)


def _wait_visible(conn: psycopg.Connection[Any], xid: int, timeout_s: float = 30.0) -> None:
    """Wait until transaction ``xid`` (32 bits, as pgoutput sends it) is visible to ``conn``.

    A snapshot is ``xmin:xmax:in-progress xids`` in 64-bit xids; ``xid`` is
    widened to the 64-bit xid nearest ``xmax`` with the same low 32 bits. It is
    visible when below ``xmax`` and not in progress.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.001
    while True:
        row = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
        assert row is not None
        _xmin, xmax_s, xip_s = str(row[0]).split(":")
        xmax = int(xmax_s)
        distance = (xid - xmax) & 0xFFFFFFFF
        full = xmax + (distance - (1 << 32) if distance >= 1 << 31 else distance)
        if full < xmax and full not in {int(x) for x in xip_s.split(",") if x}:
            return
        if time.monotonic() > deadline:
            raise RetriableError(f"transaction {xid} committed but is not visible after "
                                 f"{timeout_s:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _key_changed(change: tuple[Op, TableShape, Any, Any, Any, frozenset[str], int]) -> bool:
    """Whether an update moves its row to another primary key."""
    op, _shape, key, before, _after, _unchanged, _rid = change
    return (op is Op.UPDATE and before is not None and key is not None
            and any(before[k] != v for k, v in key.items()))


def _new_key_event(
    shape: TableShape, key: dict[str, Any], after: dict[str, Any] | None, rid: int,
) -> tuple[Op, TableShape, Any, Any, Any, frozenset[str], int]:
    """The second event of a re-read key change: the new key's whole row, or its delete.

    ``after`` is the row read back by the new key, None when it is gone. One
    event either way, so the transaction's later events keep their indexes
    (``ChangeBuilder._key_change_reselected``).
    """
    if after is None:
        return (Op.DELETE, shape, key, dict(key), None, frozenset(), rid)
    return (Op.CREATE, shape, key, None, after, frozenset(), rid)


def _split_key_change(
    change: tuple[Op, TableShape, Any, Any, Any, frozenset[str], int],
) -> list[tuple[Op, TableShape, Any, Any, Any, frozenset[str], int]]:
    """A primary-key change becomes a delete of the old key and a create of the new one.

    Debezium's rule: each key keeps its whole history in its own partition, so
    the old key's delete cannot overtake its earlier changes. A key change whose
    new row lacks unchanged TOAST values never comes here: the values are read
    first (``ChangeBuilder._key_change_reselected``).
    """
    op, shape, key, before, after, unchanged, rid = change
    if op is not Op.UPDATE or before is None or key is None or unchanged:
        return [change]
    old_key = {k: before[k] for k in key}
    if old_key == key:
        return [change]
    return [(Op.DELETE, shape, old_key, before, None, frozenset(), rid),
            (Op.CREATE, shape, key, None, after, unchanged, rid)]


def _undescribed(relation_id: int) -> SerializationError:
    return SerializationError(
        f"pgoutput sent a change for relation {relation_id} before describing it"
    )


# What a run's insert leaves for the per-event loop of _emit: nothing.
_NO_ROWS: Final[tuple[tuple[Op, TableShape, Any, Any, Any, frozenset[str], int], ...]] = ()
_POSITION: Final = native.positional_constructor(PgPosition)
_SOURCE: Final = native.positional_constructor(SourceInfo)
_TX: Final = native.positional_constructor(TransactionInfo)
_EVENT: Final = native.positional_constructor(ChangeEvent)
