"""Incremental snapshots while streaming: the watermark algorithm of Netflix's DBLog.

Stands between a source's change stream and the runner
(:class:`cdc.runtime.source_runner.SourceRunner`), for sources that implement
:class:`cdc.spi.SnapshotsIncrementally` and have a signal table. One concern:
turning signal rows into chunks of ``op=r`` events interleaved with the stream,
so a table is copied while the stream never pauses.

A chunk, for the table being copied:

1. insert a *low watermark* row into the signal table (committed);
2. read up to ``chunk_size`` rows after the last key copied (a fresh read);
3. insert a *high watermark* row (committed).

The stream then shows the low watermark, the changes committed meanwhile,
the high watermark, in commit order. Up to the high watermark every streamed
change of the table removes the row of its key from the chunk (the streamed
change is as new as the read, or newer, and reached Kafka first; counting from
the window's creation rather than its low watermark also covers a change that
committed just before the low watermark but became visible only after the read
began); at the high
watermark the rows left are emitted, at positions right after it
(``position_after``), and the next chunk starts. A row read in a chunk thus
never overwrites a newer change downstream.

State (the signal's tables still to copy, the table being copied and the
last key copied) is stored with the offsets (``SourceOffset.extra
["incremental"]``), versioned by position: a checkpoint stores the state as
of the durable position, so a restart continues after the last chunk whose
rows are all in Kafka (a chunk read again is harmless: rows are keyed and
de-duplicated the same way).

Pacing: the next window opens only when the consumers of the table's topic
are at most ``max_backlog`` records behind (``Downstream``, in practice the
consumer groups' committed offsets, :mod:`cdc.transport.backlog`). A chunk's
rows share the topic's partitions with the stream's changes of the table, so
chunks produced faster than a sink applies them would queue the stream behind
them: measured on MariaDB, 200,000 rows at load 18-35, the replica trailed by
158 s, all of it in the sink. While the next window waits, the stream goes on;
the backlog is asked at most every ``PACE_CHECK_S``.

Signal rows and watermarks are never published. Signals are Debezium's:
``execute-snapshot`` with data ``{"data-collections": [...], "type":
"incremental", "additional-conditions": [{"data-collection": ..., "filter":
...}]}`` and ``stop-snapshot`` (its ``data-collections``, or all when empty).
A bad signal is logged and skipped; it never stops the stream.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from cdc.errors import CdcError
from cdc.events import ChangeEvent, Op
from cdc.observability.progress import SnapshotProgress
from cdc.spi import Heartbeat, Position, SnapshotsIncrementally, StreamItem, StreamRows

log = logging.getLogger(__name__)

STATE_KEY = "incremental"  # its key in SourceOffset.extra
EXECUTE = "execute-snapshot"
STOP = "stop-snapshot"
WINDOW_OPEN = "snapshot-window-open"
WINDOW_CLOSE = "snapshot-window-close"
# A window whose watermarks have not come back through the stream by then is reported.
WINDOW_WARN_S = 120.0
# While the next chunk waits for the consumers, their backlog is asked this often.
PACE_CHECK_S = 0.5
# A wait for the consumers longer than this is reported (and again each time as long).
PACE_WARN_S = 60.0


class Downstream(Protocol):
    """How many records the consumers of a table's topic are behind (see Pacing)."""

    def backlog(self, table: str, sample: ChangeEvent) -> int:
        """Records not yet consumed; ``sample`` is a chunk row of ``table`` produced."""
        ...


# --------------------------------------------------------------------------- state


