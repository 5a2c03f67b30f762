"""The DBLog watermark algorithm (cdc.runtime.incremental) against an in-memory database.

The fake database commits changes into a log that the stream reads in commit
order; the incremental snapshotter writes its watermarks into that log and
reads chunks of the current table state, while a random workload commits
inserts, updates, deletes and key changes at every point (also between the low
watermark, the chunk read and the high watermark). Applying everything the
wrapped stream yields, in order, to an empty replica must give exactly the
source table: the property that a chunk row never overwrites a newer change.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st

from cdc.events import ChangeEvent, Column, ColumnType, Kind, Op, SourceInfo, TableId, TableSchema
from cdc.runtime import incremental
from cdc.runtime.incremental import (
    EXECUTE,
    STOP,
    IncrementalSnapshotter,
    IncrementalState,
    execute_data,
    parse_signal,
    stop_data,
)
from cdc.spi import Chunk, Heartbeat, Position, SnapshotsIncrementally, StreamItem

DB = "db"


@dataclass(frozen=True, slots=True)
class FakePosition(Position):
    kind: ClassVar[str] = "fake"
    tx: int
    index: int = 0
    last_in_tx: bool = field(default=True, compare=False)

    def sort_key(self) -> tuple[int, int]:
        return (self.tx, self.index)

    def to_dict(self) -> dict[str, Any]:
        return {"v": 1, "kind": "fake", "tx": self.tx, "index": self.index}


INT = ColumnType(Kind.INT64)
DATA = TableSchema(TableId(DB, "s", "data"), (Column("id", INT, False), Column("v", INT)), ("id",))
OTHER = TableSchema(TableId(DB, "s", "other"), (Column("id", INT, False), Column("v", INT)), ("id",))
TEXT = ColumnType(Kind.STRING)
SIGNAL = TableSchema(TableId(DB, "s", "signal"),
                     (Column("id", TEXT, False), Column("type", TEXT), Column("data", TEXT)),
                     ("id",))


def _event(op: Op, schema: TableSchema, before: dict[str, Any] | None,
           after: dict[str, Any] | None, pos: Position, snapshot: str = "false") -> ChangeEvent:
    image = after if after is not None else before
    assert image is not None
    key = {k: image[k] for k in schema.primary_key}
    return ChangeEvent(op, schema, key, before, after,
                       SourceInfo("fake", "src", "0", "1", pos, 0, snapshot=snapshot), 0)


class FakeDb:
    """Tables of ints, a commit log, and a workload that writes into them."""

    def __init__(self, rnd: random.Random, rows: int) -> None:
        self.rnd = rnd
        self.tables: dict[str, dict[int, int]] = {
            "s.data": {i: i for i in range(1, rows + 1)}, "s.other": {1: 1}}
        self.log: list[ChangeEvent] = []
        self.tx = 0
        self.next_id = rows + 1
        self.budget = 400  # transactions the workload may still commit

    def _commit(self, events: Sequence[tuple[Op, TableSchema, Any, Any]]) -> None:
        self.tx += 1
        n = len(events)
        for i, (op, schema, before, after) in enumerate(events):
            self.log.append(_event(op, schema, before, after, FakePosition(self.tx, i, i == n - 1)))

    def signal(self, sid: str, stype: str, data: str | None) -> None:
        self._commit([(Op.CREATE, SIGNAL, None, {"id": sid, "type": stype, "data": data})])

    def write(self, times: int = 1) -> None:
        """Random committed changes to s.data (one or two per transaction), within budget."""
        t = self.tables["s.data"]
        times = min(times, self.budget)
        self.budget -= times
        for _ in range(times):
            events = []
            for _ in range(self.rnd.randint(1, 2)):
                x = self.rnd.random()
                keys = list(t)
                if x < 0.3 or not keys:
                    k = self.next_id if self.rnd.random() < 0.7 else self.rnd.randint(1, self.next_id)
                    self.next_id += 1
                    if k in t:
                        continue
                    t[k] = self.rnd.randint(0, 10**6)
                    events.append((Op.CREATE, DATA, None, {"id": k, "v": t[k]}))
                elif x < 0.65:
                    k = self.rnd.choice(keys)
                    old = {"id": k, "v": t[k]}
                    t[k] = self.rnd.randint(0, 10**6)
                    events.append((Op.UPDATE, DATA, old, {"id": k, "v": t[k]}))
                elif x < 0.9:
                    k = self.rnd.choice(keys)
                    events.append((Op.DELETE, DATA, {"id": k, "v": t.pop(k)}, None))
                else:  # a primary-key change
                    k = self.rnd.choice(keys)
                    new = self.next_id
                    self.next_id += 1
                    v = t.pop(k)
                    t[new] = v
                    events.append((Op.UPDATE, DATA, {"id": k, "v": v}, {"id": new, "v": v}))
            if events:
                self._commit(events)


class FakeSource:
    """cdc.spi.SnapshotsIncrementally over a FakeDb; writes happen around every chunk read."""

    def __init__(self, db: FakeDb, writes_per_step: int) -> None:
        self.db = db
        self.writes = writes_per_step
        self.chunks = 0

    def signal_table(self) -> TableId | None:
        return SIGNAL.table

    def write_signal(self, signal_id: str, signal_type: str, data: str | None) -> None:
        self.db.write(self.db.rnd.randint(0, self.writes))
        self.db.signal(signal_id, signal_type, data)

    def resolve_table(self, name: str) -> TableId | None:
        return TableId(DB, "s", name.split(".")[1]) if name in self.db.tables else None

    def table_rows_estimate(self, table: TableId) -> int:
        return len(self.db.tables[table.qualified])

    def read_chunk(self, table: TableId, after: Sequence[Any] | None, limit: int,
                   condition: str | None) -> Chunk:
        self.chunks += 1
        self.db.write(self.db.rnd.randint(0, self.writes))
        rows = self.db.tables[table.qualified]
        start = after[0] if after is not None else None
        keys = sorted(k for k in rows if (start is None or k > start)
                      and (condition != "even" or k % 2 == 0))[:limit]
        schema = DATA if table.table == "data" else OTHER
        events = [_event(Op.READ, schema, None, {"id": k, "v": rows[k]}, FakePosition(0),
                         "incremental") for k in keys]
        self.db.write(self.db.rnd.randint(0, self.writes))
        last = (keys[-1],) if len(keys) == limit else None
        return Chunk(events, last)

    def position_after(self, position: Position, offset: int, last: bool) -> Position:
        assert isinstance(position, FakePosition)
        return FakePosition(position.tx, position.index + offset, last)


def stream(db: FakeDb, workload_steps: int) -> Iterator[StreamItem]:
    """The commit log in order; the workload goes on while it is read; heartbeats when idle."""
    i = 0
    idle = 0
    while True:
        if i < len(db.log):
            yield db.log[i]
            i += 1
            if workload_steps and db.rnd.random() < 0.3:
                db.write()
            continue
        idle += 1
        if idle > 3:
            return
        yield Heartbeat(FakePosition(db.tx, 1 << 30))


def apply(replica: dict[str, dict[int, int]], items: Sequence[StreamItem]) -> None:
    for item in items:
        if isinstance(item, Heartbeat):
            continue
        t = replica.setdefault(item.table.qualified, {})
        if item.before is not None and item.op in (Op.UPDATE, Op.DELETE):
            t.pop(item.before["id"], None)
        if item.after is not None:
            t[item.after["id"]] = item.after["v"]


def run(seed: int, rows: int, chunk: int, writes: int, steps: int
        ) -> tuple[FakeDb, list[StreamItem], IncrementalSnapshotter]:
    rnd = random.Random(seed)
    db = FakeDb(rnd, rows)
    source = FakeSource(db, writes)
    assert isinstance(source, SnapshotsIncrementally)
    snap = IncrementalSnapshotter("src", source, chunk_size=chunk)
    db.signal("sig1", EXECUTE, execute_data(["s.data"]))
    items = list(snap.wrap(stream(db, steps)))
    return db, items, snap


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), rows=st.integers(0, 120), chunk=st.integers(1, 40),
       writes=st.integers(0, 4))
def test_replica_equals_source_whatever_the_interleaving(seed: int, rows: int, chunk: int,
                                                         writes: int) -> None:
    db, items, snap = run(seed, rows, chunk, writes, steps=200)
    replica: dict[str, dict[int, int]] = {}
    apply(replica, items)  # the replica starts empty: the snapshot alone fills it
    assert replica.get("s.data", {}) == db.tables["s.data"]
    assert snap.state is None  # finished
    # Signal rows and watermarks are never published.
    assert not any(isinstance(i, ChangeEvent) and i.table == SIGNAL.table for i in items)


def test_positions_increase_and_chunks_are_reads() -> None:
    _, items, _ = run(7, 100, 10, 2, 100)
    positions = [i.position for i in items if isinstance(i, ChangeEvent)]
    assert all(a < b for a, b in itertools.pairwise(positions))
    reads = [i for i in items if isinstance(i, ChangeEvent) and i.op is Op.READ]
    assert reads and all(r.source.snapshot == "incremental" for r in reads)


def test_state_is_versioned_by_durable_position() -> None:
    # Once the signal row is durable, the state says "copy s.data from its first row".
    signal_pos = FakePosition(1, 0)
    db2 = FakeDb(random.Random(1), 30)
    src2 = FakeSource(db2, 0)
    fresh = IncrementalSnapshotter("src", src2, chunk_size=10)
    db2.signal("s", EXECUTE, execute_data(["s.data"]))
    it = fresh.wrap(stream(db2, 0))
    first = next(it)
    assert isinstance(first, Heartbeat)  # the signal row itself: a position to confirm
    state = fresh.state_for(signal_pos)
    assert state is not None and state.tables == ("s.data",) and state.last_key is None
    rest = list(it)
    reads = [i for i in rest if isinstance(i, ChangeEvent) and i.op is Op.READ]
    # After the first chunk is durable, the state continues after its last key.
    st10 = fresh.state_for(reads[9].position)
    assert st10 is not None and st10.last_key == (10,)
    # A full last chunk is followed by an empty one; once its watermark is durable: done.
    last = fresh.state_for(reads[-1].position)
    assert last is not None and last.last_key == (30,)
    assert fresh.state_for(rest[-1].position) is None


def test_resume_from_stored_state_copies_the_rest() -> None:
    rnd = random.Random(3)
    db = FakeDb(rnd, 40)
    state = IncrementalState("sig", ("s.data",), (25,), {})
    restored = IncrementalState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    snap = IncrementalSnapshotter("src", FakeSource(db, 0), chunk_size=7, state=restored)
    items = list(snap.wrap(stream(db, 0)))
    keys = sorted(i.after["id"] for i in items
                  if isinstance(i, ChangeEvent) and i.op is Op.READ and i.after)
    assert keys == list(range(26, 41))


def test_stop_signal_and_bad_signals_do_not_break_the_stream() -> None:
    rnd = random.Random(5)
    db = FakeDb(rnd, 100)
    src = FakeSource(db, 0)
    snap = IncrementalSnapshotter("src", src, chunk_size=10)
    db.signal("bad1", EXECUTE, "not json")
    db.signal("bad2", EXECUTE, json.dumps({"data-collections": ["s.nope"]}))
    db.signal("go", EXECUTE, execute_data(["s.data"]))
    it = snap.wrap(stream(db, 0))
    out: list[StreamItem] = []
    for item in it:
        out.append(item)
        reads = [i for i in out if isinstance(i, ChangeEvent) and i.op is Op.READ]
        if len(reads) == 20:
            db.signal("halt", STOP, stop_data([]))
            break
    out.extend(it)
    reads = [i for i in out if isinstance(i, ChangeEvent) and i.op is Op.READ]
    assert 20 <= len(reads) < 100
    assert snap.state is None


def test_filter_condition_reaches_the_reader() -> None:
    rnd = random.Random(9)
    db = FakeDb(rnd, 30)
    snap = IncrementalSnapshotter("src", FakeSource(db, 0), chunk_size=100)
    db.signal("f", EXECUTE, execute_data(["s.data"], {"s.data": "even"}))
    items = list(snap.wrap(stream(db, 0)))
    keys = sorted(i.after["id"] for i in items
                  if isinstance(i, ChangeEvent) and i.op is Op.READ and i.after)
    assert keys == list(range(2, 31, 2))


def test_parse_signal_rules() -> None:
    s = parse_signal("1", EXECUTE, json.dumps({
        "data-collections": ["public.a"], "type": "INCREMENTAL",
        "additional-conditions": [{"data-collection": "public.a", "filter": "x > 1"}]}))
    assert s.tables == ("public.a",) and s.conditions == {"public.a": "x > 1"}
    for bad in ("[]", json.dumps({"data-collections": []}),
                json.dumps({"data-collections": ["a.b"], "type": "blocking"})):
        try:
            parse_signal("1", EXECUTE, bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")
    assert parse_signal("1", STOP, None).tables == ()


def test_stored_state_format_is_forever() -> None:
    """The exact dict a source stores under extra["incremental"] of its offsets record."""
    stored = {"signal_id": "ab12", "tables": ["public.orders", "public.items"],
              "last_key": ["1042", {"b64": "AAE="}], "conditions": {"public.items": "id > 5"},
              "rows": 2048, "chunks": 2}
    state = IncrementalState.from_dict(stored)
    assert state.tables == ("public.orders", "public.items")
    assert state.last_key == ("1042", b"\x00\x01")
    assert state.current == "public.orders"
    assert state.to_dict() == stored
    assert IncrementalState.from_dict({"signal_id": "x", "tables": ["a.b"]}).last_key is None


def test_an_update_with_unsent_columns_merges_into_the_chunk_row() -> None:
    """A streamed update that left a column unsent (PostgreSQL TOAST) inside the window:
    the chunk row is emitted with the update's columns, keeping the unsent column's value."""
    wide = TableSchema(TableId(DB, "s", "data"),
                       (Column("id", INT, False), Column("v", INT), Column("big", TEXT)), ("id",))
    db = FakeDb(random.Random(2), 0)
    db.tables["s.data"] = {}

    class Source(FakeSource):
        def read_chunk(self, table: TableId, after: Sequence[Any] | None, limit: int,
                       condition: str | None) -> Chunk:
            if after is not None:
                return Chunk([], None)
            # Between the low watermark and the chunk read: an update of v only.
            db.log.append(ChangeEvent(
                Op.UPDATE, wide, {"id": 1}, None, {"id": 1, "v": 2}, SourceInfo(
                    "fake", "src", "0", "1", FakePosition(db.tx + 1, 0), 0), 0,
                unchanged=frozenset({"big"})))
            db.tx += 1
            row = {"id": 1, "v": 1, "big": "x" * 10}
            return Chunk([_event(Op.READ, wide, None, row, FakePosition(0), "incremental")],
                         (1,))

    snap = IncrementalSnapshotter("src", Source(db, 0), chunk_size=1)
    db.signal("s", EXECUTE, execute_data(["s.data"]))
    items = list(snap.wrap(stream(db, 0)))
    reads = [i for i in items if isinstance(i, ChangeEvent) and i.op is Op.READ]
    assert [r.after for r in reads] == [{"id": 1, "v": 2, "big": "x" * 10}]


# --------------------------------------------------------------------------- pacing


class Consumers:
    """cdc.runtime.incremental.Downstream: consumers that apply ``rate`` records per look."""

    def __init__(self, rate: int, fail: bool = False) -> None:
        self.rate, self.fail = rate, fail
        self.produced = self.consumed = self.looks = 0

    def backlog(self, table: str, sample: ChangeEvent) -> int:
        assert table == "s.data" and sample.table == DATA.table and sample.op is Op.READ
        self.looks += 1
        if self.fail:
            raise ConnectionError("Kafka is away")
        self.consumed = min(self.produced, self.consumed + self.rate)
        return self.produced - self.consumed


class WatchedSource(FakeSource):
    """Records the consumers' backlog at every chunk read."""

    def __init__(self, db: FakeDb, consumers: Consumers) -> None:
        super().__init__(db, 1)
        self.consumers = consumers
        self.backlog_at_read: list[int] = []

    def read_chunk(self, table: TableId, after: Sequence[Any] | None, limit: int,
                   condition: str | None) -> Chunk:
        self.backlog_at_read.append(self.consumers.produced - self.consumers.consumed)
        return super().read_chunk(table, after, limit, condition)