def encode_key(values: Sequence[Any]) -> list[Any]:
    """A chunk's last key as JSON values (bytes become ``{"b64": ...}``)."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, (bytes, bytearray, memoryview)):
            out.append({"b64": base64.b64encode(bytes(v)).decode()})
        elif v is None or isinstance(v, (str, int, float, bool)):
            out.append(v)
        else:
            raise CdcError(f"a chunk key value of type {type(v).__name__} cannot be stored",
                           hint="the connector's read_chunk must return JSON-compatible keys")
    return out


def decode_key(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(base64.b64decode(v["b64"]) if isinstance(v, dict) else v for v in values)


@dataclass(frozen=True, slots=True)
class IncrementalState:
    """An incremental snapshot's progress: what the offsets store (JSON)."""

    signal_id: str
    tables: tuple[str, ...]  # still to copy, the current one first
    last_key: tuple[Any, ...] | None = None  # of tables[0]; None: from its first row
    conditions: Mapping[str, str] = field(default_factory=dict)  # table -> SQL filter
    rows: int = 0  # emitted so far (all tables)
    chunks: int = 0

    @property
    def current(self) -> str | None:
        return self.tables[0] if self.tables else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "signal_id": self.signal_id,
            "tables": list(self.tables),
            "last_key": None if self.last_key is None else encode_key(self.last_key),
            "conditions": dict(self.conditions),
            "rows": self.rows,
            "chunks": self.chunks,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IncrementalState:
        key = d.get("last_key")
        return cls(
            signal_id=str(d.get("signal_id", "")),
            tables=tuple(str(t) for t in d.get("tables") or ()),
            last_key=None if key is None else decode_key(key),
            conditions={str(k): str(v) for k, v in (d.get("conditions") or {}).items()},
            rows=int(d.get("rows", 0)),
            chunks=int(d.get("chunks", 0)),
        )


# --------------------------------------------------------------------------- signals


@dataclass(frozen=True, slots=True)
class Signal:
    id: str
    type: str
    tables: tuple[str, ...]
    conditions: Mapping[str, str]


def parse_signal(signal_id: str, signal_type: str, data: str | None) -> Signal:
    """An ``execute-snapshot`` / ``stop-snapshot`` row; ValueError says what is wrong."""
    try:
        body = json.loads(data) if data else {}
    except ValueError as e:
        raise ValueError(f"data is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise ValueError("data must be a JSON object")
    kind = str(body.get("type", "incremental")).lower()
    if kind != "incremental":
        raise ValueError(f"snapshot type {kind!r} is not supported (only 'incremental')")
    tables = body.get("data-collections") or []
    if not isinstance(tables, list) or not all(isinstance(t, str) for t in tables):
        raise ValueError("data-collections must be a list of table names")
    if signal_type == EXECUTE and not tables:
        raise ValueError("data-collections names no table")
    conditions: dict[str, str] = {}
    for c in body.get("additional-conditions") or []:
        if not isinstance(c, dict) or not isinstance(c.get("data-collection"), str) \
                or not isinstance(c.get("filter"), str):
            raise ValueError("additional-conditions entries need data-collection and filter strings")
        conditions[c["data-collection"]] = c["filter"]
    return Signal(signal_id, signal_type, tuple(tables), conditions)


def execute_data(tables: Sequence[str], conditions: Mapping[str, str] | None = None) -> str:
    """The ``data`` of an execute-snapshot signal (what ``cdc snapshot incremental`` writes)."""
    body: dict[str, Any] = {"data-collections": list(tables), "type": "incremental"}
    if conditions:
        body["additional-conditions"] = [
            {"data-collection": t, "filter": f} for t, f in conditions.items()]
    return json.dumps(body)


def stop_data(tables: Sequence[str]) -> str:
    return json.dumps({"data-collections": list(tables), "type": "incremental"})


# --------------------------------------------------------------------------- the algorithm


@dataclass(slots=True)
class _Window:
    id: str
    table: str
    buffer: dict[tuple[Any, ...], ChangeEvent]
    last_key: tuple[Any, ...] | None
    opened: bool = False
    started: float = 0.0
    warned: bool = False


class IncrementalSnapshotter:
    """Wraps a source's stream; see the module docstring.

    ``state`` is what the offsets held (None: no incremental snapshot running).
    """

    def __init__(self, name: str, source: SnapshotsIncrementally, *, chunk_size: int,
                 state: IncrementalState | None = None, downstream: Downstream | None = None,
                 max_backlog: int = 0) -> None:
        signal = source.signal_table()
        if signal is None:
            raise CdcError(f"{name}: the source has no signal table")
        self.name = name
        self.source = source
        self.chunk_size = chunk_size
        self.signal = signal.qualified
        self.state = state
        # (position, state as of it) not yet durable, oldest first.
        self._versions: list[tuple[Position, IncrementalState | None]] = []
        self._durable_state = state
        self._window: _Window | None = None
        self._progress: SnapshotProgress | None = None
        # Pacing: None, or waits for the consumers when max_backlog > 0.
        self.downstream = downstream if max_backlog > 0 else None
        self.max_backlog = max_backlog
        self._samples: dict[str, ChangeEvent] = {}  # table -> a chunk row produced
        self._held_since: float | None = None  # the next chunk waits for the consumers
        self._next_check = 0.0
        self._warn_at = 0.0
        self.held_s = 0.0  # waited for the consumers in total

    # -- what the runner stores -------------------------------------------------------------

    def state_for(self, durable: Position) -> IncrementalState | None:
        """The state as of ``durable`` (every event up to it is in Kafka)."""
        versions = self._versions
        i = 0
        for i_, (pos, st) in enumerate(versions):
            if pos.kind == durable.kind and pos <= durable:
                self._durable_state = st
                i = i_ + 1
            else:
                break
        if i:
            del versions[:i]
        return self._durable_state

    def _record(self, position: Position) -> None:
        self._versions.append((position, self.state))

    # -- the stream ---------------------------------------------------------------------------

    def wrap(self, items: Iterator[StreamItem]) -> Iterator[StreamItem]:
        if self.state is not None and self.state.tables:
            log.info("%s: continuing the incremental snapshot of %s after key %s", self.name,
                     ", ".join(self.state.tables), self.state.last_key)
            self._progress = SnapshotProgress(
                "incremental", self.name, sum(self._estimate(t) for t in self.state.tables)
                + self.state.rows, rows_done=self.state.rows)
        started = False
        for item in items:
            if not started:
                started = True
                self._next_chunk()
            elif self._held_since is not None and time.monotonic() >= self._next_check:
                self._next_chunk()
            if isinstance(item, Heartbeat):
                self._check_window()
                yield item
                continue
            # A run of inserts (the runtime does not ask for them with an incremental
            # snapshot, cdc.spi.BatchesStream): each insert is looked at as its event.
            events = ([item.event(i) for i in range(len(item))]
                      if isinstance(item, StreamRows) else (item,))
            for event in events:
                if event.table.qualified == self.signal:
                    yield from self._on_signal_row(event)
                    continue
                w = self._window
                if w is not None and event.table.qualified == w.table:
                    # From the window's creation on, not only from its low watermark: a
                    # change committed just before the low watermark may have become visible
                    # only after the chunk's read began (commit order and visibility order
                    # can differ by moments), and a streamed change is never older than the
                    # chunk's copy.
                    self._dedupe(w, event)
                yield event

    def _dedupe(self, w: _Window, event: ChangeEvent) -> None:
        if event.op is Op.TRUNCATE:
            w.buffer.clear()
            return
        key_names = event.schema.primary_key
        after = event.after
        if event.unchanged and event.op is Op.UPDATE and after is not None and event.key:
            # Columns the source did not send (unchanged) kept the value the chunk read; the
            # sent ones are this change's: the merged row is the row as of this change, and
            # is emitted in place of the chunk's (a replica without the row gets it whole).
            key = tuple(event.key[k] for k in key_names)
            before = event.before
            moved = before is not None and any(before.get(k) != after.get(k) for k in key_names)
            held = w.buffer.get(key)
            if held is not None and held.after is not None and not moved:
                w.buffer[key] = replace(held, after={**held.after, **after})
                return
        for image in (event.key, event.before):
            if image is not None and all(k in image for k in key_names):
                w.buffer.pop(tuple(image[k] for k in key_names), None)

    def _on_signal_row(self, event: ChangeEvent) -> Iterator[StreamItem]:
        row = event.after
        if event.op not in (Op.CREATE, Op.READ) or row is None:
            if event.position.last_in_tx:
                yield Heartbeat(event.position)
            return
        sid, stype, data = str(row.get("id")), str(row.get("type")), row.get("data")
        w = self._window
        if stype == WINDOW_OPEN:
            if w is not None and sid == f"{w.id}-open":
                w.opened = True
        elif stype == WINDOW_CLOSE:
            if w is not None and sid == f"{w.id}-close":
                if not w.opened:
                    log.warning("%s: snapshot window %s closed without opening; reading the "
                                "chunk again", self.name, w.id)
                    self._window = None
                    self._next_chunk()
                else:
                    yield from self._close(w, event.position)
                    return
        elif stype in (EXECUTE, STOP):
            try:
                signal = parse_signal(sid, stype, None if data is None else str(data))
            except ValueError as e:
                log.error("%s: ignored %s signal %s: %s (fix: insert a corrected row with a "
                          "new id)", self.name, stype, sid, e)
            else:
                self._on_signal(signal)
                self._record(event.position)
        if event.position.last_in_tx:
            yield Heartbeat(event.position)

    def _on_signal(self, signal: Signal) -> None:
        state = self.state
        if signal.type == STOP:
            if state is None:
                log.info("%s: stop-snapshot %s: no incremental snapshot runs", self.name,
                         signal.id)
                return
            stop = set(signal.tables) or set(state.tables)
            kept = tuple(t for t in state.tables if t not in stop)
            log.info("%s: stop-snapshot %s: stopped %s", self.name, signal.id,
                     ", ".join(t for t in state.tables if t in stop) or "nothing")
            if state.current in stop:
                self._window = None  # its watermarks are ignored when they come
                state = replace(state, last_key=None)
            self.state = replace(state, tables=kept) if kept else None
            self._next_chunk()
            return
        tables: list[str] = []
        for name in signal.tables:
            table = self.source.resolve_table(name)
            if table is None:
                log.error("%s: execute-snapshot %s: table %s is not captured by this source or "
                          "does not exist; skipped (fix: add it to tables.include, restart the "
                          "source, then signal again)", self.name, signal.id, name)
                continue
            tables.append(table.qualified)
        conditions = {t: f for t, f in signal.conditions.items() if t in tables}
        if not tables:
            return
        if state is None or not state.tables:
            self.state = IncrementalState(signal.id, tuple(tables), None, conditions)
        else:
            more = tuple(t for t in tables if t not in state.tables)
            self.state = replace(state, tables=state.tables + more,
                                 conditions={**state.conditions, **conditions})
        estimated = sum(self._estimate(t) for t in tables)
        log.info("%s: execute-snapshot %s: incremental snapshot of %s (about %d rows)",
                 self.name, signal.id, ", ".join(tables), estimated)
        if self._progress is None:
            self._progress = SnapshotProgress("incremental", self.name, estimated)
        else:
            self._progress.set_estimate(self._progress.rows + estimated)
        self._next_chunk()

    def _estimate(self, qualified: str) -> int:
        table = self.source.resolve_table(qualified)
        try:
            return self.source.table_rows_estimate(table) if table is not None else 0
        except CdcError:
            return 0

    def _next_chunk(self) -> None:
        """Open the next window (watermarks and read), unless one is open or nothing is left."""
        if self._window is not None:
            return
        while self.state is not None and self.state.tables:
            state = self.state
            name = state.tables[0]
            if self._held(name):
                return
            table = self.source.resolve_table(name)
            if table is None:
                log.error("%s: table %s vanished or is no longer captured; its incremental "
                          "snapshot stops", self.name, name)
                self.state = replace(state, tables=state.tables[1:], last_key=None) \
                    if state.tables[1:] else None
                continue
            wid = uuid.uuid4().hex
            self.source.write_signal(f"{wid}-open", WINDOW_OPEN, None)
            try:
                chunk = self.source.read_chunk(table, state.last_key, self.chunk_size,
                                               state.conditions.get(name))
            except CdcError as e:
                log.error("%s: incremental snapshot of %s failed: %s; it stops (fix the cause "
                          "and signal again)", self.name, name, e)
                self.state = replace(state, tables=state.tables[1:], last_key=None) \
                    if state.tables[1:] else None
                continue
            buffer: dict[tuple[Any, ...], ChangeEvent] = {}
            for ev in chunk.events:
                key = ev.key
                if key is None:
                    continue
                buffer[tuple(key[k] for k in ev.schema.primary_key)] = ev
            self.source.write_signal(f"{wid}-close", WINDOW_CLOSE, None)
            self._window = _Window(wid, name, buffer, chunk.last_key, started=time.monotonic())
            return
        self._held_since = None
        if self._progress is not None and self.state is None:
            self._progress.close()
            self._progress = None

    def _held(self, table: str) -> bool:
        """Whether the next chunk of ``table`` waits: its consumers are too far behind."""
        downstream = self.downstream
        sample = self._samples.get(table)
        if downstream is None or sample is None:  # nothing of it produced yet
            return False
        now = time.monotonic()
        try:
            behind = downstream.backlog(table, sample)
        except Exception as e:  # never stop the stream (or the snapshot) for a look-up
            if now >= self._warn_at:
                self._warn_at = now + PACE_WARN_S
                log.warning("%s: cannot tell how far the consumers of %s are behind (%s); "
                            "the incremental snapshot goes on unpaced", self.name, table, e)
            behind = 0
        since = self._held_since
        if behind <= self.max_backlog:
            if since is not None:
                self.held_s += now - since
                self._held_since = None
            return False
        if since is None:
            self._held_since = since = now
            self._warn_at = now + PACE_WARN_S
        elif now >= self._warn_at:
            self._warn_at = now + PACE_WARN_S
            log.warning("%s: the incremental snapshot of %s has waited %.0fs for the consumers "
                        "of its topic (%d records behind; it goes on at %d): check the sinks",
                        self.name, table, now - since, behind, self.max_backlog)
        self._next_check = now + PACE_CHECK_S
        return True

    def _close(self, w: _Window, at: Position) -> Iterator[StreamItem]:
        """The high watermark: emit what is left of the chunk, then start the next."""
        self._window = None
        state = self.state
        assert state is not None
        rows = list(w.buffer.values())
        n = len(rows)
        now = time.time_ns() // 1_000_000
        source = self.source
        last_pos = at
        if n == 0:
            yield Heartbeat(at)
        for i, ev in enumerate(rows, 1):
            pos = source.position_after(at, i, i == n)
            last_pos = pos
            out = replace(ev, source=replace(ev.source, position=pos), ts_ms=now)
            yield out
            if i == n:
                self._samples[w.table] = out
        if w.last_key is None:
            rest = state.tables[1:]
            if self._progress is not None:
                self._progress.advance(n, table=w.table)
                self._progress.table_done(w.table)
            log.info("%s: incremental snapshot of %s done (%d rows in %d chunks so far; "
                     "%.1fs waited for the consumers)", self.name, w.table, state.rows + n,
                     state.chunks + 1, self.held_s)
            self.state = replace(state, tables=rest, last_key=None, rows=state.rows + n,
                                 chunks=state.chunks + 1) if rest else None
        else:
            if self._progress is not None:
                self._progress.advance(n, table=w.table)
            self.state = replace(state, last_key=w.last_key, rows=state.rows + n,
                                 chunks=state.chunks + 1)
        self._record(last_pos)
        self._next_chunk()

    def _check_window(self) -> None:
        w = self._window
        if w is not None and not w.warned and time.monotonic() - w.started > WINDOW_WARN_S:
            w.warned = True
            log.warning("%s: the watermarks of snapshot window %s have not come back through "
                        "the stream after %.0fs (fix: the signal table %s must be captured by the "
                        "source and reach its change stream, e.g. be in its publication)", self.name, w.id, WINDOW_WARN_S,
                        self.signal)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