def paced_run(consumers: Consumers, max_backlog: int, monkeypatch: Any
              ) -> tuple[FakeDb, WatchedSource, IncrementalSnapshotter, list[StreamItem]]:
    monkeypatch.setattr(incremental, "PACE_CHECK_S", 0.0)
    db = FakeDb(random.Random(11), 200)
    source = WatchedSource(db, consumers)
    snap = IncrementalSnapshotter("src", source, chunk_size=20, downstream=consumers,
                                  max_backlog=max_backlog)
    db.signal("sig", EXECUTE, execute_data(["s.data"]))

    def endless() -> Iterator[StreamItem]:  # the stream goes on while the snapshot waits
        i = 0
        for _ in range(100_000):
            if i < len(db.log):
                yield db.log[i]
                i += 1
                if db.rnd.random() < 0.3:
                    db.write()
            elif snap.state is None:
                return
            else:
                yield Heartbeat(FakePosition(db.tx, 1 << 30))

    out: list[StreamItem] = []
    for item in snap.wrap(endless()):
        out.append(item)
        if isinstance(item, ChangeEvent):
            consumers.produced += 1
    return db, source, snap, out


def test_the_next_chunk_waits_for_the_consumers(monkeypatch: Any) -> None:
    consumers = Consumers(rate=3)
    db, source, snap, items = paced_run(consumers, 10, monkeypatch)
    assert snap.state is None  # finished
    replica: dict[str, dict[int, int]] = {}
    apply(replica, items)
    assert replica["s.data"] == db.tables["s.data"]  # pacing changes no row
    # Every chunk after the first was read with at most max_backlog records unconsumed.
    assert len(source.backlog_at_read) > 5
    assert all(b <= 10 for b in source.backlog_at_read[1:]), source.backlog_at_read
    assert consumers.looks > len(source.backlog_at_read)  # it waited, looking again


def test_a_failing_backlog_look_up_leaves_the_snapshot_unpaced(monkeypatch: Any) -> None:
    consumers = Consumers(rate=0, fail=True)
    db, _, snap, items = paced_run(consumers, 10, monkeypatch)
    assert snap.state is None and snap.held_s == 0.0
    replica: dict[str, dict[int, int]] = {}
    apply(replica, items)
    assert replica["s.data"] == db.tables["s.data"]


def test_max_backlog_zero_never_waits(monkeypatch: Any) -> None:
    consumers = Consumers(rate=0)  # consumers that never consume
    _, _, snap, _ = paced_run(consumers, 0, monkeypatch)
    assert snap.state is None and consumers.looks == 0
